"""``/console``: the operator console's pages. Server-rendered, usable without JavaScript (the cases' map is
Leaflet's enhancement); every route under ``/console/<tenant>`` needs a signed-in person who works for that
municipality (another's pages, cases and photos answer 404), and every form its session's CSRF token.

Outcomes of actions are shown by a fixed code (``?msg=saved``); refusals are shown on the page that was
posted, with the reason, never carried in the address."""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at definition time.

import csv
import hmac
import io
import json
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, Cookie, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cases import citizen, lifecycle, routing, texts
from cases.api_auth import ApiError, Clock, Db, Rules
from cases.console import auth
from cases.console.auth import Desk, Posted, Signed
from cases.console.chart import chart_svg
from cases.console.words import refused, words
from cases.errors import CaseError, ReportError, WorkOrderError
from cases.policy import Policies, Policy
from cases.web import TEMPLATES, guest_language, leaflet_installed
from floor.timefmt import local
from storage import case_assets as asset_store
from storage import cases as store
from storage import citizens as requests_store
from storage import console_lists as lists
from storage import crews as crew_store
from storage import work_orders as order_store
from storage.console_lists import CaseFilters, CaseRow
from storage.crews import Crew

router = APIRouter(prefix="/console", include_in_schema=False)
PAGE = 50
STATUSES = ("active", "open", "in_repair", "verifying", "resolved")
PRIORITIES = ("immediate", "days", "month", "round")
SOURCES = ("telemetry", "citizen", "operator")


def _page(request: Request, desk: Desk, template: str, status: int = 200, **context: Any) -> Response:
    lang = texts.language(desk.tenant.language)
    msg = request.query_params.get("msg")
    t = words(lang)
    return TEMPLATES.TemplateResponse(
        request,
        f"console/{template}",
        {
            "lang": lang,
            "t": t,
            "desk": desk,
            "tenant": desk.tenant,
            "base": f"/console/{desk.tenant.tenant_id}",
            "csrf": desk.session.csrf,
            "notice": t["saved"] if msg == "saved" else None,
            "tz": desk.tenant.timezone,
            "zone": ZoneInfo(desk.tenant.timezone),
            "when": lambda ts: local(ts, desk.tenant.timezone) if ts else "",
            "fault": lambda code: texts.fault(code, lang),
            "status_word": lambda code: texts.status(code, lang),
            "priority_word": lambda code: texts.priority(code, lang),
            **context,
        },
        status_code=status,
    )


def _done(desk: Desk, where: str) -> Response:
    return RedirectResponse(f"/console/{desk.tenant.tenant_id}/{where}?msg=saved", status_code=303)


# -- signing in ----------------------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def console_root(conn: Db, lykta_console: Annotated[str | None, Cookie()] = None) -> Response:
    session = auth.current(conn, lykta_console)
    if session is None or not session.tenants:
        return RedirectResponse("/console/login", status_code=303)
    return RedirectResponse(f"/console/{session.tenants[0]}/inbox", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, conn: Db, msg: str | None = None) -> Response:
    lang = guest_language(conn, request)
    t = words(lang)
    return TEMPLATES.TemplateResponse(
        request,
        "console/login.html",
        {"lang": lang, "t": t, "problem": None, "notice": t["signed_out"] if msg == "signed_out" else None},
    )


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    conn: Db,
    email: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=1000)],
) -> Response:
    lang = guest_language(conn, request)
    t = words(lang)
    try:
        token = auth.sign_in(conn, email, password, auth.client_of(request))
    except ApiError as exc:
        problem, status = exc.message, exc.status
    else:
        if token is not None:
            response = RedirectResponse("/console", status_code=303)
            response.set_cookie(
                auth.COOKIE, token, httponly=True, samesite="strict", max_age=auth.SESSION_S, path="/console"
            )
            return response
        problem, status = t["bad_login"], 401
    return TEMPLATES.TemplateResponse(
        request, "console/login.html", {"lang": lang, "t": t, "problem": problem, "notice": None}, status_code=status
    )


@router.post("/logout")
def logout(
    conn: Db,
    csrf: Annotated[str, Form(max_length=100)] = "",
    lykta_console: Annotated[str | None, Cookie()] = None,
) -> Response:
    session = auth.current(conn, lykta_console)
    if session is not None and lykta_console:
        if not hmac.compare_digest(csrf, session.csrf):
            raise ApiError(403, "the form has expired: reload the page and try again")
        auth.sign_out(conn, lykta_console)
    response = RedirectResponse("/console/login?msg=signed_out", status_code=303)
    response.delete_cookie(auth.COOKIE, path="/console")
    return response


@router.get("/go")
def switch(conn: Db, tenant: str, lykta_console: Annotated[str | None, Cookie()] = None) -> Response:
    """Move to another municipality the person works for."""
    session = auth.current(conn, lykta_console)
    if session is None:
        return RedirectResponse("/console/login", status_code=303)
    if tenant not in session.tenants:
        raise ApiError(404, "not found")
    return RedirectResponse(f"/console/{tenant}/inbox", status_code=303)


# -- the inbox -----------------------------------------------------------------------------------------------------


@router.get("/{tenant_id}", response_class=HTMLResponse)
def tenant_root(desk: Signed) -> Response:
    return RedirectResponse(f"/console/{desk.tenant.tenant_id}/inbox", status_code=303)


def _inbox(
    request: Request, conn: psycopg.Connection, policies: Policies, desk: Desk, problem: str | None = None
) -> Response:
    tenant_id = desk.tenant.tenant_id
    lang = texts.language(desk.tenant.language)
    services = {s.code: texts.fault(s.fault, lang) for s in policies.get(tenant_id).services.values()}
    waiting = requests_store.by_triage(conn, tenant_id, "inbox", 100, 0)
    photos = requests_store.photos(conn, tenant_id, [r.request_id for r in waiting])
    page = _page(
        request,
        desk,
        "inbox.html",
        status=409 if problem else 200,
        problem=problem,
        services=services,
        waiting=waiting,
        photos={r.request_id: [p.photo_id for p in photos if p.request_id == r.request_id] for r in waiting},
        unrouted=lists.unrouted(conn, tenant_id),
        overdue=lists.overdue(conn, tenant_id),
        reopened=lists.reopened(conn, tenant_id),
        failing=lists.failing_deliveries(conn, tenant_id),
        crews=[c for c in crew_store.crews(conn, tenant_id) if c.active],
    )
    conn.rollback()
    return page


@router.get("/{tenant_id}/inbox", response_class=HTMLResponse)
def inbox(request: Request, conn: Db, desk: Signed, policies: Rules) -> Response:
    return _inbox(request, conn, policies, desk)


@router.post("/{tenant_id}/reports/{request_id}/attach", response_class=HTMLResponse)
def attach_report(  # noqa: PLR0917 - the request, its dependencies and its form
    request: Request,
    conn: Db,
    desk: Posted,
    policies: Rules,
    clock: Clock,
    request_id: int,
    target: Annotated[str, Form(max_length=128)],
) -> Response:
    target = target.strip().lstrip("#")
    where = {"case_id": int(target)} if target.isdigit() else {"asset_id": target}
    try:
        with conn.transaction():
            citizen.attach(
                conn, policies.get(desk.tenant.tenant_id), desk.tenant.tenant_id, request_id, desk.actor, clock(),
                **where,
            )  # fmt: skip
    except (ReportError, LookupError) as exc:
        return _inbox(request, conn, policies, desk, refused(exc, desk.tenant.language))
    conn.commit()
    return _done(desk, "inbox")


@router.post("/{tenant_id}/reports/{request_id}/dismiss", response_class=HTMLResponse)
def dismiss_report(  # noqa: PLR0917 - the request, its dependencies and its form
    request: Request,
    conn: Db,
    desk: Posted,
    policies: Rules,
    clock: Clock,
    request_id: int,
    note: Annotated[str, Form(max_length=4000)],
) -> Response:
    try:
        with conn.transaction():
            citizen.dismiss(conn, desk.tenant.tenant_id, request_id, desk.actor, note, clock())
    except (ReportError, LookupError) as exc:
        return _inbox(request, conn, policies, desk, refused(exc, desk.tenant.language))
    conn.commit()
    return _done(desk, "inbox")


@router.post("/{tenant_id}/deliveries/{message_id}/retry")
def retry_delivery(conn: Db, desk: Posted, message_id: int) -> Response:
    if not lists.retry_delivery(conn, desk.tenant.tenant_id, message_id):
        raise ApiError(404, "not found")
    conn.commit()
    return _done(desk, "inbox")


@router.get("/{tenant_id}/photos/{photo_id}")
def photo(conn: Db, desk: Signed, photo_id: int) -> Response:
    jpeg = requests_store.photo_jpeg(conn, desk.tenant.tenant_id, photo_id)
    if jpeg is None:
        raise ApiError(404, "not found")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


# -- cases ---------------------------------------------------------------------------------------------------------


Filter = Annotated[str | None, Query(max_length=128)]


def _given(value: str | None, allowed: tuple[str, ...] | None = None) -> str | None:
    if not value:
        return None
    if allowed is not None and value not in allowed:
        raise ApiError(422, f"unknown filter value {value!r}")
    return value[:128]


def case_filters(  # noqa: PLR0917 - the filters of the case list, as its form sends them
    status: Filter = "active",
    fault: Filter = None,
    priority: Filter = None,
    area: Filter = None,
    crew: Filter = None,
    source: Filter = None,
    breached: Filter = None,
    asset: Filter = None,
) -> CaseFilters:
    """The case list's filters (the list, its map and its exports take the same)."""
    return CaseFilters(
        status=_given(status, STATUSES),
        fault=_given(fault, tuple(texts.FAULTS)),
        priority=_given(priority, PRIORITIES),
        area=_given(area),
        crew=_given(crew),
        source=_given(source, SOURCES),
        breached={"yes": True, "no": False}.get(breached or ""),
        asset=_given(asset),
    )


Filters = Annotated[CaseFilters, Depends(case_filters)]


@router.get("/{tenant_id}/cases", response_class=HTMLResponse)
def case_list(
    request: Request,
    conn: Db,
    desk: Signed,
    f: Filters,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    rows, total = lists.case_rows(conn, desk.tenant.tenant_id, f, PAGE, (page - 1) * PAGE)
    chosen = {k: v for k, v in request.query_params.items() if k != "page" and v}
    query = urlencode(chosen)
    result = _page(
        request,
        desk,
        "cases.html",
        rows=rows,
        total=total,
        page=page,
        pages=max(1, (total + PAGE - 1) // PAGE),
        chosen=chosen,
        query=query,
        statuses=STATUSES,
        priorities=PRIORITIES,
        sources=SOURCES,
        faults=sorted(texts.FAULTS),
        areas=lists.areas(conn, desk.tenant.tenant_id),
        crews=crew_store.crews(conn, desk.tenant.tenant_id),
        leaflet=leaflet_installed(),
        tiles=getattr(request.app.state, "map_tiles", ""),
    )
    conn.rollback()
    return result


EXPORT_LIMIT = 100_000
COLUMNS = ("case_id", "asset_id", "fault", "status", "priority", "source", "resolution", "opened", "due", "breached",
           "crew_id", "area", "district", "place", "lat", "lon", "reports")  # fmt: skip


def _export_row(r: CaseRow) -> dict[str, Any]:
    def utc(ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    return {
        "case_id": r.case_id, "asset_id": r.asset_id, "fault": r.fault, "status": r.status, "priority": r.priority,
        "source": r.source, "resolution": r.resolution, "opened": utc(r.opened_at), "due": utc(r.due_at),
        "breached": r.breached, "crew_id": r.crew_id, "area": r.area, "district": r.district, "place": r.place,
        "lat": r.lat, "lon": r.lon, "reports": r.reports,
    }  # fmt: skip


@router.get("/{tenant_id}/cases.{fmt}")
def case_export(conn: Db, desk: Signed, fmt: str, f: Filters) -> Response:
    """The filtered cases as CSV or GeoJSON (``map``: the compact GeoJSON the map draws)."""
    if fmt not in ("csv", "geojson", "map"):
        raise ApiError(404, "not found")
    if fmt == "map":
        drawn = lists.case_map(conn, desk.tenant.tenant_id, f, EXPORT_LIMIT)
        conn.rollback()
        return Response(drawn, media_type="application/geo+json")
    rows, _ = lists.case_rows(conn, desk.tenant.tenant_id, f, EXPORT_LIMIT, 0)
    conn.rollback()
    name = f"lykta-{desk.tenant.tenant_id}-cases"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow(_export_row(r))
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [r.lon, r.lat]} if r.lat is not None else None,
            "properties": {**_export_row(r), "url": f"/console/{desk.tenant.tenant_id}/cases/{r.case_id}"},
        }
        for r in rows
    ]
    return Response(
        json.dumps({"type": "FeatureCollection", "features": features}, separators=(",", ":")),
        media_type="application/geo+json",
        headers={"Content-Disposition": f'inline; filename="{name}.geojson"'},
    )


def _own_case(conn: psycopg.Connection, desk: Desk, case_id: int) -> store.Case:
    c = store.case(conn, case_id)
    if c is None or c.tenant_id != desk.tenant.tenant_id:
        raise ApiError(404, "not found")
    return c


def _case_page(
    request: Request, conn: psycopg.Connection, desk: Desk, case_id: int, problem: str | None = None
) -> Response:
    c = _own_case(conn, desk, case_id)
    tenant_id = desk.tenant.tenant_id
    reports = requests_store.of_case(conn, tenant_id, case_id)
    photos = requests_store.photos(conn, tenant_id, [r.request_id for r in reports])
    events = store.events(conn, case_id)
    orders = order_store.of_case(conn, case_id)
    grafana: str | None = getattr(request.app.state, "grafana_url", None)
    grafana_link = None
    if grafana:
        start, end = int((c.observed_at - 86400) * 1000), int(((c.resolved_at or c.observed_at) + 86400) * 1000)
        grafana_link = (
            f"{grafana.rstrip('/')}/d/lykta-asset/lykta-asset?var-tenant={tenant_id}&var-asset={c.asset_id}"
            f"&from={start}&to={end}"
        )
    result = _page(
        request,
        desk,
        "case.html",
        status=409 if problem else 200,
        problem=problem,
        c=c,
        asset=asset_store.asset(conn, tenant_id, c.asset_id),
        findings=store.case_findings(conn, case_id),
        events=events,
        orders=orders,
        reports=reports,
        photos={r.request_id: [p.photo_id for p in photos if p.request_id == r.request_id] for r in reports},
        crews=[x for x in crew_store.crews(conn, tenant_id) if x.active],
        grafana_link=grafana_link,
    )
    conn.rollback()
    return result


@router.get("/{tenant_id}/cases/{case_id}", response_class=HTMLResponse)
def case_page(request: Request, conn: Db, desk: Signed, case_id: int) -> Response:
    return _case_page(request, conn, desk, case_id)


@router.get("/{tenant_id}/cases/{case_id}/chart.svg")
def case_chart(conn: Db, desk: Signed, case_id: int) -> Response:
    c = _own_case(conn, desk, case_id)
    svg = chart_svg(conn, c, desk.tenant.timezone, words(desk.tenant.language)["no_readings"])
    conn.rollback()
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "private, max-age=60"})


def _decide(  # noqa: PLR0917 - one decision on one case
    conn: psycopg.Connection, policy: Policy, c: store.Case, action: str, value: str, actor: str, now: float
) -> None:
    """An operator's ``action`` on a case; ``value`` is the crew, the case to merge into, or the note."""
    if action == "assign":
        routing.assign(conn, policy, c.case_id, value, actor, now)
    elif action == "merge":
        number = value.strip().lstrip("#")
        target = store.case(conn, int(number)) if number.isdigit() else None
        if target is None or target.tenant_id != c.tenant_id:
            raise CaseError(f"no case {value!r} of this municipality", code="case_gone", case=value)
        lifecycle.merge_by_hand(conn, c, target, actor, now)
    elif action == "close":
        lifecycle.close_by_hand(conn, c, value, actor, now)
    elif action == "reopen":
        lifecycle.reopen_by_hand(conn, policy, c, value, actor, now)
    else:
        if not value.strip():
            raise CaseError("an empty note", code="note_needed")
        store.add_event(conn, c.case_id, actor, "note", {"note": value.strip()})


@router.post("/{tenant_id}/cases/{case_id}/{action}", response_class=HTMLResponse)
def case_action(  # noqa: PLR0917 - one action, its form fields
    request: Request,
    conn: Db,
    desk: Posted,
    policies: Rules,
    clock: Clock,
    case_id: int,
    action: str,
    crew_id: Annotated[str | None, Form(max_length=63)] = None,
    into: Annotated[str | None, Form(max_length=20)] = None,
    note: Annotated[str | None, Form(max_length=4000)] = None,
    back: Annotated[str | None, Form(pattern="^inbox$")] = None,
) -> Response:
    c = _own_case(conn, desk, case_id)
    if action not in ("assign", "merge", "close", "reopen", "note"):
        raise ApiError(404, "not found")
    try:
        with conn.transaction():
            _decide(conn, policies.get(desk.tenant.tenant_id), c, action, crew_id or into or note or "", desk.actor,
                    clock())  # fmt: skip
    except (CaseError, WorkOrderError) as exc:
        return _case_page(request, conn, desk, case_id, refused(exc, desk.tenant.language))
    conn.commit()
    return _done(desk, back or f"cases/{case_id}")


# -- crews and assets ----------------------------------------------------------------------------------------------


def _crews(request: Request, conn: psycopg.Connection, desk: Desk, problem: str | None = None) -> Response:
    result = _page(
        request,
        desk,
        "crews.html",
        status=409 if problem else 200,
        problem=problem,
        crews=crew_store.crews(conn, desk.tenant.tenant_id),
        areas=lists.areas(conn, desk.tenant.tenant_id),
    )
    conn.rollback()
    return result


@router.get("/{tenant_id}/crews", response_class=HTMLResponse)
def crews(request: Request, conn: Db, desk: Signed) -> Response:
    return _crews(request, conn, desk)


def _listed(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


@router.post("/{tenant_id}/crews", response_class=HTMLResponse)
def save_crew(  # noqa: PLR0917 - a crew's fields
    request: Request,
    conn: Db,
    desk: Posted,
    crew_id: Annotated[str, Form(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")],
    name: Annotated[str, Form(min_length=1, max_length=200)],
    email: Annotated[str | None, Form(max_length=254)] = None,
    webhook_url: Annotated[str | None, Form(max_length=2000)] = None,
    webhook_secret: Annotated[str | None, Form(max_length=200)] = None,
    areas: Annotated[str | None, Form(max_length=2000)] = None,
    skills: Annotated[str | None, Form(max_length=2000)] = None,
    active: Annotated[str | None, Form(max_length=3)] = None,
) -> Response:
    tenant_id = desk.tenant.tenant_id
    old = crew_store.crew(conn, tenant_id, crew_id)
    email, webhook_url = (email or "").strip() or None, (webhook_url or "").strip() or None
    secret = (webhook_secret or "").strip() or (old.webhook_secret if old else None)
    lang = desk.tenant.language
    if email is not None and ("@" not in email or " " in email):
        return _crews(request, conn, desk, refused(CaseError(code="bad_email", email=email), lang))
    if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
        return _crews(request, conn, desk, refused(CaseError(code="bad_webhook"), lang))
    if webhook_url and not secret:
        return _crews(request, conn, desk, refused(CaseError(code="webhook_secret"), lang))
    crew_store.upsert(
        conn,
        Crew(
            tenant_id=tenant_id,
            crew_id=crew_id,
            name=name.strip(),
            email=email,
            webhook_url=webhook_url,
            webhook_secret=secret,
            areas=_listed(areas),
            skills=_listed(skills),
            active=active == "on" or old is None,
        ),
    )
    conn.commit()
    return _done(desk, "crews")


@router.get("/{tenant_id}/assets", response_class=HTMLResponse)
def assets(request: Request, conn: Db, desk: Signed, q: Annotated[str, Query(max_length=128)] = "") -> Response:
    hits = lists.find_assets(conn, desk.tenant.tenant_id, q.strip()) if q.strip() else []
    result = _page(request, desk, "assets.html", q=q, hits=hits)
    conn.rollback()
    return result
