"""SQL of cases: a fault on an asset that someone has to fix, its findings, its events and its state.

The finding queue, work orders, crews, the outbox and the asset questions of the case handling have their own
modules (:mod:`storage.finding_queue`, :mod:`storage.work_orders`, :mod:`storage.crews`, :mod:`storage.outbox`,
:mod:`storage.case_assets`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from storage.errors import RowMissing

CASE_COLUMNS = """c.case_id, c.tenant_id, c.asset_id, c.fault, c.status, c.priority, c.severity, c.source,
    extract(epoch FROM c.observed_at)::float8 AS observed_at, extract(epoch FROM c.opened_at)::float8 AS opened_at,
    extract(epoch FROM c.due_at)::float8 AS due_at, extract(epoch FROM c.breached_at)::float8 AS breached_at,
    c.escalation, extract(epoch FROM c.fault_cleared_at)::float8 AS fault_cleared_at,
    extract(epoch FROM c.repaired_at)::float8 AS repaired_at, extract(epoch FROM c.resolved_at)::float8 AS resolved_at,
    c.resolution"""


@dataclass(frozen=True)
class NewCase:
    """A case about to be opened; times are epoch seconds."""

    tenant_id: str
    asset_id: str
    fault: str
    priority: str
    severity: str
    source: str
    """telemetry or citizen"""
    observed_at: float
    opened_at: float
    due_at: float


@dataclass(frozen=True)
class Case(NewCase):
    """A case; ``status`` is open, in_repair, verifying or resolved."""

    case_id: int
    status: str
    breached_at: float | None
    escalation: int
    fault_cleared_at: float | None
    repaired_at: float | None
    resolved_at: float | None
    resolution: str | None


@dataclass(frozen=True)
class CaseFinding:
    """A finding linked to a case."""

    finding_id: int
    asset_id: str
    fault: str
    status: str
    observed_at: float
    cleared_at: float | None


@dataclass(frozen=True)
class SiblingFinding:
    """An open finding on a lamp of the same circuit, and the case it belongs to (if any)."""

    finding_id: int
    asset_id: str
    case_id: int | None


@dataclass(frozen=True)
class CaseEvent:
    event_id: int
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]


def _cases(conn: psycopg.Connection, query: str, params: Any = None) -> list[Case]:
    with conn.cursor(row_factory=class_row(Case)) as cur:
        cur.execute(query, params)
        return cur.fetchall()


def _case(conn: psycopg.Connection, query: str, params: Any = None) -> Case | None:
    rows = _cases(conn, query, params)
    return rows[0] if rows else None


def lock_tenant(conn: psycopg.Connection, tenant_id: str) -> None:
    """Serialise case decisions of one tenant until the transaction ends (correlation reads, then writes)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('lykta.cases'), hashtext(%s))", (tenant_id,))


def case(conn: psycopg.Connection, case_id: int) -> Case | None:
    return _case(conn, f"SELECT {CASE_COLUMNS} FROM cases c WHERE c.case_id = %s", (case_id,))


def existing_case(conn: psycopg.Connection, case_id: int) -> Case:
    """A case that must exist (it was just written or linked)."""
    row = case(conn, case_id)
    if row is None:
        raise RowMissing(f"case {case_id} does not exist")
    return row


def active_case(conn: psycopg.Connection, tenant_id: str, asset_id: str, fault: str) -> Case | None:
    return _case(
        conn,
        f"""SELECT {CASE_COLUMNS} FROM cases c
            WHERE c.tenant_id = %s AND c.asset_id = %s AND c.fault = %s AND c.status <> 'resolved'""",
        (tenant_id, asset_id, fault),
    )


def case_during(  # noqa: PLR0917 - an asset, a fault and a time
    conn: psycopg.Connection, tenant_id: str, asset_id: str, fault: str, at: float, margin_s: float
) -> Case | None:
    """The case (any status) holding a finding of ``fault`` on ``asset_id`` that was open at ``at`` (within
    ``margin_s`` before it began): for a fault that came and went, the case of what explained it then."""
    return _case(
        conn,
        f"""SELECT {CASE_COLUMNS} FROM findings f JOIN case_findings l USING (finding_id) JOIN cases c USING (case_id)
            WHERE f.tenant_id = %s AND f.asset_id = %s AND f.fault = %s
              AND f.observed_at <= to_timestamp(%s) + make_interval(secs => %s)
              AND (f.cleared_at IS NULL OR f.cleared_at >= to_timestamp(%s))
            ORDER BY f.observed_at DESC LIMIT 1""",
        (tenant_id, asset_id, fault, at, margin_s, at),
    )


def group_case_near(  # noqa: PLR0917 - a circuit, a fault and a time range
    conn: psycopg.Connection, tenant_id: str, parent_id: str, fault: str, start: float, end: float
) -> Case | None:
    """A case (any status) of ``fault`` on the circuit ``parent_id`` observed between start and end."""
    return _case(
        conn,
        f"""SELECT {CASE_COLUMNS} FROM cases c
            WHERE c.tenant_id = %s AND c.asset_id = %s AND c.fault = %s
              AND c.observed_at BETWEEN to_timestamp(%s) AND to_timestamp(%s)
            ORDER BY c.case_id DESC LIMIT 1""",
        (tenant_id, parent_id, fault, start, end),
    )


def active_cases_on(conn: psycopg.Connection, tenant_id: str, asset_id: str) -> list[Case]:
    """Active cases on one asset, oldest first."""
    return _cases(
        conn,
        f"""SELECT {CASE_COLUMNS} FROM cases c
            WHERE c.tenant_id = %s AND c.asset_id = %s AND c.status <> 'resolved' ORDER BY c.case_id""",
        (tenant_id, asset_id),
    )


def case_of_finding(conn: psycopg.Connection, finding_id: int) -> Case | None:
    return _case(
        conn,
        f"SELECT {CASE_COLUMNS} FROM cases c JOIN case_findings l USING (case_id) WHERE l.finding_id = %s",
        (finding_id,),
    )


def insert_case(conn: psycopg.Connection, c: NewCase) -> int | None:
    """A new active case, or None when one is already active for the same asset and fault."""
    row = conn.execute(
        """INSERT INTO cases (tenant_id, asset_id, fault, priority, severity, source, observed_at, opened_at, due_at)
           VALUES (%(tenant_id)s, %(asset_id)s, %(fault)s, %(priority)s, %(severity)s, %(source)s,
                   to_timestamp(%(observed_at)s), to_timestamp(%(opened_at)s), to_timestamp(%(due_at)s))
           ON CONFLICT (tenant_id, asset_id, fault) WHERE status <> 'resolved' DO NOTHING
           RETURNING case_id""",
        asdict(c),
    ).fetchone()
    return int(row[0]) if row else None


_TIMES = {"observed_at", "due_at", "breached_at", "fault_cleared_at", "repaired_at", "resolved_at"}
_FIELDS = {"status", "priority", "severity", "escalation", "resolution", *_TIMES}


def update_case(conn: psycopg.Connection, case_id: int, **changes: Any) -> None:
    """Set fields of a case (times as epoch seconds or None)."""
    unknown = set(changes) - _FIELDS
    if unknown:
        raise ValueError(f"not a case field: {sorted(unknown)}")
    parts = [
        psycopg.sql.SQL("{} = to_timestamp({})" if k in _TIMES and v is not None else "{} = {}").format(
            psycopg.sql.Identifier(k), psycopg.sql.Placeholder(k)
        )
        for k, v in changes.items()
    ]
    conn.execute(
        psycopg.sql.SQL("UPDATE cases SET {}, updated_at = now() WHERE case_id = {}").format(
            psycopg.sql.SQL(", ").join(parts), psycopg.sql.Placeholder("case_id")
        ),
        {**changes, "case_id": case_id},
    )


def link_finding(conn: psycopg.Connection, case_id: int, finding_id: int, asset_id: str) -> bool:
    """Attach a finding to a case (moving it from another case); False when it was already there."""
    row = conn.execute(
        """INSERT INTO case_findings (finding_id, case_id, asset_id) VALUES (%s, %s, %s)
           ON CONFLICT (finding_id) DO UPDATE SET case_id = EXCLUDED.case_id, linked_at = now()
           WHERE case_findings.case_id <> EXCLUDED.case_id
           RETURNING finding_id""",
        (finding_id, case_id, asset_id),
    ).fetchone()
    return row is not None


def case_findings(conn: psycopg.Connection, case_id: int) -> list[CaseFinding]:
    with conn.cursor(row_factory=class_row(CaseFinding)) as cur:
        cur.execute(
            """SELECT f.finding_id, f.asset_id, f.fault, f.status,
                      extract(epoch FROM f.observed_at)::float8 AS observed_at,
                      extract(epoch FROM f.cleared_at)::float8 AS cleared_at
               FROM case_findings l JOIN findings f USING (finding_id) WHERE l.case_id = %s ORDER BY f.finding_id""",
            (case_id,),
        )
        return cur.fetchall()


def add_event(conn: psycopg.Connection, case_id: int, actor: str, action: str, detail: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO case_events (case_id, actor, action, detail) VALUES (%s, %s, %s, %s)",
        (case_id, actor, action, Jsonb(detail)),
    )


def events(conn: psycopg.Connection, case_id: int) -> list[CaseEvent]:
    with conn.cursor(row_factory=class_row(CaseEvent)) as cur:
        cur.execute(
            "SELECT event_id, at, actor, action, detail FROM case_events WHERE case_id = %s ORDER BY event_id",
            (case_id,),
        )
        return cur.fetchall()


def sibling_findings(  # noqa: PLR0917 - a circuit, a fault and a time range
    conn: psycopg.Connection,
    tenant_id: str,
    parent_id: str,
    fault: str,
    start: float,
    end: float,
    *,
    cleared_too: bool = False,
) -> list[SiblingFinding]:
    """Open findings (``cleared_too``: and cleared ones) of ``fault`` on the streetlights of one circuit,
    observed between start and end."""
    with conn.cursor(row_factory=class_row(SiblingFinding)) as cur:
        cur.execute(
            """SELECT f.finding_id, f.asset_id, l.case_id
           FROM findings f
           JOIN assets a ON a.tenant_id = f.tenant_id AND a.asset_id = f.asset_id
           LEFT JOIN case_findings l USING (finding_id)
           WHERE f.tenant_id = %s AND a.parent_id = %s AND a.kind = 'streetlight' AND f.fault = %s
             AND (f.status = 'open' OR %s) AND f.observed_at BETWEEN to_timestamp(%s) AND to_timestamp(%s)
           ORDER BY f.finding_id""",
            (tenant_id, parent_id, fault, cleared_too, start, end),
        )
        return cur.fetchall()


def active_cases_below(conn: psycopg.Connection, tenant_id: str, root_id: str, exclude_case: int) -> list[Case]:
    """Active cases on the assets under ``root_id`` (its circuits and lamps)."""
    return _cases(
        conn,
        f"""WITH RECURSIVE down(asset_id, depth) AS (
                SELECT asset_id, 1 FROM assets WHERE tenant_id = %(t)s AND parent_id = %(r)s
                UNION ALL
                SELECT a.asset_id, down.depth + 1 FROM assets a JOIN down ON a.parent_id = down.asset_id
                WHERE a.tenant_id = %(t)s AND down.depth < 8)
            SELECT {CASE_COLUMNS} FROM cases c JOIN down USING (asset_id)
            WHERE c.tenant_id = %(t)s AND c.status <> 'resolved' AND c.case_id <> %(x)s""",
        {"t": tenant_id, "r": root_id, "x": exclude_case},
    )


def cases_to_verify(conn: psycopg.Connection) -> list[Case]:
    return _cases(conn, f"SELECT {CASE_COLUMNS} FROM cases c WHERE c.status = 'verifying' ORDER BY c.case_id")


def cases_past_due(conn: psycopg.Connection, now: float) -> list[Case]:
    """Unresolved cases past their due time: newly breached, or breached and due for the next escalation."""
    return _cases(
        conn,
        f"""SELECT {CASE_COLUMNS} FROM cases c
            WHERE c.status <> 'resolved' AND c.due_at < to_timestamp(%s) ORDER BY c.due_at""",
        (now,),
    )
