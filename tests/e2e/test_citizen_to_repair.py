"""One way in, end to end: a citizen reports a dark lamp on the phone page; an operator triages it; the crew
reads the work order, accepts it on a phone without a connection (the tap kept and sent when back) and
finishes it; the telemetry verifies the repair; the citizen hears each step. Every message is read as its
receiver gets it: e-mail through a real SMTP server, webhooks through a real HTTP receiver."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
from playwright.sync_api import FilePayload, expect

from tests.browser import chromium, phone, screenshot
from tests.conftest import Api
from tests.e2e.test_crew_page import _personal_token, _sign_in
from tests.helpers import Inbox, Receiver
from tests.integration.test_api import bearer
from tests.integration.test_cases import sync
from tests.integration.test_crew_messages import _deliver_public
from tests.integration.test_open311_complete import _jpeg_with_position
from tests.integration.test_outbox import point_crews_at
from tests.integration.test_rules import store_readings


def test_a_citizens_report_becomes_a_verified_repair_and_the_citizen_hears_each_step(
    api: Api, smtp: tuple[int, Inbox], receiver: Receiver
) -> None:
    port, inbox = smtp
    point_crews_at(api.url, receiver)
    anna = "anna@example.org"
    with chromium() as browser:
        citizen = phone(browser, geolocation={"latitude": 56.05102, "longitude": 12.69}, permissions=["geolocation"])
        page = citizen.new_page()
        page.goto(api.base + "/report/solvik")
        page.wait_for_load_state("load")
        page.get_by_role("button", name="Använd min position").click()
        expect(page.locator("#lat")).to_have_value("56.051020")
        page.get_by_label("Släckt lampa").check()
        page.get_by_label("Beskriv felet (frivilligt)").fill("Mörkt vid övergångsstället")
        photo: FilePayload = {"name": "lampa.jpg", "mimeType": "image/jpeg", "buffer": _jpeg_with_position()}
        page.set_input_files("#photo", [photo])
        page.get_by_label("E-post för besked (frivilligt)").fill(anna)
        page.get_by_role("button", name="Skicka anmälan").click()
        expect(page.locator("#status")).to_have_text("mottagen: kommunen granskar anmälan")
        status_page = page.url.split("?")[0]
        _deliver_public(api.url, port, api.clock[0])
        assert [m["subject"] for m in inbox.messages] == ["Din anmälan #1 har tagits emot"]

        # triage: the operator finds it in the inbox and attaches it to the lamp
        operator = bearer(api.token("solvik", "operator"))
        [waiting] = httpx.get(api.base + "/api/v1/reports", params={"triage": "inbox"}, headers=operator).json()
        assert (waiting["asset_id"], waiting["photos"]) == ("SL-0003", 1)
        attached = httpx.post(api.base + f"/api/v1/reports/{waiting['request_id']}/attach",
                              json={"asset_id": "SL-0003"}, headers=operator)  # fmt: skip
        assert attached.status_code == 200, attached.text
        _deliver_public(api.url, port, api.clock[0] + 60)
        crew_mail = next(m for m in inbox.messages if m["to"] == ["ljus-norr@crews.example"])
        assert crew_mail["text"].startswith("En ny arbetsorder till ert lag.")
        assert (
            "Mörkt vid övergångsstället" in crew_mail["text"]
            and "https://lykta.example/crew/photos/" in crew_mail["text"]
        )
        planned = [m for m in inbox.messages if m["to"] == [anna]][-1]
        assert planned["subject"] == "Din anmälan #1: åtgärd planerad"

        # the crew, on a phone, at first without a connection
        crew = phone(browser)
        crew_page = crew.new_page()
        _sign_in(crew_page, api.base, _personal_token(api, "ljus-norr", "Anna Berg"))
        order = crew_page.locator("section.order")
        expect(order.locator("blockquote")).to_have_text("Mörkt vid övergångsstället")
        crew.set_offline(True)
        order.get_by_role("button", name="Acceptera").click()
        expect(crew_page.locator("#pending")).to_be_visible()
        crew.set_offline(False)
        crew_page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(crew_page.locator("section.order .status")).to_have_text("pågår", timeout=15000)
        crew_page.locator("section.order form[data-action=done] input[name=note]").fill("Bytt driver")
        crew_page.locator("section.order").get_by_role("button", name="Klar").click()
        crew_page.locator("dialog#confirm").get_by_role("button", name="Ja").click()
        expect(crew_page.locator("p.empty")).to_be_visible()

        # the lamp burns the next night: the repair is verified and the citizen told
        night = api.clock[0] + 3600
        with ThreadPoolExecutor(1) as pool:  # ingest's write path runs its own event loop; Playwright holds this one
            pool.submit(store_readings, api.url, "SLC-0003", [(night, {"power_w": 68.0, "lamp_on": 1.0})]).result()
        sync(api.url, night + 600)
        _deliver_public(api.url, port, night + 600)
        page.goto(status_page)
        expect(page.locator("#status")).to_have_text("åtgärdat")
        screenshot(page, "citizen-status-repaired")
    to_anna = [m for m in inbox.messages if m["to"] == [anna]]
    assert [m["subject"] for m in to_anna] == [
        "Din anmälan #1 har tagits emot", "Din anmälan #1: åtgärd planerad", "Din anmälan #1: åtgärdat"
    ]  # fmt: skip
    assert "Status: åtgärdat" in to_anna[-1]["text"] and "> Mörkt vid övergångsstället" in to_anna[-1]["text"]
    to_crew = [m["subject"] for m in inbox.messages if m["to"] == ["ljus-norr@crews.example"]]
    assert len(to_crew) == 1 and to_crew[0].startswith("[Arbetsorder #1] Släckt lampa: SL-0003")
    hooks = [json.loads(r["body"])["event"] for r in receiver.requests if r["path"] == "/hooks/ljus-norr"]
    assert hooks == ["assigned"]
