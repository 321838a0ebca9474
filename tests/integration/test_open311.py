"""Open311 GeoReport v2 against the served API, through a client written from the specification
(https://wiki.open311.org/GeoReport_v2): field names, types and values as the spec lists them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
import psycopg
import pytest

from floor import inventory
from storage import assets, tenants
from tests.conftest import Api
from tests.integration.test_cases import add_crews, clear, finding, sync
from tests.integration.test_rules import NIGHT

SERVICE_FIELDS = {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}
ATTRIBUTE_FIELDS = {
    "variable", "code", "datatype", "required", "datatype_description", "order", "description", "values",
}  # fmt: skip
REQUEST_FIELDS = {
    "service_request_id", "status", "status_notes", "service_name", "service_code", "description",
    "agency_responsible", "service_notice", "requested_datetime", "updated_datetime", "expected_datetime",
    "address", "address_id", "zipcode", "lat", "long", "media_url",
}  # fmt: skip


class GeoReport:
    """A GeoReport v2 client: JSON format, form-encoded POST, errors as [{code, description}]."""

    opened: ClassVar[list[httpx.Client]] = []

    def __init__(self, base: str, jurisdiction: str | None = None) -> None:
        self.http = httpx.Client(base_url=base + "/open311/v2")
        GeoReport.opened.append(self.http)
        self.jurisdiction = jurisdiction

    def _params(self, **extra: Any) -> dict[str, Any]:
        out = {k: v for k, v in extra.items() if v is not None}
        if self.jurisdiction:
            out["jurisdiction_id"] = self.jurisdiction
        return out

    def services(self) -> list[dict[str, Any]]:
        body = self.http.get("/services.json", params=self._params()).raise_for_status().json()
        assert isinstance(body, list)
        for s in body:
            assert set(s) == SERVICE_FIELDS
            assert isinstance(s["metadata"], bool) and s["type"] in ("realtime", "batch", "blackbox")
        return body

    def definition(self, code: str) -> dict[str, Any]:
        body = self.http.get(f"/services/{code}.json", params=self._params()).raise_for_status().json()
        assert body["service_code"] == code
        for a in body["attributes"]:
            assert set(a) == ATTRIBUTE_FIELDS
            assert a["datatype"] in ("string", "number", "datetime", "text", "singlevaluelist", "multivaluelist")
            assert isinstance(a["order"], int) and isinstance(a["required"], bool)
        return dict(body)

    def post(self, **fields: Any) -> httpx.Response:
        return self.http.post("/requests.json", data=self._params(**fields))

    def created(self, **fields: Any) -> str:
        response = self.post(**fields)
        assert response.status_code == 200, response.text
        [body] = response.json()
        assert set(body) >= {"service_request_id", "service_notice", "account_id"}
        return str(body["service_request_id"])

    def request(self, request_id: str) -> dict[str, Any]:
        body = self.http.get(f"/requests/{request_id}.json", params=self._params()).raise_for_status().json()
        [one] = body
        self.check_request(one)
        return dict(one)

    def requests(self, **filters: Any) -> list[dict[str, Any]]:
        body = self.http.get("/requests.json", params=self._params(**filters)).raise_for_status().json()
        for r in body:
            self.check_request(r)
        return list(body)

    @staticmethod
    def check_request(r: dict[str, Any]) -> None:
        assert set(r) == REQUEST_FIELDS
        assert r["status"] in ("open", "closed")
        datetime.fromisoformat(r["requested_datetime"])

    @staticmethod
    def error(response: httpx.Response) -> str:
        [err] = response.json()
        assert set(err) == {"code", "description"} and err["code"] == response.status_code
        return str(err["description"])


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while GeoReport.opened:
        GeoReport.opened.pop().close()


def test_services_and_definitions_follow_the_spec(api: Api) -> None:
    client = GeoReport(api.base)
    services = client.services()
    codes = {s["service_code"] for s in services}
    assert {"streetlight-out", "flooding", "bin-full"} <= codes
    assert next(s for s in services if s["service_code"] == "streetlight-out")["service_name"] == "Släckt lampa"
    assert client.definition("streetlight-out")["attributes"]
    missing = client.http.get("/services/nope.json")
    assert missing.status_code == 404 and "nope" in GeoReport.error(missing)
    csv = client.http.get("/services.csv")
    assert csv.status_code == 400 and ".xml or .json" in GeoReport.error(csv)


def test_a_report_near_a_case_joins_it_and_the_reporter_sees_the_status(api: Api) -> None:
    add_crews(api.url)
    finding(api.url, "SL-0003", "lampFailure", NIGHT)
    sync(api.url, api.clock[0])
    with psycopg.connect(api.url) as conn:
        row = conn.execute("SELECT lat, lon FROM assets WHERE asset_id = 'SL-0003'").fetchone()
        assert row is not None
        lat, lon = row
        case_before = conn.execute("SELECT count(*) FROM cases").fetchone()
    client = GeoReport(api.base)
    rid = client.created(
        service_code="streetlight-out",
        lat=lat + 0.0001,  # about 11 m away
        long=lon,
        description="Lampan vid busshållplatsen är släckt",
        email="anna@example.org",
        first_name="Anna",  # not kept: only what handling needs
        phone="+46 70 000 00 00",
    )
    with psycopg.connect(api.url) as conn:
        assert conn.execute("SELECT count(*) FROM cases").fetchone() == case_before  # no new case
        req = conn.execute(
            "SELECT case_id, asset_id FROM service_requests WHERE request_id = %s", (int(rid),)
        ).fetchone()
        case_id = conn.execute("SELECT case_id FROM cases WHERE asset_id = 'SL-0003'").fetchone()
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'service_requests'"
        ).fetchall()}  # fmt: skip
    assert req is not None and case_id is not None and req == (case_id[0], "SL-0003")
    assert not columns & {"name", "first_name", "last_name", "phone"}
    seen = client.request(rid)
    assert (seen["status"], seen["service_code"]) == ("open", "streetlight-out")
    assert "anna@example.org" not in str(seen)
    # the case resolves: the reporter sees the request closed
    with psycopg.connect(api.url, autocommit=True) as conn:
        conn.execute("UPDATE findings SET status = 'cleared', cleared_at = observed_at + interval '1 hour'")
    sync(api.url, api.clock[0] + 7200)
    assert client.request(rid)["status"] == "closed"
    assert [r["service_request_id"] for r in client.requests(status="closed")] == [rid]
    assert client.requests(status="open") == []


def test_a_report_elsewhere_opens_a_citizen_case_with_a_work_order_where_reports_dispatch(
    api: Api, tmp_path: Path
) -> None:
    """With the policy ``dispatch`` (the default waits for an operator: test_triage.py)."""
    from cases.policy import Policies

    (tmp_path / "policy.yaml").write_text("citizen:\n  triage: dispatch\n")
    api.app.state.policies = Policies([tmp_path / "policy.yaml"])
    add_crews(api.url)
    with psycopg.connect(api.url) as conn:
        row = conn.execute("SELECT lat, lon FROM assets WHERE asset_id = 'SL-0200'").fetchone()
        assert row is not None
    client = GeoReport(api.base)
    rid = client.created(service_code="streetlight-out", lat=row[0], long=row[1], description="dark")
    with psycopg.connect(api.url) as conn:
        made = conn.execute(
            """SELECT c.asset_id, c.source, c.fault, w.status FROM service_requests r JOIN cases c USING (case_id)
               JOIN work_orders w USING (case_id) WHERE r.request_id = %s""",
            (int(rid),),
        ).fetchone()
    assert made == ("SL-0200", "citizen", "lampFailure", "assigned")
    # far from any asset of the kind: kept for an operator, still visible to the reporter
    far = client.created(service_code="streetlight-out", lat=row[0] + 0.5, long=row[1], description="?")
    assert client.request(far)["status"] == "open"
    only_address = client.created(service_code="flooding", address_string="Hamngatan 3")
    assert client.request(only_address)["address"] == "Hamngatan 3"


def test_bad_reports_are_refused_in_the_spec_format(api: Api) -> None:
    client = GeoReport(api.base)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"service_code": "nope", "lat": 56.05, "long": 12.69}, "unknown service_code"),
        ({"service_code": "streetlight-out"}, "a location is required"),
        ({"service_code": "streetlight-out", "lat": 123, "long": 12.0}, "lat must be within"),
        ({"service_code": "streetlight-out", "lat": 56.05, "long": 12.69, "email": "no"}, "not an e-mail"),
        ({"lat": 56.05, "long": 12.69}, "service_code"),
        ({"service_code": "streetlight-out", "lat": "north", "long": 12.69}, "lat"),
    ]
    for fields, expected in cases:
        response = client.post(**fields)
        assert response.status_code == 400, (fields, response.text)
        assert expected in GeoReport.error(response)
    huge = client.post(service_code="streetlight-out", lat=56.05, long=12.69, description="x" * 70_000)
    assert huge.status_code == 413
    assert client.http.get("/requests/424242.json").status_code == 404


def test_several_jurisdictions_need_a_jurisdiction_id(api: Api) -> None:
    with psycopg.connect(api.url, autocommit=True) as conn:
        tenants.upsert(conn, "norrvik", "Norrviks kommun", "pt", "Europe/Lisbon")
        records = inventory.parse_file(Path(__file__).resolve().parents[2] / "examples" / "solvik.csv")
        renamed = [replace(r, device_id="N-" + r.device_id) if r.device_id else r for r in records]
        assets.import_records(conn, "norrvik", renamed, "solvik.csv")
    anonymous = GeoReport(api.base)
    response = anonymous.http.get("/services.json")
    assert response.status_code == 400 and "jurisdiction_id is required" in GeoReport.error(response)
    norrvik = GeoReport(api.base, "norrvik")
    assert {s["service_name"] for s in norrvik.services()} >= {"Lâmpada apagada"}  # Portuguese
    rid = norrvik.created(service_code="bin-full", address_string="Rua 1")
    assert (
        GeoReport(api.base, "solvik")
        .http.get(f"/requests/{rid}.json", params={"jurisdiction_id": "solvik"})
        .status_code
        == 404
    )
    unknown = GeoReport(api.base, "atlantis").http.get("/services.json", params={"jurisdiction_id": "atlantis"})
    assert unknown.status_code == 404


def test_a_case_closed_by_hand_tells_the_reporter_the_operators_words(api: Api) -> None:
    """Closed as a duplicate, the report said "åtgärdat" (fixed), and the operator's note never reached its
    reporter. Each way a case ends now reads as what happened."""
    add_crews(api.url)
    finding(api.url, "SL-0003", "lampFailure", NIGHT)
    sync(api.url, api.clock[0])
    with psycopg.connect(api.url) as conn:
        row = conn.execute("SELECT lat, lon FROM assets WHERE asset_id = 'SL-0003'").fetchone()
        case = conn.execute("SELECT case_id FROM cases WHERE asset_id = 'SL-0003'").fetchone()
    assert row is not None and case is not None
    client = GeoReport(api.base)
    rid = client.created(service_code="streetlight-out", lat=row[0], long=row[1], description="Släckt")
    assert client.request(rid)["status_notes"] == "öppet"
    token = api.token("solvik", "operator")
    closed = client.http.post(
        api.base + f"/api/v1/cases/{case[0]}/close",
        headers={"Authorization": f"Bearer {token}"},
        json={"note": "Dubblett, hanteras i ärende 36"},
    )
    assert closed.status_code == 200, closed.text
    seen = client.request(rid)
    assert (seen["status"], seen["status_notes"]) == ("closed", "Dubblett, hanteras i ärende 36")


def test_a_case_whose_fault_went_away_does_not_say_repaired(api: Api) -> None:
    add_crews(api.url)
    fid = finding(api.url, "SL-0003", "lampFailure", NIGHT)
    sync(api.url, api.clock[0])
    with psycopg.connect(api.url) as conn:
        row = conn.execute("SELECT lat, lon FROM assets WHERE asset_id = 'SL-0003'").fetchone()
    assert row is not None
    client = GeoReport(api.base)
    rid = client.created(service_code="streetlight-out", lat=row[0], long=row[1], description="Släckt")
    clear(api.url, fid, api.clock[0] + 600)
    sync(api.url, api.clock[0] + 700)
    seen = client.request(rid)
    assert (seen["status"], seen["status_notes"]) == ("closed", "felet finns inte längre kvar")


def test_listing_requests_asks_for_the_language_once(api: Api) -> None:
    """The tenant's language was read once per request listed."""
    from cases import open311
    from cases.policy import Policies

    client = GeoReport(api.base)
    for n in range(5):
        client.created(service_code="bin-full", lat=56.05 + n / 1000, long=12.69, description=f"full {n}")
    with psycopg.connect(api.url) as conn:
        statements: list[str] = []
        execute = conn.execute

        def counted(query: Any, *args: Any, **kwargs: Any) -> Any:
            statements.append(str(query))
            return execute(query, *args, **kwargs)

        conn.execute = counted  # type: ignore[method-assign]
        answer = open311.get_requests(conn, Policies(), lambda: api.clock[0], "json", "solvik")
    assert len(json.loads(bytes(answer.body))) == 5
    assert sum("language FROM tenants" in s for s in statements) == 1
