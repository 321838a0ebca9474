"""Citizen reports: one way in. A report near an asset with an active case joins that case; otherwise it opens
one on the nearest asset of the reported kind, like a finding would.

Only what handling needs is kept: the service, where, what the reporter wrote and, if they gave one, an e-mail
address for updates. Names and phone numbers are not accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from cases import lifecycle
from cases.errors import ReportError
from cases.policy import Facts, Policy
from storage import case_assets as asset_store
from storage import cases as store
from storage import citizens as requests_store
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


def submit(conn: psycopg.Connection, policy: Policy, report: Report, now: float) -> ServiceRequest:
    """Store a report and attach it to a case (existing or new); returns the stored request."""
    service = policy.services.get(report.service_code)
    if service is None:
        raise ReportError(f"unknown service_code {report.service_code!r}")
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
    asset_id = None
    case_id = None
    if report.lat is not None and report.lon is not None:
        near = asset_store.nearest_assets(
            conn, report.tenant_id, report.lat, report.lon, service.kind, policy.attach_distance_m
        )
        if near:
            asset_id = near[0].asset_id
            case_id = _case_for(conn, policy, report, service.fault, asset_id, now)
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
        ),
    )
    if case_id is not None:
        store.add_event(
            conn,
            case_id,
            f"citizen:{request.request_id}",
            "citizen report",
            {"request_id": request.request_id, "service_code": report.service_code},
        )
    return request


def _case_for(  # noqa: PLR0917 - one report and where it points
    conn: psycopg.Connection, policy: Policy, report: Report, fault: str, asset_id: str, now: float
) -> int:
    """The active case the report belongs to: on the asset (any fault), its circuit or its cabinet; or a new one."""
    chain = [asset_id]
    a = asset_store.asset(conn, report.tenant_id, asset_id)
    if a is not None and a.parent_id:
        chain.append(a.parent_id)
        chain.append(asset_store.root_of(conn, report.tenant_id, asset_id))
    for candidate in chain:
        active = store.active_cases_on(conn, report.tenant_id, candidate)
        if active:
            return int(active[0].case_id)
    subject = lifecycle.Subject(report.tenant_id, asset_id, fault, "major", now)
    facts = Facts(fault=fault, kind=a.kind if a else "", criticality=int(a.criticality) if a else 2)
    created = lifecycle.open_case(conn, policy, subject, facts, now, "citizen", lifecycle.SyncReport())
    if created is None:
        raise ReportError("the case could not be opened")
    return int(created.case_id)
