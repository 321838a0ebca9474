"""SQL of the outbox: messages to crews and operators, written in the transaction that decided them, sent after."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class NewMessage:
    """A message to send after commit, due at ``at`` (epoch seconds), queued once per idempotency ``key``."""

    tenant_id: str
    channel: str
    """email or webhook"""
    target: str
    subject: str
    body: dict[str, Any]
    key: str
    at: float


@dataclass(frozen=True)
class Message:
    """A queued message due for an attempt."""

    message_id: int
    tenant_id: str
    channel: str
    target: str
    subject: str
    body: dict[str, Any]
    idempotency_key: str
    attempts: int


def enqueue(conn: psycopg.Connection, message: NewMessage) -> bool:
    """Queue ``message``; False when its idempotency key is already queued."""
    row = conn.execute(
        """INSERT INTO outbox (tenant_id, channel, target, subject, body, idempotency_key, created_at, next_attempt_at)
           VALUES (%s, %s, %s, %s, %s, %s, to_timestamp(%s), to_timestamp(%s))
           ON CONFLICT (idempotency_key) DO NOTHING RETURNING message_id""",
        (
            message.tenant_id,
            message.channel,
            message.target,
            message.subject,
            Jsonb(message.body),
            message.key,
            message.at,
            message.at,
        ),
    ).fetchone()
    return row is not None


def claim(conn: psycopg.Connection, now: float, limit: int) -> list[Message]:
    """Messages due for an attempt, locked for this transaction (another sender skips them)."""
    with conn.cursor(row_factory=class_row(Message)) as cur:
        cur.execute(
            """SELECT message_id, tenant_id, channel, target, subject, body, idempotency_key, attempts
               FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= to_timestamp(%s)
               ORDER BY next_attempt_at, message_id LIMIT %s FOR UPDATE SKIP LOCKED""",
            (now, limit),
        )
        return cur.fetchall()


def sent(conn: psycopg.Connection, message_id: int, now: float) -> None:
    conn.execute(
        "UPDATE outbox SET sent_at = to_timestamp(%s), attempts = attempts + 1, last_error = NULL "
        "WHERE message_id = %s",
        (now, message_id),
    )


def failed(conn: psycopg.Connection, message_id: int, error: str, retry_at: float | None, now: float) -> None:
    conn.execute(
        """UPDATE outbox SET attempts = attempts + 1, last_error = %s,
               next_attempt_at = coalesce(to_timestamp(%s), next_attempt_at),
               failed_at = CASE WHEN %s::float8 IS NULL THEN to_timestamp(%s) END
           WHERE message_id = %s""",
        (error[:1000], retry_at, retry_at, now, message_id),
    )
