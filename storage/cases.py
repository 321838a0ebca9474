"""SQL of the case handling: the finding queue, cases and their events, work orders, crews, the outbox."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

Row = dict[str, Any]

_CASE_COLUMNS = """c.case_id, c.tenant_id, c.asset_id, c.fault, c.status, c.priority, c.severity, c.source,
    extract(epoch FROM c.observed_at)::float8 AS observed_at, extract(epoch FROM c.opened_at)::float8 AS opened_at,
    extract(epoch FROM c.due_at)::float8 AS due_at, extract(epoch FROM c.breached_at)::float8 AS breached_at,
    c.escalation, extract(epoch FROM c.fault_cleared_at)::float8 AS fault_cleared_at,
    extract(epoch FROM c.repaired_at)::float8 AS repaired_at, extract(epoch FROM c.resolved_at)::float8 AS resolved_at,
    c.resolution"""


def _rows(conn: psycopg.Connection, query: str, params: Any = None) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


def _row(conn: psycopg.Connection, query: str, params: Any = None) -> Row | None:
    rows = _rows(conn, query, params)
    return rows[0] if rows else None


# -- the queue of findings --------------------------------------------------------------------------------


def claim_findings(conn: psycopg.Connection, limit: int) -> list[Row]:
    """Queued findings with their assets, locked for this transaction (others skip them), oldest first."""
    return _rows(
        conn,
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


def dequeue(conn: psycopg.Connection, finding_ids: list[int]) -> None:
    conn.execute("DELETE FROM finding_queue WHERE finding_id = ANY(%s)", (finding_ids,))


def lock_tenant(conn: psycopg.Connection, tenant_id: str) -> None:
    """Serialise case decisions of one tenant until the transaction ends (correlation reads, then writes)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('lykta.cases'), hashtext(%s))", (tenant_id,))


# -- assets ---------------------------------------------------------------------------------------------------


def asset(conn: psycopg.Connection, tenant_id: str, asset_id: str) -> Row | None:
    return _row(
        conn,
        """SELECT a.tenant_id, a.asset_id, a.kind, a.parent_id, a.criticality, a.lat, a.lon, a.maintenance_area,
                  a.district, a.name, a.rated_power_w, d.device_key
           FROM assets a LEFT JOIN devices d
             ON d.tenant_id = a.tenant_id AND d.asset_id = a.asset_id AND d.status <> 'retired'
           WHERE a.tenant_id = %s AND a.asset_id = %s""",
        (tenant_id, asset_id),
    )


def children_count(conn: psycopg.Connection, tenant_id: str, parent_id: str, kind: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM assets WHERE tenant_id = %s AND parent_id = %s AND kind = %s",
        (tenant_id, parent_id, kind),
    ).fetchone()
    return int(row[0]) if row else 0


def root_of(conn: psycopg.Connection, tenant_id: str, asset_id: str) -> str:
    """The top of an asset's tree (for a streetlight: its cabinet)."""
    row = conn.execute(
        """WITH RECURSIVE up(asset_id, parent_id, depth) AS (
               SELECT asset_id, parent_id, 0 FROM assets WHERE tenant_id = %(t)s AND asset_id = %(a)s
               UNION ALL
               SELECT a.asset_id, a.parent_id, up.depth + 1 FROM assets a JOIN up ON a.asset_id = up.parent_id
               WHERE a.tenant_id = %(t)s AND up.depth < 8)
           SELECT asset_id FROM up ORDER BY depth DESC LIMIT 1""",
        {"t": tenant_id, "a": asset_id},
    ).fetchone()
    return str(row[0]) if row else asset_id


def nearest_assets(  # noqa: PLR0917 - a point, a kind and a distance
    conn: psycopg.Connection, tenant_id: str, lat: float, lon: float, kind: str, within_m: float
) -> list[Row]:
    """Assets of ``kind`` within ``within_m`` metres, nearest first (equirectangular distance: city scale)."""
    return _rows(
        conn,
        """SELECT asset_id, d FROM (
               SELECT asset_id, 6371000 * sqrt(power(radians(lat - %(lat)s), 2)
                      + power(radians(lon - %(lon)s) * cos(radians(%(lat)s)), 2)) AS d
               FROM assets WHERE tenant_id = %(t)s AND kind = %(k)s AND lat IS NOT NULL AND lon IS NOT NULL) x
           WHERE d <= %(m)s ORDER BY d, asset_id""",
        {"t": tenant_id, "lat": lat, "lon": lon, "k": kind, "m": within_m},
    )


# -- cases -----------------------------------------------------------------------------------------------------


def case(conn: psycopg.Connection, case_id: int) -> Row | None:
    return _row(conn, f"SELECT {_CASE_COLUMNS} FROM cases c WHERE c.case_id = %s", (case_id,))


def existing_case(conn: psycopg.Connection, case_id: int) -> Row:
    """A case that must exist (it was just written or linked)."""
    row = case(conn, case_id)
    if row is None:
        raise LookupError(f"case {case_id} does not exist")
    return row


def active_case(conn: psycopg.Connection, tenant_id: str, asset_id: str, fault: str) -> Row | None:
    return _row(
        conn,
        f"""SELECT {_CASE_COLUMNS} FROM cases c
            WHERE c.tenant_id = %s AND c.asset_id = %s AND c.fault = %s AND c.status <> 'resolved'""",
        (tenant_id, asset_id, fault),
    )


def case_of_finding(conn: psycopg.Connection, finding_id: int) -> Row | None:
    return _row(
        conn,
        f"SELECT {_CASE_COLUMNS} FROM cases c JOIN case_findings l USING (case_id) WHERE l.finding_id = %s",
        (finding_id,),
    )


def insert_case(conn: psycopg.Connection, c: Row) -> int | None:
    """A new active case, or None when one is already active for the same asset and fault."""
    row = conn.execute(
        """INSERT INTO cases (tenant_id, asset_id, fault, priority, severity, source, observed_at, opened_at, due_at)
           VALUES (%(tenant_id)s, %(asset_id)s, %(fault)s, %(priority)s, %(severity)s, %(source)s,
                   to_timestamp(%(observed_at)s), to_timestamp(%(opened_at)s), to_timestamp(%(due_at)s))
           ON CONFLICT (tenant_id, asset_id, fault) WHERE status <> 'resolved' DO NOTHING
           RETURNING case_id""",
        c,
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


def case_findings(conn: psycopg.Connection, case_id: int) -> list[Row]:
    return _rows(
        conn,
        """SELECT f.finding_id, f.asset_id, f.fault, f.status, extract(epoch FROM f.observed_at)::float8 AS observed_at,
                  extract(epoch FROM f.cleared_at)::float8 AS cleared_at
           FROM case_findings l JOIN findings f USING (finding_id) WHERE l.case_id = %s ORDER BY f.finding_id""",
        (case_id,),
    )


def add_event(conn: psycopg.Connection, case_id: int, actor: str, action: str, detail: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO case_events (case_id, actor, action, detail) VALUES (%s, %s, %s, %s)",
        (case_id, actor, action, Jsonb(detail)),
    )


def events(conn: psycopg.Connection, case_id: int) -> list[Row]:
    return _rows(
        conn,
        """SELECT event_id, at, actor, action, detail FROM case_events WHERE case_id = %s ORDER BY event_id""",
        (case_id,),
    )


def sibling_findings(  # noqa: PLR0917 - a circuit, a fault and a time range
    conn: psycopg.Connection, tenant_id: str, parent_id: str, fault: str, start: float, end: float
) -> list[Row]:
    """Open findings of ``fault`` on the streetlights of one circuit, observed between start and end."""
    return _rows(
        conn,
        """SELECT f.finding_id, f.asset_id, l.case_id
           FROM findings f
           JOIN assets a ON a.tenant_id = f.tenant_id AND a.asset_id = f.asset_id
           LEFT JOIN case_findings l USING (finding_id)
           WHERE f.tenant_id = %s AND a.parent_id = %s AND a.kind = 'streetlight' AND f.fault = %s
             AND f.status = 'open' AND f.observed_at BETWEEN to_timestamp(%s) AND to_timestamp(%s)
           ORDER BY f.finding_id""",
        (tenant_id, parent_id, fault, start, end),
    )


def active_cases_below(conn: psycopg.Connection, tenant_id: str, root_id: str, exclude_case: int) -> list[Row]:
    """Active cases on the assets under ``root_id`` (its circuits and lamps)."""
    return _rows(
        conn,
        f"""WITH RECURSIVE down(asset_id, depth) AS (
                SELECT asset_id, 1 FROM assets WHERE tenant_id = %(t)s AND parent_id = %(r)s
                UNION ALL
                SELECT a.asset_id, down.depth + 1 FROM assets a JOIN down ON a.parent_id = down.asset_id
                WHERE a.tenant_id = %(t)s AND down.depth < 8)
            SELECT {_CASE_COLUMNS} FROM cases c JOIN down USING (asset_id)
            WHERE c.tenant_id = %(t)s AND c.status <> 'resolved' AND c.case_id <> %(x)s""",
        {"t": tenant_id, "r": root_id, "x": exclude_case},
    )


def lamps_in_row(conn: psycopg.Connection, tenant_id: str, asset_id: str, faults: list[str], within_m: float) -> int:
    """This lamp and the lamps of its circuit within ``within_m`` metres that have an active lamp-fault case."""
    row = conn.execute(
        """SELECT 1 + count(DISTINCT o.asset_id) FROM assets me
           JOIN assets o ON o.tenant_id = me.tenant_id AND o.parent_id = me.parent_id AND o.asset_id <> me.asset_id
           JOIN cases c ON c.tenant_id = o.tenant_id AND c.asset_id = o.asset_id AND c.status <> 'resolved'
                        AND c.fault = ANY(%(f)s)
           WHERE me.tenant_id = %(t)s AND me.asset_id = %(a)s
             AND 6371000 * sqrt(power(radians(o.lat - me.lat), 2)
                 + power(radians(o.lon - me.lon) * cos(radians(me.lat)), 2)) <= %(m)s""",
        {"t": tenant_id, "a": asset_id, "f": faults, "m": within_m},
    ).fetchone()
    return int(row[0]) if row else 1


def cases_to_verify(conn: psycopg.Connection) -> list[Row]:
    return _rows(conn, f"SELECT {_CASE_COLUMNS} FROM cases c WHERE c.status = 'verifying' ORDER BY c.case_id")


def cases_past_due(conn: psycopg.Connection, now: float) -> list[Row]:
    """Unresolved cases past their due time: newly breached, or breached and due for the next escalation."""
    return _rows(
        conn,
        f"""SELECT {_CASE_COLUMNS} FROM cases c
            WHERE c.status <> 'resolved' AND c.due_at < to_timestamp(%s) ORDER BY c.due_at""",
        (now,),
    )


def burning_after(
    conn: psycopg.Connection, device_key: int, after: float, min_power_w: float
) -> list[tuple[float, float]]:
    """(device time, power) of readings after ``after`` with the lamp drawing at least ``min_power_w``."""
    rows = conn.execute(
        """SELECT extract(epoch FROM t.device_time)::float8, t.value FROM telemetry t JOIN metrics m USING (metric_id)
           WHERE t.device_key = %s AND m.name = 'power_w' AND t.device_time > to_timestamp(%s) AND t.value >= %s
           ORDER BY t.device_time LIMIT 500""",
        (device_key, after, min_power_w),
    ).fetchall()
    return [(float(r[0]), float(r[1])) for r in rows]


def heard_after(conn: psycopg.Connection, device_key: int, after: float) -> float | None:
    row = conn.execute(
        "SELECT extract(epoch FROM max(received_at))::float8 FROM telemetry "
        "WHERE device_key = %s AND device_time > to_timestamp(%s)",
        (device_key, after),
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


# -- crews and work orders --------------------------------------------------------------------------------------


def upsert_crew(conn: psycopg.Connection, crew: Row) -> None:
    conn.execute(
        """INSERT INTO crews (tenant_id, crew_id, name, email, webhook_url, webhook_secret, areas, skills, active)
           VALUES (%(tenant_id)s, %(crew_id)s, %(name)s, %(email)s, %(webhook_url)s, %(webhook_secret)s,
                   %(areas)s, %(skills)s, %(active)s)
           ON CONFLICT (tenant_id, crew_id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email,
               webhook_url = EXCLUDED.webhook_url, webhook_secret = EXCLUDED.webhook_secret,
               areas = EXCLUDED.areas, skills = EXCLUDED.skills, active = EXCLUDED.active""",
        crew,
    )


def crews(conn: psycopg.Connection, tenant_id: str) -> list[Row]:
    return _rows(
        conn,
        """SELECT tenant_id, crew_id, name, email, webhook_url, webhook_secret, areas, skills, active
           FROM crews WHERE tenant_id = %s ORDER BY crew_id""",
        (tenant_id,),
    )


def crew(conn: psycopg.Connection, tenant_id: str, crew_id: str) -> Row | None:
    return _row(
        conn,
        """SELECT tenant_id, crew_id, name, email, webhook_url, webhook_secret, areas, skills, active
           FROM crews WHERE tenant_id = %s AND crew_id = %s""",
        (tenant_id, crew_id),
    )


def insert_work_order(conn: psycopg.Connection, w: Row) -> int:
    row = conn.execute(
        """INSERT INTO work_orders (case_id, tenant_id, crew_id, skill, status, title, assigned_at)
           VALUES (%(case_id)s, %(tenant_id)s, %(crew_id)s, %(skill)s, %(status)s, %(title)s,
                   CASE WHEN %(crew_id)s::text IS NULL THEN NULL ELSE now() END)
           RETURNING work_order_id""",
        w,
    ).fetchone()
    if row is None:
        raise LookupError("INSERT ... RETURNING returned nothing")
    return int(row[0])


_WO_COLUMNS = """w.work_order_id, w.case_id, w.tenant_id, w.crew_id, w.skill, w.status, w.title, w.reject_reason,
    w.created_at, w.assigned_at, w.accepted_at, w.started_at, w.finished_at, w.updated_at"""


def existing_work_order(conn: psycopg.Connection, work_order_id: int) -> Row:
    row = work_order(conn, work_order_id)
    if row is None:
        raise LookupError(f"work order {work_order_id} does not exist")
    return row


def work_order(conn: psycopg.Connection, work_order_id: int, *, lock: bool = False) -> Row | None:
    return _row(
        conn,
        f"SELECT {_WO_COLUMNS} FROM work_orders w WHERE w.work_order_id = %s" + (" FOR UPDATE" if lock else ""),
        (work_order_id,),
    )


def active_work_order(conn: psycopg.Connection, case_id: int) -> Row | None:
    return _row(
        conn,
        f"""SELECT {_WO_COLUMNS} FROM work_orders w
            WHERE w.case_id = %s AND w.status IN ('new', 'assigned', 'in_progress') FOR UPDATE""",
        (case_id,),
    )


def set_work_order(
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


def notes(conn: psycopg.Connection, work_order_id: int) -> list[Row]:
    return _rows(
        conn,
        "SELECT at, author, note FROM work_order_notes WHERE work_order_id = %s ORDER BY note_id",
        (work_order_id,),
    )


def work_orders_of_case(conn: psycopg.Connection, case_id: int) -> list[Row]:
    return _rows(conn, f"SELECT {_WO_COLUMNS} FROM work_orders w WHERE w.case_id = %s ORDER BY 1", (case_id,))


# -- outbox ---------------------------------------------------------------------------------------------------------


def enqueue(conn: psycopg.Connection, message: Row) -> bool:
    """A message to send after commit, due at ``message["at"]`` (epoch); False when its idempotency key is
    already queued."""
    row = conn.execute(
        """INSERT INTO outbox (tenant_id, channel, target, subject, body, idempotency_key, created_at, next_attempt_at)
           VALUES (%(tenant_id)s, %(channel)s, %(target)s, %(subject)s, %(body)s, %(key)s,
                   to_timestamp(%(at)s), to_timestamp(%(at)s))
           ON CONFLICT (idempotency_key) DO NOTHING RETURNING message_id""",
        {**message, "body": Jsonb(message["body"])},
    ).fetchone()
    return row is not None


def claim_messages(conn: psycopg.Connection, now: float, limit: int) -> list[Row]:
    """Messages due for an attempt, locked for this transaction (another sender skips them)."""
    return _rows(
        conn,
        """SELECT message_id, tenant_id, channel, target, subject, body, idempotency_key, attempts
           FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= to_timestamp(%s)
           ORDER BY next_attempt_at, message_id LIMIT %s FOR UPDATE SKIP LOCKED""",
        (now, limit),
    )


def message_sent(conn: psycopg.Connection, message_id: int, now: float) -> None:
    conn.execute(
        "UPDATE outbox SET sent_at = to_timestamp(%s), attempts = attempts + 1, last_error = NULL "
        "WHERE message_id = %s",
        (now, message_id),
    )


def message_failed(conn: psycopg.Connection, message_id: int, error: str, retry_at: float | None, now: float) -> None:
    conn.execute(
        """UPDATE outbox SET attempts = attempts + 1, last_error = %s,
               next_attempt_at = coalesce(to_timestamp(%s), next_attempt_at),
               failed_at = CASE WHEN %s::float8 IS NULL THEN to_timestamp(%s) END
           WHERE message_id = %s""",
        (error[:1000], retry_at, retry_at, now, message_id),
    )


def webhook_secret(conn: psycopg.Connection, tenant_id: str, url: str) -> str | None:
    """The signing secret of the crew that receives webhooks at ``url``."""
    row = conn.execute(
        "SELECT webhook_secret FROM crews WHERE tenant_id = %s AND webhook_url = %s AND webhook_secret IS NOT NULL "
        "ORDER BY crew_id LIMIT 1",
        (tenant_id, url),
    ).fetchone()
    return None if row is None else str(row[0])


def active_cases_on(conn: psycopg.Connection, tenant_id: str, asset_id: str) -> list[Row]:
    """Active cases on one asset, oldest first."""
    return _rows(
        conn,
        f"""SELECT {_CASE_COLUMNS} FROM cases c
            WHERE c.tenant_id = %s AND c.asset_id = %s AND c.status <> 'resolved' ORDER BY c.case_id""",
        (tenant_id, asset_id),
    )
