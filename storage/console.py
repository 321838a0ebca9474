"""SQL of the operator console's people: accounts, the municipalities each works for, sessions, failed
sign-ins."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.rows import class_row

from storage.errors import RowMissing


@dataclass(frozen=True)
class Operator:
    operator_id: int
    email: str
    name: str
    password_hash: str
    disabled: bool


@dataclass(frozen=True)
class Session:
    operator_id: int
    name: str
    email: str
    csrf: str
    expires_at: float
    tenants: list[str]
    """the municipalities the person works for, in id order"""


def upsert_operator(conn: psycopg.Connection, email: str, name: str, password_hash: str | None) -> int:
    """Add a person, or change their name (and password when one is given); returns their id."""
    row = conn.execute(
        """INSERT INTO operators (email, name, password_hash) VALUES (%(e)s, %(n)s, coalesce(%(p)s, '!'))
           ON CONFLICT (lower(email)) DO UPDATE
           SET name = EXCLUDED.name, password_hash = coalesce(%(p)s, operators.password_hash), disabled_at = NULL
           RETURNING operator_id""",
        {"e": email, "n": name, "p": password_hash},
    ).fetchone()
    if row is None:
        raise RowMissing("INSERT ... RETURNING returned nothing")
    return int(row[0])


def grant(conn: psycopg.Connection, operator_id: int, tenant_ids: list[str]) -> None:
    for tenant_id in tenant_ids:
        conn.execute(
            "INSERT INTO operator_tenants (operator_id, tenant_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (operator_id, tenant_id),
        )


def revoke(conn: psycopg.Connection, operator_id: int, tenant_id: str) -> None:
    conn.execute("DELETE FROM operator_tenants WHERE operator_id = %s AND tenant_id = %s", (operator_id, tenant_id))


def disable(conn: psycopg.Connection, email: str) -> bool:
    row = conn.execute(
        """UPDATE operators SET disabled_at = now() WHERE lower(email) = lower(%s) AND disabled_at IS NULL
           RETURNING operator_id""",
        (email,),
    ).fetchone()
    if row is None:
        return False
    conn.execute("UPDATE console_sessions SET ended_at = now() WHERE operator_id = %s AND ended_at IS NULL", (row[0],))
    return True


def by_email(conn: psycopg.Connection, email: str) -> Operator | None:
    with conn.cursor(row_factory=class_row(Operator)) as cur:
        cur.execute(
            """SELECT operator_id, email, name, password_hash, disabled_at IS NOT NULL AS disabled
               FROM operators WHERE lower(email) = lower(%s)""",
            (email,),
        )
        return cur.fetchone()


def operators(conn: psycopg.Connection) -> list[tuple[str, str, list[str], bool]]:
    """(e-mail, name, municipalities, disabled) of every person."""
    rows = conn.execute(
        """SELECT o.email, o.name, coalesce(array_agg(t.tenant_id ORDER BY t.tenant_id)
                  FILTER (WHERE t.tenant_id IS NOT NULL), '{}'), o.disabled_at IS NOT NULL
           FROM operators o LEFT JOIN operator_tenants t USING (operator_id)
           GROUP BY o.operator_id ORDER BY lower(o.email)"""
    ).fetchall()
    return [(str(r[0]), str(r[1]), list(r[2]), bool(r[3])) for r in rows]


def start_session(conn: psycopg.Connection, session_hash: str, operator_id: int, csrf: str, lifetime_s: float) -> None:
    conn.execute(
        """INSERT INTO console_sessions (session_hash, operator_id, csrf, expires_at)
           VALUES (%s, %s, %s, now() + make_interval(secs => %s))""",
        (session_hash, operator_id, csrf, lifetime_s),
    )


def session(conn: psycopg.Connection, session_hash: str) -> Session | None:
    """A session that has not ended or expired, of a person not disabled; marks it seen."""
    with conn.cursor(row_factory=class_row(Session)) as cur:
        cur.execute(
            """UPDATE console_sessions s SET seen_at = now()
               FROM operators o
               WHERE s.session_hash = %s AND s.ended_at IS NULL AND s.expires_at > now()
                 AND o.operator_id = s.operator_id AND o.disabled_at IS NULL
               RETURNING s.operator_id, o.name, o.email, s.csrf, extract(epoch FROM s.expires_at)::float8 AS expires_at,
                   ARRAY(SELECT t.tenant_id FROM operator_tenants t WHERE t.operator_id = s.operator_id
                         ORDER BY t.tenant_id) AS tenants""",
            (session_hash,),
        )
        return cur.fetchone()


def end_session(conn: psycopg.Connection, session_hash: str) -> None:
    conn.execute("UPDATE console_sessions SET ended_at = now() WHERE session_hash = %s", (session_hash,))


def failed(conn: psycopg.Connection, keys: list[str]) -> None:
    for key in keys:
        conn.execute("INSERT INTO console_failures (key) VALUES (%s)", (key,))
    conn.execute("DELETE FROM console_failures WHERE at < now() - interval '1 day'")


def failures(conn: psycopg.Connection, key: str, window_s: float) -> int:
    row = conn.execute(
        "SELECT count(*) FROM console_failures WHERE key = %s AND at > now() - make_interval(secs => %s)",
        (key, window_s),
    ).fetchone()
    return int(row[0]) if row else 0
