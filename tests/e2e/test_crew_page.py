"""The crew page in a real browser: Debian's Chromium, headless, at a phone's size, driven by Playwright."""

from __future__ import annotations

import shutil

import psycopg
from playwright.sync_api import expect, sync_playwright

from tests.conftest import Api
from tests.integration.test_cases import add_crews, finding, sync
from tests.integration.test_rules import NIGHT


def test_a_crew_signs_in_accepts_and_finishes_on_a_phone(api: Api) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing; ./bootstrap test installs it (scripts/install-test-tools)"
    add_crews(api.url)
    finding(api.url, "SL-0003", "lampFailure", NIGHT)
    finding(api.url, "SL-0151", "lampFailure", NIGHT)  # Syd: another crew's order, never shown here
    sync(api.url, api.clock[0])
    token = api.token("solvik", "crew", "ljus-norr")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            page.goto(api.base + "/crew")
            page.fill("#token", "lyk_wrong")
            page.click("button[type=submit]")
            expect(page.get_by_role("alert")).to_contain_text("not valid")
            page.fill("#token", token)
            page.click("button[type=submit]")
            orders = page.locator("section.order")
            expect(orders).to_have_count(1)
            order = orders.first
            expect(order.locator("h2")).to_contain_text("Släckt lampa: SL-0003")  # the tenant's language
            expect(order.locator(".status")).to_have_text("tilldelad")
            assert page.evaluate("document.documentElement.scrollWidth") <= 390  # fits the phone, no sideways scroll
            order.get_by_role("button", name="Acceptera").click()
            expect(page.get_by_role("status")).to_have_text("Sparat.")
            expect(page.locator("section.order .status")).to_have_text("pågår")
            page.locator("section.order form[action$='/done'] input[name=note]").fill("Bytt ljuskälla")
            page.locator("section.order").get_by_role("button", name="Klar").click()
            expect(page.locator("section.order")).to_have_count(0)
            expect(page.locator("p.empty")).to_have_text("Inga öppna arbetsordrar.")
        finally:
            browser.close()
    with psycopg.connect(api.url) as conn:
        rows = conn.execute(
            """SELECT w.status, n.note, c.status FROM work_orders w JOIN work_order_notes n USING (work_order_id)
               JOIN cases c USING (case_id) WHERE c.asset_id = 'SL-0003'"""
        ).fetchall()
    assert rows == [("done", "Bytt ljuskälla", "verifying")]
