"""What a crew is told, read as it receives it: the e-mail through a real local SMTP server (aiosmtpd) and the
webhook through a real local HTTP receiver."""

from __future__ import annotations

import email
import email.policy
import json
from email.message import EmailMessage
from typing import Any

import psycopg

from cases import outbox
from floor import config
from tests.conftest import Api
from tests.helpers import Inbox, Receiver
from tests.integration.test_api import bearer
from tests.integration.test_cases import NOW, clear, finding, sync
from tests.integration.test_open311_complete import _jpeg_with_position
from tests.integration.test_outbox import deliver, point_crews_at
from tests.integration.test_rules import NIGHT


def mails(inbox: Inbox) -> list[dict[str, Any]]:
    """Each e-mail as its reader sees it: to whom, the subject and the text."""
    out = []
    for m in inbox.messages:
        parsed = email.message_from_bytes(m["data"].encode(), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        out.append({"to": m["to"][0], "subject": str(parsed["Subject"]), "text": parsed.get_content()})
    return out


def test_a_cancelled_work_order_says_so(town_url: str, smtp: tuple[int, Inbox], receiver: Receiver) -> None:
    """The cancellation e-mail was the assignment e-mail again, word for word: a crew reading e-mail drove out."""
    port, inbox = smtp
    point_crews_at(town_url, receiver)
    fid = finding(town_url, "SL-0003", "lampFailure", NIGHT)
    sync(town_url, NOW)
    deliver(town_url, port, NOW)
    clear(town_url, fid, NOW + 600)  # the lamp burns again before anyone came
    sync(town_url, NOW + 700)
    deliver(town_url, port, NOW + 700)
    assigned, cancelled = mails(inbox)
    assert assigned["to"] == cancelled["to"] == "ljus-norr@crews.example"
    assert cancelled["subject"] != assigned["subject"] and "AVBRUTEN" in cancelled["subject"]
    assert cancelled["text"].startswith("Arbetsordern är AVBRUTEN: åk inte ut för den.")
    assert "Varför: felet försvann innan det åtgärdades" in cancelled["text"]
    assert "AVBRUTEN" not in assigned["subject"] and assigned["text"].startswith("En ny arbetsorder")
    hooks = [json.loads(r["body"]) for r in receiver.requests]
    assert [h["event"] for h in hooks] == ["assigned", "cancelled"]
    assert hooks[1]["why"] == "felet försvann innan det åtgärdades"


def test_an_operator_closing_the_case_tells_the_crew_why(api: Api, smtp: tuple[int, Inbox], receiver: Receiver) -> None:
    import httpx

    port, inbox = smtp
    point_crews_at(api.url, receiver)
    finding(api.url, "SL-0003", "lampFailure", NIGHT)
    sync(api.url, api.clock[0])
    token = api.token("solvik", "operator")
    case_id = httpx.get(api.base + "/api/v1/cases", headers=bearer(token)).json()[0]["case_id"]
    closed = httpx.post(api.base + f"/api/v1/cases/{case_id}/close", headers=bearer(token),
                        json={"note": "Dubblett, hanteras i ärende 36"})  # fmt: skip
    assert closed.status_code == 200, closed.text
    deliver(api.url, port, api.clock[0])
    cancelled = mails(inbox)[-1]
    assert "AVBRUTEN" in cancelled["subject"]
    assert "Varför: avslutat av kommunen: Dubblett, hanteras i ärende 36" in cancelled["text"]


def test_reassigning_tells_the_crew_it_was_taken_from(api: Api, smtp: tuple[int, Inbox], receiver: Receiver) -> None:
    """The previous crew heard nothing and would have gone out as well."""
    import httpx

    port, inbox = smtp
    point_crews_at(api.url, receiver)
    finding(api.url, "SL-0003", "lampFailure", NIGHT)
    sync(api.url, api.clock[0])
    deliver(api.url, port, api.clock[0])
    token = api.token("solvik", "operator")
    case_id = httpx.get(api.base + "/api/v1/cases", headers=bearer(token)).json()[0]["case_id"]
    moved = httpx.post(api.base + f"/api/v1/cases/{case_id}/assign", headers=bearer(token), json={"crew_id": "ljus"})
    assert moved.status_code == 200, moved.text
    deliver(api.url, port, api.clock[0] + 60)
    first, taken, given = mails(inbox)
    assert first["to"] == taken["to"] == "ljus-norr@crews.example" and given["to"] == "ljus@crews.example"
    assert "ÅTERKALLAD" in taken["subject"] and taken["text"].startswith("Arbetsordern har gått till ett annat lag")
    assert given["text"].startswith("En ny arbetsorder") and "ÅTERKALLAD" not in given["subject"]
    hooks = {(r["path"], json.loads(r["body"])["event"]) for r in receiver.requests}
    assert hooks == {("/hooks/ljus-norr", "assigned"), ("/hooks/ljus-norr", "withdrawn-ljus-norr"),
                     ("/hooks/ljus", "assigned-ljus")}  # fmt: skip


def _deliver_public(url: str, port: int, now: float) -> None:
    """Deliver as an installation reached at https://lykta.example (api_public_url) does."""
    settings = config.load(
        environ={}, smtp_port=port, smtp_from="lykta@solvik.example", api_public_url="https://lykta.example"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        outbox.deliver(conn, settings, now)


def test_a_work_order_says_what_a_crew_needs(api: Api, smtp: tuple[int, Inbox], receiver: Receiver) -> None:
    """Work orders lacked the citizen's words and photos, links to the crew page and a map, local times and what
    the asset is; api_public_url was unused."""
    import httpx

    port, inbox = smtp
    point_crews_at(api.url, receiver)
    photo = _jpeg_with_position()
    posted = httpx.post(
        api.base + "/open311/v2/requests.json",
        data={"service_code": "streetlight-out", "lat": 56.05102, "long": 12.69, "email": "anna@example.org",
              "description": "Lampan utanför nr 3 är släckt sedan i går"},
        files=[("media", ("lampa.jpg", photo, "image/jpeg"))],
    )  # fmt: skip
    assert posted.status_code == 200, posted.text
    rid = posted.json()[0]["service_request_id"]
    token = api.token("solvik", "operator")
    attached = httpx.post(api.base + f"/api/v1/reports/{rid}/attach", headers=bearer(token),
                          json={"asset_id": "SL-0003"})  # fmt: skip
    assert attached.status_code == 200, attached.text
    _deliver_public(api.url, port, api.clock[0])
    [crew_mail] = [m for m in mails(inbox) if m["to"] == "ljus-norr@crews.example"]
    text = crew_mail["text"]
    with psycopg.connect(api.url) as conn:
        row = conn.execute("SELECT photo_id FROM report_photos").fetchone()
        order = conn.execute("SELECT work_order_id FROM work_orders").fetchone()
    assert row is not None and order is not None
    photo_id, work_order_id = row[0], order[0]
    assert "Lampan utanför nr 3 är släckt sedan i går" in text  # the citizen's words
    assert f"https://lykta.example/crew/photos/{photo_id}" in text  # the photo, for the signed-in crew
    assert f"https://lykta.example/crew#wo-{work_order_id}" in text  # the crew page
    assert "https://www.openstreetmap.org/directions?to=56.050931%2C12.690001" in text  # the way there
    assert "HPS 70 W" in text and "10 m" in text  # lamp type and pole height: what to bring
    # 2026-11-10 23:00 UTC is past midnight in Solvik: local time, named
    assert "2026-11-11 00:00 CET" in text and "T23:00:00Z" not in text
    assert "anna@example.org" not in text  # the reporter's address stays with the municipality
    hook = next(json.loads(r["body"]) for r in receiver.requests if r["path"] == "/hooks/ljus-norr")
    assert hook["links"]["crew_page"] == f"https://lykta.example/crew#wo-{work_order_id}"
    [report] = hook["reports"]
    assert report["description"] == "Lampan utanför nr 3 är släckt sedan i går"
    assert report["photos"] == [f"https://lykta.example/crew/photos/{photo_id}"]
    assert hook["asset"]["lamp_type"] == "HPS 70 W" and hook["asset"]["pole_height_m"] == 10
    assert hook["work_order"]["observed_local"] == "2026-11-11 00:00 CET"


def test_escalation_and_a_failed_repair_reach_the_crew(
    town_url: str, smtp: tuple[int, Inbox], receiver: Receiver
) -> None:
    """Escalation e-mailed only the escalation address; a reopened case reached the crew as a plain new order."""
    from cases import routing

    port, inbox = smtp
    point_crews_at(town_url, receiver)
    finding(town_url, "SL-0003", "poleTilt", NIGHT)  # danger: due in 4 hours
    sync(town_url, NOW)
    sync(town_url, NOW + 5 * 3600)  # past due: escalated
    deliver(town_url, port, NOW + 5 * 3600)
    assigned, escalated = mails(inbox)
    assert "ESKALERAD" not in assigned["subject"]
    assert "ESKALERAD" in escalated["subject"] and escalated["to"] == "ljus-norr@crews.example"
    assert escalated["text"].startswith("Arbetsordern är försenad")
    with psycopg.connect(town_url) as conn, conn.transaction():
        [wo] = conn.execute("SELECT work_order_id FROM work_orders").fetchone() or []
        routing.act(conn, wo, "accept", "crew:ljus-norr", None, NOW + 5 * 3600)
        routing.act(conn, wo, "done", "crew:ljus-norr", "Rätat stolpen", NOW + 6 * 3600)
    sync(town_url, NOW + 6 * 3600 + 3 * 86400)  # nothing confirms the repair within 2 days
    deliver(town_url, port, NOW + 6 * 3600 + 3 * 86400)
    reopened = [m for m in mails(inbox) if "ÅTERÖPPNAD" in m["subject"]]
    assert len(reopened) == 1, [m["subject"] for m in mails(inbox)]
    assert reopened[0]["text"].startswith("Reparationen höll inte")
    assert "Varför: telemetrin bekräftade inte reparationen" in reopened[0]["text"]
    events = [json.loads(r["body"])["event"] for r in receiver.requests]
    assert "escalated-1" in events and any(e.startswith("reopened") for e in events)


def test_a_growing_circuit_case_and_a_citizens_report_reach_the_crew(
    api: Api, smtp: tuple[int, Inbox], receiver: Receiver
) -> None:
    """More dark lamps on a circuit, and a citizen reporting the same fault, change what the crew faces. A lamp
    joining a circuit's case was not told to its crew."""
    import httpx

    port, inbox = smtp
    point_crews_at(api.url, receiver)
    for lamp in ("SL-0001", "SL-0002", "SL-0003"):
        finding(api.url, lamp, "lampFailure", NIGHT)
    sync(api.url, api.clock[0])  # three lamps of one circuit: one case on the circuit
    finding(api.url, "SL-0004", "lampFailure", NIGHT + 300)
    sync(api.url, api.clock[0] + 60)  # a fourth joins it
    posted = httpx.post(api.base + "/open311/v2/requests.json",
                        data={"service_code": "streetlight-out", "lat": 56.05102, "long": 12.69,
                              "description": "Hela gatan är mörk"})  # fmt: skip
    assert posted.status_code == 200, posted.text
    deliver(api.url, port, api.clock[0] + 120)
    got = mails(inbox)
    assigned = got[0]
    grown, updated = (m for m in got if "UPPDATERAD" in m["subject"])
    [reported] = (m for m in got if "NY ANMÄLAN" in m["subject"])
    assert len(got) == 4
    assert "Även berörda: SL-0001, SL-0002, SL-0003\r" in grown["text"]  # the circuit case took the first three
    assert "UPPDATERAD" in updated["subject"] and updated["text"].startswith("Arbetsordern har ändrats")
    assert "Även berörda: SL-0001, SL-0002, SL-0003, SL-0004" in updated["text"]
    assert "NY ANMÄLAN" in reported["subject"] and "Hela gatan är mörk" in reported["text"]
    assert "NY ANMÄLAN" not in assigned["subject"] and "UPPDATERAD" not in assigned["subject"]
