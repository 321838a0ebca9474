"""``/crew``: a server-rendered, phone-sized page where a crew signs in with its token and accepts, finishes or
rejects its work orders, in the tenant's language."""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at definition time.

from dataclasses import asdict
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import psycopg
from fastapi import APIRouter, Cookie, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from cases import texts
from cases.api_auth import ApiError, Clock, Db, Principal, from_token
from cases.api_v1 import act
from floor.timefmt import iso
from storage import api as api_store
from storage import tenants

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))
COOKIE = "lykta_crew"

router = APIRouter(prefix="/crew", include_in_schema=False)


def _crew(conn: psycopg.Connection, token: str | None) -> Principal | None:
    who = from_token(conn, token) if token else None
    return who if who is not None and who.role == "crew" else None


def _words(lang: str) -> dict[str, str]:
    return {k: texts.word(k, lang) for k in texts.WORDS}


@router.get("", response_class=HTMLResponse)
def crew_page(
    request: Request, conn: Db, lykta_crew: Annotated[str | None, Cookie()] = None, msg: str | None = None
) -> Response:
    who = _crew(conn, lykta_crew)
    if who is None:
        return TEMPLATES.TemplateResponse(
            request, "login.html", {"lang": "en", "t": _words("en"), "error": msg == "bad"}
        )
    lang = tenants.language(conn, who.tenant_id)
    orders = api_store.work_orders(conn, who.tenant_id, who.crew_id, "active")
    conn.rollback()
    return TEMPLATES.TemplateResponse(
        request,
        "crew.html",
        {
            "lang": lang,
            "t": _words(lang),
            "crew": who.crew_id,
            "orders": [
                {
                    **asdict(o),
                    "status_text": texts.status(o.status, lang),
                    "priority_text": texts.priority(o.priority, lang),
                    "due": iso(o.due_at)[:16].replace("T", " "),
                }
                for o in orders
            ],
            "saved": msg == "saved",
            "error": msg if msg not in (None, "saved", "bad") else None,
        },
    )


@router.post("/login")
def crew_login(conn: Db, token: Annotated[str, Form(max_length=200)]) -> Response:
    who = _crew(conn, token.strip())
    if who is None:
        return RedirectResponse("/crew?msg=bad", status_code=303)
    response = RedirectResponse("/crew", status_code=303)
    response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict", max_age=30 * 86400)
    return response


@router.post("/work-orders/{work_order_id}/{action}")
def crew_action(
    conn: Db,
    clock: Clock,
    work_order_id: int,
    action: str,
    note: Annotated[str | None, Form(max_length=4000)] = None,
    lykta_crew: Annotated[str | None, Cookie()] = None,
) -> Response:
    who = _crew(conn, lykta_crew)
    if who is None:
        return RedirectResponse("/crew", status_code=303)
    if action not in ("accept", "done", "reject"):
        raise ApiError(404, f"no action {action!r}")
    try:
        act(conn, who, work_order_id, action, note, clock())
    except ApiError as exc:
        return RedirectResponse(f"/crew?msg={quote(exc.message[:200])}", status_code=303)
    return RedirectResponse("/crew?msg=saved", status_code=303)
