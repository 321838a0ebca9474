"""What the HTTP API answers, as models: FastAPI checks every answer against them and OpenAPI documents them.

Times are RFC 3339 strings in UTC. The converters take the typed rows of ``storage`` and nothing else.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from floor.timefmt import iso, iso_or_none
from storage.api import CaseReport, OrderView
from storage.cases import Case, CaseEvent, CaseFinding
from storage.citizens import ServiceRequest
from storage.work_orders import Note, WorkOrder


def _at(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat()


# -- bodies ---------------------------------------------------------------------------------------------------


class NoteBody(BaseModel):
    note: str | None = Field(default=None, max_length=4000, description="what was done, or why it was rejected")


class AssignmentBody(BaseModel):
    crew_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="the crew that gets the case")


# -- work orders --------------------------------------------------------------------------------------------------


class WorkOrderTimes(BaseModel):
    work_order_id: int
    case_id: int
    tenant_id: str
    crew_id: str | None
    skill: str
    status: str = Field(description="new (no crew yet), assigned, in_progress, done, rejected or cancelled")
    title: str
    reject_reason: str | None
    created_at: str | None
    assigned_at: str | None
    accepted_at: str | None
    started_at: str | None
    finished_at: str | None
    updated_at: str | None

    @classmethod
    def of(cls, w: WorkOrder) -> WorkOrderTimes:
        return cls(**_times(asdict(w)))


class WorkOrderOut(WorkOrderTimes):
    """A work order with its case and asset, as a crew sees it."""

    asset_id: str
    fault: str
    priority: str
    case_status: str
    due_at: str | None
    observed_at: str | None
    lat: float | None
    lon: float | None
    asset_name: str | None
    district: str | None

    @classmethod
    def view(cls, o: OrderView) -> WorkOrderOut:
        row = _times(asdict(o))
        row["due_at"], row["observed_at"] = iso(o.due_at), iso(o.observed_at)
        return cls(**row)


class NoteOut(BaseModel):
    at: str
    author: str
    note: str

    @classmethod
    def of(cls, n: Note) -> NoteOut:
        return cls(at=n.at.astimezone(UTC).isoformat(), author=n.author, note=n.note)


class WorkOrderDetail(WorkOrderOut):
    notes: list[NoteOut]


def _times(row: dict[str, Any]) -> dict[str, Any]:
    for k in ("created_at", "assigned_at", "accepted_at", "started_at", "finished_at", "updated_at"):
        row[k] = _at(row[k])
    return row


# -- cases --------------------------------------------------------------------------------------------------------


_CASE_TIMES = ("observed_at", "opened_at", "due_at", "breached_at", "fault_cleared_at", "repaired_at", "resolved_at")


class CaseOut(BaseModel):
    case_id: int
    tenant_id: str
    asset_id: str
    fault: str
    status: str = Field(description="open, in_repair, verifying or resolved")
    priority: str
    severity: str
    source: str = Field(description="telemetry or citizen")
    observed_at: str | None
    opened_at: str | None
    due_at: str | None
    breached_at: str | None
    escalation: int
    fault_cleared_at: str | None
    repaired_at: str | None
    resolved_at: str | None
    resolution: str | None

    @classmethod
    def of(cls, c: Case) -> CaseOut:
        row = asdict(c)
        for k in (
            "observed_at",
            "opened_at",
            "due_at",
            "breached_at",
            "fault_cleared_at",
            "repaired_at",
            "resolved_at",
        ):
            row[k] = iso_or_none(row[k])
        return cls(**row)


class FindingOut(BaseModel):
    finding_id: int
    asset_id: str
    fault: str
    status: str
    observed_at: str | None
    cleared_at: str | None

    @classmethod
    def of(cls, f: CaseFinding) -> FindingOut:
        return cls(
            finding_id=f.finding_id,
            asset_id=f.asset_id,
            fault=f.fault,
            status=f.status,
            observed_at=iso(f.observed_at),
            cleared_at=iso_or_none(f.cleared_at),
        )


class EventOut(BaseModel):
    event_id: int
    at: str
    actor: str
    action: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, e: CaseEvent) -> EventOut:
        return cls(event_id=e.event_id, at=e.at.isoformat(), actor=e.actor, action=e.action, detail=e.detail)


class CaseDetail(CaseOut):
    findings: list[FindingOut]
    events: list[EventOut]
    work_orders: list[WorkOrderTimes]
    citizen_reports: list[CaseReport]


class AssignmentOut(BaseModel):
    case_id: int
    work_order_id: int
    crew_id: str


# -- citizen reports ------------------------------------------------------------------------------------------------


class ReportOut(BaseModel):
    """A citizen report as an operator triages it (never the reporter's e-mail address)."""

    request_id: int
    service_code: str
    description: str | None
    lat: float | None
    lon: float | None
    address: str | None
    asset_id: str | None
    case_id: int | None
    requested_at: str
    triage: str = Field(description="inbox (waiting for an operator), attached (to a case) or dismissed")
    triage_note: str | None
    media_url: str | None = Field(description="a photo's web address the reporter's app gave")
    attributes: dict[str, Any] = Field(description="the values of the service's attributes")
    photos: int = Field(description="photos taken with it: GET /api/v1/reports/{request_id}/photos")

    @classmethod
    def of(cls, r: ServiceRequest) -> ReportOut:
        return cls(
            request_id=r.request_id,
            service_code=r.service_code,
            description=r.description,
            lat=r.lat,
            lon=r.lon,
            address=r.address,
            asset_id=r.asset_id,
            case_id=r.case_id,
            requested_at=iso(r.requested_at),
            triage=r.triage,
            triage_note=r.triage_note,
            media_url=r.media_url,
            attributes=r.attributes,
            photos=r.photos,
        )


class PhotoOut(BaseModel):
    photo_id: int
    width: int
    height: int
    url: str = Field(description="the JPEG (no metadata), for an operator's token")


class AttachBody(BaseModel):
    case_id: int | None = Field(default=None, description="an active case of the tenant to join")
    asset_id: str | None = Field(
        default=None, max_length=128, description="or an asset: a case is opened there for the report's fault"
    )


class DismissBody(BaseModel):
    note: str = Field(min_length=1, max_length=4000, description="what the reporter reads: why nothing is done")
