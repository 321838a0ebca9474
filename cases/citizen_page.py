"""``/report``: the citizens' own pages, phone first, in the municipality's language.

* ``/report/<tenant>``: report a fault: the place (tap the map, use my position, or type coordinates or an
  address), what is wrong (the municipality's Open311 services), a description, up to three photos and, if
  wanted, an e-mail address for updates. Submitted through the same path as Open311 (cases/open311.py
  ``receive``): the same checks, rate limits, triage and photo handling.
* ``/report/<tenant>/<id>``: where a report stands, in the words its reporter is e-mailed; "still broken" makes
  a follow-up report at the same place (which reopens a case waiting for verification, or joins the active one).

The map is Leaflet from the npm registry (web/node_modules) with the configured tile server; without tiles,
Leaflet or JavaScript the page still works with its coordinate and address fields.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at definition time.

from collections.abc import AsyncIterator
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from cases import citizen, texts
from cases.api_auth import ApiError, Clock, Db, Rules
from cases.open311 import photos_of, receive
from cases.policy import Policy
from cases.web import TEMPLATES, leaflet_installed, words
from floor.timefmt import local
from storage import case_assets as asset_store
from storage import citizens as requests_store
from storage import tenants

UPLOADS = "/report/"
router = APIRouter(prefix="/report", include_in_schema=False)


def _tenant(conn: psycopg.Connection, tenant_id: str) -> tenants.Tenant:
    found = {t.tenant_id: t for t in tenants.all_tenants(conn)}
    if tenant_id not in found:
        raise ApiError(404, f"no municipality {tenant_id!r} here")
    return found[tenant_id]


def _services(policy: Policy, lang: str) -> list[dict[str, str]]:
    return [{"code": s.code, "name": texts.fault(s.fault, lang)} for s in policy.services.values()]


@router.get("", response_class=HTMLResponse)
def choose(request: Request, conn: Db) -> Response:
    every = tenants.all_tenants(conn)
    conn.rollback()
    if len(every) == 1:
        return RedirectResponse(f"/report/{every[0].tenant_id}", status_code=303)
    return TEMPLATES.TemplateResponse(request, "choose.html", {"lang": "en", "t": words("en"), "tenants": every})


def _form_page(  # noqa: PLR0917 - one page, its tenant and what was typed
    request: Request,
    conn: psycopg.Connection,
    policy: Policy,
    tenant: tenants.Tenant,
    values: dict[str, Any],
    problem: str | None = None,
    status: int = 200,
) -> Response:
    lang = texts.language(tenant.language)
    centre = asset_store.centre(conn, tenant.tenant_id)
    conn.rollback()
    return TEMPLATES.TemplateResponse(
        request,
        "report.html",
        {
            "lang": lang,
            "t": words(lang),
            "tenant": tenant,
            "services": _services(policy, lang),
            "values": values,
            "problem": problem,
            "centre": centre,
            "tiles": getattr(request.app.state, "map_tiles", ""),
            "leaflet": leaflet_installed(),
            "max_photos": citizen.MAX_PHOTOS,
        },
        status_code=status,
    )


@router.get("/{tenant_id}", response_class=HTMLResponse)
def report_form(request: Request, conn: Db, policies: Rules, tenant_id: str) -> Response:
    tenant = _tenant(conn, tenant_id)
    return _form_page(request, conn, policies.get(tenant_id), tenant, {})


async def _form(request: Request) -> AsyncIterator[FormData]:
    form = await request.form(max_files=citizen.MAX_PHOTOS + 1, max_fields=50)
    try:
        yield form
    finally:
        await form.close()


async def _photos(form: Annotated[FormData, Depends(_form)]) -> list[bytes]:
    return await photos_of(form, "photo")


def _number(value: Any) -> float | None:
    try:
        return float(str(value).replace(",", ".")) if value not in (None, "") else None
    except ValueError:
        return None


@router.post("/{tenant_id}", response_class=HTMLResponse)
def report_post(  # noqa: PLR0917 - the request, its dependencies and its path
    request: Request,
    conn: Db,
    policies: Rules,
    clock: Clock,
    tenant_id: str,
    form: Annotated[FormData, Depends(_form)],
    photo_files: Annotated[list[bytes], Depends(_photos)],
) -> Response:
    tenant = _tenant(conn, tenant_id)
    policy = policies.get(tenant_id)
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    lat, lon = _number(values.get("lat")), _number(values.get("lon"))
    report = citizen.Report(
        tenant_id,
        values.get("service_code", ""),
        lat,
        lon,
        values.get("address", "").strip()[:500] or None,
        values.get("description", "").strip()[:4000] or None,
        values.get("email", "").strip() or None,
        request.client.host if request.client else None,
    )
    try:
        stored = receive(conn, policy, report, photo_files, clock())
    except ApiError as exc:
        return _form_page(request, conn, policy, tenant, values, exc.message, exc.status)
    return RedirectResponse(f"/report/{tenant_id}/{stored.request_id}?new=1", status_code=303)


@router.get("/{tenant_id}/{request_id}", response_class=HTMLResponse)
def report_status(  # noqa: PLR0917 - the request, its dependencies and its path
    request: Request, conn: Db, policies: Rules, tenant_id: str, request_id: int, new: int | None = None
) -> Response:
    tenant = _tenant(conn, tenant_id)
    r = requests_store.get(conn, tenant_id, request_id)
    conn.rollback()
    if r is None:
        raise ApiError(404, f"report {request_id} not found")
    lang = texts.language(tenant.language)
    service = policies.get(tenant_id).services.get(r.service_code)
    status = texts.citizen_status(r.case_status, r.resolution, r.closing_note or r.triage_note, lang, r.triage)
    closed = r.case_status == "resolved" or r.triage == "dismissed"
    return TEMPLATES.TemplateResponse(
        request,
        "report_status.html",
        {
            "lang": lang,
            "t": words(lang),
            "tenant": tenant,
            "r": r,
            "new": bool(new),
            "service": texts.fault(service.fault, lang) if service else r.service_code,
            "status": status,
            "reported": local(r.requested_at, tenant.timezone),
            "expected": local(r.due_at, tenant.timezone) if r.due_at and not closed else None,
            "can_follow_up": r.case_status in ("verifying", "resolved") and (r.lat is not None or r.address),
        },
    )


@router.post("/{tenant_id}/{request_id}/still-broken")
def still_broken(  # noqa: PLR0917 - the request, its dependencies and its path
    request: Request, conn: Db, policies: Rules, clock: Clock, tenant_id: str, request_id: int
) -> Response:
    """A follow-up report at the same place: reopens a case waiting for verification, joins an active one, or
    (the case is resolved) is a new report."""
    tenant = _tenant(conn, tenant_id)
    r = requests_store.get(conn, tenant_id, request_id)
    if r is None:
        raise ApiError(404, f"report {request_id} not found")
    lang = texts.language(tenant.language)
    follow = citizen.Report(
        tenant_id, r.service_code, r.lat, r.lon, r.address, texts.word("followup", lang).format(id=request_id),
        requests_store.email_of(conn, tenant_id, request_id), request.client.host if request.client else None,
    )  # fmt: skip
    stored = receive(conn, policies.get(tenant_id), follow, [], clock())
    return RedirectResponse(f"/report/{tenant_id}/{stored.request_id}?new=1", status_code=303)
