"""SQL behind the HTTP API: tokens, and the lists crews and operators read."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.rows import class_row

from storage.cases import CASE_COLUMNS, Case
from storage.work_orders import WorkOrder


@dataclass(frozen=True)
class OrderView(WorkOrder):
    """A work order as crews and operators read it: with its case and its asset."""

    asset_id: str
    fault: str
    priority: str
    case_status: str
    due_at: float
    observed_at: float
    lat: float | None
    lon: float | None
    asset_name: str | None
    district: str | None


@dataclass(frozen=True)
class CaseReport:
    """A citizen report attached to a case, without the reporter's e-mail address."""

    request_id: int
    service_code: str
    description: str | None
    lat: float | None
    lon: float | None
    address: str | None
    requested_at: str


_ORDER = """w.work_order_id, w.case_id, w.tenant_id, w.crew_id, w.skill, w.status, w.title, w.reject_reason,
    w.created_at, w.assigned_at, w.accepted_at, w.started_at, w.finished_at, w.updated_at,
    c.asset_id, c.fault, c.priority, c.status AS case_status, extract(epoch FROM c.due_at)::float8 AS due_at,
    extract(epoch FROM c.observed_at)::float8 AS observed_at, a.lat, a.lon, a.name AS asset_name, a.district"""


def create_token(  # noqa: PLR0917 - the columns of a token
    conn: psycopg.Connection,
    token_hash: str,
    tenant_id: str,
    role: str,
    crew_id: str | None,
    label: str,
    days: int = 365,
) -> None:
    """A token valid for ``days`` days from now."""
    conn.execute(
        """INSERT INTO api_tokens (token_hash, tenant_id, role, crew_id, label, expires_at)
           VALUES (%s, %s, %s, %s, %s, now() + make_interval(days => %s))""",
        (token_hash, tenant_id, role, crew_id, label, days),
    )


def revoke_token(conn: psycopg.Connection, token_hash: str) -> bool:
    row = conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE token_hash = %s AND revoked_at IS NULL RETURNING 1",
        (token_hash,),
    ).fetchone()
    return row is not None


def token(conn: psycopg.Connection, token_hash: str) -> tuple[str, str, str | None, float, str] | None:
    """(tenant, role, crew, expiry in epoch seconds, label) of a token that is not revoked (of an active
    crew)."""
    row = conn.execute(
        """SELECT t.tenant_id, t.role, t.crew_id, extract(epoch FROM t.expires_at)::float8, t.label
           FROM api_tokens t
           LEFT JOIN crews c ON c.tenant_id = t.tenant_id AND c.crew_id = t.crew_id
           WHERE t.token_hash = %s AND t.revoked_at IS NULL AND (t.crew_id IS NULL OR c.active)""",
        (token_hash,),
    ).fetchone()
    if row is None:
        return None
    return str(row[0]), str(row[1]), None if row[2] is None else str(row[2]), float(row[3]), str(row[4] or "")


def work_orders(conn: psycopg.Connection, tenant_id: str, crew_id: str | None, status: str | None) -> list[OrderView]:
    """A tenant's work orders (a crew's only, when given); ``status`` 'active': new, assigned or in progress."""
    with conn.cursor(row_factory=class_row(OrderView)) as cur:
        cur.execute(
            f"""SELECT {_ORDER} FROM work_orders w JOIN cases c USING (case_id)
                JOIN assets a ON a.tenant_id = c.tenant_id AND a.asset_id = c.asset_id
                WHERE w.tenant_id = %(t)s AND (%(crew)s::text IS NULL OR w.crew_id = %(crew)s)
                  AND (%(s)s::text IS NULL OR w.status = %(s)s
                       OR (%(s)s = 'active' AND w.status IN ('new', 'assigned', 'in_progress')))
                ORDER BY c.due_at, w.work_order_id LIMIT 500""",
            {"t": tenant_id, "crew": crew_id, "s": status},
        )
        return cur.fetchall()


def work_order(conn: psycopg.Connection, tenant_id: str, work_order_id: int) -> OrderView | None:
    with conn.cursor(row_factory=class_row(OrderView)) as cur:
        cur.execute(
            f"""SELECT {_ORDER} FROM work_orders w JOIN cases c USING (case_id)
                JOIN assets a ON a.tenant_id = c.tenant_id AND a.asset_id = c.asset_id
                WHERE w.tenant_id = %s AND w.work_order_id = %s""",
            (tenant_id, work_order_id),
        )
        return cur.fetchone()


def cases(  # noqa: PLR0917 - the filters of the case list
    conn: psycopg.Connection,
    tenant_id: str,
    status: str | None,
    fault: str | None,
    priority: str | None,
    asset_id: str | None,
    breached: bool | None,
    limit: int,
    offset: int,
) -> list[Case]:
    with conn.cursor(row_factory=class_row(Case)) as cur:
        cur.execute(
            f"""SELECT {CASE_COLUMNS}
               FROM cases c
               WHERE c.tenant_id = %(t)s
                 AND (%(s)s::text IS NULL OR c.status = %(s)s OR (%(s)s = 'active' AND c.status <> 'resolved'))
                 AND (%(f)s::text IS NULL OR c.fault = %(f)s)
                 AND (%(p)s::text IS NULL OR c.priority = %(p)s)
                 AND (%(a)s::text IS NULL OR c.asset_id = %(a)s)
                 AND (%(b)s::bool IS NULL OR (c.breached_at IS NOT NULL) = %(b)s)
               ORDER BY c.due_at, c.case_id LIMIT %(l)s OFFSET %(o)s""",
            {
                "t": tenant_id,
                "s": status,
                "f": fault,
                "p": priority,
                "a": asset_id,
                "b": breached,
                "l": limit,
                "o": offset,
            },
        )
        return cur.fetchall()


def reports_of_case(conn: psycopg.Connection, case_id: int) -> list[CaseReport]:
    """Citizen reports attached to a case (without the reporter's e-mail address)."""
    with conn.cursor(row_factory=class_row(CaseReport)) as cur:
        cur.execute(
            """SELECT request_id, service_code, description, lat, lon, address,
                      to_char(requested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS requested_at
               FROM service_requests WHERE case_id = %s ORDER BY request_id""",
            (case_id,),
        )
        return cur.fetchall()
