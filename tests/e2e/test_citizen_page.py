"""The citizens' report page and status page in a real browser at a phone's size: place by tapping the map or
by the phone's position, category, description, photos, e-mail; the same path as Open311; screenshots checked
and axe-core run on each screen. The map has no tile server here (the page works without tiles)."""

from __future__ import annotations

import io

import psycopg
from playwright.sync_api import FilePayload, expect

from tests.browser import axe, chromium, phone, screenshot
from tests.conftest import Api
from tests.integration.test_open311_complete import _jpeg_with_position


def test_a_citizen_reports_a_dark_lamp_from_a_phone(api: Api) -> None:
    from PIL import Image

    with chromium() as browser:
        context = phone(browser, geolocation={"latitude": 56.05102, "longitude": 12.69}, permissions=["geolocation"])
        page = context.new_page()
        page.goto(api.base + "/report")  # one municipality: straight to its page
        expect(page.get_by_role("heading", name="Anmäl ett fel")).to_be_visible()
        page.wait_for_load_state("load")
        expect(page.locator("#map.leaflet-container")).to_be_visible()  # Leaflet from the npm registry
        box = page.locator("#map").bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + box["width"] / 2 + 30, box["y"] + box["height"] / 2)  # a tap on the map
        expect(page.locator("#lat")).not_to_have_value("")
        expect(page.locator(".leaflet-marker-icon")).to_have_count(1)
        page.get_by_role("button", name="Använd min position").click()  # the phone knows better
        expect(page.locator("#lat")).to_have_value("56.051020")
        expect(page.locator("#lon")).to_have_value("12.690000")
        page.get_by_label("Släckt lampa").check()
        page.get_by_label("Beskriv felet (frivilligt)").fill("Lampan vid busshållplatsen är släckt")
        lamp: FilePayload = {"name": "lampa.jpg", "mimeType": "image/jpeg", "buffer": _jpeg_with_position()}
        page.set_input_files("#photo", [lamp])
        page.get_by_label("E-post för besked (frivilligt)").fill("anna@example.org")
        screenshot(page, "citizen-report")
        assert not axe(page)
        page.get_by_role("button", name="Skicka anmälan").click()
        expect(page.get_by_role("heading")).to_contain_text("Anmälan #1")
        expect(page.locator("#status")).to_have_text("mottagen: kommunen granskar anmälan")
        expect(page.get_by_role("status")).to_contain_text("Tack! Din anmälan har tagits emot.")
        screenshot(page, "citizen-status")
        assert not axe(page)
    with psycopg.connect(api.url) as conn:
        row = conn.execute(
            """SELECT r.service_code, r.lat, r.lon, r.description, r.asset_id, r.triage, p.jpeg
               FROM service_requests r JOIN report_photos p USING (request_id)"""
        ).fetchone()
        mail = conn.execute("SELECT target, subject FROM outbox WHERE channel = 'email'").fetchone()
    assert row is not None
    code, lat, lon, description, asset, triage, jpeg = row
    assert (code, round(lat, 5), round(lon, 5), asset, triage) == (
        "streetlight-out",
        56.05102,
        12.69,
        "SL-0003",
        "inbox",
    )
    assert description == "Lampan vid busshållplatsen är släckt"
    assert not Image.open(io.BytesIO(bytes(jpeg))).getexif()  # no position or camera left in the photo
    assert mail == ("anna@example.org", "Din anmälan #1 har tagits emot")


def test_the_report_page_refuses_clearly_and_keeps_what_was_typed(api: Api) -> None:
    with chromium() as browser:
        page = phone(browser).new_page()
        page.goto(api.base + "/report/solvik")
        page.wait_for_load_state("load")
        page.get_by_label("Full papperskorg").check()
        page.get_by_label("Beskriv felet (frivilligt)").fill("Full sedan i fredags")
        photo: FilePayload = {"name": "a.jpg", "mimeType": "image/jpeg", "buffer": _jpeg_with_position()}
        page.set_input_files("#photo", [photo] * 4)
        page.get_by_role("button", name="Skicka anmälan").click()
        expect(page.locator("#photo-problem")).to_have_text("Högst 3 foton.")  # before anything is sent
        page.set_input_files("#photo", [])
        page.get_by_role("button", name="Skicka anmälan").click()  # no place given: the server says so
        expect(page.locator("#problem")).to_contain_text("a location is required")
        expect(page.get_by_label("Beskriv felet (frivilligt)")).to_have_value("Full sedan i fredags")
        screenshot(page, "citizen-report-refused")
        assert not axe(page)
    with psycopg.connect(api.url) as conn:
        assert conn.execute("SELECT count(*) FROM service_requests").fetchone() == (0,)
