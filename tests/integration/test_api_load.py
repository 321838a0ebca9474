"""The API under more concurrent clients than it has connections and threads: it answers or refuses with 503,
never stalls, and every database connection goes back to its pool, also when clients give up mid-request and
when a request fails inside its transaction. (Throughput and latency under load: bench/api_load.py.)"""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import psycopg
import pytest

from tests.conftest import Api
from tests.integration.test_api import a_case, bearer

pytestmark = pytest.mark.reliability

CLIENTS = 120  # more than the worker threads the API runs blocking code in (40)


async def _hammer(base: str, token: str, seconds: float, give_up_s: float) -> dict[str, int]:
    """CLIENTS clients asking for cases, work orders and Open311 requests as fast as they can, each giving up on
    a request after ``give_up_s`` (closing its connection mid-request). Returns the answers by status."""
    outcomes: dict[str, int] = {}
    limits = httpx.Limits(max_connections=CLIENTS)
    paths = ["/api/v1/cases", "/api/v1/work-orders", "/open311/v2/requests.json?jurisdiction_id=solvik"]
    deadline = time.monotonic() + seconds

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=base, headers=bearer(token), timeout=give_up_s, limits=limits) as http:
            while time.monotonic() < deadline:
                try:
                    answer = await http.get(paths[n % len(paths)])
                    key = str(answer.status_code)
                except httpx.TimeoutException:
                    key = "gave up"
                except httpx.TransportError:
                    key = "transport error"
                outcomes[key] = outcomes.get(key, 0) + 1

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return outcomes


def _settled(api: Api, within_s: float = 15.0) -> None:
    """Every connection back in the pool and none left in a transaction: at once once the requests still in
    flight (a client that hung up does not stop its request) have ended; a leak never gets there."""
    pool = api.app.state.pool
    deadline = time.monotonic() + within_s
    while True:
        stats = pool.get_stats()
        held = _in_transaction(api.url)
        if stats.get("pool_available", 0) == stats.get("pool_size", 0) and held == 0:
            return
        assert time.monotonic() < deadline, f"connections not given back: {stats}, {held} in a transaction"
        time.sleep(0.1)


def _in_transaction(url: str) -> int:
    """Connections of other sessions sitting in a transaction: connections the API holds and never returned."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state LIKE 'idle in transaction%'"
        ).fetchone()
    return int(row[0]) if row else -1


def test_the_api_answers_after_more_clients_than_it_has_threads(api: Api) -> None:
    a_case(api)
    token = api.token("solvik", "operator")
    outcomes = asyncio.run(_hammer(api.base, token, seconds=8, give_up_s=2.0))
    assert outcomes.get("200", 0) > 0, outcomes
    # whatever was refused was refused properly, with 503 and when to come back
    assert set(outcomes) <= {"200", "503", "gave up"}, outcomes
    # after the load: the first request is answered normally, and every connection is back in the pool
    began = time.monotonic()
    answer = httpx.get(api.base + "/api/v1/cases", headers=bearer(token), timeout=10)
    assert answer.status_code == 200 and answer.json(), (answer.status_code, time.monotonic() - began)
    _settled(api)


def test_a_refused_request_under_load_says_when_to_come_back(api: Api) -> None:
    a_case(api)
    token = api.token("solvik", "operator")

    limits = httpx.Limits(max_connections=500)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=api.base, headers=bearer(token), timeout=30, limits=limits) as http:
            return await asyncio.gather(*(http.get("/api/v1/cases") for _ in range(400)))

    answers = asyncio.run(burst())
    codes = {a.status_code for a in answers}
    # 400 at once: the pool's 2 at work, 256 waiting, the others refused at once
    assert codes == {200, 503}, codes
    for a in answers:
        if a.status_code == 503:
            assert int(a.headers["retry-after"]) >= 1 and "busy" in a.json()["error"]


def test_failed_requests_give_their_connections_back(api: Api) -> None:
    """Requests that fail inside their transaction (a crew that does not exist, a case of another kind of
    work) and clients that disconnect mid-request leave no connection behind."""
    a_case(api)
    token = api.token("solvik", "operator")
    with httpx.Client(base_url=api.base, headers=bearer(token), timeout=10) as http:
        case_id = http.get("/api/v1/cases").json()[0]["case_id"]
        for _ in range(10):
            refused = http.post(f"/api/v1/cases/{case_id}/assign", json={"crew_id": "no-such-crew"})
            assert refused.status_code in (404, 409, 422), refused.text
    host, port = api.base.removeprefix("http://").split(":")
    for _ in range(20):  # ask, and hang up before the answer comes
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(f"GET /api/v1/cases HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    _settled(api)
    assert httpx.get(api.base + "/api/v1/cases", headers=bearer(token), timeout=10).status_code == 200
