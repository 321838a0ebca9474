"""``lykta api``: one application with the HTTP API for crews and operators, the crew page, and Open311.

* ``/api/v1/...``: JSON, with a bearer token per crew or operator; each token belongs to one tenant and sees
  only that tenant. OpenAPI at ``/openapi.json``, browsable at ``/docs``.
* ``/crew``: a server-rendered, phone-sized page where a crew signs in with its token and accepts, finishes
  or rejects its work orders; in the tenant's language.
* ``/console/...``: the operator console (cases/console/): people sign in, work the inbox, the cases and their
  map, crews and assets.
* ``/report/...``: the citizens' own pages: report a fault (map, position, photos), and where a report stands.
* ``/open311/...``: GeoReport v2: discovery, services, service definitions, and service requests (POST and
  GET), XML and JSON.

Errors are JSON ``{"error": "..."}`` (Open311: the spec's error document, in the format the path asks for)
with the HTTP status that fits, on unknown routes too; bodies over 64 KiB are refused with 413 (posts that may
carry photos: 3 x 8 MiB), bodies without a length with 411, headers over 16 KiB with 431 (uvicorn's parser
answers 400 first when they arrive in pieces), request targets (path and query) over 8 KiB with 414.

The routes live in their routers (:mod:`cases.api_v1`, :mod:`cases.crew_page`, :mod:`cases.open311`); this
module builds the application: the connection pool, the size limits and the error answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from psycopg_pool import ConnectionPool
from starlette.exceptions import HTTPException as StarletteHTTPException

from cases import api_v1, citizen, citizen_page, crew_page, open311, open311_format, web
from cases.api_admission import Admission, Receive, Scope, Send
from cases.api_auth import ApiError
from cases.console import pages as console_pages
from cases.console.auth import SignInNeeded
from cases.policy import Policies

MAX_BODY = 64 * 1024
MAX_UPLOAD = citizen.MAX_PHOTOS * citizen.MAX_PHOTO_BYTES + MAX_BODY
"""posts that may carry photos: Open311's requests and the citizens' report page"""
MAX_HEADERS = 16 * 1024
MAX_TARGET = 8 * 1024


def create_app(
    url: str,
    policies: Policies,
    clock: Callable[[], float] = time.time,
    pool_size: int = 4,
    queue: int = 256,
    queue_wait_s: float = 10.0,
    public_url: str | None = None,
    map_tiles: str = "",
    grafana_url: str | None = None,
) -> FastAPI:
    """The application; ``clock`` gives "now" (tests and demos run simulated time). At most ``pool_size``
    requests work at once, each with one connection; up to ``queue`` more wait, each at most ``queue_wait_s``;
    the rest are refused with 503 and ``Retry-After`` (cases/api_admission.py). ``public_url``: how people reach
    it (``api_public_url``), for the addresses it gives out; ``map_tiles``: the report page's map tiles (none:
    the page works without)."""
    pool = ConnectionPool(
        url,
        min_size=pool_size,
        max_size=pool_size,
        open=False,
        timeout=queue_wait_s,
        kwargs={"autocommit": False},
        check=ConnectionPool.check_connection,  # a connection the database dropped (a failover) is replaced
    )

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
    app.state.pool = pool
    app.state.policies = policies
    app.state.clock = clock
    app.state.public_url = public_url
    app.state.map_tiles = map_tiles
    app.state.grafana_url = grafana_url
    app.include_router(api_v1.router)
    app.include_router(crew_page.router)
    app.include_router(open311.router)
    app.include_router(citizen_page.router)
    app.include_router(console_pages.router)
    web.mount(app)
    app.middleware("http")(limit_size)
    app.add_middleware(Admission, limit=pool_size, queue=queue, wait_s=queue_wait_s, refuse=_busy)
    app.add_middleware(web.SecurityHeaders, tiles=map_tiles)
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(SignInNeeded, _sign_in)
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]  # unknown routes
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    return app


async def limit_size(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    headers = sum(len(k) + len(v) for k, v in request.scope["headers"])
    if headers > MAX_HEADERS:
        return _error(request, 431, f"request headers larger than {MAX_HEADERS} bytes")
    if len(request.scope["raw_path"]) + len(request.scope["query_string"]) > MAX_TARGET:
        return _error(request, 414, f"request target longer than {MAX_TARGET} bytes")
    length = request.headers.get("content-length")
    limit = MAX_UPLOAD if _uploads(request) else MAX_BODY
    if length is not None and (not length.isdigit() or int(length) > limit):
        return _error(request, 413, f"request body larger than {limit} bytes")
    if length is None and "chunked" in request.headers.get("transfer-encoding", "").lower():
        return _error(request, 411, "send the body with a Content-Length")
    return await call_next(request)


def _uploads(request: Request) -> bool:
    path = request.url.path
    multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
    photos = path.startswith("/open311/v2/requests.") or path.startswith(citizen_page.UPLOADS)
    return multipart and request.method == "POST" and photos


async def _sign_in(_request: Request, _exc: Exception) -> Response:
    return RedirectResponse("/console/login", status_code=303)


async def _api_error(request: Request, exc: ApiError) -> Response:
    headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
    return _error(request, exc.status, exc.message, headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    return _error(request, exc.status_code, str(exc.detail))


async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    first = exc.errors()[0] if exc.errors() else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", []) if p not in ("body", "query", "path", "form"))
    return _error(
        request,
        422 if not request.url.path.startswith("/open311") else 400,
        f"{where or 'request'}: {first.get('msg')}",
    )


def _error(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    if request.url.path.startswith("/open311"):
        return open311_format.errors(request.url.path, status, message, headers)
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _busy(scope: Scope, receive: Receive, send: Send, retry_after: int) -> None:
    """503: too many requests at once; come back in ``retry_after`` seconds."""
    request = Request(scope, receive)
    message = f"the service is busy; try again in {retry_after} s"
    await _error(request, 503, message, {"Retry-After": str(retry_after)})(scope, receive, send)
