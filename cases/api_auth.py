"""Who is asking: API tokens, the principal behind a request, and the dependencies every router shares.

A token belongs to one tenant and is either an operator's (the whole tenant) or a crew's (its own work orders).
Tokens are stored as SHA-256 hashes; the token itself is shown once when it is created.
"""

# No ``from __future__ import annotations``: FastAPI reads the dependencies' annotations at import time.

import asyncio
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import psycopg
from fastapi import Depends, Header, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from cases.policy import Policies
from floor.errors import LyktaError
from storage import api as api_store


class ApiError(LyktaError):
    """A request that cannot be served; ``status`` is the HTTP status it is answered with."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "lyk_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    role: str
    crew_id: str | None
    holder: str = ""
    """whose token it is (a crew member's name on a personal token)"""

    @property
    def actor(self) -> str:
        """Who did it, as case events record it: ``crew:<crew>`` (``crew:<crew>/<holder>`` with a personal
        token) or ``operator:<tenant>``."""
        if self.crew_id:
            return f"crew:{self.crew_id}/{self.holder}" if self.holder else f"crew:{self.crew_id}"
        return f"operator:{self.tenant_id}"


async def db(request: Request) -> AsyncIterator[psycopg.Connection]:
    """A connection from the application's pool for the length of the request. Taken and given back on the event
    loop, not in a worker thread: giving it back never waits for a thread (cases/api_admission.py says why), and a
    request cancelled while its handler runs gives it back once the handler's thread is done with it."""
    pool: ConnectionPool = request.app.state.pool
    try:
        conn = await asyncio.to_thread(pool.getconn)
    except PoolTimeout:
        raise ApiError(503, "the service is busy; try again in a few seconds", retry_after=5) from None
    try:
        yield conn
    finally:
        try:
            if conn.info.transaction_status != TransactionStatus.IDLE:
                conn.rollback()  # what the request left open is not kept (reads leave their transaction open)
        except psycopg.Error:
            pass  # a broken connection: the pool sees it and replaces it
        pool.putconn(conn)


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def no_unknown_query(request: Request) -> None:
    """Refuse query parameters the route does not know: a misspelt filter would otherwise be ignored in silence
    and the answer taken for a filtered one."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        raise ApiError(422, f"unknown query parameter {', '.join(unknown)} (this route takes: {allowed})")


def policies(request: Request) -> Policies:
    found: Policies = request.app.state.policies
    return found


def clock(request: Request) -> Callable[[], float]:
    """The application's "now" (tests and demos run simulated time)."""
    found: Callable[[], float] = request.app.state.clock
    return found


Db = Annotated[psycopg.Connection, Depends(db)]
Rules = Annotated[Policies, Depends(policies)]
Clock = Annotated[Callable[[], float], Depends(clock)]


def check_token(conn: psycopg.Connection, token: str) -> Principal | str:
    """Who holds the token, or why it is refused. Expiry is judged by the wall clock, whatever the application's
    clock says."""
    found = api_store.token(conn, hash_token(token))
    conn.rollback()
    if found is None:
        return "invalid or revoked token"
    tenant_id, role, crew_id, expires, label = found
    if expires <= time.time():
        day = datetime.fromtimestamp(expires, UTC).date().isoformat()
        return f"token expired on {day}: ask for a new one"
    return Principal(tenant_id, role, crew_id, label if role == "crew" else "")


def from_token(conn: psycopg.Connection, token: str) -> Principal | None:
    found = check_token(conn, token)
    return found if isinstance(found, Principal) else None


def principal(conn: Db, authorization: Annotated[str | None, Header()] = None) -> Principal:
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():  # the scheme is case-insensitive (RFC 9110, 11.1)
        raise ApiError(401, "missing bearer token (Authorization: Bearer <token>)")
    found = check_token(conn, token.strip())
    if isinstance(found, str):
        raise ApiError(401, found)
    if found.role == "app":
        raise ApiError(403, "an Open311 application key (api_key) posts citizen reports only")
    return found


Who = Annotated[Principal, Depends(principal)]


def operator(who: Who) -> Principal:
    if who.role != "operator":
        raise ApiError(403, "this needs an operator token")
    return who


Operator = Annotated[Principal, Depends(operator)]
