"""Tenants: the municipalities sharing one installation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from storage.errors import StorageError, UnknownTenant

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
LANGUAGES = ("en", "sv", "pt")


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    name: str
    language: str
    timezone: str

    @classmethod
    def from_row(cls, row: tuple[str, str, str, str]) -> Tenant:
        return cls(tenant_id=row[0], name=row[1], language=row[2], timezone=row[3])


def validate(tenant_id: str, name: str, language: str, timezone: str) -> None:
    if not _ID.match(tenant_id):
        raise StorageError(
            f"tenant id {tenant_id!r}: use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit"
        )
    if not name.strip():
        raise StorageError("tenant name must not be empty")
    if language not in LANGUAGES:
        raise StorageError(f"tenant language {language!r}: expected one of {', '.join(LANGUAGES)}")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise StorageError(f"tenant timezone {timezone!r} is not a known IANA time zone") from None


def upsert(conn: psycopg.Connection, tenant_id: str, name: str, language: str = "en", timezone: str = "UTC") -> Tenant:
    """Add a tenant or update its name, language and time zone."""
    validate(tenant_id, name, language, timezone)
    with conn.transaction():
        row = conn.execute(
            """INSERT INTO tenants (tenant_id, name, language, timezone) VALUES (%s, %s, %s, %s)
               ON CONFLICT (tenant_id) DO UPDATE
               SET name = EXCLUDED.name, language = EXCLUDED.language, timezone = EXCLUDED.timezone
               RETURNING tenant_id, name, language, timezone""",
            (tenant_id, name, language, timezone),
        ).fetchone()
    if row is None:
        raise StorageError(f"tenant {tenant_id!r} was not written")
    return Tenant.from_row(row)


def get(conn: psycopg.Connection, tenant_id: str) -> Tenant:
    row = conn.execute(
        "SELECT tenant_id, name, language, timezone FROM tenants WHERE tenant_id = %s", (tenant_id,)
    ).fetchone()
    if row is None:
        raise UnknownTenant(f"unknown tenant {tenant_id!r}; add it with: lykta tenants add {tenant_id} --name NAME")
    return Tenant.from_row(row)


def all_tenants(conn: psycopg.Connection) -> list[Tenant]:
    rows = conn.execute("SELECT tenant_id, name, language, timezone FROM tenants ORDER BY tenant_id").fetchall()
    return [Tenant.from_row(r) for r in rows]


def language(conn: psycopg.Connection, tenant_id: str) -> str:
    """The tenant's language for texts to people ('en' for an unknown tenant)."""
    row = conn.execute("SELECT language FROM tenants WHERE tenant_id = %s", (tenant_id,)).fetchone()
    return str(row[0]) if row else "en"
