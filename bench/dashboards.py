"""Dashboard queries on a month of data for 10,000 devices: every panel's SQL, expanded as Grafana does it.

A generated city (9,800 streetlights under 20 cabinets and 200 circuits, plus 200 road-weather stations,
stormwater wells, waste bins and pump stations: 10,000 devices) gets 30 days of readings written straight into
storage (storage/synthetic.py: power, dim level and voltage every 10 minutes, energy meter and burning hours
every hour, the sensors every 10 minutes), a month of ingest statistics, findings and cases; then lykta's own
maintenance computes the hourly and daily rollups.

Each panel query runs for the last 30 days at the interval Grafana picks for a month on a 1,000-pixel panel
(1 h) and for the last 24 hours (1 min); the time is the median of three runs after a first one. Baseline in
the same run: the series and energy panels computed from raw readings of the same range, as they would be
without rollups (one run after a first one: they take seconds). Target: every panel under 1 s for the month.

    .venv/bin/python bench/dashboards.py [--cabinets 20] [--days 30]
    .venv/bin/python bench/dashboards.py --url postgresql://...   # measure a database filled before
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
from lykta import admin, config, services  # noqa: E402
from simulators import fleet as fleets  # noqa: E402
from storage import assets as asset_store  # noqa: E402
from storage import migrations, synthetic, tenants  # noqa: E402
from storage import rules as rule_store  # noqa: E402
from storage.panels import QUERIES  # noqa: E402
from storage.rules import Finding  # noqa: E402

RAW_ENERGY = """(SELECT time_bucket('1 day', e.device_time) AS day, a.tenant_id, a.district, a.asset_id,
        max(e.value) - min(e.value) AS kwh,
        (max(h.value) - min(h.value)) * a.rated_power_w / 0.92 / 1000 AS full_power_kwh
    FROM telemetry e JOIN metrics me ON me.metric_id = e.metric_id AND me.name = 'energy_kwh'
    JOIN devices d ON d.device_key = e.device_key
    JOIN assets a ON a.tenant_id = d.tenant_id AND a.asset_id = d.asset_id
    JOIN metrics mh ON mh.name = 'burning_hours_h'
    JOIN telemetry h ON h.device_key = e.device_key AND h.metric_id = mh.metric_id AND h.device_time = e.device_time
    WHERE $__timeFilter(e.device_time)
    GROUP BY 1, 2, 3, 4, a.rated_power_w) AS raw_energy"""


def baseline(sql: str) -> str | None:
    """The same panel without rollups, or None when the panel reads none."""
    if "$__interval_ms / 1000.0" in sql:
        return sql.replace("$__interval_ms / 1000.0", "60.0")  # the series functions read raw readings
    if "dash_energy_daily" in sql:
        return sql.replace("dash_energy_daily", RAW_ENERGY)
    return None


def timed(conn: psycopg.Connection, sql: str, repeat: int = 3) -> tuple[float, int]:
    rows = len(conn.execute(sql).fetchall())
    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        conn.execute(sql).fetchall()
        runs.append(time.perf_counter() - began)
    return statistics.median(runs), rows


def measure(url: str, end: float, days: int, lamp: str) -> None:
    """Every panel query over the last ``days`` and the last day, with the raw-reading baseline."""
    until = datetime.fromtimestamp(end, UTC)
    with psycopg.connect(url) as conn:
        variables = grafana_sql.everything(conn, "city", lamp)
        print(f"\n{'panel':<32}{'rows':>7}{'month (1h)':>12}{'day (1min)':>12}{'raw, month':>12}{'ratio':>8}")
        worst = 0.0
        for doc in build_all().values():
            for panel in doc["panels"]:
                for target in panel.get("targets", []):
                    name = next(n for n, q in QUERIES.items() if q.sql == target["rawSql"])
                    month = expand(target["rawSql"], time_from=until - timedelta(days=days), time_to=until,
                                   interval_s=3600, variables=variables)  # fmt: skip
                    day_sql = expand(target["rawSql"], time_from=until - timedelta(days=1), time_to=until,
                                     interval_s=60, variables=variables)  # fmt: skip
                    t_month, rows = timed(conn, month)
                    t_day, _ = timed(conn, day_sql)
                    worst = max(worst, t_month, t_day)
                    raw = baseline(target["rawSql"])
                    if raw is not None:
                        raw_sql = expand(raw, time_from=until - timedelta(days=days), time_to=until,
                                         interval_s=3600, variables=variables)  # fmt: skip
                        t_raw, _ = timed(conn, raw_sql, repeat=1)
                        extra = f"{t_raw * 1000:>10.0f}ms{t_raw / t_month:>7.1f}x"
                    else:
                        extra = f"{'-':>12}{'-':>8}"
                    print(f"{name:<32}{rows:>7}{t_month * 1000:>10.0f}ms{t_day * 1000:>10.0f}ms{extra}", flush=True)
    print(f"\nslowest panel query: {worst * 1000:.0f} ms; target < 1000 ms: {'met' if worst < 1 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cabinets", type=int, default=20)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--url", help="measure this database, filled by an earlier run, instead of a new one")
    args = parser.parse_args()
    if args.url:
        with psycopg.connect(args.url) as conn:
            row = conn.execute("SELECT extract(epoch FROM max(device_time))::float8 FROM telemetry_latest").fetchone()
            first = conn.execute("SELECT asset_id FROM assets WHERE kind = 'streetlight' ORDER BY 1 LIMIT 1").fetchone()
        assert row is not None and first is not None
        measure(args.url, float(row[0]) // 600 * 600 + 600, args.days, str(first[0]))
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

        measure(url, end, args.days, lamps[0])
    finally:
        services.down(tmp / "state")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
