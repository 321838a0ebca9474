"""``/crew``: a server-rendered, phone-sized page where a crew member signs in with their personal token and
accepts, finishes or rejects their crew's work orders, in the tenant's language and time zone.

Each work order shows what the crew needs: the asset and what it is, its place (a map and directions), the due
time, and the citizens' words and photos. Finishing and rejecting ask for confirmation (a page of its own
without JavaScript, a dialog with it). With JavaScript (static/crew.js) a tap taken without a connection is
kept on the phone, shown as pending and sent when the connection is back; every tap carries a key chosen when
the page was drawn, so a tap sent twice is applied once. Messages shown come from a fixed list of codes, never
from the address bar; a withdrawn or expired token is told so at sign-in.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at definition time.

import secrets
from dataclasses import asdict
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Cookie, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from cases import messages, routing, texts
from cases.api_auth import ApiError, Clock, Db, Principal, check_token
from cases.api_v1 import own_order
from cases.errors import WorkOrderError
from cases.web import TEMPLATES, guest_language, words
from floor.timefmt import local
from storage import api as api_store
from storage import case_assets as asset_store
from storage import citizens as requests_store
from storage import tenants
from storage import work_orders as order_store

COOKIE = "lykta_crew"
ACTIONS = ("accept", "done", "reject")
NOTICES = ("saved", "signed_out")
"""codes of the messages the page may show after a redirect (anything else in ``?msg=`` is ignored)"""
PROBLEMS = ("bad_token", "revoked", "not_now", "accept_first", "gone", "reason_needed")

router = APIRouter(prefix="/crew", include_in_schema=False)


def _crew(conn: psycopg.Connection, token: str | None) -> Principal | str | None:
    """The crew member holding the token; why it is refused (withdrawn, expired) when it was one; None when
    there is none."""
    if not token:
        return None
    who = check_token(conn, token)
    if isinstance(who, Principal) and who.role != "crew":
        return "not a crew token"
    return who


def _login(request: Request, conn: psycopg.Connection, problem: str | None, notice: str | None) -> Response:
    lang = guest_language(conn, request)
    page = TEMPLATES.TemplateResponse(
        request, "login.html", {"lang": lang, "t": words(lang), "problem": problem, "notice": notice}
    )
    if problem == "revoked":
        page.delete_cookie(COOKIE)
    return page


def _order_view(conn: psycopg.Connection, tenant: tenants.Tenant, o: api_store.OrderView) -> dict[str, Any]:
    lang = texts.language(tenant.language)
    asset = messages.asset_details(asset_store.asset(conn, o.tenant_id, o.asset_id))
    reports = requests_store.of_case(conn, o.tenant_id, o.case_id)
    photos = requests_store.photos(conn, o.tenant_id, [r.request_id for r in reports])
    view = {
        **asdict(o),
        "status_text": texts.status(o.status, lang),
        "priority_text": texts.priority(o.priority, lang),
        "due": local(o.due_at, tenant.timezone),
        "observed": local(o.observed_at, tenant.timezone),
        "asset": asset,
        "reports": [
            {
                "request_id": r.request_id,
                "at": local(r.requested_at, tenant.timezone),
                "description": r.description,
                "address": r.address,
                "photos": [p.photo_id for p in photos if p.request_id == r.request_id],
            }
            for r in reports
        ],
        "key": {a: secrets.token_urlsafe(12) for a in ACTIONS},
    }
    if o.lat is not None and o.lon is not None:
        view["map"] = messages.map_link(o.lat, o.lon)
        view["directions"] = messages.directions_link(o.lat, o.lon)
    return view


@router.get("", response_class=HTMLResponse)
def crew_page(
    request: Request, conn: Db, lykta_crew: Annotated[str | None, Cookie()] = None, msg: str | None = None
) -> Response:
    who = _crew(conn, lykta_crew)
    if not isinstance(who, Principal):
        problem = "revoked" if isinstance(who, str) else (msg if msg == "bad_token" else None)
        return _login(request, conn, problem, msg if msg == "signed_out" else None)
    tenant = tenants.get(conn, who.tenant_id)
    lang = texts.language(tenant.language)
    orders = [_order_view(conn, tenant, o) for o in api_store.work_orders(conn, who.tenant_id, who.crew_id, "active")]
    conn.rollback()
    t = words(lang)
    return TEMPLATES.TemplateResponse(
        request,
        "crew.html",
        {
            "lang": lang,
            "t": t,
            "crew": who.crew_id,
            "holder": who.holder,
            "orders": orders,
            "notice": t[msg] if msg in NOTICES else None,
            "problem": t[msg] if msg in PROBLEMS else None,
            "confirm_done": t["confirm_done"],
            "confirm_reject": t["confirm_reject"],
        },
    )


@router.post("/login")
def crew_login(conn: Db, token: Annotated[str, Form(max_length=200)]) -> Response:
    who = _crew(conn, token.strip())
    if not isinstance(who, Principal):
        return RedirectResponse("/crew?msg=bad_token", status_code=303)
    response = RedirectResponse("/crew", status_code=303)
    response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict", max_age=30 * 86400, path="/crew")
    return response


@router.post("/logout")
def crew_logout() -> Response:
    response = RedirectResponse("/crew?msg=signed_out", status_code=303)
    response.delete_cookie(COOKIE, path="/crew")
    response.delete_cookie(COOKIE)  # one set before the cookie was kept to /crew
    return response


@router.get("/photos/{photo_id}")
def crew_photo(conn: Db, photo_id: int, lykta_crew: Annotated[str | None, Cookie()] = None) -> Response:
    """A citizen's photo, for a crew whose work order's case it belongs to."""
    who = _crew(conn, lykta_crew)
    if not isinstance(who, Principal) or not order_store.crew_sees_photo(conn, who.tenant_id, who.crew_id, photo_id):
        raise ApiError(404, f"photo {photo_id} not found")
    jpeg = requests_store.photo_jpeg(conn, who.tenant_id, photo_id)
    if jpeg is None:
        raise ApiError(404, f"photo {photo_id} not found")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


def _problem(exc: ApiError | WorkOrderError, action: str) -> str:
    """The code of what went wrong, for a message in the crew's language."""
    if isinstance(exc, ApiError) and exc.status == 404:
        return "gone"
    text = str(exc)
    if action == "done" and "accept it before" in text:
        return "accept_first"
    if action == "reject" and "needs a reason" in text:
        return "reason_needed"
    return "not_now"


def _apply(
    conn: psycopg.Connection,
    who: Principal,
    work_order_id: int,
    action: str,
    note: str | None,
    key: str | None,
    now: float,
) -> None:
    """A crew member's tap, once per key."""
    own_order(conn, who, work_order_id)
    repeated = order_store.claim_action(conn, who.tenant_id, key, work_order_id, action) if key else None
    if repeated is None:
        routing.act(conn, work_order_id, action, who.actor, note, now)
    elif repeated != "saved":
        raise WorkOrderError(f"the key of this tap was used for another: {repeated}")


@router.post("/work-orders/{work_order_id}/{action}")
def crew_action(
    request: Request,
    conn: Db,
    clock: Clock,
    work_order_id: int,
    action: str,
    note: Annotated[str | None, Form(max_length=4000)] = None,
    key: Annotated[str | None, Form(pattern=r"^[A-Za-z0-9_-]{8,64}$")] = None,
    confirmed: Annotated[str | None, Form(max_length=1)] = None,
    lykta_crew: Annotated[str | None, Cookie()] = None,
) -> Response:
    wants_json = "application/json" in request.headers.get("accept", "")
    who = _crew(conn, lykta_crew)
    if not isinstance(who, Principal):
        if wants_json:
            return JSONResponse({"ok": False, "code": "revoked", "message": "sign in again"}, status_code=401)
        return RedirectResponse("/crew", status_code=303)
    if action not in ACTIONS:
        raise ApiError(404, f"no action {action!r}")
    lang = tenants.language(conn, who.tenant_id)
    t = words(lang)
    if action in ("done", "reject") and confirmed != "1":
        order = own_order(conn, who, work_order_id)
        conn.rollback()
        question = t[f"confirm_{action}"].format(id=work_order_id)
        return TEMPLATES.TemplateResponse(
            request,
            "confirm.html",
            {"lang": lang, "t": t, "question": question, "order": order, "action": action, "note": note, "key": key},
        )
    try:
        with conn.transaction():
            _apply(conn, who, work_order_id, action, note, key, clock())
        conn.commit()
    except (ApiError, WorkOrderError) as exc:
        code = _problem(exc, action)
        if wants_json:
            return JSONResponse({"ok": False, "code": code, "message": t[code]}, status_code=409)
        return RedirectResponse(f"/crew?msg={code}", status_code=303)
    if wants_json:
        return JSONResponse({"ok": True, "code": "saved", "message": t["saved"]})
    return RedirectResponse("/crew?msg=saved", status_code=303)
