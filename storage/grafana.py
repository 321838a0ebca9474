"""The read-only database roles Grafana connects as: one for the installation, one per municipality."""

from __future__ import annotations

import psycopg
from psycopg import sql

from storage import tenants
from storage.errors import RowMissing

READABLE = (
    "tenants", "asset_kinds", "metrics", "assets", "devices", "findings", "cases", "daylight", "energy_daily",
    "dead_letters", "ingest_stats", "dash_assets", "dash_cases", "dash_energy_daily", "dash_ingest",
    "lamp_families", "lamp_days", "device_reports", "dash_open_faults", "dash_map",
)  # fmt: skip
"""What a reader may select: the dashboards' relations. Not tokens, accounts, crews' contacts and webhook
secrets, citizens' reports, outgoing mail, work orders, nor raw telemetry (read through dash_series, dash_latest
and the other dash_ functions, which keep to the caller's municipalities)."""
CALLABLE = (
    "dash_series(text[], text[], text, timestamptz, timestamptz, double precision)",
    "dash_kind_series(text[], text[], text[], text, timestamptz, timestamptz, double precision)",
    "dash_latest(text[], text[], text)",
    "lykta_var(text)",
    "lykta_day_burning(double precision, double precision)",
    "dash_open_faults_of()",
    "dash_lamp_life(text[], text[])",
    "dash_offline(text[], text[], text[])",
    "dash_delivery(text[])",
    "dash_replication()",
)


def reader_role(tenant_id: str | None) -> str:
    """lykta_grafana for the whole installation, lykta_grafana_<tenant> for one municipality."""
    role = "lykta_grafana" if tenant_id is None else f"lykta_grafana_{tenant_id}"
    if len(role.encode()) > 63:  # PostgreSQL would cut the name short, and two tenants could share a role
        raise ValueError(f"tenant id {tenant_id!r} is too long for a role name (at most 49 characters)")
    return role


def ensure_reader(conn: psycopg.Connection, role: str, password: str, tenant_id: str | None = None) -> None:
    """Create or update a login role that reads the dashboards' relations of one municipality (or, with no
    tenant, of all) and changes nothing. Run by the owner of the schema."""
    if tenant_id is not None:
        tenants.get(conn, tenant_id)  # UnknownTenant names it
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(
        sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)
        )
    )
    database = conn.execute("SELECT current_database()").fetchone()
    if database is None:
        raise RowMissing("no current database")
    names = {"db": sql.Identifier(database[0]), "role": sql.Identifier(role)}
    for statement in (
        "GRANT CONNECT ON DATABASE {db} TO {role}",
        "GRANT USAGE ON SCHEMA public TO {role}",
        # earlier versions granted every table: take that back first
        "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
        "REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM {role}",
        # no temporary objects (a leaky function among them): from PUBLIC, since a grant to PUBLIC would stay
        "REVOKE TEMPORARY ON DATABASE {db} FROM PUBLIC",
        "REVOKE TEMPORARY ON DATABASE {db} FROM {role}",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM {role}",
        "ALTER ROLE {role} SET default_transaction_read_only = on",
    ):
        conn.execute(sql.SQL(statement).format(**names))
    for relation in READABLE:
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(relation), names["role"]))
    for function in CALLABLE:
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION " + function + " TO {}").format(names["role"]))
    conn.execute(
        """INSERT INTO tenant_readers (role_name, tenant_id) VALUES (%s, %s)
           ON CONFLICT (role_name) DO UPDATE SET tenant_id = EXCLUDED.tenant_id""",
        (role, tenant_id),
    )


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
