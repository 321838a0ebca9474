"""SQL of crews: who maintains what, where, and how they are told."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import psycopg
from psycopg.rows import class_row

_COLUMNS = "tenant_id, crew_id, name, email, webhook_url, webhook_secret, areas, skills, active"


@dataclass(frozen=True)
class Crew:
    """A crew of a tenant: its maintenance areas and skills (empty: all), e-mail and webhook."""

    tenant_id: str
    crew_id: str
    name: str
    email: str | None
    webhook_url: str | None
    webhook_secret: str | None = field(repr=False)
    areas: list[str]
    skills: list[str]
    active: bool


def upsert(conn: psycopg.Connection, crew: Crew) -> None:
    conn.execute(
        """INSERT INTO crews (tenant_id, crew_id, name, email, webhook_url, webhook_secret, areas, skills, active)
           VALUES (%(tenant_id)s, %(crew_id)s, %(name)s, %(email)s, %(webhook_url)s, %(webhook_secret)s,
                   %(areas)s, %(skills)s, %(active)s)
           ON CONFLICT (tenant_id, crew_id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email,
               webhook_url = EXCLUDED.webhook_url, webhook_secret = EXCLUDED.webhook_secret,
               areas = EXCLUDED.areas, skills = EXCLUDED.skills, active = EXCLUDED.active""",
        asdict(crew),
    )


def crews(conn: psycopg.Connection, tenant_id: str) -> list[Crew]:
    with conn.cursor(row_factory=class_row(Crew)) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM crews WHERE tenant_id = %s ORDER BY crew_id", (tenant_id,))
        return cur.fetchall()


def crew(conn: psycopg.Connection, tenant_id: str, crew_id: str) -> Crew | None:
    with conn.cursor(row_factory=class_row(Crew)) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM crews WHERE tenant_id = %s AND crew_id = %s", (tenant_id, crew_id))
        return cur.fetchone()


def webhook_secret(conn: psycopg.Connection, tenant_id: str, url: str) -> str | None:
    """The signing secret of the crew that receives webhooks at ``url``."""
    row = conn.execute(
        "SELECT webhook_secret FROM crews WHERE tenant_id = %s AND webhook_url = %s AND webhook_secret IS NOT NULL "
        "ORDER BY crew_id LIMIT 1",
        (tenant_id, url),
    ).fetchone()
    return None if row is None else str(row[0])
