"""SQL of the queue between rules and cases: findings waiting for the case handling, taken with their assets."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.rows import class_row


@dataclass(frozen=True)
class QueuedFinding:
    """A finding the rules stored (opened or cleared), with what the case handling needs of its asset."""

    finding_id: int
    tenant_id: str
    asset_id: str
    rule_id: str | None
    fault: str
    severity: str
    status: str
    observed_at: float
    cleared_at: float | None
    kind: str
    parent_id: str | None
    criticality: int | None
    lat: float | None
    lon: float | None
    maintenance_area: str | None
    district: str | None
    name: str | None


def claim(conn: psycopg.Connection, limit: int) -> list[QueuedFinding]:
    """Queued findings with their assets, locked for this transaction (others skip them), oldest first."""
    with conn.cursor(row_factory=class_row(QueuedFinding)) as cur:
        cur.execute(
            """SELECT f.finding_id, f.tenant_id, f.asset_id, f.rule_id, f.fault, f.severity, f.status,
                      extract(epoch FROM f.observed_at)::float8 AS observed_at,
                      extract(epoch FROM f.cleared_at)::float8 AS cleared_at,
                      a.kind, a.parent_id, a.criticality, a.lat, a.lon, a.maintenance_area, a.district, a.name
               FROM finding_queue q
               JOIN findings f USING (finding_id)
               JOIN assets a ON a.tenant_id = f.tenant_id AND a.asset_id = f.asset_id
               ORDER BY f.observed_at, f.finding_id
               LIMIT %s
               FOR UPDATE OF q SKIP LOCKED""",
            (limit,),
        )
        return cur.fetchall()


def dequeue(conn: psycopg.Connection, finding_ids: list[int]) -> None:
    conn.execute("DELETE FROM finding_queue WHERE finding_id = ANY(%s)", (finding_ids,))
