"""``/open311/v2``: Open311 GeoReport v2 for citizens and their apps: discovery, services, definitions, service
requests (POST and GET), each in XML (the spec's default) and JSON; errors in the spec's shape.

Posting follows the spec's arguments: ``attribute[code]`` values are checked against the service's definition and
kept; ``media_url`` (a web address) is kept and shown; photos may come as ``media`` files (the same handling as
the citizens' report page: at most three, re-encoded without metadata, shown to crews and operators only).
Names and phone numbers (``first_name``, ``last_name``, ``phone``) are not kept. ``api_key`` is an Open311
application's key (``lykta cases tokens create --role app``): optional or required by the tenant's policy, and a
key given must be valid. Reading needs no key.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at definition time.

import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.datastructures import FormData, UploadFile

from cases import citizen, texts
from cases.api_auth import ApiError, Clock, Db, Rules, check_token
from cases.errors import ReportError, TooManyReports
from cases.open311_format import FORMATS, document
from cases.policy import Policies, Policy
from floor.timefmt import iso, iso_or_none
from storage import citizens as requests_store
from storage import tenants
from storage.citizens import ServiceRequest

router = APIRouter(prefix="/open311", tags=["open311"])
SPEC = "http://wiki.open311.org/GeoReport_v2"
STARTED = iso(time.time())
"""the discovery document's changeset: it changes when the service starts again (policies are read then)"""
DEFAULT_DAYS = 90
"""GET requests without dates: the most recent 90 days; a range may not span more (the spec's rule)"""


class Service(BaseModel):
    service_code: str
    service_name: str
    description: str
    metadata: bool
    type: str
    keywords: str
    group: str


class AttributeValue(BaseModel):
    key: str
    name: str


class Attribute(BaseModel):
    variable: bool
    code: str
    datatype: str
    required: bool
    datatype_description: str
    order: int
    description: str
    values: list[AttributeValue]


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


class Endpoint(BaseModel):
    specification: str
    url: str
    changeset: str
    type: str
    formats: list[str]


class Discovery(BaseModel):
    changeset: str
    contact: str
    key_service: str
    endpoints: list[Endpoint]


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


def _format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ApiError(400, f"format {fmt!r} is not supported: use .xml or .json")
    return fmt


def _listed(value: str | None, known: set[str] | tuple[str, ...], name: str) -> list[str] | None:
    """A comma list of the spec (``a,b``), each item one of ``known``."""
    if value is None or not value.strip():
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in known]
    if unknown:
        raise ApiError(400, f"unknown {name} {', '.join(map(repr, unknown))}: use {', '.join(sorted(known))}")
    return items


def _request(policies: Policies, tenant: str, lang: str, r: ServiceRequest) -> dict[str, Any]:
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
        media_url=r.media_url,
    ).model_dump()


def public_base(request: Request) -> str:
    """How people reach this service: ``api_public_url`` when it is set, else the address they used."""
    configured: str | None = getattr(request.app.state, "public_url", None)
    return (configured or str(request.base_url)).rstrip("/")


@router.get("/discovery.{fmt}", summary="GeoReport v2: discovery", response_model=Discovery)
@router.get("/v2/discovery.{fmt}", summary="GeoReport v2: discovery", response_model=Discovery)
def discovery(request: Request, policies: Rules, fmt: str) -> Response:
    endpoint = Endpoint(
        specification=SPEC,
        url=public_base(request) + "/open311/v2",
        changeset=STARTED,
        type="production",
        formats=["text/xml", "application/json"],
    )
    policy = policies.get(None)
    doc = Discovery(
        changeset=STARTED,
        contact=policy.contact,
        key_service="Ask the municipality for an application key (api_key); "
        + ("posting needs one." if policy.api_key == "required" else "posting works without one."),
        endpoints=[endpoint],
    )
    return document(_format(fmt), "discovery", doc.model_dump())


@router.get("/v2/services.{fmt}", summary="GeoReport v2: service list", response_model=list[Service])
def services(conn: Db, policies: Rules, fmt: str, jurisdiction_id: str | None = None) -> Response:
    fmt = _format(fmt)
    tenant = jurisdiction(conn, jurisdiction_id)
    lang = tenants.language(conn, tenant)
    listed = [
        Service(
            service_code=s.code,
            service_name=texts.fault(s.fault, lang),
            description=texts.fault(s.fault, lang),
            metadata=bool(s.attributes),
            type="realtime",
            keywords=s.fault,
            group=s.group,
        ).model_dump()
        for s in policies.get(tenant).services.values()
    ]
    return document(fmt, "services", listed)


def _text(by_language: dict[str, str], lang: str) -> str:
    return by_language.get(lang) or by_language.get("en") or next(iter(by_language.values()))


@router.get("/v2/services/{service_code}.{fmt}", summary="GeoReport v2: definition", response_model=ServiceDefinition)
def service_definition(
    conn: Db, policies: Rules, service_code: str, fmt: str, jurisdiction_id: str | None = None
) -> Response:
    fmt = _format(fmt)
    tenant = jurisdiction(conn, jurisdiction_id)
    service = policies.get(tenant).services.get(service_code)
    if service is None:
        raise ApiError(404, f"unknown service_code {service_code!r}")
    lang = tenants.language(conn, tenant)
    attributes = [
        Attribute(
            variable=True,
            code=a.code,
            datatype=a.datatype,
            required=a.required,
            datatype_description="",
            order=n,
            description=_text(a.description, lang),
            values=[AttributeValue(key=k, name=_text(v, lang)) for k, v in a.values.items()],
        )
        for n, a in enumerate(service.attributes, start=1)
    ]
    return document(
        fmt, "service_definition", ServiceDefinition(service_code=service_code, attributes=attributes).model_dump()
    )


async def _form(request: Request) -> AsyncIterator[FormData]:
    """The posted form as a whole: attributes come as ``attribute[code]`` and photos as ``media`` files (their
    temporary files closed after the request)."""
    form = await request.form(max_files=citizen.MAX_PHOTOS, max_fields=200)
    try:
        yield form
    finally:
        await form.close()


def _attributes(form: FormData) -> dict[str, list[str]]:
    given: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if key.startswith("attribute[") and isinstance(value, str):
            code = key[len("attribute[") :].removesuffix("[]").removesuffix("]")
            given.setdefault(code, []).append(value)
    return given


async def photos_of(form: FormData, field: str) -> list[bytes]:
    """The photo files of a posted form (empty file inputs left out)."""
    found = []
    for value in form.getlist(field):
        if isinstance(value, UploadFile):
            data = await value.read(citizen.MAX_PHOTO_BYTES + 1)
            if data:
                found.append(data)
    return found


async def _media(form: Annotated[FormData, Depends(_form)]) -> list[bytes]:
    return await photos_of(form, "media")


def _check_key(conn: psycopg.Connection, policy: Policy, tenant: str, api_key: str | None) -> None:
    if not api_key:
        if policy.api_key == "required":
            raise ApiError(403, "this municipality needs an api_key to post reports: ask it for one")
        return
    who = check_token(conn, api_key.strip())
    if isinstance(who, str) or who.role != "app" or who.tenant_id != tenant:
        raise ApiError(403, "invalid api_key" + (f": {who}" if isinstance(who, str) and "expired" in who else ""))


@router.post("/v2/requests.{fmt}", summary="GeoReport v2: report a problem", response_model=list[RequestCreated])
def post_request(
    request: Request,
    conn: Db,
    policies: Rules,
    clock: Clock,
    fmt: str,
    form: Annotated[FormData, Depends(_form)],
    media: Annotated[list[bytes], Depends(_media)],
    service_code: Annotated[str, Form(max_length=64)],
    jurisdiction_id: Annotated[str | None, Form(max_length=63)] = None,
    api_key: Annotated[str | None, Form(max_length=200)] = None,
    lat: Annotated[float | None, Form()] = None,
    long: Annotated[float | None, Form()] = None,
    address_string: Annotated[str | None, Form(max_length=500)] = None,
    email: Annotated[str | None, Form(max_length=254)] = None,
    description: Annotated[str | None, Form(max_length=4000)] = None,
    media_url: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    fmt = _format(fmt)
    tenant = jurisdiction(conn, jurisdiction_id)
    policy = policies.get(tenant)
    _check_key(conn, policy, tenant, api_key)
    client = request.client.host if request.client else None
    report = citizen.Report(
        tenant, service_code, lat, long, address_string, description, email or None, client,
        media_url=media_url or None, attributes=_attributes(form),
    )  # fmt: skip
    stored = receive(conn, policy, report, media, clock())
    lang = tenants.language(conn, tenant)
    notice = texts.citizen_status(stored.case_status, stored.resolution, None, lang, stored.triage)
    created = RequestCreated(service_request_id=str(stored.request_id), service_notice=notice, account_id=None)
    return document(fmt, "service_requests", [created.model_dump()])


def receive(
    conn: psycopg.Connection, policy: Policy, report: citizen.Report, photos: list[bytes], now: float
) -> ServiceRequest:
    """Store a citizen's report (Open311 or the report page: one path), committed; refusals as API errors."""
    try:
        with conn.transaction():
            stored = citizen.submit(conn, policy, report, now, photos)
    except TooManyReports as exc:
        raise ApiError(429, str(exc), retry_after=exc.retry_after_s) from None
    except ReportError as exc:
        raise ApiError(400, str(exc)) from None
    conn.commit()
    return stored


@router.get("/v2/requests.{fmt}", summary="GeoReport v2: find requests", response_model=list[RequestOut])
def get_requests(
    conn: Db,
    policies: Rules,
    clock: Clock,
    fmt: str,
    jurisdiction_id: str | None = None,
    service_request_id: Annotated[str | None, Query(max_length=2000, pattern=r"^\d+(,\d+)*$")] = None,
    service_code: Annotated[str | None, Query(max_length=2000)] = None,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    status: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    fmt = _format(fmt)
    tenant = jurisdiction(conn, jurisdiction_id)
    codes = _listed(service_code, set(policies.get(tenant).services), "service_code")
    statuses = _listed(status, ("open", "closed"), "status")
    ids = [int(i) for i in service_request_id.split(",")] if service_request_id else None
    end = end_date.timestamp() if end_date else None
    start = start_date.timestamp() if start_date else None
    if ids is None:  # the ids override every other argument (the spec)
        if start is None:
            start = (end if end is not None else clock()) - DEFAULT_DAYS * 86400
        if end is not None and end - start > DEFAULT_DAYS * 86400:
            raise ApiError(400, f"start_date to end_date may not span more than {DEFAULT_DAYS} days")
    rows = requests_store.search(
        conn,
        tenant,
        requests_store.Filters(ids, codes, start, end, None if statuses is None or len(statuses) == 2 else statuses[0]),
        1000,
    )
    lang = tenants.language(conn, tenant)  # once, not once per row
    return document(fmt, "service_requests", [_request(policies, tenant, lang, r) for r in rows])


@router.get(
    "/v2/requests/{service_request_id}.{fmt}", summary="GeoReport v2: one request", response_model=list[RequestOut]
)
def get_request(
    conn: Db, policies: Rules, service_request_id: int, fmt: str, jurisdiction_id: str | None = None
) -> Response:
    fmt = _format(fmt)
    tenant = jurisdiction(conn, jurisdiction_id)
    row = requests_store.get(conn, tenant, service_request_id)
    if row is None:
        raise ApiError(404, f"service request {service_request_id} not found")
    return document(fmt, "service_requests", [_request(policies, tenant, tenants.language(conn, tenant), row)])
