"""People's pages as people use them: Debian's Chromium driven by Playwright, at the sizes they use, with
screenshots taken and checked (nothing wider than the screen, targets at least 44 x 44 px) and an
accessibility check by axe-core (from the npm registry: web/node_modules, installed by scripts/install-web)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
SCREENS = Path(os.environ.get("LYKTA_SCREENSHOTS", ROOT / "build" / "screens"))
"""where the tests put their screenshots (docs/ takes the ones it shows from here)"""
PHONE: dict[str, Any] = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
TABLET: dict[str, Any] = {"viewport": {"width": 820, "height": 1180}, "is_mobile": True, "has_touch": True}
DESKTOP: dict[str, Any] = {"viewport": {"width": 1366, "height": 900}}


@contextmanager
def chromium() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is missing; ./bootstrap test installs it (scripts/install-test-tools)"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            yield browser
        finally:
            browser.close()


def phone(browser: Browser, **extra: Any) -> BrowserContext:
    """A phone-sized context. The pages' content security policy lets only their own scripts run, and the
    test injects axe-core: the context bypasses the policy (tests/integration/test_pages.py checks it is sent)."""
    return browser.new_context(**PHONE, bypass_csp=True, **extra)


def sized(browser: Browser, size: dict[str, Any], **extra: Any) -> BrowserContext:
    """A context of the given size (DESKTOP, TABLET, PHONE), bypassing the pages' policy as :func:`phone` does."""
    return browser.new_context(**size, bypass_csp=True, **extra)


def small_targets(page: Page) -> list[str]:
    """Visible buttons, links and fields smaller than 44 x 44 CSS pixels (WCAG 2.5.5); a field inside its label
    is as big as the label (a tap on the label is a tap on the field)."""
    found: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea, summary')]
              .filter(e => e.offsetParent !== null)
              .map(e => [e, (e.closest('label') || e).getBoundingClientRect()])
              .filter(([e, r]) => r.width < 44 || r.height < 44)
              .map(([e, r]) => `${e.tagName.toLowerCase()} "${(e.innerText || e.name || e.id || '').trim()}" `
                               + `${Math.round(r.width)}x${Math.round(r.height)}`)"""
    )
    return found


def overflowing(page: Page) -> list[str]:
    """Elements reaching past the right edge of the screen (a page that scrolls sideways on a phone), but for
    those a box that fits clips (a map's panes)."""
    found: list[str] = page.evaluate(
        """() => { const w = document.documentElement.clientWidth;
                   const clipped = e => { for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
                       if (getComputedStyle(a).overflowX !== 'visible' && a.getBoundingClientRect().right <= w + 1)
                         return true; } return false; };
                   return [...document.querySelectorAll('body *')]
                     .filter(e => e.offsetParent !== null && e.getBoundingClientRect().right > w + 1 && !clipped(e))
                     .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + '.' + e.className); }"""
    )
    return found


def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot, checked: the page fits the screen's width and every target is big enough."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000, f"{path}: an empty screenshot"
    width = page.viewport_size["width"] if page.viewport_size else 0
    assert page.evaluate("document.documentElement.scrollWidth") <= width, overflowing(page)
    assert not overflowing(page), f"{name}: {overflowing(page)}"
    assert not small_targets(page), f"{name}: targets under 44 x 44 px: {small_targets(page)}"
    return path


def axe(page: Page) -> list[str]:
    """Serious and critical accessibility violations axe-core finds on the page (none expected)."""
    assert AXE.is_file(), f"{AXE} is missing; ./bootstrap installs it (scripts/install-web)"
    page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate("async () => await axe.run(document)")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
