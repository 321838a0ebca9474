"""Read-only summaries for people: ``lykta db info`` and what ``lykta demo`` prints."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg


def server_versions(conn: psycopg.Connection) -> tuple[str | None, str | None]:
    """(PostgreSQL version, TimescaleDB version the server offers), each None when unknown."""
    row = conn.execute(
        """SELECT current_setting('server_version'),
                  (SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb')"""
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def ingest_totals(conn: psycopg.Connection) -> tuple[int, int, int]:
    """(messages received, readings stored, messages rejected) over every ingest_stats row."""
    row = conn.execute(
        "SELECT coalesce(sum(received), 0), coalesce(sum(stored), 0), coalesce(sum(rejected), 0) FROM ingest_stats"
    ).fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)


@dataclass(frozen=True)
class StoredSummary:
    readings: int
    devices: int
    offline: int
    events: list[tuple[str, int]]
    dead_letters: list[tuple[str, int]]


def stored_summary(conn: psycopg.Connection) -> StoredSummary:
    readings = conn.execute("SELECT count(*), count(DISTINCT device_key) FROM telemetry").fetchone()
    offline = conn.execute("SELECT count(*) FROM device_status WHERE NOT online").fetchone()
    events = conn.execute("SELECT event, count(*) FROM device_events GROUP BY 1 ORDER BY 1").fetchall()
    dead = conn.execute("SELECT reason, count(*) FROM dead_letters GROUP BY 1 ORDER BY 1").fetchall()
    return StoredSummary(
        readings=int(readings[0]) if readings else 0,
        devices=int(readings[1]) if readings else 0,
        offline=int(offline[0]) if offline else 0,
        events=[(str(e), int(n)) for e, n in events],
        dead_letters=[(str(r), int(n)) for r, n in dead],
    )


def case_summary(
    conn: psycopg.Connection, tenant_id: str
) -> tuple[list[tuple[str, str, str, int]], list[tuple[str, str, int]]]:
    """(status, priority, fault, cases) and (crew, work-order status, orders) of a tenant, for the demo."""
    cases = conn.execute(
        """SELECT status, priority, fault, count(*) FROM cases WHERE tenant_id = %s
           GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
        (tenant_id,),
    ).fetchall()
    orders = conn.execute(
        """SELECT coalesce(crew_id, '(unrouted)'), status, count(*) FROM work_orders WHERE tenant_id = %s
           GROUP BY 1, 2 ORDER BY 1, 2""",
        (tenant_id,),
    ).fetchall()
    return cases, orders


def open_streetlight_case(conn: psycopg.Connection, tenant_id: str) -> tuple[float, float, int, str] | None:
    """(lat, lon, case id, asset id) of a streetlight with an active case, for the demo's citizen report."""
    row = conn.execute(
        """SELECT a.lat, a.lon, c.case_id, a.asset_id FROM cases c
           JOIN assets a ON a.tenant_id = c.tenant_id AND a.asset_id = c.asset_id
           WHERE c.tenant_id = %s AND c.status <> 'resolved' AND a.kind = 'streetlight' LIMIT 1""",
        (tenant_id,),
    ).fetchone()
    return None if row is None else (float(row[0]), float(row[1]), int(row[2]), str(row[3]))


def case_of_request(conn: psycopg.Connection, request_id: int) -> int | None:
    row = conn.execute("SELECT case_id FROM service_requests WHERE request_id = %s", (request_id,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def a_failed_lamp(conn: psycopg.Connection) -> str | None:
    """A streetlight with a lamp-failure finding (the demo's asset-detail dashboard shows it)."""
    row = conn.execute(
        "SELECT asset_id FROM findings WHERE fault = 'lampFailure' ORDER BY finding_id LIMIT 1"
    ).fetchone()
    return None if row is None else str(row[0])
