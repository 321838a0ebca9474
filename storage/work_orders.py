"""SQL of work orders: what a crew is asked to do for a case, its state and its notes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import psycopg
from psycopg.rows import class_row

from storage.errors import RowMissing

_COLUMNS = """w.work_order_id, w.case_id, w.tenant_id, w.crew_id, w.skill, w.status, w.title, w.reject_reason,
    w.created_at, w.assigned_at, w.accepted_at, w.started_at, w.finished_at, w.updated_at"""

ACTIVE = ("new", "assigned", "in_progress")


@dataclass(frozen=True)
class NewWorkOrder:
    case_id: int
    tenant_id: str
    crew_id: str | None
    skill: str
    status: str
    title: str


@dataclass(frozen=True)
class WorkOrder(NewWorkOrder):
    """A stored work order; ``status`` is new (no crew), assigned, in_progress, done, rejected or cancelled."""

    work_order_id: int
    reject_reason: str | None
    created_at: datetime
    assigned_at: datetime | None
    accepted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class Note:
    at: datetime
    author: str
    note: str


def insert(conn: psycopg.Connection, w: NewWorkOrder) -> int:
    row = conn.execute(
        """INSERT INTO work_orders (case_id, tenant_id, crew_id, skill, status, title, assigned_at)
           VALUES (%(case_id)s, %(tenant_id)s, %(crew_id)s, %(skill)s, %(status)s, %(title)s,
                   CASE WHEN %(crew_id)s::text IS NULL THEN NULL ELSE now() END)
           RETURNING work_order_id""",
        asdict(w),
    ).fetchone()
    if row is None:
        raise RowMissing("INSERT ... RETURNING returned nothing")
    return int(row[0])


def _one(conn: psycopg.Connection, where: str, params: tuple[object, ...]) -> WorkOrder | None:
    with conn.cursor(row_factory=class_row(WorkOrder)) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM work_orders w WHERE {where}", params)
        return cur.fetchone()


def work_order(conn: psycopg.Connection, work_order_id: int, *, lock: bool = False) -> WorkOrder | None:
    return _one(conn, "w.work_order_id = %s" + (" FOR UPDATE" if lock else ""), (work_order_id,))


def existing(conn: psycopg.Connection, work_order_id: int) -> WorkOrder:
    """A work order that must exist (it was just written)."""
    row = work_order(conn, work_order_id)
    if row is None:
        raise RowMissing(f"work order {work_order_id} does not exist")
    return row


def active(conn: psycopg.Connection, case_id: int) -> WorkOrder | None:
    """The case's work order that is not finished, locked for this transaction."""
    return _one(conn, "w.case_id = %s AND w.status IN ('new', 'assigned', 'in_progress') FOR UPDATE", (case_id,))


def of_case(conn: psycopg.Connection, case_id: int) -> list[WorkOrder]:
    with conn.cursor(row_factory=class_row(WorkOrder)) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM work_orders w WHERE w.case_id = %s ORDER BY 1", (case_id,))
        return cur.fetchall()


def set_status(
    conn: psycopg.Connection, work_order_id: int, status: str, *, crew_id: str | None = None, reason: str | None = None
) -> None:
    conn.execute(
        """UPDATE work_orders SET status = %(s)s, updated_at = now(),
               crew_id = coalesce(%(c)s, crew_id),
               reject_reason = coalesce(%(r)s, reject_reason),
               assigned_at = CASE WHEN %(s)s = 'assigned' THEN now() ELSE assigned_at END,
               accepted_at = CASE WHEN %(s)s = 'in_progress' THEN now() ELSE accepted_at END,
               started_at = CASE WHEN %(s)s = 'in_progress' THEN now() ELSE started_at END,
               finished_at = CASE WHEN %(s)s IN ('done', 'rejected', 'cancelled') THEN now() ELSE finished_at END
           WHERE work_order_id = %(w)s""",
        {"s": status, "c": crew_id, "r": reason, "w": work_order_id},
    )


def add_note(conn: psycopg.Connection, work_order_id: int, author: str, note: str) -> None:
    conn.execute(
        "INSERT INTO work_order_notes (work_order_id, author, note) VALUES (%s, %s, %s)", (work_order_id, author, note)
    )


def notes(conn: psycopg.Connection, work_order_id: int) -> list[Note]:
    with conn.cursor(row_factory=class_row(Note)) as cur:
        cur.execute(
            "SELECT at, author, note FROM work_order_notes WHERE work_order_id = %s ORDER BY note_id", (work_order_id,)
        )
        return cur.fetchall()


def claim_action(
    conn: psycopg.Connection, tenant_id: str, action_key: str, work_order_id: int, action: str
) -> str | None:
    """Record a crew's tap by the key its phone chose, in the transaction that applies it: None when it is new,
    or what happened the first time (``saved``) when the phone sends it again; ``other`` when the key was used
    for another tap. A repeat that arrives while the first is still being applied waits for it."""
    row = conn.execute(
        """INSERT INTO crew_actions (tenant_id, action_key, work_order_id, action, outcome)
           VALUES (%s, %s, %s, %s, 'saved') ON CONFLICT DO NOTHING RETURNING 1""",
        (tenant_id, action_key, work_order_id, action),
    ).fetchone()
    if row is not None:
        return None
    first = conn.execute(
        "SELECT outcome, work_order_id, action FROM crew_actions WHERE tenant_id = %s AND action_key = %s",
        (tenant_id, action_key),
    ).fetchone()
    if first is None or (int(first[1]), str(first[2])) != (work_order_id, action):
        return "other"
    return str(first[0])


def crew_sees_photo(conn: psycopg.Connection, tenant_id: str, crew_id: str | None, photo_id: int) -> bool:
    """Whether a crew has (or had) a work order on the case the photo's report belongs to."""
    row = conn.execute(
        """SELECT 1 FROM report_photos p JOIN service_requests r ON r.request_id = p.request_id
           JOIN work_orders w ON w.case_id = r.case_id
           WHERE p.tenant_id = %s AND p.photo_id = %s AND w.crew_id = %s LIMIT 1""",
        (tenant_id, photo_id, crew_id),
    ).fetchone()
    return row is not None
