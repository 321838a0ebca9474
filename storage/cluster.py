"""SQL of running the database itself (not lykta's schema): databases, the service account's role, WAL
archiving, recovery and settings. For lykta/postgres.py, lykta/ha.py and lykta/backup.py."""

from __future__ import annotations

import psycopg
from psycopg import sql


def ensure_database(conn: psycopg.Connection, name: str) -> None:
    """Create the database ``name`` unless it exists (``conn``: autocommit, to another database)."""
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def ensure_service_role(conn: psycopg.Connection) -> None:
    """A ``postgres`` superuser role: the service account signs in as itself by peer authentication."""
    if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'postgres'").fetchone():
        conn.execute("CREATE ROLE postgres LOGIN SUPERUSER")


def set_archive_command(conn: psycopg.Connection, command: str) -> None:
    """Point WAL archiving at ``command`` and reload (no restart: archive_mode is already on)."""
    conn.execute(sql.SQL("ALTER SYSTEM SET archive_command = {}").format(sql.Literal(command)))
    conn.execute("SELECT pg_reload_conf()")


def in_recovery(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return bool(row and row[0])


def close_wal_segment(conn: psycopg.Connection) -> str:
    """Write a record and switch to a new WAL segment (a switch out of an empty segment closes nothing); the
    name of the segment closed."""
    conn.execute("SELECT pg_logical_emit_message(false, 'lykta', 'archive now')")
    row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
    if row is None:
        raise psycopg.DataError("pg_switch_wal returned nothing")
    return str(row[0])


def archiver(conn: psycopg.Connection) -> tuple[str | None, str | None]:
    """(the last WAL file archived, the last that failed)."""
    row = conn.execute("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver").fetchone()
    return (row[0], row[1]) if row else (None, None)


def setting(conn: psycopg.Connection, name: str) -> str | None:
    row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
    return None if row is None else str(row[0])
