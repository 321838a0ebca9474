"""Rollups, energy and retention: the work TimescaleDB's background jobs do on the TSL path, done by lykta
on Apache.

The write path records each hour it touched in ``rollup_pending``. On the
``apache`` path :func:`refresh_rollups` recomputes exactly those hours in
``telemetry_hourly`` and their days in ``telemetry_daily``, a day per
transaction, so late and replayed data is rolled up as well. On the ``tsl``
path the continuous aggregates refresh by policy; :func:`refresh_tsl_days`
refreshes the touched days in both at once so that the day's energy can be
computed from them. On both paths a recomputed day is also recomputed in
``energy_daily`` (energy per district and day, what the energy panels read).
:func:`apply_retention` drops raw chunks older than the retention period on
``apache`` and keeps the retention policy in line with the configuration on
``tsl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import psycopg

from storage.editions import StoragePath
from storage.errors import MigrationError
from storage.migrations import recorded_path

_LOCK_ID = 0x6C796B7462


@dataclass(frozen=True)
class MaintenanceReport:
    path: StoragePath
    hours_refreshed: int
    days_refreshed: int
    energy_rows: int
    chunks_dropped: int
    retention: str


def storage_path(conn: psycopg.Connection) -> StoragePath:
    path = recorded_path(conn)
    if path is None:
        raise MigrationError("the database schema is not migrated; run lykta db migrate")
    return path


# The earliest day with pending hours, and those hours.
_FIRST_DAY = """
    WITH first AS (SELECT time_bucket(INTERVAL '1 day', min(bucket)) AS day FROM rollup_pending)
    SELECT first.day, array_agg(r.bucket ORDER BY r.bucket)
    FROM first JOIN rollup_pending r ON r.bucket >= first.day AND r.bucket < first.day + INTERVAL '1 day'
    GROUP BY first.day"""
_DONE = "DELETE FROM rollup_pending WHERE bucket = ANY(%s)"

_REFRESH_HOURS = [
    "DELETE FROM telemetry_hourly WHERE bucket = ANY(%(hours)s)",
    # one range scan of the day's raw readings, grouped by hour: a month of backfill is 30 such scans
    """INSERT INTO telemetry_hourly (bucket, device_key, metric_id, n, value_avg, value_min, value_max, value_sum)
       SELECT time_bucket(INTERVAL '1 hour', t.device_time), t.device_key, t.metric_id, count(*), avg(t.value),
              min(t.value), max(t.value), sum(t.value)
       FROM telemetry t
       WHERE t.device_time >= %(day)s AND t.device_time < %(day)s + INTERVAL '1 day'
         AND time_bucket(INTERVAL '1 hour', t.device_time) = ANY(%(hours)s)
       GROUP BY 1, 2, 3""",
    "DELETE FROM telemetry_daily WHERE bucket = %(day)s",
    """INSERT INTO telemetry_daily (bucket, device_key, metric_id, n, value_avg, value_min, value_max, value_sum)
       SELECT %(day)s, h.device_key, h.metric_id, sum(h.n), sum(h.value_sum) / sum(h.n),
              min(h.value_min), max(h.value_max), sum(h.value_sum)
       FROM telemetry_hourly h
       WHERE h.bucket >= %(day)s AND h.bucket < %(day)s + INTERVAL '1 day'
       GROUP BY 2, 3""",
]

_ENERGY = "SELECT refresh_energy_day(%(day)s)"


def refresh_rollups(conn: psycopg.Connection) -> tuple[int, int, int]:
    """Apache path: recompute the pending hours, their days and the days' energy, one day per transaction (a
    stop in between leaves the remaining hours pending). Returns (hours, days, energy rows)."""
    hours = days = energy = 0
    while True:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            row = conn.execute(_FIRST_DAY).fetchone()
            if row is None or row[0] is None:
                return hours, days, energy
            params = {"day": row[0], "hours": row[1]}
            for statement in _REFRESH_HOURS:
                conn.execute(statement, params)
            energy += _one(conn.execute(_ENERGY, params).fetchone())
            conn.execute(_DONE, (row[1],))
            hours += len(row[1])
            days += 1


def refresh_tsl_days(conn: psycopg.Connection) -> tuple[int, int, int]:
    """TSL path: for each day the write path touched, refresh that day in both continuous aggregates (which
    their policies would do later), then recompute its energy and forget the hours seen at the start; hours
    marked meanwhile stay pending for the next run. Needs an autocommit connection: a continuous aggregate
    cannot be refreshed inside a transaction. Returns (hours, days, energy rows)."""
    if not conn.autocommit:
        raise ValueError("refresh_tsl_days needs an autocommit connection")
    hours = days = energy = 0
    while True:
        row = conn.execute(_FIRST_DAY).fetchone()
        if row is None or row[0] is None:
            return hours, days, energy
        day, taken = row
        window = (day, day + timedelta(days=1))
        conn.execute("CALL refresh_continuous_aggregate('telemetry_hourly', %s::timestamptz, %s::timestamptz)", window)
        conn.execute("CALL refresh_continuous_aggregate('telemetry_daily', %s::timestamptz, %s::timestamptz)", window)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            energy += _one(conn.execute(_ENERGY, {"day": day}).fetchone())
            conn.execute(_DONE, (taken,))
        hours += len(taken)
        days += 1


def _one(row: tuple[int] | None) -> int:
    return 0 if row is None else int(row[0])


def apply_retention(conn: psycopg.Connection, path: StoragePath, retention_days: int) -> tuple[int, str]:
    """Drop raw telemetry older than the retention period (apache) or keep the policy in line (tsl)."""
    keep = timedelta(days=retention_days)
    if path == "apache":
        with conn.transaction():
            rows = conn.execute(
                "SELECT drop_chunks('telemetry', older_than => now() - %s::interval)", (keep,)
            ).fetchall()
        return len(rows), f"dropped by lykta after {retention_days} days"
    with conn.transaction():
        row = conn.execute(
            """SELECT config->>'drop_after' FROM timescaledb_information.jobs
               WHERE proc_name = 'policy_retention' AND hypertable_name = 'telemetry'"""
        ).fetchone()
        current = None if row is None else row[0]
        wanted = f"{retention_days} days"
        if current != wanted:
            conn.execute("SELECT remove_retention_policy('telemetry', if_exists => true)")
            conn.execute("SELECT add_retention_policy('telemetry', drop_after => %s::interval)", (keep,))
    return 0, f"policy_retention drops chunks after {retention_days} days"


def maintain(conn: psycopg.Connection, retention_days: int) -> MaintenanceReport:
    path = storage_path(conn)
    hours, days, energy = refresh_rollups(conn) if path == "apache" else refresh_tsl_days(conn)
    dropped, retention = apply_retention(conn, path, retention_days)
    return MaintenanceReport(
        path=path,
        hours_refreshed=hours,
        days_refreshed=days,
        energy_rows=energy,
        chunks_dropped=dropped,
        retention=retention,
    )
