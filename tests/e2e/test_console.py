"""The operator console in Chromium at a desktop's and a tablet's size: sign-in, each inbox action, filters,
the map's markers, a case's actions and the export, with screenshots checked and axe-core on each screen."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Page, expect

from cases import admin
from tests.browser import DESKTOP, TABLET, axe, chromium, screenshot, sized
from tests.conftest import Api
from tests.integration.test_cases import add_crews, finding, sync
from tests.integration.test_console_access import PASSWORD, add_norrvik
from tests.integration.test_rules import NIGHT


def _sign_in(page: Page, base: str) -> None:
    page.goto(base + "/console")
    page.get_by_label("E-post").fill("eva@solvik.example")
    page.get_by_label("Lösenord").fill(PASSWORD)
    page.get_by_role("button", name="Logga in").click()
    page.wait_for_load_state("load")
    page.goto(base + "/console/solvik/inbox")  # the person works for Norrvik too, which comes first


def _world(api: Api) -> None:
    """Solvik with crews, a few cases (one with no crew that can do it), two reports waiting (one near a lamp
    with no case, one far from everything) and a failing message."""
    import httpx

    add_norrvik(api.url)
    add_crews(api.url)
    for lamp in ("SL-0003", "SL-0010", "SL-0151"):
        finding(api.url, lamp, "lampFailure", NIGHT)
    finding(api.url, "WB-01", "binFull", NIGHT)  # waste work: no crew has the skill
    sync(api.url, api.clock[0])
    for text, lat, lon in (("Lampan vid skolan är släckt", 56.051488, 12.69026), ("Något är trasigt", 56.0, 12.69)):
        posted = httpx.post(
            api.base + "/open311/v2/requests.json",
            data={
                "service_code": "streetlight-out",
                "lat": lat,
                "long": lon,
                "description": text,
                "jurisdiction_id": "solvik",
            },
        )
        assert posted.status_code == 200, posted.text  # fmt: skip
    with psycopg.connect(api.url, autocommit=True) as conn:
        conn.execute("UPDATE outbox SET attempts = 5, failed_at = now(), last_error = 'HTTP 500' "
                     "WHERE message_id = (SELECT min(message_id) FROM outbox)")  # fmt: skip
    admin.add_operator(api.url, "eva@solvik.example", "Eva Ek", ["solvik", "norrvik"], PASSWORD)


@pytest.mark.parametrize("size", [DESKTOP, TABLET], ids=["desktop", "tablet"])
def test_an_operator_works_the_inbox(api: Api, size: dict[str, Any]) -> None:
    _world(api)
    name = "desktop" if size is DESKTOP else "tablet"
    with chromium() as browser:
        page = sized(browser, size, locale="sv-SE").new_page()
        page.goto(api.base + "/console")
        expect(page.get_by_role("heading", name="Logga in")).to_be_visible()
        page.get_by_label("E-post").fill("eva@solvik.example")
        page.get_by_label("Lösenord").fill("fel-lösenord-99")
        page.get_by_role("button", name="Logga in").click()
        expect(page.get_by_role("alert")).to_have_text("Fel e-post eller lösenord.")
        screenshot(page, f"console-sign-in-{name}")
        assert not axe(page)
        _sign_in(page, api.base)
        expect(page.get_by_role("heading", name="Inkorg", exact=True)).to_be_visible()
        screenshot(page, f"console-inbox-{name}")
        assert not axe(page)
        # a crew that does waste work, added on the crews page, then the bin case sent to it
        page.get_by_role("link", name="Arbetslag").click()
        add = page.locator("section[aria-labelledby=h-add]")
        add.get_by_label("Lag-id").fill("stad")
        add.get_by_label("Namn").fill("Städ AB")
        add.get_by_label("Kompetenser (kommaseparerade; tomt: allt)").fill("waste")
        add.get_by_role("button", name="Spara").click()
        expect(page.locator("#crews")).to_contain_text("Städ AB")
        page.get_by_role("link", name="Inkorg").click()
        unrouted = page.locator("#unrouted")
        expect(unrouted).to_contain_text("WB-01")
        unrouted.get_by_label("Lag").select_option("stad")
        unrouted.get_by_role("button", name="Tilldela").click()
        expect(page.get_by_role("status")).to_have_text("Sparat.")
        expect(page.locator("#unrouted")).not_to_contain_text("WB-01")
        # the report near SL-0003 joins its case; the other one is dismissed with a note
        reports = page.locator("article[id^=report-]")
        expect(reports).to_have_count(2)
        near = reports.filter(has_text="Lampan vid skolan")
        expect(near.get_by_label("Objekt-id eller ärendenummer")).to_have_value("SL-0005")
        near.get_by_role("button", name="Koppla").click()
        expect(page.get_by_role("status")).to_have_text("Sparat.")
        far = page.locator("article[id^=report-]").filter(has_text="Något är trasigt")
        far.get_by_label("Besked till anmälaren").fill("Vi hittar inget fel där, tack ändå.")
        far.get_by_role("button", name="Avfärda").click()
        expect(page.locator("article[id^=report-]")).to_have_count(0)
        page.locator("#failing").get_by_role("button", name="Försök igen").click()
        expect(page.locator("#failing")).to_contain_text("Inget här.")
        # another municipality the person works for
        page.get_by_label("Kommun").select_option("norrvik")
        page.get_by_role("button", name="Byt").click()
        expect(page).to_have_url(api.base + "/console/norrvik/inbox")
        expect(page.get_by_role("heading", name="Entrada", exact=True)).to_be_visible()  # Norrvik writes Portuguese
    with psycopg.connect(api.url) as conn:
        triage = conn.execute("SELECT triage, triage_note FROM service_requests ORDER BY request_id").fetchall()
        bin_crew = conn.execute("SELECT w.crew_id FROM work_orders w JOIN cases c USING (case_id) "
                                "WHERE c.asset_id = 'WB-01'").fetchone()  # fmt: skip
        retried = conn.execute("SELECT attempts, failed_at FROM outbox WHERE message_id = 1").fetchone()
    assert triage == [("attached", None), ("dismissed", "Vi hittar inget fel där, tack ändå.")]
    assert bin_crew == ("stad",) and retried == (0, None)


def test_cases_filter_map_and_export(api: Api) -> None:
    _world(api)
    with chromium() as browser:
        context = sized(browser, DESKTOP, locale="sv-SE", accept_downloads=True)
        page = context.new_page()
        _sign_in(page, api.base)
        page.get_by_role("link", name="Ärenden").click()
        rows = page.locator("#cases tbody tr")
        expect(rows).to_have_count(4)
        expect(page.locator("#map .case-marker")).to_have_count(4)  # every case on the map (no tiles needed)
        page.get_by_label("Fel").select_option("lampFailure")
        page.get_by_label("Område").select_option("Norr")
        page.get_by_role("button", name="Filtrera").click()
        expect(rows).to_have_count(2)
        expect(page.locator("#map .case-marker")).to_have_count(2)
        screenshot(page, "console-cases-desktop")
        assert not axe(page)
        with page.expect_download() as got:
            page.get_by_role("link", name="Exportera CSV").click()
        listed = list(csv.DictReader(io.StringIO(got.value.path().read_text())))
        assert sorted(r["asset_id"] for r in listed) == ["SL-0003", "SL-0010"]
        assert {r["area"] for r in listed} == {"Norr"} and {r["fault"] for r in listed} == {"lampFailure"}
        with page.expect_download() as got:
            page.get_by_role("link", name="Exportera GeoJSON").click()
        doc = json.loads(got.value.path().read_text())
        assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 2
        assert all(f["geometry"]["type"] == "Point" for f in doc["features"])


def test_a_case_is_assigned_merged_closed_and_reopened(api: Api) -> None:
    _world(api)
    with chromium() as browser:
        page = sized(browser, TABLET, locale="sv-SE").new_page()
        _sign_in(page, api.base)
        page.goto(api.base + "/console/solvik/cases?fault=lampFailure")
        page.get_by_role("link", name="1", exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("Ärende #1: Släckt lampa · SL-0003")
        chart = page.locator("img.chart")
        expect(chart).to_be_visible()
        assert page.evaluate("img => img.complete && img.naturalWidth > 0", chart.element_handle())
        screenshot(page, "console-case-tablet")
        assert not axe(page)
        page.get_by_label("Lag", exact=True).select_option("ljus")
        page.get_by_role("button", name="Tilldela").click()
        expect(page.get_by_role("status")).to_have_text("Sparat.")
        expect(page.locator("#timeline")).to_contain_text("ljus")
        page.get_by_label("Avsluta, med ett besked som anmälarna läser").fill("Dubblett av ärende 2")
        page.get_by_role("button", name="Avsluta").click()
        expect(page.locator("#case-status")).to_contain_text("åtgärdat")
        page.get_by_label("Öppna igen: varför").fill("Felet syns igen på plats")
        page.get_by_role("button", name="Öppna igen").click()
        expect(page.locator("#case-status")).to_contain_text("öppet")
        page.get_by_label("Slå ihop med ärende nummer").fill("2")
        page.get_by_role("button", name="Slå ihop").click()
        expect(page.locator("#case-status")).to_contain_text("merged")
    with psycopg.connect(api.url) as conn:
        events = [r[0] for r in conn.execute("SELECT action FROM case_events WHERE case_id = 1 ORDER BY event_id")]
    assert events[-7:] == ["assigned", "note", "resolved", "reopened", "work order", "merged", "merged by hand"]
