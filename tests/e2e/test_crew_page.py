"""The crew page in a real browser: Debian's Chromium, headless, at a phone's size, driven by Playwright; each
screen photographed and checked (fits the phone, targets of 44 x 44 px), and checked by axe-core."""

from __future__ import annotations

import httpx
import psycopg
from playwright.sync_api import Page, expect

from cases.api_auth import hash_token
from tests.browser import axe, chromium, phone, screenshot
from tests.conftest import Api
from tests.integration.test_cases import add_crews, finding, sync
from tests.integration.test_open311_complete import _jpeg_with_position
from tests.integration.test_rules import NIGHT


def _personal_token(api: Api, crew: str, holder: str) -> str:
    from cases.api_auth import new_token
    from storage import api as api_store

    token = new_token()
    with psycopg.connect(api.url, autocommit=True) as conn:
        api_store.create_token(conn, hash_token(token), "solvik", "crew", crew, holder, 30)
    return token


def _sign_in(page: Page, base: str, token: str) -> None:
    page.goto(base + "/crew")
    page.fill("#token", token)
    page.get_by_role("button", name="Logga in").click()
    page.wait_for_load_state("load")  # the page's script is in place before the first tap


def test_a_crew_member_signs_in_accepts_and_finishes_on_a_phone(api: Api) -> None:
    add_crews(api.url)
    finding(api.url, "SL-0003", "lampFailure", NIGHT)
    finding(api.url, "SL-0151", "lampFailure", NIGHT)  # Syd: another crew's order, never shown here
    sync(api.url, api.clock[0])
    token = _personal_token(api, "ljus-norr", "Anna Berg")
    with chromium() as browser:
        page = phone(browser).new_page()
        page.goto(api.base + "/crew")
        expect(page.get_by_role("heading", name="Logga in")).to_be_visible()  # Swedish before signing in
        screenshot(page, "crew-sign-in")
        assert not axe(page)
        page.fill("#token", "lyk_wrong")
        page.get_by_role("button", name="Logga in").click()
        expect(page.get_by_role("alert")).to_have_text("Nyckeln är inte giltig.")
        page.fill("#token", token)
        page.get_by_role("button", name="Logga in").click()
        orders = page.locator("section.order")
        expect(orders).to_have_count(1)
        order = orders.first
        expect(order.locator("h2")).to_contain_text("Släckt lampa: SL-0003")
        expect(order.locator(".status")).to_have_text("tilldelad")
        expect(order.locator(".due")).to_contain_text("CET")  # the tenant's time zone, named
        expect(order.locator(".asset")).to_contain_text("HPS 70 W")
        expect(order.get_by_role("link", name="Vägbeskrivning")).to_be_visible()
        expect(page.locator("header")).to_contain_text("Inloggad som Anna Berg")
        screenshot(page, "crew-orders")
        assert not axe(page)
        order.get_by_role("button", name="Acceptera").click()
        expect(page.get_by_role("status").first).to_have_text("Sparat.")
        expect(page.locator("section.order .status")).to_have_text("pågår")
        page.locator("section.order form[data-action=done] input[name=note]").fill("Bytt ljuskälla")
        page.locator("section.order").get_by_role("button", name="Klar").click()
        dialog = page.locator("dialog#confirm")
        expect(dialog).to_contain_text("Markera arbetsorder #1 som klar?")
        screenshot(page, "crew-confirm")
        dialog.get_by_role("button", name="Tillbaka").click()  # not yet: nothing happens
        expect(page.locator("section.order .status")).to_have_text("pågår")
        page.locator("section.order").get_by_role("button", name="Klar").click()
        dialog.get_by_role("button", name="Ja").click()
        expect(page.locator("p.empty")).to_have_text("Inga öppna arbetsordrar.")
        page.get_by_role("button", name="Logga ut").click()
        expect(page.get_by_role("status")).to_have_text("Du är utloggad.")
        page.goto(api.base + "/crew")
        expect(page.get_by_role("heading", name="Logga in")).to_be_visible()  # the sign-in is gone
    with psycopg.connect(api.url) as conn:
        rows = conn.execute(
            """SELECT w.status, n.author, n.note, c.status FROM work_orders w
               JOIN work_order_notes n USING (work_order_id) JOIN cases c USING (case_id)
               WHERE c.asset_id = 'SL-0003'"""
        ).fetchall()
    assert rows == [("done", "crew:ljus-norr/Anna Berg", "Bytt ljuskälla", "verifying")]  # under the person's name


def test_a_tap_without_a_connection_is_kept_and_sent_once_when_back(api: Api) -> None:
    """A tap while offline was lost to the browser's error page."""
    add_crews(api.url)
    finding(api.url, "SL-0003", "lampFailure", NIGHT)
    sync(api.url, api.clock[0])
    token = _personal_token(api, "ljus-norr", "Bo")
    with chromium() as browser:
        context = phone(browser)
        page = context.new_page()
        _sign_in(page, api.base, token)
        context.set_offline(True)
        page.locator("section.order").get_by_role("button", name="Acceptera").click()
        pending = page.locator("#pending")
        expect(pending).to_be_visible()
        expect(pending).to_contain_text("Inte skickat än")
        expect(page.locator("section.order")).to_have_attribute("data-pending", "accept")
        screenshot(page, "crew-offline")
        assert page.url.endswith("/crew")  # the page stays; nothing is lost to an error page
        context.set_offline(False)
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(page.locator("section.order .status")).to_have_text("pågår", timeout=15000)
        expect(page.locator("#pending")).to_be_hidden()
    with psycopg.connect(api.url) as conn:
        accepted = conn.execute("SELECT count(*) FROM case_events WHERE action = 'work order accept'").fetchone()
        status = conn.execute("SELECT status FROM work_orders").fetchone()
    assert accepted == (1,) and status == ("in_progress",)


def test_the_page_says_only_what_it_means_to(api: Api) -> None:
    """Any text in ?msg= was shown in the alert box; a revoked token bounced in silence."""
    add_crews(api.url)
    token = _personal_token(api, "ljus-norr", "Cia")
    with chromium() as browser:
        page = phone(browser).new_page()
        _sign_in(page, api.base, token)
        page.goto(api.base + "/crew?msg=Ring+0701234567+och+uppge+din+nyckel")
        expect(page.locator("body")).not_to_contain_text("0701234567")
        with psycopg.connect(api.url, autocommit=True) as conn:
            conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE token_hash = %s", (hash_token(token),))
        page.goto(api.base + "/crew")
        expect(page.get_by_role("alert")).to_contain_text("Din inloggning gäller inte längre")
        screenshot(page, "crew-revoked")


def test_the_crew_sees_the_citizens_words_and_photos_and_no_other_crew_does(api: Api) -> None:
    add_crews(api.url)
    posted = httpx.post(
        api.base + "/open311/v2/requests.json",
        data={"service_code": "streetlight-out", "lat": 56.05102, "long": 12.69, "description": "Släckt sedan i går"},
        files=[("media", ("a.jpg", _jpeg_with_position(), "image/jpeg"))],
    )
    rid = posted.json()[0]["service_request_id"]
    operator = api.token("solvik", "operator")
    attached = httpx.post(api.base + f"/api/v1/reports/{rid}/attach", json={"asset_id": "SL-0003"},
                          headers={"Authorization": f"Bearer {operator}"})  # fmt: skip
    assert attached.status_code == 200, attached.text
    token = _personal_token(api, "ljus-norr", "Dan")
    other = _personal_token(api, "el", "Eva")
    with chromium() as browser:
        page = phone(browser).new_page()
        _sign_in(page, api.base, token)
        report = page.locator("section.order .report")
        expect(report.locator("blockquote")).to_have_text("Släckt sedan i går")
        photo = report.locator("img")
        expect(photo).to_have_count(1)
        assert page.evaluate("img => img.naturalWidth", photo.element_handle()) == 2048  # it loaded
        screenshot(page, "crew-citizen-report")
        assert not axe(page)
        src = photo.get_attribute("src")
        other_page = phone(browser).new_page()
        _sign_in(other_page, api.base, other)
        refused = other_page.goto(api.base + str(src))
        assert refused is not None and refused.status == 404  # another crew's case: not theirs to see
