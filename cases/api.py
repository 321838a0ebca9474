"""``lykta api``: the HTTP API for crews and operators, the crew page, and Open311 GeoReport v2 for citizens.

* ``/api/v1/...``: JSON, with a bearer token per crew or operator; each token belongs to one tenant and sees
  only that tenant. OpenAPI at ``/openapi.json``, browsable at ``/docs``.
* ``/crew``: a server-rendered, phone-sized page where a crew signs in with its token and accepts, finishes
  or rejects its work orders; in the tenant's language.
* ``/open311/v2/...``: services, service definitions, and service requests (POST and GET), JSON.

Errors are JSON ``{"error": "..."}`` (Open311: ``[{"code": ..., "description": ...}]``) with the HTTP status
that fits; bodies over 64 KiB are refused with 413 (and bodies without a length with 411), headers over
16 KiB with 431 (uvicorn's parser answers 400 first when they arrive in pieces), request targets (path and
query) over 8 KiB with 414.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at definition time,
# and the dependency aliases (Db, Who, Operator) are local to create_app.

import asyncio
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import psycopg
from fastapi import Cookie, Depends, FastAPI, Form, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, Field

from cases import citizen, lifecycle, routing, texts
from cases.policy import Policies
from storage import api as api_store
from storage import cases as store
from storage import citizens as requests_store
from storage import tenants

MAX_BODY = 64 * 1024
MAX_HEADERS = 16 * 1024
MAX_TARGET = 8 * 1024
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))
COOKIE = "lykta_crew"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "lyk_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    role: str
    crew_id: str | None

    @property
    def actor(self) -> str:
        return f"crew:{self.crew_id}" if self.crew_id else f"operator:{self.tenant_id}"


class Note(BaseModel):
    note: str | None = Field(default=None, max_length=4000, description="what was done, or why it was rejected")


class Assignment(BaseModel):
    crew_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="the crew that gets the case")


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _iso(t: float | None) -> str | None:
    return lifecycle.iso(t)


def create_app(url: str, policies: Policies, clock: Callable[[], float] = time.time, pool_size: int = 4) -> FastAPI:
    """The application; ``clock`` gives "now" (tests and demos run simulated time)."""
    pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=False, kwargs={"autocommit": False})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(pool.open, True, 30)
        try:
            yield
        finally:
            await asyncio.to_thread(pool.close)

    app = FastAPI(
        title="lykta API",
        version="1",
        description="Work orders for crews, cases for operators, Open311 GeoReport v2 for citizens.",
        lifespan=lifespan,
    )

    def db() -> Iterator[psycopg.Connection]:
        with pool.connection() as conn:
            yield conn

    Db = Annotated[psycopg.Connection, Depends(db)]

    @app.middleware("http")
    async def limit_size(request: Request, call_next: Any) -> Response:
        headers = sum(len(k) + len(v) for k, v in request.scope["headers"])
        if headers > MAX_HEADERS:
            return _error(request, 431, f"request headers larger than {MAX_HEADERS} bytes")
        if len(request.scope["raw_path"]) + len(request.scope["query_string"]) > MAX_TARGET:
            return _error(request, 414, f"request target longer than {MAX_TARGET} bytes")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return _error(request, 413, f"request body larger than {MAX_BODY} bytes")
        if length is None and "chunked" in request.headers.get("transfer-encoding", "").lower():
            return _error(request, 411, "send the body with a Content-Length")
        response: Response = await call_next(request)
        return response

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return _error(request, exc.status, exc.message)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        return _error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", []) if p not in ("body", "query", "path", "form"))
        return _error(
            request,
            422 if not request.url.path.startswith("/open311") else 400,
            f"{where or 'request'}: {first.get('msg')}",
        )

    def principal(conn: Db, authorization: Annotated[str | None, Header()] = None) -> Principal:
        if not authorization or not authorization.startswith("Bearer "):
            raise ApiError(401, "missing bearer token (Authorization: Bearer <token>)")
        found = api_store.token(conn, hash_token(authorization.removeprefix("Bearer ").strip()))
        conn.rollback()
        if found is None:
            raise ApiError(401, "invalid or revoked token")
        return Principal(*found)

    Who = Annotated[Principal, Depends(principal)]

    def operator(who: Who) -> Principal:
        if who.role != "operator":
            raise ApiError(403, "this needs an operator token")
        return who

    Operator = Annotated[Principal, Depends(operator)]

    # -- work orders ----------------------------------------------------------------------------------------

    @app.get("/api/v1/work-orders", tags=["crews"], summary="Work orders of the crew (or, for operators, all)")
    def list_work_orders(
        conn: Db,
        who: Who,
        status: Annotated[
            str | None, Query(pattern="^(new|assigned|in_progress|done|rejected|cancelled|active)$")
        ] = None,
    ) -> list[dict[str, Any]]:
        return [_order_json(o) for o in api_store.work_orders(conn, who.tenant_id, who.crew_id, status)]

    @app.get("/api/v1/work-orders/{work_order_id}", tags=["crews"], summary="One work order with its notes")
    def get_work_order(conn: Db, who: Who, work_order_id: int) -> dict[str, Any]:
        order = _own_order(conn, who, work_order_id)
        return {**_order_json(order), "notes": [_note_json(n) for n in store.notes(conn, work_order_id)]}

    def _act(
        conn: psycopg.Connection, who: Principal, work_order_id: int, action: str, note: str | None
    ) -> dict[str, Any]:
        _own_order(conn, who, work_order_id)
        try:
            with conn.transaction():
                routing.act(conn, work_order_id, action, who.actor, note, clock())
        except routing.WorkOrderError as exc:
            raise ApiError(409, str(exc)) from None
        order = api_store.work_order(conn, who.tenant_id, work_order_id)
        conn.commit()
        return _order_json(order or {})

    @app.post("/api/v1/work-orders/{work_order_id}/accept", tags=["crews"], summary="Accept: work starts")
    def accept(conn: Db, who: Who, work_order_id: int, body: Note | None = None) -> dict[str, Any]:
        return _act(conn, who, work_order_id, "accept", body.note if body else None)

    @app.post("/api/v1/work-orders/{work_order_id}/done", tags=["crews"], summary="Close with a note: work done")
    def done(conn: Db, who: Who, work_order_id: int, body: Note | None = None) -> dict[str, Any]:
        return _act(conn, who, work_order_id, "done", body.note if body else None)

    @app.post("/api/v1/work-orders/{work_order_id}/reject", tags=["crews"], summary="Reject with a reason")
    def reject(conn: Db, who: Who, work_order_id: int, body: Note) -> dict[str, Any]:
        return _act(conn, who, work_order_id, "reject", body.note)

    # -- cases (operators) ------------------------------------------------------------------------------------------

    @app.get("/api/v1/cases", tags=["operators"], summary="Cases of the tenant, filtered")
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
    ) -> list[dict[str, Any]]:
        rows = api_store.cases(conn, who.tenant_id, status, fault, priority, asset_id, breached, limit, offset)
        return [_case_json(c) for c in rows]

    @app.get("/api/v1/cases/{case_id}", tags=["operators"], summary="One case: findings, events, work orders")
    def get_case(conn: Db, who: Operator, case_id: int) -> dict[str, Any]:
        c = _own_case(conn, who, case_id)
        return {
            **_case_json(c),
            "findings": [
                {**f, "observed_at": _iso(f["observed_at"]), "cleared_at": _iso(f["cleared_at"])}
                for f in store.case_findings(conn, case_id)
            ],
            "events": [{**e, "at": e["at"].isoformat()} for e in store.events(conn, case_id)],
            "work_orders": [_order_json(o) for o in store.work_orders_of_case(conn, case_id)],
            "citizen_reports": api_store.reports_of_case(conn, case_id),
        }

    @app.post("/api/v1/cases/{case_id}/assign", tags=["operators"], summary="Send the case to a crew")
    def assign(conn: Db, who: Operator, case_id: int, body: Assignment) -> dict[str, Any]:
        _own_case(conn, who, case_id)
        try:
            with conn.transaction():
                work_order_id = routing.assign(conn, case_id, body.crew_id, who.actor, clock())
        except routing.WorkOrderError as exc:
            raise ApiError(409, str(exc)) from None
        conn.commit()
        return {"case_id": case_id, "work_order_id": work_order_id, "crew_id": body.crew_id}

    @app.post("/api/v1/cases/{case_id}/close", tags=["operators"], summary="Close a case by hand, with a note")
    def close(conn: Db, who: Operator, case_id: int, body: Note) -> dict[str, Any]:
        c = _own_case(conn, who, case_id)
        if c["status"] == "resolved":
            raise ApiError(409, f"case {case_id} is already resolved")
        if not (body.note and body.note.strip()):
            raise ApiError(422, "note: closing a case by hand needs a note")
        with conn.transaction():
            lifecycle.resolve(conn, c, clock(), "closed", who.actor)
            store.add_event(conn, case_id, who.actor, "note", {"note": body.note.strip()})
            routing.cancel_work_order(conn, case_id, "closed by an operator", clock())
        conn.commit()
        return _case_json(store.existing_case(conn, case_id))

    def _own_case(conn: psycopg.Connection, who: Principal, case_id: int) -> dict[str, Any]:
        c = store.case(conn, case_id)
        if c is None or c["tenant_id"] != who.tenant_id:
            raise ApiError(404, f"case {case_id} not found")
        return c

    def _own_order(conn: psycopg.Connection, who: Principal, work_order_id: int) -> dict[str, Any]:
        order = api_store.work_order(conn, who.tenant_id, work_order_id)
        if order is None or (who.crew_id is not None and order["crew_id"] != who.crew_id):
            raise ApiError(404, f"work order {work_order_id} not found")
        return order

    # -- the crew page ------------------------------------------------------------------------------------------

    def crew_from_cookie(conn: psycopg.Connection, token: str | None) -> Principal | None:
        if not token:
            return None
        found = api_store.token(conn, hash_token(token))
        conn.rollback()
        if found is None or found[1] != "crew":
            return None
        return Principal(*found)

    @app.get("/crew", response_class=HTMLResponse, include_in_schema=False)
    def crew_page(
        request: Request, conn: Db, lykta_crew: Annotated[str | None, Cookie()] = None, msg: str | None = None
    ) -> Response:
        who = crew_from_cookie(conn, lykta_crew)
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
                        **o,
                        "status_text": texts.status(o["status"], lang),
                        "priority_text": texts.priority(o["priority"], lang),
                        "due": (_iso(o["due_at"]) or "")[:16].replace("T", " "),
                    }
                    for o in orders
                ],
                "saved": msg == "saved",
                "error": msg if msg not in (None, "saved", "bad") else None,
            },
        )

    @app.post("/crew/login", include_in_schema=False)
    def crew_login(conn: Db, token: Annotated[str, Form(max_length=200)]) -> Response:
        who = crew_from_cookie(conn, token.strip())
        if who is None:
            return RedirectResponse("/crew?msg=bad", status_code=303)
        response = RedirectResponse("/crew", status_code=303)
        response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict", max_age=30 * 86400)
        return response

    @app.post("/crew/work-orders/{work_order_id}/{action}", include_in_schema=False)
    def crew_action(
        conn: Db,
        work_order_id: int,
        action: str,
        note: Annotated[str | None, Form(max_length=4000)] = None,
        lykta_crew: Annotated[str | None, Cookie()] = None,
    ) -> Response:
        who = crew_from_cookie(conn, lykta_crew)
        if who is None:
            return RedirectResponse("/crew", status_code=303)
        if action not in ("accept", "done", "reject"):
            raise ApiError(404, f"no action {action!r}")
        try:
            _act(conn, who, work_order_id, action, note)
        except ApiError as exc:
            return RedirectResponse(f"/crew?msg={_quote(exc.message)}", status_code=303)
        return RedirectResponse("/crew?msg=saved", status_code=303)

    # -- Open311 GeoReport v2 ------------------------------------------------------------------------------------------

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

    @app.get("/open311/v2/services.{fmt}", tags=["open311"], summary="GeoReport v2: service list")
    def services(conn: Db, fmt: str, jurisdiction_id: str | None = None) -> list[dict[str, Any]]:
        _json_only(fmt)
        tenant = jurisdiction(conn, jurisdiction_id)
        lang = tenants.language(conn, tenant)
        return [
            {
                "service_code": s.code,
                "service_name": texts.fault(s.fault, lang),
                "description": texts.fault(s.fault, lang),
                "metadata": True,
                "type": "realtime",
                "keywords": s.fault,
                "group": s.group,
            }
            for s in policies.get(tenant).services.values()
        ]

    @app.get("/open311/v2/services/{service_code}.{fmt}", tags=["open311"], summary="GeoReport v2: definition")
    def service_definition(conn: Db, service_code: str, fmt: str, jurisdiction_id: str | None = None) -> dict[str, Any]:
        _json_only(fmt)
        tenant = jurisdiction(conn, jurisdiction_id)
        if service_code not in policies.get(tenant).services:
            raise ApiError(404, f"unknown service_code {service_code!r}")
        return {
            "service_code": service_code,
            "attributes": [
                {
                    "variable": True,
                    "code": "details",
                    "datatype": "text",
                    "required": False,
                    "datatype_description": "What you saw (optional)",
                    "order": 1,
                    "description": "Details",
                }
            ],
        }

    @app.post("/open311/v2/requests.{fmt}", tags=["open311"], summary="GeoReport v2: report a problem")
    def post_request(
        conn: Db,
        fmt: str,
        service_code: Annotated[str, Form(max_length=64)],
        jurisdiction_id: Annotated[str | None, Form(max_length=63)] = None,
        lat: Annotated[float | None, Form()] = None,
        long: Annotated[float | None, Form()] = None,
        address_string: Annotated[str | None, Form(max_length=500)] = None,
        email: Annotated[str | None, Form(max_length=254)] = None,
        description: Annotated[str | None, Form(max_length=4000)] = None,
    ) -> list[dict[str, Any]]:
        _json_only(fmt)
        tenant = jurisdiction(conn, jurisdiction_id)
        report = citizen.Report(tenant, service_code, lat, long, address_string, description, email or None)
        try:
            with conn.transaction():
                request = citizen.submit(conn, policies.get(tenant), report, clock())
        except citizen.ReportError as exc:
            raise ApiError(400, str(exc)) from None
        conn.commit()
        lang = tenants.language(conn, tenant)
        return [
            {
                "service_request_id": str(request["request_id"]),
                "service_notice": texts.status(request["case_status"] or "open", lang),
                "account_id": None,
            }
        ]

    @app.get("/open311/v2/requests.{fmt}", tags=["open311"], summary="GeoReport v2: find requests")
    def get_requests(
        conn: Db,
        fmt: str,
        jurisdiction_id: str | None = None,
        service_request_id: Annotated[str | None, Query(max_length=2000, pattern=r"^\d+(,\d+)*$")] = None,
        service_code: Annotated[str | None, Query(max_length=64)] = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        status: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
    ) -> list[dict[str, Any]]:
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
        return [_request_json(conn, tenant, r) for r in rows]

    @app.get("/open311/v2/requests/{service_request_id}.{fmt}", tags=["open311"], summary="GeoReport v2: one request")
    def get_request(
        conn: Db, service_request_id: int, fmt: str, jurisdiction_id: str | None = None
    ) -> list[dict[str, Any]]:
        _json_only(fmt)
        tenant = jurisdiction(conn, jurisdiction_id)
        row = requests_store.get(conn, tenant, service_request_id)
        if row is None:
            raise ApiError(404, f"service request {service_request_id} not found")
        return [_request_json(conn, tenant, row)]

    def _request_json(conn: psycopg.Connection, tenant: str, r: dict[str, Any]) -> dict[str, Any]:
        lang = tenants.language(conn, tenant)
        service = policies.get(tenant).services.get(r["service_code"])
        closed = r["case_status"] == "resolved"
        return {
            "service_request_id": str(r["request_id"]),
            "status": "closed" if closed else "open",
            "status_notes": texts.status(r["case_status"] or "open", lang),
            "service_name": texts.fault(service.fault, lang) if service else r["service_code"],
            "service_code": r["service_code"],
            "description": r["description"],
            "agency_responsible": tenant,
            "service_notice": None,
            "requested_datetime": _iso(r["requested_at"]),
            "updated_datetime": _iso(r["updated_at"] or r["requested_at"]),
            "expected_datetime": _iso(r["due_at"]),
            "address": r["address"],
            "address_id": None,
            "zipcode": None,
            "lat": r["lat"],
            "long": r["lon"],
            "media_url": None,
        }

    return app


def _error(request: Request, status: int, message: str) -> JSONResponse:
    if request.url.path.startswith("/open311"):
        return JSONResponse([{"code": status, "description": message}], status_code=status)
    return JSONResponse({"error": message}, status_code=status)


def _quote(text: str) -> str:
    from urllib.parse import quote  # noqa: PLC0415

    return quote(text[:200])


def _words(lang: str) -> dict[str, str]:
    return {k: texts.word(k, lang) for k in texts.WORDS}


def _order_json(o: dict[str, Any]) -> dict[str, Any]:
    out = dict(o)
    for k in ("created_at", "assigned_at", "accepted_at", "started_at", "finished_at", "updated_at"):
        if isinstance(out.get(k), datetime):
            out[k] = out[k].astimezone(UTC).isoformat()
    for k in ("due_at", "observed_at"):
        if isinstance(out.get(k), float):
            out[k] = _iso(out[k])
    return out


def _note_json(n: dict[str, Any]) -> dict[str, Any]:
    return {**n, "at": n["at"].astimezone(UTC).isoformat()}


def _case_json(c: dict[str, Any]) -> dict[str, Any]:
    out = dict(c)
    for k in ("observed_at", "opened_at", "due_at", "breached_at", "fault_cleared_at", "repaired_at", "resolved_at"):
        out[k] = _iso(out.get(k))
    return out
