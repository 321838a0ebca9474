"""Citizen reports: one way in. A report near an asset with an active case joins that case (one that a crew
has finished and the telemetry is verifying opens again: the citizen says it is still broken). Otherwise, by
the municipality's policy, it waits in the operators' inbox (the default) or opens a case on the nearest asset
of the reported kind at once, like a finding would. A report with no asset near always waits in the inbox.

Only what handling needs is kept: the service, where, what the reporter wrote and, if they gave one, an e-mail
address for updates. Names and phone numbers are not accepted. Rate limits count reports per e-mail address and
per network address, both kept as digests only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import psycopg

from cases import citizen_mail, lifecycle, photos, routing
from cases.errors import ReportError, TooManyReports
from cases.policy import Facts, Policy, Service
from storage import case_assets as asset_store
from storage import cases as store
from storage import citizens as requests_store
from storage import work_orders as order_store
from storage.cases import Case
from storage.citizens import ServiceRequest


@dataclass(frozen=True)
class Report:
    tenant_id: str
    service_code: str
    lat: float | None
    lon: float | None
    address: str | None
    description: str | None
    email: str | None
    client: str | None = None
    """the network address it came from (for the rate limit only)"""
    media_url: str | None = None
    """a photo's web address (Open311 clients host their own)"""
    attributes: dict[str, list[str]] = field(default_factory=dict)
    """values given for the service's attributes, by code"""


MAX_PHOTOS = 3
MAX_PHOTO_BYTES = photos.MAX_BYTES
_URL = re.compile(r"^https?://[^\s<>\"']{1,1990}$")


def attribute_values(service: Service, given: dict[str, list[str]]) -> dict[str, Any]:
    """The attribute values of a report, checked against its service's definition."""
    known = {a.code: a for a in service.attributes}
    unknown = sorted(set(given) - set(known))
    if unknown:
        listed = ", ".join(known) or "none"
        raise ReportError(f"{service.code} has no attribute {', '.join(unknown)} (its attributes: {listed})")
    values: dict[str, Any] = {}
    for code, a in known.items():
        items = [v.strip() for v in given.get(code, []) if v.strip()]
        if not items:
            if a.required:
                raise ReportError(f"attribute[{code}] is required")
            continue
        if a.datatype.endswith("list"):
            wrong = [v for v in items if v not in a.values]
            if wrong or (a.datatype == "singlevaluelist" and len(items) > 1):
                raise ReportError(f"attribute[{code}] must be one of {', '.join(a.values)}, not {', '.join(items)}")
            values[code] = items[0] if a.datatype == "singlevaluelist" else items
        elif a.datatype == "number":
            try:
                values[code] = float(items[0])
            except ValueError:
                raise ReportError(f"attribute[{code}] must be a number") from None
        else:
            values[code] = items[0][:4000]
    return values


def _digest(text: str | None) -> str | None:
    return None if not text else hashlib.sha256(text.strip().lower().encode()).hexdigest()


def _limit(conn: psycopg.Connection, policy: Policy, report: Report, now: float) -> tuple[str | None, str | None]:
    """The report's reporter and address digests; TooManyReports when either made too many reports lately."""
    reporter, client = _digest(report.email), _digest(report.client)
    if reporter and requests_store.recent(conn, report.tenant_id, "reporter_key", reporter, now - 86400) >= (
        policy.reports_per_reporter_day
    ):
        raise TooManyReports(f"at most {policy.reports_per_reporter_day} reports a day from one e-mail address", 3600)
    if client and requests_store.recent(conn, report.tenant_id, "client_key", client, now - 3600) >= (
        policy.reports_per_address_hour
    ):
        raise TooManyReports(f"at most {policy.reports_per_address_hour} reports an hour from one address", 600)
    return reporter, client


def submit(
    conn: psycopg.Connection, policy: Policy, report: Report, now: float, photo_files: list[bytes] | None = None
) -> ServiceRequest:
    """Store a report with its photos, and attach it to the active case where it points or (policy ``dispatch``)
    a new one; else it waits in the inbox. Returns the stored request."""
    service = policy.services.get(report.service_code)
    if service is None:
        raise ReportError(f"unknown service_code {report.service_code!r}")
    attributes = attribute_values(service, report.attributes)
    if report.media_url is not None and not _URL.match(report.media_url):
        raise ReportError("media_url must be a web address (http or https)")
    if len(photo_files or []) > MAX_PHOTOS:
        raise ReportError(f"at most {MAX_PHOTOS} photos a report")
    cleaned = [photos.clean(data) for data in photo_files or []]
    if report.lat is None or report.lon is None:
        if not report.address:
            raise ReportError("a location is required: lat and long, or address_string")
    elif not (-90 <= report.lat <= 90 and -180 <= report.lon <= 180):
        raise ReportError("lat must be within -90..90 and long within -180..180")
    if report.email is not None and ("@" not in report.email or len(report.email) > 254):
        raise ReportError("email is not an e-mail address")
    if report.description is not None and len(report.description) > 4000:
        raise ReportError("description is longer than 4000 characters")
    store.lock_tenant(conn, report.tenant_id)
    reporter, client = _limit(conn, policy, report, now)
    asset_id = None
    case_id = None
    joined: Case | None = None
    if report.lat is not None and report.lon is not None:
        near = asset_store.nearest_assets(
            conn, report.tenant_id, report.lat, report.lon, service.kind, policy.attach_distance_m
        )
        if near:
            asset_id = near[0].asset_id
            joined = _active_case(conn, report.tenant_id, asset_id)
            if joined is not None:
                case_id = joined.case_id
            elif policy.triage == "dispatch":
                case_id = open_case(conn, policy, report.tenant_id, service.fault, asset_id, now)
    request = requests_store.insert(
        conn,
        requests_store.NewReport(
            tenant_id=report.tenant_id,
            service_code=report.service_code,
            description=report.description,
            lat=report.lat,
            lon=report.lon,
            address=report.address,
            email=report.email,
            asset_id=asset_id,
            case_id=case_id,
            at=now,
            triage="attached" if case_id is not None else "inbox",
            reporter_key=reporter,
            client_key=client,
            media_url=report.media_url,
            attributes=attributes,
        ),
    )
    for jpeg, size in cleaned:
        requests_store.add_photo(conn, report.tenant_id, request.request_id, jpeg, size)
    citizen_mail.received(conn, report.tenant_id, request.request_id, now)
    if case_id is not None:
        store.add_event(
            conn,
            case_id,
            f"citizen:{request.request_id}",
            "citizen report",
            {"request_id": request.request_id, "service_code": report.service_code},
        )
        _tell_crew(conn, policy, joined, case_id, request.request_id, now)
    return _reread(conn, report.tenant_id, request.request_id) if cleaned else request


def _active_case(conn: psycopg.Connection, tenant_id: str, asset_id: str) -> Case | None:
    """The active case a report on the asset belongs to: on the asset (any fault), its circuit or its cabinet."""
    chain = [asset_id]
    a = asset_store.asset(conn, tenant_id, asset_id)
    if a is not None and a.parent_id:
        chain.append(a.parent_id)
        chain.append(asset_store.root_of(conn, tenant_id, asset_id))
    for candidate in chain:
        active = store.active_cases_on(conn, tenant_id, candidate)
        if active:
            return active[0]
    return None


def _tell_crew(  # noqa: PLR0917 - one report on one case
    conn: psycopg.Connection, policy: Policy, joined: Case | None, case_id: int, request_id: int, now: float
) -> None:
    """Once the report is linked to its case (so that the crew reads the citizen's words and photos): a case a
    crew finished, waiting for the telemetry to confirm the repair, opens again with a new work order (the
    citizen says it is still broken); a case opened for the report sends out its work order; an active one
    tells its crew about the report."""
    if joined is None:
        routing.announce_active(conn, case_id, "assigned", now)
    elif joined.status == "verifying":
        lifecycle.reopen(conn, policy, joined, now, "citizen", lifecycle.SyncReport())
    else:
        routing.announce_active(conn, case_id, f"report-{request_id}", now)
    c = store.existing_case(conn, case_id)
    order = order_store.active(conn, case_id)
    if order is not None and order.crew_id is not None:
        citizen_mail.planned(conn, c.tenant_id, case_id, now)


def open_case(  # noqa: PLR0917 - a case and what it is about
    conn: psycopg.Connection, policy: Policy, tenant_id: str, fault: str, asset_id: str, now: float
) -> int:
    """A new case for a citizen's report on an asset, with its work order (announced once the report is linked:
    :func:`_tell_crew`)."""
    a = asset_store.asset(conn, tenant_id, asset_id)
    subject = lifecycle.Subject(tenant_id, asset_id, fault, "major", now)
    facts = Facts(fault=fault, kind=a.kind if a else "", criticality=int(a.criticality) if a else 2)
    created = lifecycle.open_case(conn, policy, subject, facts, now, "citizen", lifecycle.SyncReport(), announce=False)
    if created is None:
        raise ReportError("the case could not be opened")
    return int(created.case_id)


def attach(  # noqa: PLR0917 - one decision on one report
    conn: psycopg.Connection,
    policy: Policy,
    tenant_id: str,
    request_id: int,
    actor: str,
    now: float,
    *,
    case_id: int | None = None,
    asset_id: str | None = None,
) -> ServiceRequest:
    """An operator attaches a report waiting in the inbox to an active case of the tenant, or to an asset (a case
    is opened there for the report's fault, or the asset's active case joined)."""
    r = _waiting(conn, tenant_id, request_id)
    if (case_id is None) == (asset_id is None):
        raise ReportError("attach to a case_id or to an asset_id (one of them)")
    joined: Case | None
    if case_id is not None:
        joined = store.case(conn, case_id)
        if joined is None or joined.tenant_id != tenant_id or joined.status == "resolved":
            raise ReportError(f"case {case_id} is not an active case of {tenant_id}", code="case_gone", case=case_id)
        target, asset = case_id, joined.asset_id
    else:
        a = asset_store.asset(conn, tenant_id, asset_id or "")
        service = policy.services.get(r.service_code)
        if a is None or service is None:
            raise ReportError(f"asset {asset_id!r} is not an asset of {tenant_id}", code="no_asset", asset=asset_id)
        joined = _active_case(conn, tenant_id, a.asset_id)
        target = joined.case_id if joined else open_case(conn, policy, tenant_id, service.fault, a.asset_id, now)
        asset = a.asset_id
    requests_store.triaged(conn, tenant_id, request_id, triage="attached", by=actor, case_id=target, asset_id=asset)
    store.add_event(conn, target, actor, "citizen report", {"request_id": request_id, "service_code": r.service_code})
    _tell_crew(conn, policy, joined, target, request_id, now)
    return _reread(conn, tenant_id, request_id)


def dismiss(  # noqa: PLR0917 - one decision on one report
    conn: psycopg.Connection, tenant_id: str, request_id: int, actor: str, note: str, now: float
) -> ServiceRequest:
    """An operator dismisses a report waiting in the inbox; its reporter reads the note."""
    _waiting(conn, tenant_id, request_id)
    if not note.strip():
        raise ReportError("dismissing a report needs a note for its reporter", code="note_needed")
    requests_store.triaged(conn, tenant_id, request_id, triage="dismissed", by=actor, note=note.strip())
    citizen_mail.ended(conn, tenant_id, request_id, now)
    return _reread(conn, tenant_id, request_id)


def _waiting(conn: psycopg.Connection, tenant_id: str, request_id: int) -> ServiceRequest:
    r = requests_store.get(conn, tenant_id, request_id)
    if r is None:
        raise LookupError(f"report {request_id} not found")
    if r.triage != "inbox":
        raise ReportError(
            f"report {request_id} is {r.triage}, not waiting in the inbox", code="report_done", report=request_id
        )
    return r


def _reread(conn: psycopg.Connection, tenant_id: str, request_id: int) -> ServiceRequest:
    r = requests_store.get(conn, tenant_id, request_id)
    if r is None:
        raise LookupError(f"report {request_id} vanished")
    return r
