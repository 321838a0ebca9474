"""The read-only database role Grafana connects as."""

from __future__ import annotations

import psycopg
from psycopg import sql


def ensure_reader(conn: psycopg.Connection, role: str, password: str) -> None:
    """Create or update a login role that can read everything and change nothing."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(
        sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)
        )
    )
    database = conn.execute("SELECT current_database()").fetchone()
    if database is None:
        raise LookupError("no current database")
    for statement in (
        "GRANT CONNECT ON DATABASE {db} TO {role}",
        "GRANT USAGE ON SCHEMA public TO {role}",
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
        "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {role}",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {role}",
        "ALTER ROLE {role} SET default_transaction_read_only = on",
    ):
        conn.execute(sql.SQL(statement).format(db=sql.Identifier(database[0]), role=sql.Identifier(role)))


def tenant_centres(conn: psycopg.Connection) -> list[tuple[str, float, float]]:
    """(tenant, latitude, longitude): the middle of each tenant's assets that have a position."""
    rows = conn.execute(
        "SELECT tenant_id, avg(lat), avg(lon) FROM assets WHERE lat IS NOT NULL AND lon IS NOT NULL GROUP BY 1"
    ).fetchall()
    return [(str(r[0]), float(r[1]), float(r[2])) for r in rows]


def upsert_daylight(
    conn: psycopg.Connection, tenant_id: str, days: list[tuple[str, float | None, float | None]]
) -> None:
    """(ISO date, dawn, dusk) rows of one tenant (epoch seconds; None in polar day or night)."""
    conn.execute(
        """INSERT INTO daylight (tenant_id, day, dawn, dusk)
           SELECT %s, d::date, to_timestamp(a), to_timestamp(b) FROM unnest(%s::text[], %s::float8[], %s::float8[])
               AS u(d, a, b)
           ON CONFLICT (tenant_id, day) DO UPDATE SET dawn = EXCLUDED.dawn, dusk = EXCLUDED.dusk""",
        (tenant_id, [d[0] for d in days], [d[1] for d in days], [d[2] for d in days]),
    )
