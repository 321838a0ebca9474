"""Citizen reports and the operators' inbox: reports wait for an operator unless the policy dispatches them,
orphaned reports are listed and handled, "still broken" opens the case again, and rate limits hold."""

from __future__ import annotations

from pathlib import Path

import httpx
import psycopg

from cases.policy import Policies
from tests.conftest import Api
from tests.integration.test_api import bearer
from tests.integration.test_cases import add_crews, finding, sync
from tests.integration.test_cases_cli import lykta
from tests.integration.test_open311 import GeoReport, _close_clients  # noqa: F401 - closes its clients
from tests.integration.test_rules import NIGHT


def _position(url: str, asset_id: str) -> tuple[float, float]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT lat, lon FROM assets WHERE asset_id = %s", (asset_id,)).fetchone()
    assert row is not None
    return float(row[0]), float(row[1])


def _counts(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM cases), (SELECT count(*) FROM work_orders), (SELECT count(*) FROM outbox)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def _policy(api: Api, tmp_path: Path, text: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    api.app.state.policies = Policies([path])


def test_an_anonymous_report_waits_for_an_operator(api: Api) -> None:
    """A report dispatched a crew at once, with no one looking: now it waits in the inbox."""
    add_crews(api.url)
    lat, lon = _position(api.url, "SL-0010")
    client = GeoReport(api.base)
    rid = client.created(service_code="streetlight-out", lat=lat, long=lon, description="Släckt sedan i går")
    assert _counts(api.url) == (0, 0, 0)  # no case, no work order, nobody told to go out
    seen = client.request(rid)
    assert (seen["status"], seen["status_notes"]) == ("open", "mottagen: kommunen granskar anmälan")
    token = api.token("solvik", "operator")
    [waiting] = httpx.get(api.base + "/api/v1/reports?triage=inbox", headers=bearer(token)).json()
    assert (waiting["request_id"], waiting["asset_id"], waiting["case_id"]) == (int(rid), "SL-0010", None)
    assert "email" not in waiting
    # the operator looks and sends it on: a case on the lamp with a work order for its crew
    done = httpx.post(api.base + f"/api/v1/reports/{rid}/attach", headers=bearer(token), json={"asset_id": "SL-0010"})
    assert done.status_code == 200 and done.json()["triage"] == "attached", done.text
    cases, orders, _ = _counts(api.url)
    assert (cases, orders) == (1, 1)
    assert client.request(rid)["status_notes"] == "öppet"
    assert httpx.get(api.base + "/api/v1/reports?triage=inbox", headers=bearer(token)).json() == []
    again = httpx.post(api.base + f"/api/v1/reports/{rid}/attach", headers=bearer(token), json={"asset_id": "SL-0010"})
    assert again.status_code == 409 and "not waiting in the inbox" in again.json()["error"]


def test_orphaned_reports_are_listed_and_handled(api: Api) -> None:
    """An address-only report and one far from any asset were stored with no case, in no list, open forever."""
    add_crews(api.url)
    client = GeoReport(api.base)
    by_address = client.created(service_code="streetlight-out", address_string="Hamngatan 3, Solvik")
    far = client.created(service_code="streetlight-out", lat=56.2, long=12.9, description="Mörkt på landsvägen")
    listed = lykta(api.url, "cases", "reports", "--tenant", "solvik", "--triage", "inbox")
    assert listed.returncode == 0, listed.stderr
    assert f"report #{by_address}" in listed.stdout and "Hamngatan 3, Solvik" in listed.stdout
    assert f"report #{far}" in listed.stdout and "no asset near" in listed.stdout
    assert listed.stdout.strip().endswith("2 report(s)")
    token = api.token("solvik", "operator")
    ids = [r["request_id"] for r in httpx.get(api.base + "/api/v1/reports", headers=bearer(token)).json()]
    assert ids == [int(by_address), int(far)]
    attached = httpx.post(api.base + f"/api/v1/reports/{by_address}/attach", headers=bearer(token),
                          json={"asset_id": "SL-0003"})  # fmt: skip
    assert attached.status_code == 200 and attached.json()["case_id"] is not None
    dismissed = httpx.post(api.base + f"/api/v1/reports/{far}/dismiss", headers=bearer(token),
                           json={"note": "Vägen är Trafikverkets: vi har skickat anmälan vidare."})  # fmt: skip
    assert dismissed.status_code == 200 and dismissed.json()["triage"] == "dismissed"
    seen = client.request(far)
    assert (seen["status"], seen["status_notes"]) == (
        "closed",
        "Vägen är Trafikverkets: vi har skickat anmälan vidare.",
    )
    blank = httpx.post(api.base + f"/api/v1/reports/{by_address}/dismiss", headers=bearer(token), json={"note": ""})
    assert blank.status_code == 422
    other = api.token("solvik", "crew", "ljus")
    assert httpx.get(api.base + "/api/v1/reports", headers=bearer(other)).status_code == 403


def test_a_dispatching_municipality_sends_a_crew_at_once(api: Api, tmp_path: Path) -> None:
    add_crews(api.url)
    _policy(api, tmp_path, "citizen:\n  triage: dispatch\n")
    lat, lon = _position(api.url, "SL-0010")
    rid = GeoReport(api.base).created(service_code="streetlight-out", lat=lat, long=lon)
    cases, orders, messages = _counts(api.url)
    assert (cases, orders) == (1, 1) and messages == 2  # e-mail and webhook to the crew
    token = api.token("solvik", "operator")
    [report] = httpx.get(api.base + "/api/v1/reports", headers=bearer(token)).json()
    assert (report["request_id"], report["triage"]) == (int(rid), "attached")


def test_still_broken_opens_the_case_again_with_a_new_work_order(api: Api) -> None:
    """A report on a case the crew called done (the telemetry still verifying) changed nothing."""
    add_crews(api.url)
    finding(api.url, "SL-0003", "lampFailure", NIGHT)
    sync(api.url, api.clock[0])
    crew = api.token("solvik", "crew", "ljus-norr")
    [order] = httpx.get(api.base + "/api/v1/work-orders", headers=bearer(crew)).json()
    for action in ("accept", "done"):
        answer = httpx.post(api.base + f"/api/v1/work-orders/{order['work_order_id']}/{action}", headers=bearer(crew))
        assert answer.status_code == 200, answer.text
    lat, lon = _position(api.url, "SL-0003")
    GeoReport(api.base).created(service_code="streetlight-out", lat=lat, long=lon, description="Fortfarande släckt")
    op = api.token("solvik", "operator")
    [case] = httpx.get(api.base + "/api/v1/cases", headers=bearer(op)).json()
    detail = httpx.get(api.base + f"/api/v1/cases/{case['case_id']}", headers=bearer(op)).json()
    assert detail["status"] == "open"
    assert [(w["status"], w["crew_id"]) for w in detail["work_orders"]] == [
        ("done", "ljus-norr"), ("assigned", "ljus-norr")]  # fmt: skip
    assert "reopened" in [e["action"] for e in detail["events"]]


def test_rate_limits_per_reporter_and_per_address(api: Api, tmp_path: Path) -> None:
    _policy(api, tmp_path, "citizen:\n  rate_limit: {per_reporter_day: 2, per_address_hour: 4}\n")
    client = GeoReport(api.base)
    for n in range(2):
        client.created(service_code="bin-full", lat=56.05, long=12.69 + n / 1000, email="Ola@Example.org")
    third = client.post(service_code="bin-full", lat=56.05, long=12.7, email="ola@example.org")
    assert third.status_code == 429 and "a day from one e-mail address" in GeoReport.error(third)
    assert int(third.headers["retry-after"]) > 0
    for n in range(2):  # anonymous: the address still counts (4 an hour, 2 already made)
        client.created(service_code="bin-full", lat=56.05, long=12.71 + n / 1000)
    fifth = client.post(service_code="bin-full", lat=56.05, long=12.72)
    assert fifth.status_code == 429 and "an hour from one address" in GeoReport.error(fifth)
    with psycopg.connect(api.url) as conn:
        kept = conn.execute("SELECT reporter_key, client_key FROM service_requests").fetchall()
    assert all(k[1] and "127.0.0.1" not in k[1] for k in kept)  # digests only
    assert not any("example" in (k[0] or "") for k in kept)
