"""A reporter who gave an e-mail address hears from the municipality, read as received through a real local
SMTP server (aiosmtpd): the report received, and how it ended."""

from __future__ import annotations

import httpx
import psycopg

from tests.conftest import Api
from tests.helpers import Inbox, Receiver
from tests.integration.test_api import bearer
from tests.integration.test_cases import add_crews, clear, finding, sync
from tests.integration.test_crew_messages import mails
from tests.integration.test_open311 import GeoReport, _close_clients  # noqa: F401 - closes its clients
from tests.integration.test_outbox import deliver, point_crews_at
from tests.integration.test_rules import NIGHT


def _to(inbox: Inbox, address: str) -> list[dict[str, str]]:
    return [m for m in mails(inbox) if m["to"] == address]


def test_the_reporter_hears_the_report_arrived_and_the_operators_closing_words(
    api: Api, smtp: tuple[int, Inbox], receiver: Receiver
) -> None:
    """The address was kept "for updates" and no update was ever sent."""
    port, inbox = smtp
    point_crews_at(api.url, receiver)
    finding(api.url, "SL-0003", "lampFailure", NIGHT)
    sync(api.url, api.clock[0])
    with psycopg.connect(api.url) as conn:
        row = conn.execute("SELECT lat, lon FROM assets WHERE asset_id = 'SL-0003'").fetchone()
    assert row is not None
    client = GeoReport(api.base)
    rid = client.created(service_code="streetlight-out", lat=row[0], long=row[1], description="Släckt vid skolan",
                         email="anna@example.org")  # fmt: skip
    deliver(api.url, port, api.clock[0])
    received, planned = _to(inbox, "anna@example.org")  # it joined a case a crew already has
    assert received["subject"] == f"Din anmälan #{rid} har tagits emot"
    assert planned["subject"] == f"Din anmälan #{rid}: åtgärd planerad"
    assert "Ett arbetslag har fått arbetsordern. Beräknas klart senast 2026-11-23 07:00 CET." in planned["text"]
    assert "Tack för din anmälan till Solvik kommun." in received["text"] and "Status: öppet" in received["text"]
    assert "> Släckt vid skolan" in received["text"]
    token = api.token("solvik", "operator")
    [case] = httpx.get(api.base + "/api/v1/cases", headers=bearer(token)).json()
    note = "Dubblett, hanteras i ärende 36"
    closed = httpx.post(api.base + f"/api/v1/cases/{case['case_id']}/close", headers=bearer(token), json={"note": note})
    assert closed.status_code == 200
    deliver(api.url, port, api.clock[0] + 60)
    _, _, ended = _to(inbox, "anna@example.org")
    assert ended["subject"] == f"Din anmälan #{rid}: {note}" and f"Status: {note}" in ended["text"]


def test_the_reporter_hears_when_the_fault_went_away_or_the_report_was_dismissed(
    api: Api, smtp: tuple[int, Inbox]
) -> None:
    port, inbox = smtp
    add_crews(api.url)
    fid = finding(api.url, "SL-0003", "lampFailure", NIGHT)
    sync(api.url, api.clock[0])
    with psycopg.connect(api.url) as conn:
        row = conn.execute("SELECT lat, lon FROM assets WHERE asset_id = 'SL-0003'").fetchone()
    assert row is not None
    client = GeoReport(api.base)
    client.created(service_code="streetlight-out", lat=row[0], long=row[1], email="ola@example.org")
    far = client.created(service_code="streetlight-out", lat=56.3, long=12.9, email="eva@example.org")
    clear(api.url, fid, api.clock[0] + 600)
    sync(api.url, api.clock[0] + 700)
    token = api.token("solvik", "operator")
    note = "Vägen är Trafikverkets: vi har skickat anmälan vidare."
    assert httpx.post(api.base + f"/api/v1/reports/{far}/dismiss", headers=bearer(token),
                      json={"note": note}).status_code == 200  # fmt: skip
    deliver(api.url, port, api.clock[0] + 800)
    ola, eva = _to(inbox, "ola@example.org"), _to(inbox, "eva@example.org")
    assert [m["subject"].split(": ", 1)[-1] for m in ola[1:]] == ["åtgärd planerad", "felet finns inte längre kvar"]
    assert "kommunen granskar" in eva[0]["text"] and f"Status: {note}" in eva[1]["text"]
