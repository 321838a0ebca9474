"""``/api/v1``: work orders for crews, cases for operators; JSON with a bearer token per crew or operator."""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at definition time.

from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from cases import citizen, lifecycle, routing
from cases.api_auth import ApiError, Clock, Db, Operator, Principal, Rules, Who, no_unknown_query
from cases.api_models import (
    AssignmentBody,
    AssignmentOut,
    AttachBody,
    CaseDetail,
    CaseOut,
    DismissBody,
    EventOut,
    FindingOut,
    NoteBody,
    NoteOut,
    PhotoOut,
    ReportOut,
    WorkOrderDetail,
    WorkOrderOut,
    WorkOrderTimes,
)
from cases.errors import ReportError, WorkOrderError
from storage import api as api_store
from storage import cases as store
from storage import citizens as requests_store
from storage import work_orders as order_store
from storage.api import OrderView
from storage.cases import Case

router = APIRouter(prefix="/api/v1", dependencies=[Depends(no_unknown_query)])


def own_order(conn: psycopg.Connection, who: Principal, work_order_id: int) -> OrderView:
    """The work order, when it is the tenant's (and, for a crew, the crew's); 404 otherwise."""
    order = api_store.work_order(conn, who.tenant_id, work_order_id)
    if order is None or (who.crew_id is not None and order.crew_id != who.crew_id):
        raise ApiError(404, f"work order {work_order_id} not found")
    return order


def own_case(conn: psycopg.Connection, who: Principal, case_id: int) -> Case:
    c = store.case(conn, case_id)
    if c is None or c.tenant_id != who.tenant_id:
        raise ApiError(404, f"case {case_id} not found")
    return c


def act(
    conn: psycopg.Connection, who: Principal, work_order_id: int, action: str, note: str | None, now: float
) -> WorkOrderOut:
    """A crew's action on its work order, committed; 409 when the work order's state does not allow it."""
    own_order(conn, who, work_order_id)
    try:
        with conn.transaction():
            routing.act(conn, work_order_id, action, who.actor, note, now)
    except WorkOrderError as exc:
        raise ApiError(409, str(exc)) from None
    order = own_order(conn, who, work_order_id)
    conn.commit()
    return WorkOrderOut.view(order)


# -- work orders -------------------------------------------------------------------------------------------------


@router.get("/work-orders", tags=["crews"], summary="Work orders of the crew (or, for operators, all)")
def list_work_orders(
    conn: Db,
    who: Who,
    status: Annotated[str | None, Query(pattern="^(new|assigned|in_progress|done|rejected|cancelled|active)$")] = None,
) -> list[WorkOrderOut]:
    return [WorkOrderOut.view(o) for o in api_store.work_orders(conn, who.tenant_id, who.crew_id, status)]


@router.get("/work-orders/{work_order_id}", tags=["crews"], summary="One work order with its notes")
def get_work_order(conn: Db, who: Who, work_order_id: int) -> WorkOrderDetail:
    order = WorkOrderOut.view(own_order(conn, who, work_order_id))
    notes = [NoteOut.of(n) for n in order_store.notes(conn, work_order_id)]
    return WorkOrderDetail(**order.model_dump(), notes=notes)


@router.post("/work-orders/{work_order_id}/accept", tags=["crews"], summary="Accept: work starts")
def accept(conn: Db, who: Who, clock: Clock, work_order_id: int, body: NoteBody | None = None) -> WorkOrderOut:
    return act(conn, who, work_order_id, "accept", body.note if body else None, clock())


@router.post("/work-orders/{work_order_id}/done", tags=["crews"], summary="Close with a note: work done")
def done(conn: Db, who: Who, clock: Clock, work_order_id: int, body: NoteBody | None = None) -> WorkOrderOut:
    return act(conn, who, work_order_id, "done", body.note if body else None, clock())


@router.post("/work-orders/{work_order_id}/reject", tags=["crews"], summary="Reject with a reason")
def reject(conn: Db, who: Who, clock: Clock, work_order_id: int, body: NoteBody) -> WorkOrderOut:
    return act(conn, who, work_order_id, "reject", body.note, clock())


# -- cases (operators) ---------------------------------------------------------------------------------------------


@router.get("/cases", tags=["operators"], summary="Cases of the tenant, filtered")
def list_cases(
    conn: Db,
    who: Operator,
    status: Annotated[str | None, Query(pattern="^(open|in_repair|verifying|resolved|active)$")] = None,
    fault: Annotated[str | None, Query(max_length=64)] = None,
    priority: Annotated[str | None, Query(max_length=32)] = None,
    asset_id: Annotated[str | None, Query(max_length=128)] = None,
    breached: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[CaseOut]:
    rows = api_store.cases(conn, who.tenant_id, status, fault, priority, asset_id, breached, limit, offset)
    return [CaseOut.of(c) for c in rows]


@router.get("/cases/{case_id}", tags=["operators"], summary="One case: findings, events, work orders")
def get_case(conn: Db, who: Operator, case_id: int) -> CaseDetail:
    c = own_case(conn, who, case_id)
    return CaseDetail(
        **CaseOut.of(c).model_dump(),
        findings=[FindingOut.of(f) for f in store.case_findings(conn, case_id)],
        events=[EventOut.of(e) for e in store.events(conn, case_id)],
        work_orders=[WorkOrderTimes.of(o) for o in order_store.of_case(conn, case_id)],
        citizen_reports=api_store.reports_of_case(conn, case_id),
    )


@router.post("/cases/{case_id}/assign", tags=["operators"], summary="Send the case to a crew")
def assign(conn: Db, who: Operator, clock: Clock, policies: Rules, case_id: int, body: AssignmentBody) -> AssignmentOut:
    own_case(conn, who, case_id)
    try:
        with conn.transaction():
            work_order_id = routing.assign(conn, policies.get(who.tenant_id), case_id, body.crew_id, who.actor, clock())
    except WorkOrderError as exc:
        raise ApiError(409, str(exc)) from None
    conn.commit()
    return AssignmentOut(case_id=case_id, work_order_id=work_order_id, crew_id=body.crew_id)


@router.post("/cases/{case_id}/close", tags=["operators"], summary="Close a case by hand, with a note")
def close(conn: Db, who: Operator, clock: Clock, case_id: int, body: NoteBody) -> CaseOut:
    c = own_case(conn, who, case_id)
    if c.status == "resolved":
        raise ApiError(409, f"case {case_id} is already resolved")
    if not (body.note and body.note.strip()):
        raise ApiError(422, "note: closing a case by hand needs a note")
    with conn.transaction():
        lifecycle.close_by_hand(conn, c, body.note, who.actor, clock())
    conn.commit()
    return CaseOut.of(store.existing_case(conn, case_id))


# -- citizen reports (operators) -----------------------------------------------------------------------------------


@router.get("/reports", tags=["operators"], summary="Citizen reports: those waiting in the inbox, or all")
def list_reports(
    conn: Db,
    who: Operator,
    triage: Annotated[str | None, Query(pattern="^(inbox|attached|dismissed)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[ReportOut]:
    return [ReportOut.of(r) for r in requests_store.by_triage(conn, who.tenant_id, triage, limit, offset)]


@router.post("/reports/{request_id}/attach", tags=["operators"], summary="Attach a waiting report to a case or asset")
def attach_report(
    conn: Db, who: Operator, clock: Clock, policies: Rules, request_id: int, body: AttachBody
) -> ReportOut:
    try:
        with conn.transaction():
            r = citizen.attach(conn, policies.get(who.tenant_id), who.tenant_id, request_id, who.actor, clock(),
                               case_id=body.case_id, asset_id=body.asset_id)  # fmt: skip
    except LookupError as exc:
        raise ApiError(404, str(exc)) from None
    except ReportError as exc:
        raise ApiError(409, str(exc)) from None
    conn.commit()
    return ReportOut.of(r)


@router.post("/reports/{request_id}/dismiss", tags=["operators"], summary="Dismiss a waiting report, with a note")
def dismiss_report(conn: Db, who: Operator, clock: Clock, request_id: int, body: DismissBody) -> ReportOut:
    try:
        with conn.transaction():
            r = citizen.dismiss(conn, who.tenant_id, request_id, who.actor, body.note, clock())
    except LookupError as exc:
        raise ApiError(404, str(exc)) from None
    except ReportError as exc:
        raise ApiError(409, str(exc)) from None
    conn.commit()
    return ReportOut.of(r)


@router.get("/reports/{request_id}/photos", tags=["operators"], summary="The photos of a citizen report")
def report_photos(conn: Db, who: Operator, request_id: int) -> list[PhotoOut]:
    if requests_store.get(conn, who.tenant_id, request_id) is None:
        raise ApiError(404, f"report {request_id} not found")
    return [
        PhotoOut(photo_id=p.photo_id, width=p.width, height=p.height, url=f"/api/v1/photos/{p.photo_id}")
        for p in requests_store.photos(conn, who.tenant_id, [request_id])
    ]


@router.get(
    "/photos/{photo_id}",
    tags=["operators"],
    summary="A citizen's photo (JPEG)",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}},
)
def photo(conn: Db, who: Operator, photo_id: int) -> Response:
    jpeg = requests_store.photo_jpeg(conn, who.tenant_id, photo_id)
    if jpeg is None:
        raise ApiError(404, f"photo {photo_id} not found")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})
