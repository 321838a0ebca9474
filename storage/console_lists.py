"""SQL of what the operator console lists: cases filtered and paged (with their crew and place), the inbox's
piles, and what its forms offer (areas, crews, assets)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import psycopg
from psycopg.rows import class_row


@dataclass(frozen=True)
class CaseFilters:
    status: str | None = None
    """open, in_repair, verifying, resolved, or active (not resolved)"""
    fault: str | None = None
    priority: str | None = None
    area: str | None = None
    """the asset's maintenance area"""
    crew: str | None = None
    """the crew of the case's current (or last) work order; "-" for none"""
    source: str | None = None
    """telemetry or citizen"""
    breached: bool | None = None
    asset: str | None = None
    """an asset id, or the start of one"""


@dataclass(frozen=True)
class CaseRow:
    case_id: int
    asset_id: str
    fault: str
    status: str
    priority: str
    source: str
    resolution: str | None
    opened_at: float
    due_at: float
    breached: bool
    crew_id: str | None
    area: str | None
    district: str | None
    place: str | None
    lat: float | None
    lon: float | None
    reports: int


_FROM = """FROM cases c
    LEFT JOIN assets a ON a.tenant_id = c.tenant_id AND a.asset_id = c.asset_id
    LEFT JOIN LATERAL (SELECT w.crew_id FROM work_orders w WHERE w.case_id = c.case_id
                       ORDER BY w.work_order_id DESC LIMIT 1) w ON true
    WHERE c.tenant_id = %(t)s
      AND (%(status)s::text IS NULL OR c.status = %(status)s OR (%(status)s = 'active' AND c.status <> 'resolved'))
      AND (%(fault)s::text IS NULL OR c.fault = %(fault)s)
      AND (%(priority)s::text IS NULL OR c.priority = %(priority)s)
      AND (%(area)s::text IS NULL OR a.maintenance_area = %(area)s)
      AND (%(crew)s::text IS NULL OR w.crew_id = %(crew)s OR (%(crew)s = '-' AND w.crew_id IS NULL))
      AND (%(source)s::text IS NULL OR c.source = %(source)s)
      AND (%(breached)s::bool IS NULL OR (c.breached_at IS NOT NULL) = %(breached)s)
      AND (%(asset)s::text IS NULL OR c.asset_id LIKE %(asset)s || '%%')"""

_ROW = """c.case_id, c.asset_id, c.fault, c.status, c.priority, c.source, c.resolution,
    extract(epoch FROM c.opened_at)::float8 AS opened_at, extract(epoch FROM c.due_at)::float8 AS due_at,
    c.breached_at IS NOT NULL AS breached, w.crew_id, a.maintenance_area AS area, a.district, a.name AS place,
    a.lat, a.lon, (SELECT count(*) FROM service_requests r WHERE r.case_id = c.case_id)::int AS reports"""


def case_rows(
    conn: psycopg.Connection, tenant_id: str, f: CaseFilters, limit: int, offset: int
) -> tuple[list[CaseRow], int]:
    """A page of the tenant's cases that pass the filters (active ones by due time, then the rest, newest
    first), and how many pass in all."""
    params = {**asdict(f), "t": tenant_id, "limit": limit, "offset": offset}
    with conn.cursor(row_factory=class_row(CaseRow)) as cur:
        cur.execute(
            f"""SELECT {_ROW} {_FROM}
                ORDER BY c.status = 'resolved', CASE WHEN c.status = 'resolved' THEN -extract(epoch FROM c.resolved_at)
                         ELSE extract(epoch FROM c.due_at) END, c.case_id
                LIMIT %(limit)s OFFSET %(offset)s""",
            params,
        )
        rows = cur.fetchall()
    total = conn.execute(f"SELECT count(*) {_FROM}", params).fetchone()
    return rows, int(total[0]) if total else 0


def _active(conn: psycopg.Connection, tenant_id: str, condition: str, limit: int) -> list[CaseRow]:
    """Active cases that meet ``condition`` (an SQL expression over ``c``, written here), by due time."""
    with conn.cursor(row_factory=class_row(CaseRow)) as cur:
        cur.execute(
            f"""SELECT {_ROW} {_FROM} AND c.status <> 'resolved' AND {condition}
                ORDER BY c.due_at LIMIT %(limit)s""",
            {**asdict(CaseFilters()), "t": tenant_id, "limit": limit},
        )
        return cur.fetchall()


def unrouted(conn: psycopg.Connection, tenant_id: str, limit: int = 50) -> list[CaseRow]:
    """Active cases whose work order has no crew."""
    return _active(
        conn, tenant_id, "EXISTS (SELECT 1 FROM work_orders x WHERE x.case_id = c.case_id AND x.status = 'new')", limit
    )


def reopened(conn: psycopg.Connection, tenant_id: str, limit: int = 50) -> list[CaseRow]:
    """Active cases opened again after a crew's repair did not hold."""
    return _active(
        conn, tenant_id, "EXISTS (SELECT 1 FROM case_events e WHERE e.case_id = c.case_id AND e.action = 'reopened')",
        limit,
    )  # fmt: skip


def overdue(conn: psycopg.Connection, tenant_id: str, limit: int = 50) -> list[CaseRow]:
    """Active cases past their due time."""
    return _active(conn, tenant_id, "c.breached_at IS NOT NULL", limit)


@dataclass(frozen=True)
class Failing:
    message_id: int
    channel: str
    target: str
    subject: str
    attempts: int
    last_error: str | None
    gave_up: bool


def failing_deliveries(conn: psycopg.Connection, tenant_id: str, limit: int = 50) -> list[Failing]:
    """Messages not delivered after three attempts, or given up."""
    with conn.cursor(row_factory=class_row(Failing)) as cur:
        cur.execute(
            """SELECT message_id, channel, target, subject, attempts, last_error, failed_at IS NOT NULL AS gave_up
               FROM outbox WHERE tenant_id = %s AND sent_at IS NULL AND (failed_at IS NOT NULL OR attempts >= 3)
               ORDER BY created_at LIMIT %s""",
            (tenant_id, limit),
        )
        return cur.fetchall()


def retry_delivery(conn: psycopg.Connection, tenant_id: str, message_id: int) -> bool:
    """Try a message again now (attempts start over)."""
    row = conn.execute(
        """UPDATE outbox SET failed_at = NULL, attempts = 0, next_attempt_at = now()
           WHERE tenant_id = %s AND message_id = %s AND sent_at IS NULL RETURNING 1""",
        (tenant_id, message_id),
    ).fetchone()
    return row is not None


def areas(conn: psycopg.Connection, tenant_id: str) -> list[str]:
    rows = conn.execute(
        """SELECT DISTINCT maintenance_area FROM assets WHERE tenant_id = %s AND maintenance_area IS NOT NULL
           ORDER BY 1""",
        (tenant_id,),
    ).fetchall()
    return [str(r[0]) for r in rows]


@dataclass(frozen=True)
class AssetHit:
    asset_id: str
    kind: str
    name: str | None
    district: str | None
    area: str | None
    lat: float | None
    lon: float | None
    active_cases: int


def find_assets(conn: psycopg.Connection, tenant_id: str, query: str, limit: int = 50) -> list[AssetHit]:
    """Assets whose id starts with, or whose name or district contains, ``query``."""
    with conn.cursor(row_factory=class_row(AssetHit)) as cur:
        cur.execute(
            """SELECT a.asset_id, a.kind, a.name, a.district, a.maintenance_area AS area, a.lat, a.lon,
                      (SELECT count(*) FROM cases c WHERE c.tenant_id = a.tenant_id AND c.asset_id = a.asset_id
                         AND c.status <> 'resolved')::int AS active_cases
               FROM assets a
               WHERE a.tenant_id = %(t)s AND (a.asset_id ILIKE %(q)s || '%%' OR a.name ILIKE '%%' || %(q)s || '%%'
                                              OR a.district ILIKE '%%' || %(q)s || '%%')
               ORDER BY a.asset_id LIMIT %(l)s""",
            {"t": tenant_id, "q": query.replace("%", "").replace("_", r"\_"), "l": limit},
        )
        return cur.fetchall()


def case_map(conn: psycopg.Connection, tenant_id: str, f: CaseFilters, limit: int) -> str:
    """The placed cases that pass the filters as GeoJSON text, built by the database (what a map needs: id,
    asset, fault, status, past due)."""
    row = conn.execute(
        f"""SELECT json_build_object('type', 'FeatureCollection', 'features', coalesce(json_agg(json_build_object(
                   'type', 'Feature',
                   'geometry', json_build_object('type', 'Point', 'coordinates', json_build_array(a.lon, a.lat)),
                   'properties', json_build_object('case_id', c.case_id, 'asset_id', c.asset_id, 'fault', c.fault,
                                                   'status', c.status, 'breached', c.breached_at IS NOT NULL))),
                   '[]'::json))::text
            FROM (SELECT c.* {_FROM} AND a.lat IS NOT NULL LIMIT %(limit)s) c
            JOIN assets a ON a.tenant_id = c.tenant_id AND a.asset_id = c.asset_id""",
        {**asdict(f), "t": tenant_id, "limit": limit},
    ).fetchone()
    return str(row[0]) if row else '{"type": "FeatureCollection", "features": []}'
