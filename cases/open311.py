"""``/open311/v2``: Open311 GeoReport v2 for citizens and their apps: services, definitions, service requests."""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at definition time.

from datetime import datetime
from typing import Annotated

import psycopg
from fastapi import APIRouter, Form, Query, Request
from pydantic import BaseModel

from cases import citizen, texts
from cases.api_auth import ApiError, Clock, Db, Rules
from cases.errors import ReportError, TooManyReports
from cases.policy import Policies
from floor.timefmt import iso_or_none
from storage import citizens as requests_store
from storage import tenants
from storage.citizens import ServiceRequest

router = APIRouter(prefix="/open311/v2", tags=["open311"])


class Service(BaseModel):
    service_code: str
    service_name: str
    description: str
    metadata: bool
    type: str
    keywords: str
    group: str


class Attribute(BaseModel):
    variable: bool
    code: str
    datatype: str
    required: bool
    datatype_description: str
    order: int
    description: str


class ServiceDefinition(BaseModel):
    service_code: str
    attributes: list[Attribute]


class RequestCreated(BaseModel):
    service_request_id: str
    service_notice: str
    account_id: str | None


class RequestOut(BaseModel):
    service_request_id: str
    status: str
    status_notes: str
    service_name: str
    service_code: str
    description: str | None
    agency_responsible: str
    service_notice: str | None
    requested_datetime: str | None
    updated_datetime: str | None
    expected_datetime: str | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float | None
    long: float | None
    media_url: str | None


def jurisdiction(conn: psycopg.Connection, jurisdiction_id: str | None) -> str:
    ids = [t.tenant_id for t in tenants.all_tenants(conn)]
    conn.rollback()
    if jurisdiction_id is None:
        if len(ids) == 1:
            return ids[0]
        raise ApiError(400, "jurisdiction_id is required: this installation serves " + ", ".join(ids))
    if jurisdiction_id not in ids:
        raise ApiError(404, f"unknown jurisdiction_id {jurisdiction_id!r}")
    return jurisdiction_id


def _json_only(fmt: str) -> None:
    if fmt != "json":
        raise ApiError(400, f"format {fmt!r} is not supported: use .json")


def _request(policies: Policies, tenant: str, lang: str, r: ServiceRequest) -> RequestOut:
    service = policies.get(tenant).services.get(r.service_code)
    return RequestOut(
        service_request_id=str(r.request_id),
        status="closed" if r.case_status == "resolved" or r.triage == "dismissed" else "open",
        status_notes=texts.citizen_status(r.case_status, r.resolution, r.closing_note or r.triage_note, lang, r.triage),
        service_name=texts.fault(service.fault, lang) if service else r.service_code,
        service_code=r.service_code,
        description=r.description,
        agency_responsible=tenant,
        service_notice=None,
        requested_datetime=iso_or_none(r.requested_at),
        updated_datetime=iso_or_none(r.updated_at or r.requested_at),
        expected_datetime=iso_or_none(r.due_at),
        address=r.address,
        address_id=None,
        zipcode=None,
        lat=r.lat,
        long=r.lon,
        media_url=None,
    )


@router.get("/services.{fmt}", summary="GeoReport v2: service list")
def services(conn: Db, policies: Rules, fmt: str, jurisdiction_id: str | None = None) -> list[Service]:
    _json_only(fmt)
    tenant = jurisdiction(conn, jurisdiction_id)
    lang = tenants.language(conn, tenant)
    return [
        Service(
            service_code=s.code,
            service_name=texts.fault(s.fault, lang),
            description=texts.fault(s.fault, lang),
            metadata=True,
            type="realtime",
            keywords=s.fault,
            group=s.group,
        )
        for s in policies.get(tenant).services.values()
    ]


@router.get("/services/{service_code}.{fmt}", summary="GeoReport v2: definition")
def service_definition(
    conn: Db, policies: Rules, service_code: str, fmt: str, jurisdiction_id: str | None = None
) -> ServiceDefinition:
    _json_only(fmt)
    tenant = jurisdiction(conn, jurisdiction_id)
    if service_code not in policies.get(tenant).services:
        raise ApiError(404, f"unknown service_code {service_code!r}")
    details = Attribute(
        variable=True,
        code="details",
        datatype="text",
        required=False,
        datatype_description="What you saw (optional)",
        order=1,
        description="Details",
    )
    return ServiceDefinition(service_code=service_code, attributes=[details])


@router.post("/requests.{fmt}", summary="GeoReport v2: report a problem")
def post_request(
    request: Request,
    conn: Db,
    policies: Rules,
    clock: Clock,
    fmt: str,
    service_code: Annotated[str, Form(max_length=64)],
    jurisdiction_id: Annotated[str | None, Form(max_length=63)] = None,
    lat: Annotated[float | None, Form()] = None,
    long: Annotated[float | None, Form()] = None,
    address_string: Annotated[str | None, Form(max_length=500)] = None,
    email: Annotated[str | None, Form(max_length=254)] = None,
    description: Annotated[str | None, Form(max_length=4000)] = None,
) -> list[RequestCreated]:
    _json_only(fmt)
    tenant = jurisdiction(conn, jurisdiction_id)
    client = request.client.host if request.client else None
    report = citizen.Report(tenant, service_code, lat, long, address_string, description, email or None, client)
    try:
        with conn.transaction():
            stored = citizen.submit(conn, policies.get(tenant), report, clock())
    except TooManyReports as exc:
        raise ApiError(429, str(exc), retry_after=exc.retry_after_s) from None
    except ReportError as exc:
        raise ApiError(400, str(exc)) from None
    conn.commit()
    lang = tenants.language(conn, tenant)
    notice = texts.citizen_status(stored.case_status, stored.resolution, None, lang, stored.triage)
    return [RequestCreated(service_request_id=str(stored.request_id), service_notice=notice, account_id=None)]


@router.get("/requests.{fmt}", summary="GeoReport v2: find requests")
def get_requests(
    conn: Db,
    policies: Rules,
    fmt: str,
    jurisdiction_id: str | None = None,
    service_request_id: Annotated[str | None, Query(max_length=2000, pattern=r"^\d+(,\d+)*$")] = None,
    service_code: Annotated[str | None, Query(max_length=64)] = None,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    status: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
) -> list[RequestOut]:
    _json_only(fmt)
    tenant = jurisdiction(conn, jurisdiction_id)
    ids = [int(i) for i in service_request_id.split(",")] if service_request_id else None
    rows = requests_store.search(
        conn,
        tenant,
        ids,
        service_code,
        start_date.timestamp() if start_date else None,
        end_date.timestamp() if end_date else None,
        status,
        1000,
    )
    lang = tenants.language(conn, tenant)  # once, not once per row
    return [_request(policies, tenant, lang, r) for r in rows]


@router.get("/requests/{service_request_id}.{fmt}", summary="GeoReport v2: one request")
def get_request(
    conn: Db, policies: Rules, service_request_id: int, fmt: str, jurisdiction_id: str | None = None
) -> list[RequestOut]:
    _json_only(fmt)
    tenant = jurisdiction(conn, jurisdiction_id)
    row = requests_store.get(conn, tenant, service_request_id)
    if row is None:
        raise ApiError(404, f"service request {service_request_id} not found")
    return [_request(policies, tenant, tenants.language(conn, tenant), row)]
