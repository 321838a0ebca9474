"""Dashboard queries on a month of data for 10,000 devices: every panel's SQL, expanded as Grafana does it.

A generated city (9,800 streetlights under 20 cabinets and 200 circuits, plus 200 road-weather stations,
stormwater wells, waste bins and pump stations: 10,000 devices) gets 30 days of readings written straight into
storage (storage/synthetic.py: power, dim level and voltage every 10 minutes, energy meter and burning hours
every hour, the sensors every 10 minutes), a month of ingest statistics, findings and cases; then lykta's own
maintenance computes the hourly and daily rollups.

Each panel query runs for the last 30 days at the interval Grafana picks for a month on a 1,000-pixel panel
(1 h) and for the last 24 hours (1 min); the time is the median of three runs after a first one. Baselines in
the same run: the series and energy panels computed from raw readings of the same range, as they would be
without rollups (one run after a first one: they take seconds), and the energy panels computed from the daily
rollup per lamp instead of energy_daily. Target: every panel under 1 s for the month.

    .venv/bin/python bench/dashboards.py [--cabinets 20] [--days 30]
    .venv/bin/python bench/dashboards.py --keep                   # leave the database running afterwards
    .venv/bin/python bench/dashboards.py --url postgresql://...   # measure a database filled before
    .venv/bin/python bench/dashboards.py --url ... --no-raw-energy   # without the slow raw-reading energy baselines
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cases import service as cases_service  # noqa: E402
from cases.policy import Policies  # noqa: E402
from dashboards import grafana_sql  # noqa: E402
from dashboards.build import build_all  # noqa: E402
from dashboards.grafana_sql import expand  # noqa: E402
from floor import config  # noqa: E402
from lykta import admin, services  # noqa: E402
from simulators import fleet as fleets  # noqa: E402
from storage import assets as asset_store  # noqa: E402
from storage import migrations, synthetic, tenants  # noqa: E402
from storage import rules as rule_store  # noqa: E402
from storage.panels import QUERIES  # noqa: E402
from storage.rules import Finding  # noqa: E402

RAW_ENERGY = """(SELECT time_bucket('1 day', e.device_time) AS day, a.tenant_id, coalesce(a.district, '') AS district,
        a.asset_id, max(e.value) - min(e.value) AS kwh,
        (max(h.value) - min(h.value)) * a.rated_power_w / 0.92 / 1000 AS full_power_kwh,
        max(h.value) - min(h.value) AS burned_h, NULL::float8 AS day_burned_h
    FROM telemetry e JOIN metrics me ON me.metric_id = e.metric_id AND me.name = 'energy_kwh'
    JOIN devices d ON d.device_key = e.device_key
    JOIN assets a ON a.tenant_id = d.tenant_id AND a.asset_id = d.asset_id
    JOIN metrics mh ON mh.name = 'burning_hours_h'
    JOIN telemetry h ON h.device_key = e.device_key AND h.metric_id = mh.metric_id AND h.device_time = e.device_time
    WHERE $__timeFilter(e.device_time)
    GROUP BY 1, 2, 3, 4, a.rated_power_w) AS raw_energy"""

# The energy panels read energy_daily (per district and day); before it they read the daily rollup per lamp.
ROLLUP_ENERGY = """(SELECT day, tenant_id, coalesce(district, '') AS district, kwh, full_power_kwh
    FROM dash_energy_daily) AS rollup_energy"""


def baselines(sql: str, raw_energy: bool = True) -> tuple[str | None, str | None]:
    """The same panel from raw readings, and from the daily rollup where it reads a table made from it (the
    energy and burning-hour panels over energy_daily: from raw readings per UTC day, which is close enough
    for a cost)."""
    if "$__interval_ms / 1000.0" in sql:
        return sql.replace("$__interval_ms / 1000.0", "60.0"), None  # the series functions read raw readings
    if "FROM energy_daily WHERE" in sql:
        raw = sql.replace("FROM energy_daily WHERE", f"FROM {RAW_ENERGY} WHERE") if raw_energy else None
        rollup = sql.replace("FROM energy_daily WHERE", f"FROM {ROLLUP_ENERGY} WHERE") if "kwh" in sql else None
        return raw, rollup
    if "FROM dash_energy_daily" in sql:
        return (sql.replace("FROM dash_energy_daily", f"FROM {RAW_ENERGY}") if raw_energy else None), None
    return None, None


def timed(conn: psycopg.Connection, sql: str, repeat: int = 3) -> tuple[float, int]:
    rows = len(conn.execute(sql).fetchall())
    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        conn.execute(sql).fetchall()
        runs.append(time.perf_counter() - began)
    return statistics.median(runs), rows


def measure(url: str, end: float, days: int, lamp: str, raw_energy: bool = True) -> None:
    """Every panel query over the last ``days`` and the last day, with the raw-reading baseline."""
    until = datetime.fromtimestamp(end, UTC)
    with psycopg.connect(url) as conn:
        variables = grafana_sql.everything(conn, "city", lamp)
        print(
            f"\n{'panel':<32}{'rows':>7}{'month (1h)':>12}{'day (1min)':>12}{'raw, month':>12}{'ratio':>10}"
            f"{'rollup, month':>15}{'ratio':>10}"
        )
        worst = 0.0

        def window(sql: str, span: timedelta, interval_s: int) -> str:
            return expand(sql, time_from=until - span, time_to=until, interval_s=interval_s, variables=variables)

        def versus(sql: str | None, t_month: float) -> str:
            if sql is None:
                return f"{'-':>12}{'-':>10}"
            t, _ = timed(conn, window(sql, timedelta(days=days), 3600), repeat=1)
            return f"{t * 1000:>10.0f}ms{t / t_month:>9,.0f}x"

        for doc in build_all().values():
            for panel in doc["panels"]:
                for target in panel.get("targets", []):
                    name = next(n for n, q in QUERIES.items() if q.sql == target["rawSql"])
                    t_month, rows = timed(conn, window(target["rawSql"], timedelta(days=days), 3600))
                    t_day, _ = timed(conn, window(target["rawSql"], timedelta(days=1), 60))
                    worst = max(worst, t_month, t_day)
                    raw, rollup = baselines(target["rawSql"], raw_energy)
                    extra = versus(raw, t_month) + "   " + versus(rollup, t_month)
                    print(f"{name:<32}{rows:>7}{t_month * 1000:>10.1f}ms{t_day * 1000:>10.1f}ms{extra}", flush=True)
    print(f"\nslowest panel query: {worst * 1000:.0f} ms; target < 1000 ms: {'met' if worst < 1 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cabinets", type=int, default=20)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--url", help="measure this database, filled by an earlier run, instead of a new one")
    parser.add_argument("--keep", action="store_true", help="leave the database running and print its URL")
    parser.add_argument(
        "--no-raw-energy",
        action="store_true",
        help="skip the energy and burning-hour panels' baseline from raw readings (minutes per panel)",
    )
    args = parser.parse_args()
    if args.url:
        with psycopg.connect(args.url) as conn:
            row = conn.execute("SELECT extract(epoch FROM max(device_time))::float8 FROM telemetry_latest").fetchone()
            first = conn.execute("SELECT asset_id FROM assets WHERE kind = 'streetlight' ORDER BY 1 LIMIT 1").fetchone()
        assert row is not None and first is not None
        measure(args.url, float(row[0]) // 600 * 600 + 600, args.days, str(first[0]), not args.no_raw_energy)
        return
    tmp = Path(tempfile.mkdtemp(prefix="lykta-bench-dash-"))
    tmp.chmod(0o755)
    state = services.up(tmp / "state", ephemeral=True)
    assert state.postgres is not None
    url = state.postgres.url()
    try:
        fleet = fleets.generate("city", 3, cabinets=args.cabinets, circuits_per_cabinet=10, lamps_per_circuit=49,
                                sensors=args.cabinets * 9)  # fmt: skip
        with psycopg.connect(url, autocommit=True) as conn:
            migrations.migrate(conn)
            tenants.upsert(conn, "city", "Generated city", "sv", "Europe/Stockholm")
            asset_store.import_records(conn, "city", list(fleet.assets.values()), "generated")
        end = float(int(time.time() // 600 * 600))
        start = end - args.days * 86400
        print(f"city: {len(fleet.devices):,} devices; writing {args.days} days of readings", flush=True)
        began = time.monotonic()
        total = 0
        with psycopg.connect(url, autocommit=True) as conn:
            day = start
            while day < end:
                total += synthetic.fill(conn, "city", day, min(day + 86400, end), 600, start)
                day += 86400
            stats = synthetic.fill_ingest_stats(conn, start, end)
            synthetic.fill_latest(conn, end - 86400)  # what ingest keeps of each device's newest values
            lamps = [a for a, r in fleet.assets.items() if r.kind == "streetlight"]
            for n, lamp in enumerate(lamps[:: max(1, len(lamps) // 300)]):
                observed = start + (n * 7919) % (args.days * 86400)
                fid = rule_store.insert_finding(conn, Finding("city", lamp, None, "lamp-failure", "lampFailure",
                                                              "major", observed, observed, observed, {}))  # fmt: skip
                if n % 2:
                    rule_store.clear_finding(conn, fid, observed + 86400)
        print(f"wrote {total:,} readings and {stats:,} statistics rows in {time.monotonic() - began:.0f} s", flush=True)
        began = time.monotonic()
        settings = config.load(environ={}, smtp_port=9)
        cases_service.run_once(url, Policies(), settings, end - 86400)
        for line in admin.maintain(url, 395):
            print(line)
        admin.daylight(url, start, end)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")
            size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
        print(f"rollups, cases and statistics in {time.monotonic() - began:.0f} s; database {size[0] if size else '?'}")

        measure(url, end, args.days, lamps[0], not args.no_raw_energy)
    finally:
        if args.keep:
            print(f"kept: {url} (stop with: lykta --state-dir {tmp / 'state'} services down)")
        else:
            services.down(tmp / "state")
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
