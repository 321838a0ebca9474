"""The HTTP API served for real (uvicorn on a loopback port) over the real database: crews' work orders,
operators' cases, tokens scoped to one tenant, and bad requests answered clearly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
import psycopg

from floor import inventory
from storage import assets, crews, tenants
from storage.crews import Crew
from tests.conftest import Api
from tests.integration.test_cases import add_crews, finding, sync
from tests.integration.test_rules import NIGHT


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def a_case(api: Api, asset: str = "SL-0003") -> None:
    add_crews(api.url)
    finding(api.url, asset, "lampFailure", NIGHT)
    sync(api.url, api.clock[0])


def test_a_crew_lists_accepts_and_closes_its_work_order(api: Api) -> None:
    a_case(api)
    crew = api.token("solvik", "crew", "ljus-norr")
    other = api.token("solvik", "crew", "ljus")
    with httpx.Client(base_url=api.base) as http:
        mine = http.get("/api/v1/work-orders", params={"status": "active"}, headers=bearer(crew)).json()
        assert [(o["asset_id"], o["status"], o["fault"]) for o in mine] == [("SL-0003", "assigned", "lampFailure")]
        wid = mine[0]["work_order_id"]
        assert http.get("/api/v1/work-orders", headers=bearer(other)).json() == []
        assert http.get(f"/api/v1/work-orders/{wid}", headers=bearer(other)).status_code == 404
        accepted = http.post(f"/api/v1/work-orders/{wid}/accept", headers=bearer(crew))
        assert accepted.status_code == 200 and accepted.json()["status"] == "in_progress"
        again = http.post(f"/api/v1/work-orders/{wid}/accept", headers=bearer(crew))
        assert again.status_code == 409 and "is in progress: it cannot be accepted" in again.json()["error"]
        closed = http.post(f"/api/v1/work-orders/{wid}/done", json={"note": "lamp replaced"}, headers=bearer(crew))
        assert closed.status_code == 200 and closed.json()["status"] == "done"
        detail = http.get(f"/api/v1/work-orders/{wid}", headers=bearer(crew)).json()
        assert [n["note"] for n in detail["notes"]] == ["lamp replaced"]
        assert detail["case_status"] == "verifying"


def test_operators_filter_cases_and_assign_them(api: Api) -> None:
    a_case(api)
    finding(api.url, "SW-01", "wellOverflow", NIGHT)
    sync(api.url, api.clock[0])
    op = api.token("solvik", "operator")
    with httpx.Client(base_url=api.base) as http:
        all_cases = http.get("/api/v1/cases", headers=bearer(op)).json()
        assert sorted(c["asset_id"] for c in all_cases) == ["SL-0003", "SW-01"]
        urgent = http.get("/api/v1/cases", params={"priority": "immediate"}, headers=bearer(op)).json()
        assert [c["asset_id"] for c in urgent] == ["SW-01"]
        well = urgent[0]
        detail = http.get(f"/api/v1/cases/{well['case_id']}", headers=bearer(op)).json()
        assert [e["action"] for e in detail["events"]][:2] == ["opened", "work order"]
        assert detail["work_orders"][0]["status"] == "new"  # no drainage crew: waits for an operator
        with psycopg.connect(api.url, autocommit=True) as conn:  # the operator takes on a drainage contractor
            crews.upsert(conn, Crew("solvik", "va", "VA-service", None, None, None, [], ["drainage"], True))
        moved = http.post(f"/api/v1/cases/{well['case_id']}/assign", json={"crew_id": "va"}, headers=bearer(op))
        assert moved.status_code == 200
        detail = http.get(f"/api/v1/cases/{well['case_id']}", headers=bearer(op)).json()
        assert [(w["status"], w["crew_id"]) for w in detail["work_orders"]] == [("assigned", "va")]
        nobody = http.post(f"/api/v1/cases/{well['case_id']}/assign", json={"crew_id": "ghost"}, headers=bearer(op))
        assert nobody.status_code == 409 and "ghost" in nobody.json()["error"]
        shut = http.post(f"/api/v1/cases/{well['case_id']}/close", json={"note": "false alarm"}, headers=bearer(op))
        assert shut.status_code == 200 and shut.json()["resolution"] == "closed"
        assert http.get("/api/v1/cases", params={"status": "active"}, headers=bearer(op)).json()[0]["asset_id"] == (
            "SL-0003"
        )


def second_town(url: str) -> None:
    """norrvik: the sample inventory again (same asset ids) under another municipality."""
    with psycopg.connect(url, autocommit=True) as conn:
        tenants.upsert(conn, "norrvik", "Norrviks kommun", "sv", "Europe/Stockholm")
        records = inventory.parse_file(Path(__file__).resolve().parents[2] / "examples" / "solvik.csv")
        renamed = [replace(r, device_id="N-" + r.device_id) if r.device_id else r for r in records]
        assets.import_records(conn, "norrvik", renamed, "solvik.csv")


def test_tokens_are_scoped_to_one_tenant_and_role(api: Api) -> None:
    a_case(api)
    second_town(api.url)
    theirs = api.token("norrvik", "operator")
    ours = api.token("solvik", "operator")
    crew = api.token("solvik", "crew", "ljus-norr")
    with httpx.Client(base_url=api.base) as http:
        case_id = http.get("/api/v1/cases", headers=bearer(ours)).json()[0]["case_id"]
        assert http.get("/api/v1/cases", headers=bearer(theirs)).json() == []
        assert http.get(f"/api/v1/cases/{case_id}", headers=bearer(theirs)).status_code == 404
        steal = http.post(f"/api/v1/cases/{case_id}/close", json={"note": "x"}, headers=bearer(theirs))
        assert steal.status_code == 404
        assert http.get("/api/v1/work-orders", headers=bearer(theirs)).json() == []
        assert http.get("/api/v1/cases", headers=bearer(crew)).status_code == 403
        missing = http.get("/api/v1/cases")
        assert missing.status_code == 401 and "bearer token" in missing.json()["error"]
        assert http.get("/api/v1/cases", headers=bearer("lyk_made-up")).status_code == 401


def test_bad_requests_get_clear_errors(api: Api) -> None:
    a_case(api)
    op = api.token("solvik", "operator")
    crew = api.token("solvik", "crew", "ljus-norr")
    with httpx.Client(base_url=api.base) as http:
        bad = http.get("/api/v1/cases", params={"status": "bogus"}, headers=bearer(op))
        assert bad.status_code == 422 and bad.json()["error"].startswith("status:")
        assert http.get("/api/v1/cases", params={"limit": 0}, headers=bearer(op)).status_code == 422
        sneaky = http.get("/api/v1/cases", params={"asset_id": "x' OR '1'='1"}, headers=bearer(op))
        assert sneaky.status_code == 200 and sneaky.json() == []
        big = http.post("/api/v1/work-orders/1/done", content=b"x" * 70_000, headers=bearer(crew))
        assert big.status_code == 413 and "larger than" in big.json()["error"]
        assert http.post("/api/v1/work-orders/999999/done", headers=bearer(crew)).status_code == 404
        wid = http.get("/api/v1/work-orders", headers=bearer(crew)).json()[0]["work_order_id"]
        reason = http.post(f"/api/v1/work-orders/{wid}/reject", json={"note": " "}, headers=bearer(crew))
        assert reason.status_code == 409 and "needs a reason" in reason.json()["error"]
        not_json = http.post(
            f"/api/v1/work-orders/{wid}/reject",
            content=b"{",
            headers={**bearer(crew), "Content-Type": "application/json"},
        )
        assert not_json.status_code == 422
        assert "error" in not_json.json()
        spec = http.get("/openapi.json").json()
        assert "/api/v1/work-orders/{work_order_id}/done" in spec["paths"]
        assert "/open311/v2/requests.{fmt}" in spec["paths"]


def test_the_bearer_scheme_is_case_insensitive(api: Api) -> None:
    a_case(api)
    token = api.token("solvik", "operator")
    for scheme in ("bearer", "BEARER", "Bearer"):
        answer = httpx.get(api.base + "/api/v1/cases", headers={"Authorization": f"{scheme} {token}"})
        assert answer.status_code == 200, (scheme, answer.text)
    assert httpx.get(api.base + "/api/v1/cases", headers={"Authorization": f"Basic {token}"}).status_code == 401


def test_a_crew_accepts_before_it_finishes_and_is_told_so_in_words(api: Api) -> None:
    a_case(api)
    token = api.token("solvik", "crew", "ljus-norr")
    [order] = httpx.get(api.base + "/api/v1/work-orders", headers=bearer(token)).json()
    early = httpx.post(api.base + f"/api/v1/work-orders/{order['work_order_id']}/done", headers=bearer(token))
    assert early.status_code == 409
    assert early.json()["error"] == (
        f"work order {order['work_order_id']} is assigned, not started: accept it before finishing it"
    )
    path = f"/api/v1/work-orders/{order['work_order_id']}"
    assert httpx.post(api.base + path + "/accept", headers=bearer(token)).status_code == 200
    assert httpx.post(api.base + path + "/done", headers=bearer(token)).status_code == 200
    again = httpx.post(api.base + path + "/accept", headers=bearer(token))
    assert again.json()["error"] == f"work order {order['work_order_id']} is done: it cannot be accepted"


def test_unknown_filters_are_refused_not_ignored(api: Api) -> None:
    a_case(api)
    token = api.token("solvik", "operator")
    answer = httpx.get(api.base + "/api/v1/cases?stauts=resolved", headers=bearer(token))
    assert answer.status_code == 422
    assert "unknown query parameter stauts" in answer.json()["error"] and "status" in answer.json()["error"]
    listed = httpx.get(api.base + "/api/v1/work-orders?crew=el", headers=bearer(token))
    assert listed.status_code == 422 and "crew" in listed.json()["error"]
    assert httpx.get(api.base + "/api/v1/cases?status=active", headers=bearer(token)).status_code == 200


def test_a_case_goes_only_to_a_crew_with_the_skill_it_needs(api: Api) -> None:
    add_crews(api.url)
    with psycopg.connect(api.url, autocommit=True) as conn:
        crews.upsert(conn, Crew("solvik", "avfall", "Avfallslaget", None, None, None, [], ["waste"], True))
    finding(api.url, "SL-0120", "poleTilt", NIGHT)
    sync(api.url, api.clock[0])
    token = api.token("solvik", "operator")
    [case] = httpx.get(api.base + "/api/v1/cases", headers=bearer(token)).json()
    wrong = httpx.post(api.base + f"/api/v1/cases/{case['case_id']}/assign", headers=bearer(token),
                       json={"crew_id": "avfall"})  # fmt: skip
    assert wrong.status_code == 409 and "does not do lighting work" in wrong.json()["error"], wrong.text
    right = httpx.post(api.base + f"/api/v1/cases/{case['case_id']}/assign", headers=bearer(token),
                       json={"crew_id": "ljus"})  # fmt: skip
    assert right.status_code == 200, right.text


def test_tokens_expire(api: Api) -> None:
    a_case(api)
    token = api.token("solvik", "operator")
    assert httpx.get(api.base + "/api/v1/cases", headers=bearer(token)).status_code == 200
    with psycopg.connect(api.url, autocommit=True) as conn:
        conn.execute("UPDATE api_tokens SET expires_at = now() - interval '1 minute'")
    answer = httpx.get(api.base + "/api/v1/cases", headers=bearer(token))
    assert answer.status_code == 401 and answer.json()["error"].startswith("token expired on ")
