"""The operator console for a municipality with 10,000 cases: the case list (a page of 50, filtered or not,
first and deep pages) and the map's data (compact GeoJSON of every case the filters pass) under 300 ms each;
the full GeoJSON export (a download) is measured too.

A private database gets Solvik's inventory and 10,000 cases (about a thousand active, the rest resolved over
two years), each with a work order, some with citizen reports; ``lykta api``'s application is served by
uvicorn in its own process, as ``lykta api`` runs it. One signed-in person asks for each page ``--repeat``
times per round, for ``--rounds`` rounds; the baseline in the same run is the console's sign-in page (the
same process, templates and middleware, no query). Prints min/median/max of the rounds' medians per page and
its ratio to the baseline.

    .venv/bin/python bench/console.py [--rounds 5] [--repeat 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cases import admin as cases_admin  # noqa: E402
from floor import inventory  # noqa: E402
from lykta import services  # noqa: E402
from lykta.process import free_port  # noqa: E402
from storage import assets, migrations, tenants  # noqa: E402
from storage import crews as crew_store  # noqa: E402
from storage.crews import Crew  # noqa: E402

PASSWORD = "bench-password-123"  # noqa: S105 - a throwaway database's benchmark account
PAGES = {
    "list: active cases, page 1": "/console/solvik/cases",
    "list: all 10,000, page 1": "/console/solvik/cases?status=",
    "list: all, page 150": "/console/solvik/cases?status=&page=150",
    "list: filtered (fault, area)": "/console/solvik/cases?status=&fault=lampFailure&area=Norr",
    "map: active cases": "/console/solvik/cases.map",
    "map: filtered, all times": "/console/solvik/cases.map?status=&fault=lampFailure&area=Norr",
    "map: all 10,000": "/console/solvik/cases.map?status=",
    "export: all 10,000 as GeoJSON": "/console/solvik/cases.geojson?status=",
    "a case": "/console/solvik/cases/5000",
}
BASELINE = "/console/login"
SERVE = """
import sys, uvicorn
from cases.api import create_app
from cases.policy import Policies
uvicorn.run(create_app(sys.argv[1], Policies()), host="127.0.0.1", port=int(sys.argv[2]), log_level="error")
"""
CASES = """
WITH lamps AS (SELECT asset_id, row_number() OVER (ORDER BY asset_id) - 1 AS n, count(*) OVER () AS total
               FROM assets WHERE tenant_id = 'solvik' AND kind = 'streetlight'),
     faults AS (SELECT f, row_number() OVER () - 1 AS k
                FROM unnest(ARRAY['lampFailure', 'cyclingFailure', 'lampUnexpectedOn', 'powerDeviation']) f),
     made AS (SELECT g, l.asset_id, f.f AS fault,
                     now() - make_interval(days => (g % 730)) - make_interval(hours => g % 24) AS seen,
                     g >= 10000 - (SELECT count(*) FROM lamps) * 4 AS active
              FROM generate_series(0, 9999) g
              JOIN lamps l ON l.n = g % l.total
              JOIN faults f ON f.k = (g / l.total) % 4)
INSERT INTO cases (tenant_id, asset_id, fault, status, priority, severity, source, observed_at, opened_at, due_at,
                   breached_at, resolved_at, resolution)
SELECT 'solvik', asset_id, fault, CASE WHEN active THEN (ARRAY['open', 'in_repair', 'verifying'])[1 + g % 3]
                                       ELSE 'resolved' END,
       (ARRAY['immediate', 'days', 'month', 'round'])[1 + g % 4], 'major',
       CASE WHEN g % 7 = 0 THEN 'citizen' ELSE 'telemetry' END, seen, seen, seen + interval '3 days',
       CASE WHEN g % 5 = 0 THEN seen + interval '3 days' END,
       CASE WHEN NOT active THEN seen + interval '2 days' END,
       CASE WHEN NOT active THEN (ARRAY['verified', 'cleared', 'closed'])[1 + g % 3] END
FROM made
"""


def prepare(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        migrations.migrate(conn)
        tenants.upsert(conn, "solvik", "Solvik kommun", "sv", "Europe/Stockholm")
        assets.import_records(conn, "solvik", inventory.parse_file(ROOT / "examples" / "solvik.csv"), "solvik.csv")
        for crew_id, area in (("ljus-norr", "Norr"), ("ljus-syd", "Syd")):
            crew_store.upsert(conn, Crew("solvik", crew_id, crew_id, None, None, None, [area], ["lighting"], True))
        conn.execute(CASES)
        conn.execute(
            """INSERT INTO work_orders (case_id, tenant_id, crew_id, skill, status, title, assigned_at)
               SELECT c.case_id, c.tenant_id,
                      CASE WHEN a.maintenance_area = 'Norr' THEN 'ljus-norr' ELSE 'ljus-syd' END,
                      'lighting', CASE WHEN c.status = 'resolved' THEN 'done' ELSE 'assigned' END,
                      c.fault || ': ' || c.asset_id, c.opened_at
               FROM cases c JOIN assets a USING (tenant_id, asset_id)"""
        )
        conn.execute(
            """INSERT INTO service_requests (tenant_id, service_code, description, lat, lon, asset_id, case_id,
                                             requested_at, triage)
               SELECT c.tenant_id, 'streetlight-out', 'Släckt', a.lat, a.lon, c.asset_id, c.case_id, c.opened_at,
                      'attached'
               FROM cases c JOIN assets a USING (tenant_id, asset_id) WHERE c.source = 'citizen'"""
        )
        conn.execute("ANALYZE")
        counts = conn.execute("SELECT count(*), count(*) FILTER (WHERE status <> 'resolved') FROM cases").fetchone()
    print(f"cases: {counts[0] if counts else '?'} ({counts[1] if counts else '?'} active)", flush=True)
    cases_admin.add_operator(url, "bench@solvik.example", "Bench", ["solvik"], PASSWORD)


def timed(client: httpx.Client, path: str, repeat: int) -> float:
    """The median of ``repeat`` requests, in ms (each must answer 200)."""
    took = []
    for _ in range(repeat):
        began = time.perf_counter()
        answer = client.get(path)
        took.append((time.perf_counter() - began) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"{path}: {answer.status_code} {answer.text[:200]}")
    return statistics.median(took)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lykta-bench-console-"))
    tmp.chmod(0o755)
    state = services.up(tmp / "state", ephemeral=True)
    assert state.postgres is not None
    url = state.postgres.url()
    server = None
    try:
        prepare(url)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-c", SERVE, url, str(port)], cwd=ROOT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + BASELINE, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=60) as client:
            signed = client.post("/console/login", data={"email": "bench@solvik.example", "password": PASSWORD})
            assert signed.status_code == 303, signed.text
            for path in (BASELINE, *PAGES.values()):
                timed(client, path, 2)  # warm: templates compiled, plans cached
            rounds: dict[str, list[float]] = {name: [] for name in ("baseline", *PAGES)}
            for _ in range(args.rounds):
                rounds["baseline"].append(timed(client, BASELINE, args.repeat))
                for name, path in PAGES.items():
                    rounds[name].append(timed(client, path, args.repeat))
        base_ms = statistics.median(rounds["baseline"])
        print(f"{'page':<38} {'min':>7} {'median':>7} {'max':>7}  ratio to the sign-in page")
        for name, medians in rounds.items():
            mid = statistics.median(medians)
            print(f"{name:<38} {min(medians):>6.1f}  {mid:>6.1f}  {max(medians):>6.1f}   {mid / base_ms:>6.1f}x")
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        services.down(tmp / "state")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
