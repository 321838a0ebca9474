"""SQL of citizen reports (Open311 service requests)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from storage.errors import RowMissing

_COLUMNS = """r.request_id, r.tenant_id, r.service_code, r.description, r.lat, r.lon, r.address, r.asset_id,
    r.case_id, extract(epoch FROM r.requested_at)::float8 AS requested_at, c.status AS case_status,
    c.resolution, extract(epoch FROM c.updated_at)::float8 AS updated_at,
    extract(epoch FROM c.due_at)::float8 AS due_at,
    (SELECT e.detail->>'note' FROM case_events e WHERE e.case_id = c.case_id AND e.action = 'note'
       AND c.resolution = 'closed' ORDER BY e.event_id DESC LIMIT 1) AS closing_note,
    r.triage, r.triage_note, r.media_url, r.attributes,
    (SELECT count(*) FROM report_photos p WHERE p.request_id = r.request_id)::int AS photos"""


@dataclass(frozen=True)
class Report:
    """What a citizen reported, where, and the asset and case it was attached to."""

    tenant_id: str
    service_code: str
    description: str | None
    lat: float | None
    lon: float | None
    address: str | None
    asset_id: str | None
    case_id: int | None
    media_url: str | None
    """a photo's web address an Open311 client gave"""
    attributes: dict[str, Any]
    """the values of the service's attributes (a list for a multivaluelist)"""


@dataclass(frozen=True)
class NewReport(Report):
    """A report as it is stored (the e-mail address only for updates; never shown), received at ``at``."""

    email: str | None
    at: float
    triage: str
    reporter_key: str | None
    client_key: str | None


@dataclass(frozen=True)
class ServiceRequest(Report):
    """A stored report with the state of its case (times in epoch seconds)."""

    request_id: int
    requested_at: float
    case_status: str | None
    resolution: str | None
    updated_at: float | None
    due_at: float | None
    closing_note: str | None
    """what the operator wrote when closing the case by hand"""
    triage: str
    """inbox (waiting for an operator), attached (to a case) or dismissed"""
    triage_note: str | None
    """what the operator wrote when dismissing it"""
    photos: int
    """photos taken with it (report_photos)"""


@dataclass(frozen=True)
class Filters:
    """GeoReport v2 GET requests: the ids (overriding the rest), service codes, the time range, open or closed."""

    ids: list[int] | None
    codes: list[str] | None
    start: float | None
    end: float | None
    status: str | None


@dataclass(frozen=True)
class Photo:
    photo_id: int
    request_id: int
    width: int
    height: int


def insert(conn: psycopg.Connection, r: NewReport) -> ServiceRequest:
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO service_requests (tenant_id, service_code, description, lat, lon, address, email, asset_id,
                                             case_id, requested_at, triage, reporter_key, client_key, media_url,
                                             attributes)
               VALUES (%(tenant_id)s, %(service_code)s, %(description)s, %(lat)s, %(lon)s, %(address)s, %(email)s,
                       %(asset_id)s, %(case_id)s, to_timestamp(%(at)s), %(triage)s, %(reporter_key)s,
                       %(client_key)s, %(media_url)s, %(attributes)s)
               RETURNING request_id""",
            {**asdict(r), "attributes": Jsonb(r.attributes)},
        )
        row = cur.fetchone()
    if row is None:
        raise RowMissing("INSERT ... RETURNING returned nothing")
    found = get(conn, r.tenant_id, int(row[0]))
    if found is None:
        raise RowMissing(f"service request {row[0]} vanished")
    return found


def get(conn: psycopg.Connection, tenant_id: str, request_id: int) -> ServiceRequest | None:
    with conn.cursor(row_factory=class_row(ServiceRequest)) as cur:
        cur.execute(
            f"""SELECT {_COLUMNS} FROM service_requests r LEFT JOIN cases c USING (case_id)
                WHERE r.tenant_id = %s AND r.request_id = %s""",
            (tenant_id, request_id),
        )
        return cur.fetchone()


def search(conn: psycopg.Connection, tenant_id: str, f: Filters, limit: int) -> list[ServiceRequest]:
    with conn.cursor(row_factory=class_row(ServiceRequest)) as cur:
        cur.execute(
            f"""SELECT {_COLUMNS} FROM service_requests r LEFT JOIN cases c USING (case_id)
                WHERE r.tenant_id = %(t)s
                  AND (%(ids)s::bigint[] IS NULL OR r.request_id = ANY(%(ids)s::bigint[]))
                  AND (%(codes)s::text[] IS NULL OR r.service_code = ANY(%(codes)s::text[]))
                  AND (%(start)s::float8 IS NULL OR r.requested_at >= to_timestamp(%(start)s))
                  AND (%(end)s::float8 IS NULL OR r.requested_at <= to_timestamp(%(end)s))
                  AND (%(status)s::text IS NULL
                       OR (%(status)s = 'closed')
                          = (c.status IS NOT DISTINCT FROM 'resolved' OR r.triage = 'dismissed'))
                ORDER BY r.requested_at DESC, r.request_id DESC LIMIT %(limit)s""",
            {**asdict(f), "t": tenant_id, "limit": limit},
        )
        return cur.fetchall()


def of_case(conn: psycopg.Connection, tenant_id: str, case_id: int) -> list[ServiceRequest]:
    """The reports attached to a case, oldest first."""
    with conn.cursor(row_factory=class_row(ServiceRequest)) as cur:
        cur.execute(
            f"""SELECT {_COLUMNS} FROM service_requests r LEFT JOIN cases c USING (case_id)
                WHERE r.tenant_id = %s AND r.case_id = %s ORDER BY r.request_id""",
            (tenant_id, case_id),
        )
        return cur.fetchall()


def add_photo(conn: psycopg.Connection, tenant_id: str, request_id: int, jpeg: bytes, size: tuple[int, int]) -> int:
    row = conn.execute(
        """INSERT INTO report_photos (tenant_id, request_id, width, height, jpeg) VALUES (%s, %s, %s, %s, %s)
           RETURNING photo_id""",
        (tenant_id, request_id, size[0], size[1], jpeg),
    ).fetchone()
    if row is None:
        raise RowMissing("INSERT ... RETURNING returned nothing")
    return int(row[0])


def photos(conn: psycopg.Connection, tenant_id: str, request_ids: list[int]) -> list[Photo]:
    """The photos of a tenant's reports, in the order they were taken."""
    with conn.cursor(row_factory=class_row(Photo)) as cur:
        cur.execute(
            """SELECT photo_id, request_id, width, height FROM report_photos
               WHERE tenant_id = %s AND request_id = ANY(%s) ORDER BY photo_id""",
            (tenant_id, request_ids),
        )
        return cur.fetchall()


def photo_jpeg(conn: psycopg.Connection, tenant_id: str, photo_id: int) -> bytes | None:
    row = conn.execute(
        "SELECT jpeg FROM report_photos WHERE tenant_id = %s AND photo_id = %s", (tenant_id, photo_id)
    ).fetchone()
    return None if row is None else bytes(row[0])


def recent(conn: psycopg.Connection, tenant_id: str, column: str, key: str, since: float) -> int:
    """Reports of a tenant since ``since`` by one reporter (``column`` reporter_key) or network address
    (client_key)."""
    if column not in ("reporter_key", "client_key"):
        raise ValueError(column)
    query = sql.SQL(
        "SELECT count(*) FROM service_requests WHERE tenant_id = %s AND {} = %s AND requested_at >= to_timestamp(%s)"
    ).format(sql.Identifier(column))
    row = conn.execute(query, (tenant_id, key, since)).fetchone()
    return int(row[0]) if row else 0


def by_triage(
    conn: psycopg.Connection, tenant_id: str, triage: str | None, limit: int, offset: int
) -> list[ServiceRequest]:
    """A tenant's reports, oldest first; those in one triage state (inbox, attached, dismissed) when given."""
    with conn.cursor(row_factory=class_row(ServiceRequest)) as cur:
        cur.execute(
            f"""SELECT {_COLUMNS} FROM service_requests r LEFT JOIN cases c USING (case_id)
                WHERE r.tenant_id = %s AND (%s::text IS NULL OR r.triage = %s)
                ORDER BY r.requested_at, r.request_id LIMIT %s OFFSET %s""",
            (tenant_id, triage, triage, limit, offset),
        )
        return cur.fetchall()


def triaged(
    conn: psycopg.Connection,
    tenant_id: str,
    request_id: int,
    *,
    triage: str,
    by: str,
    case_id: int | None = None,
    asset_id: str | None = None,
    note: str | None = None,
) -> None:
    """Record an operator's decision on a report waiting in the inbox."""
    conn.execute(
        """UPDATE service_requests SET triage = %s, triaged_by = %s, triaged_at = now(), triage_note = %s,
                  case_id = coalesce(%s, case_id), asset_id = coalesce(%s, asset_id)
           WHERE tenant_id = %s AND request_id = %s""",
        (triage, by, note, case_id, asset_id, tenant_id, request_id),
    )


def reporters_of_case(conn: psycopg.Connection, case_id: int) -> list[tuple[int, str]]:
    """(request id, e-mail address) of the reports attached to a case whose reporters asked for updates."""
    rows = conn.execute(
        "SELECT request_id, email FROM service_requests WHERE case_id = %s AND email IS NOT NULL ORDER BY 1",
        (case_id,),
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def email_of(conn: psycopg.Connection, tenant_id: str, request_id: int) -> str | None:
    """The address a reporter gave for updates, for sending them (never shown)."""
    row = conn.execute(
        "SELECT email FROM service_requests WHERE tenant_id = %s AND request_id = %s", (tenant_id, request_id)
    ).fetchone()
    return None if row is None or row[0] is None else str(row[0])
