"""Who is asking: API tokens, the principal behind a request, and the dependencies every router shares.

A token belongs to one tenant and is either an operator's (the whole tenant) or a crew's (its own work orders).
Tokens are stored as SHA-256 hashes; the token itself is shown once when it is created.
"""

# No ``from __future__ import annotations``: FastAPI reads the dependencies' annotations at import time.

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated

import psycopg
from fastapi import Depends, Header, Request
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

    @property
    def actor(self) -> str:
        return f"crew:{self.crew_id}" if self.crew_id else f"operator:{self.tenant_id}"


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
        pool.putconn(conn)  # a rollback at most: what the request left open is not kept


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


def from_token(conn: psycopg.Connection, token: str) -> Principal | None:
    found = api_store.token(conn, hash_token(token))
    conn.rollback()
    return None if found is None else Principal(*found)


def principal(conn: Db, authorization: Annotated[str | None, Header()] = None) -> Principal:
    if not authorization or not authorization.startswith("Bearer "):
        raise ApiError(401, "missing bearer token (Authorization: Bearer <token>)")
    found = from_token(conn, authorization.removeprefix("Bearer ").strip())
    if found is None:
        raise ApiError(401, "invalid or revoked token")
    return found


Who = Annotated[Principal, Depends(principal)]


def operator(who: Who) -> Principal:
    if who.role != "operator":
        raise ApiError(403, "this needs an operator token")
    return who


Operator = Annotated[Principal, Depends(operator)]
