"""SQL of the broker accounts (``mqtt_accounts``): who may connect, and which topics each account may use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class BrokerAccount:
    username: str
    role: str  # device, gateway or ingest
    password_hash: str
    tenant_id: str | None
    device_kind: str | None = None
    device_id: str | None = None


@dataclass(frozen=True)
class DeviceRef:
    device_key: int
    tenant_id: str
    device_id: str
    has_account: bool


def device_username(device_key: int) -> str:
    """Device ids may hold ':' (the password file's separator); the stable device key never does."""
    return f"device-{device_key}"


def gateway_username(tenant_id: str) -> str:
    return f"gateway-{tenant_id}"


def devices(conn: psycopg.Connection, tenant_id: str, device_ids: Sequence[str] | None) -> list[DeviceRef]:
    """The tenant's devices that are not retired (all, or those named), with whether they have an account."""
    rows = conn.execute(
        """SELECT d.device_key, d.tenant_id, d.device_id, a.username IS NOT NULL
           FROM devices d LEFT JOIN mqtt_accounts a ON a.device_key = d.device_key
           WHERE d.tenant_id = %s AND d.status <> 'retired' AND (%s::text[] IS NULL OR d.device_id = ANY(%s))
           ORDER BY d.device_id""",
        (tenant_id, device_ids, device_ids),
    ).fetchall()
    return [DeviceRef(int(r[0]), r[1], r[2], bool(r[3])) for r in rows]


def upsert(
    conn: psycopg.Connection,
    username: str,
    role: str,
    password_hash: str,
    *,
    tenant_id: str | None = None,
    device_key: int | None = None,
) -> None:
    conn.execute(
        """INSERT INTO mqtt_accounts (username, role, tenant_id, device_key, password_hash)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash, rotated_at = now()""",
        (username, role, tenant_id, device_key, password_hash),
    )


def migrated(conn: psycopg.Connection) -> bool:
    """Whether the schema has broker accounts yet (a broker may start before the first migration)."""
    row = conn.execute("SELECT to_regclass('mqtt_accounts') IS NOT NULL").fetchone()
    return bool(row and row[0])


def exists(conn: psycopg.Connection, username: str) -> bool:
    return conn.execute("SELECT 1 FROM mqtt_accounts WHERE username = %s", (username,)).fetchone() is not None


def remove(conn: psycopg.Connection, username: str) -> bool:
    return conn.execute("DELETE FROM mqtt_accounts WHERE username = %s", (username,)).rowcount > 0


def for_broker(conn: psycopg.Connection) -> list[BrokerAccount]:
    """Every account the broker should know: devices only while they are not retired."""
    rows = conn.execute(
        """SELECT a.username, a.role, a.password_hash, a.tenant_id, d.device_kind, d.device_id
           FROM mqtt_accounts a LEFT JOIN devices d ON d.device_key = a.device_key
           WHERE a.role <> 'device' OR d.status <> 'retired'
           ORDER BY a.username"""
    ).fetchall()
    return [BrokerAccount(*r) for r in rows]
