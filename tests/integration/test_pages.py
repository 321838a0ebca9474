"""The crew page without JavaScript, as a plain form client posts it: confirmations, taps sent twice applied once,
messages only from the page's own list, and the security headers of every page."""

from __future__ import annotations

import re
from contextlib import closing

import httpx
import psycopg

from tests.conftest import Api
from tests.integration.test_cases import add_crews, finding, sync
from tests.integration.test_rules import NIGHT


def _signed_in(api: Api) -> httpx.Client:
    add_crews(api.url)
    finding(api.url, "SL-0003", "lampFailure", NIGHT)
    sync(api.url, api.clock[0])
    client = httpx.Client(base_url=api.base)
    signed = client.post("/crew/login", data={"token": api.token("solvik", "crew", "ljus-norr")})
    assert signed.status_code == 303 and "lykta_crew" in signed.headers["set-cookie"]
    return client


def _key(page: str, action: str) -> str:
    found = re.search(rf'/{action}" class="row action".*?name="key" value="([^"]+)"', page, re.S)
    assert found, f"no {action} form"
    return found.group(1)


def test_finishing_asks_first_and_a_tap_sent_twice_counts_once(api: Api) -> None:
    with closing(_signed_in(api)) as client:
        page = client.get("/crew").text
        accept = {"key": _key(page, "accept")}
        for _ in range(2):  # the phone sends the same tap again (no answer seen the first time)
            assert client.post("/crew/work-orders/1/accept", data=accept).headers["location"] == "/crew?msg=saved"
        page = client.get("/crew").text
        done = {"key": _key(page, "done"), "note": "Bytt"}
        asked = client.post("/crew/work-orders/1/done", data=done)
        assert asked.status_code == 200 and "Markera arbetsorder #1 som klar?" in asked.text
        assert 'name="confirmed" value="1"' in asked.text and done["key"] in asked.text
        with psycopg.connect(api.url) as conn:
            assert conn.execute("SELECT status FROM work_orders").fetchone() == ("in_progress",)  # not yet
        confirmed = client.post("/crew/work-orders/1/done", data={**done, "confirmed": "1"})
        assert confirmed.headers["location"] == "/crew?msg=saved"
        again = client.post("/crew/work-orders/1/done", data={**done, "confirmed": "1"})
        assert again.headers["location"] == "/crew?msg=saved"  # the same tap: what happened the first time
    with psycopg.connect(api.url) as conn:
        events = conn.execute("SELECT action FROM case_events WHERE action LIKE 'work order %' ORDER BY 1").fetchall()
    assert events == [("work order accept",), ("work order done",)]


def test_refusals_are_in_the_crews_language_and_nothing_else_is_shown(api: Api) -> None:
    with closing(_signed_in(api)) as client:
        page = client.get("/crew").text
        refused = client.post("/crew/work-orders/1/done", data={"confirmed": "1", "key": "abcdefgh12"})
        assert refused.headers["location"] == "/crew?msg=accept_first"
        shown = client.get("/crew?msg=accept_first").text
        assert "Acceptera arbetsordern innan du markerar den som klar." in shown
        injected = client.get("/crew", params={"msg": "<b>Ring 0701234567</b>"}).text
        assert "0701234567" not in injected
        missing = client.post("/crew/work-orders/999/accept", data={"key": _key(page, "accept")})
        assert missing.headers["location"] == "/crew?msg=gone"
        answered = client.post(
            "/crew/work-orders/1/done", data={"confirmed": "1"}, headers={"Accept": "application/json"}
        )
        assert answered.status_code == 409
        assert answered.json() == {
            "ok": False, "code": "accept_first", "message": "Acceptera arbetsordern innan du markerar den som klar."
        }  # fmt: skip


def test_pages_are_sent_with_security_headers(api: Api) -> None:
    page = httpx.get(api.base + "/crew")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    assert httpx.get(api.base + "/static/crew.js").status_code == 200


def test_still_broken_on_the_status_page_reopens_the_case_and_tells_the_crew(api: Api) -> None:
    from cases import routing

    add_crews(api.url)
    with httpx.Client(base_url=api.base) as client:
        sent = client.post("/report/solvik", data={"service_code": "streetlight-out", "lat": "56.05102",
                                                   "lon": "12.69", "description": "Släckt"})  # fmt: skip
        assert sent.status_code == 303 and sent.headers["location"] == "/report/solvik/1?new=1"
        operator = {"Authorization": f"Bearer {api.token('solvik', 'operator')}"}
        assert client.post("/api/v1/reports/1/attach", json={"asset_id": "SL-0003"}, headers=operator).is_success
        with psycopg.connect(api.url) as conn, conn.transaction():
            routing.act(conn, 1, "accept", "crew:ljus-norr", None, api.clock[0])
            routing.act(conn, 1, "done", "crew:ljus-norr", None, api.clock[0])
        page = client.get("/report/solvik/1").text
        assert "verifieras" in page and "Det är fortfarande trasigt" in page
        again = client.post("/report/solvik/1/still-broken")
        assert again.status_code == 303 and again.headers["location"] == "/report/solvik/2?new=1"
    with psycopg.connect(api.url) as conn:
        case = conn.execute("SELECT c.status FROM cases c JOIN service_requests r USING (case_id) "
                            "WHERE r.request_id = 2").fetchone()  # fmt: skip
        orders = conn.execute("SELECT status FROM work_orders ORDER BY work_order_id").fetchall()
        told = conn.execute("SELECT subject, body->>'text' FROM outbox WHERE channel = 'email' "
                            "AND subject LIKE '%ÅTERÖPPNAD%'").fetchall()  # fmt: skip
    assert case == ("open",) and orders == [("done",), ("assigned",)]
    [(subject, text)] = told
    assert subject.startswith("[Arbetsorder #2] ÅTERÖPPNAD")
    assert "Varför: en medborgare anmäler att felet finns kvar" in text
    assert "Fortfarande trasigt (uppföljning av anmälan #1)" in text  # the follow-up, as the crew reads it
