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
