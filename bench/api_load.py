"""``lykta api`` under load: many concurrent clients asking for cases, work orders and Open311 requests.

A private database gets Solvik's inventory with a case at every tenth lamp (with work orders for the crews);
``lykta api``'s application (pool of 4 connections, as ``lykta api`` runs it) is served by uvicorn in its own
process. Clients (asyncio and httpx in this process) each send one request after another for ``--seconds``,
giving up on a request after 30 s. The baseline, in the same run, is 20 clients; then ``--clients`` (200).
For each: requests answered 200, refused 503 (with Retry-After), other answers and errors, requests per second
and the p50/p99 of the 200s. After the load: the time and status of the first request, and how many database
connections sit in a transaction (connections the API holds and did not give back).

    .venv/bin/python bench/api_load.py [--clients 200] [--seconds 60] [--baseline 20]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cases import service as cases_service  # noqa: E402
from cases.api_auth import hash_token, new_token  # noqa: E402
from cases.policy import Policies  # noqa: E402
from floor import config, inventory  # noqa: E402
from lykta import services  # noqa: E402
from lykta.process import free_port  # noqa: E402
from storage import api as api_store  # noqa: E402
from storage import assets, migrations, tenants  # noqa: E402
from storage import crews as crew_store  # noqa: E402
from storage import rules as rule_store  # noqa: E402
from storage.crews import Crew  # noqa: E402
from storage.rules import Finding  # noqa: E402

PATHS = ("/api/v1/cases", "/api/v1/work-orders", "/open311/v2/requests.json?jurisdiction_id=solvik")
SERVE = """
import sys, uvicorn
from cases.api import create_app
from cases.policy import Policies
uvicorn.run(create_app(sys.argv[1], Policies()), host="127.0.0.1", port=int(sys.argv[2]), log_level="error")
"""


@dataclass
class Outcome:
    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    by_status: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        ok = sorted(self.latencies)
        p50 = statistics.median(ok) * 1000 if ok else float("nan")
        p99 = ok[min(len(ok) - 1, int(0.99 * len(ok)))] * 1000 if ok else float("nan")
        other = {k: v for k, v in self.by_status.items() if k not in ("200", "503")}
        return (
            f"{self.clients:>4} clients: {self.by_status.get('200', 0):>6} answered 200, "
            f"{self.by_status.get('503', 0):>5} refused 503, other {other or 0}; "
            f"{len(ok) / self.seconds:>6.0f} req/s; p50 {p50:.0f} ms, p99 {p99:.0f} ms"
        )


async def load(base: str, token: str, clients: int, seconds: float) -> Outcome:
    out = Outcome(clients, seconds)
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients)

    async def client(n: int) -> None:
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30, limits=limits
        ) as http:
            while time.monotonic() < deadline:
                began = time.monotonic()
                try:
                    answer = await http.get(PATHS[n % len(PATHS)])
                    key = str(answer.status_code)
                    if answer.status_code == 200:
                        out.latencies.append(time.monotonic() - began)
                    elif answer.status_code == 503:
                        await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                out.by_status[key] = out.by_status.get(key, 0) + 1

    await asyncio.gather(*(client(n) for n in range(clients)))
    return out


def after(base: str, token: str, url: str) -> str:
    began = time.monotonic()
    try:
        answer = httpx.get(base + PATHS[0], headers={"Authorization": f"Bearer {token}"}, timeout=60)
        first = f"{answer.status_code} in {(time.monotonic() - began) * 1000:.0f} ms"
    except httpx.HTTPError as exc:
        first = f"{type(exc).__name__} after {time.monotonic() - began:.0f} s"
    time.sleep(1)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state LIKE 'idle in transaction%'"
        ).fetchone()
    return f"first request after the load: {first}; connections left in a transaction: {row[0] if row else '?'}"


def prepare(url: str) -> str:
    """Solvik with a case at every tenth lamp and crews; returns an operator token."""
    with psycopg.connect(url, autocommit=True) as conn:
        migrations.migrate(conn)
        tenants.upsert(conn, "solvik", "Solvik kommun", "sv", "Europe/Stockholm")
        assets.import_records(conn, "solvik", inventory.parse_file(ROOT / "examples" / "solvik.csv"), "solvik.csv")
        crew_store.upsert(
            conn, Crew("solvik", "ljus", "Ljusservice", None, None, None, [], ["lighting", "electrical"], True)
        )
        lamps = [r[0] for r in conn.execute("SELECT asset_id FROM assets WHERE kind = 'streetlight' ORDER BY 1")]
        t = time.time() - 3600
        for lamp in lamps[::10]:
            rule_store.insert_finding(
                conn, Finding("solvik", lamp, None, "lamp-failure", "lampFailure", "major", t, t, t, {})
            )
        token = new_token()
        api_store.create_token(conn, hash_token(token), "solvik", "operator", None, "bench")
    cases_service.run_once(url, Policies(), config.load(environ={}, smtp_port=9), time.time())
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--baseline", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lykta-bench-api-"))
    tmp.chmod(0o755)
    state = services.up(tmp / "state", ephemeral=True)
    assert state.postgres is not None
    url = state.postgres.url()
    server = None
    try:
        token = prepare(url)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-c", SERVE, url, str(port)], cwd=ROOT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/openapi.json", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        outcomes = []
        for clients in (args.baseline, args.clients):
            outcomes.append(asyncio.run(load(base, token, clients, args.seconds)))
            print(outcomes[-1].line(), flush=True)
            print("   " + after(base, token, url), flush=True)
        base_rate = len(outcomes[0].latencies) / args.seconds
        rate = len(outcomes[1].latencies) / args.seconds
        print(f"throughput at {args.clients} clients / at {args.baseline}: {rate / base_rate:.2f}x")
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        services.down(tmp / "state")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
