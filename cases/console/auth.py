"""Who is using the console: people's accounts (passwords hashed with scrypt), sessions with an expiry, the
municipality chosen (from those the person works for), and CSRF tokens on every form.

A session cookie (``lykta_console``: HttpOnly, SameSite=Strict, path ``/console``) holds a random token whose
SHA-256 is stored; it ends at sign-out, after ``SESSION_S``, or when the person is disabled. Every form carries
the session's CSRF token, checked on every POST. Sign-in is slowed down after failures: at most
``MAX_FAILURES`` for one e-mail address or one network address in ``FAILURE_WINDOW_S``.
"""

# No ``from __future__ import annotations``: FastAPI reads the dependencies' annotations at import time.

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

import psycopg
from fastapi import Cookie, Depends, Form, Request

from cases.api_auth import ApiError, Db
from storage import console as console_store
from storage import tenants
from storage.console import Session

COOKIE = "lykta_console"
SESSION_S = 10 * 3600
"""a working day (and a bit); then sign in again"""
MAX_FAILURES = 5
FAILURE_WINDOW_S = 900
SCRYPT = {"n": 2**15, "r": 8, "p": 1}
"""scrypt's cost: 32 MiB and about 0.1 s per check"""


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$<salt hex>$<hash hex>``."""
    if len(password) < 10:
        raise ValueError("a password needs at least 10 characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, maxmem=2**26, dklen=32, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if kind != "scrypt":
        return False
    found = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), maxmem=2**26, dklen=32
    )
    return hmac.compare_digest(found.hex(), digest)


DUMMY = hash_password("no such person, no such password")
"""checked against when the e-mail is unknown, so that an unknown address takes as long as a wrong password"""


def _digest(text: str) -> str:
    return hashlib.sha256(text.strip().lower().encode()).hexdigest()


def sign_in(conn: psycopg.Connection, email: str, password: str, client: str | None) -> str | None:
    """A new session's cookie value for the right e-mail and password, else None (and the failure counted).
    Refused without checking after too many failures (ApiError 429)."""
    keys = [f"email:{_digest(email)}"] + ([f"client:{_digest(client)}"] if client else [])
    if any(console_store.failures(conn, k, FAILURE_WINDOW_S) >= MAX_FAILURES * (1 if k.startswith("email") else 4)
           for k in keys):  # fmt: skip
        raise ApiError(429, "too many failed sign-ins: wait a quarter of an hour", retry_after=FAILURE_WINDOW_S)
    person = console_store.by_email(conn, email.strip())
    ok = check_password(password, person.password_hash if person else DUMMY)
    if person is None or not ok or person.disabled:
        console_store.failed(conn, keys)
        conn.commit()
        return None
    token = secrets.token_urlsafe(32)
    console_store.start_session(conn, _digest(token), person.operator_id, secrets.token_urlsafe(24), SESSION_S)
    conn.commit()
    return token


def sign_out(conn: psycopg.Connection, token: str) -> None:
    console_store.end_session(conn, _digest(token))
    conn.commit()


def current(conn: Db, lykta_console: Annotated[str | None, Cookie()] = None) -> Session | None:
    """The session behind the request's cookie, if it is valid."""
    if not lykta_console:
        return None
    found = console_store.session(conn, _digest(lykta_console))
    conn.commit()
    return found


@dataclass(frozen=True)
class Desk:
    """A signed-in person working for one municipality: what every tenant page gets."""

    session: Session
    tenant: tenants.Tenant

    @property
    def actor(self) -> str:
        return f"operator:{self.tenant.tenant_id}/{self.session.name}"


class SignInNeeded(Exception):
    """No valid session: the page sends the person to sign in."""


def desk(conn: Db, tenant_id: str, session: Annotated[Session | None, Depends(current)]) -> Desk:
    """The signed-in person at ``tenant_id``'s desk; 404 when they do not work for it (no hint that it exists)."""
    if session is None:
        raise SignInNeeded
    if tenant_id not in session.tenants:
        raise ApiError(404, "not found")
    return Desk(session, tenants.get(conn, tenant_id))


Signed = Annotated[Desk, Depends(desk)]


def csrf(desk: Signed, csrf: Annotated[str, Form(max_length=100)] = "") -> Desk:
    """A form posted from the console's own page (its CSRF token), by its signed-in person."""
    if not hmac.compare_digest(csrf, desk.session.csrf):
        raise ApiError(403, "the form has expired: reload the page and try again")
    return desk


Posted = Annotated[Desk, Depends(csrf)]


def client_of(request: Request) -> str | None:
    return request.client.host if request.client else None
