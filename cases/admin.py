"""Administration of crews and API tokens (``lykta crews``, ``lykta tokens``) with checked input."""

from __future__ import annotations

import re
import secrets

import psycopg

from cases.api_auth import hash_token, new_token
from cases.console.auth import hash_password
from floor.errors import LyktaError
from floor.timefmt import iso_or_none as iso
from storage import api as api_store
from storage import citizens as requests_store
from storage import console as console_store
from storage import crews as crew_store
from storage import tenants
from storage.crews import Crew

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_WORD = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _list(raw: str | None, what: str) -> list[str]:
    items = [x.strip() for x in (raw or "").split(",") if x.strip()]
    bad = [x for x in items if not _WORD.match(x)]
    if bad:
        raise LyktaError(f"{what} {bad[0]!r}: use letters, digits, '_', '.' or '-'")
    return items


def add_crew(  # noqa: PLR0917 - the fields of a crew, from the command line
    url: str,
    tenant_id: str,
    crew_id: str,
    name: str,
    email: str | None,
    webhook: str | None,
    secret: str | None,
    areas: str | None,
    skills: str | None,
) -> str:
    if not _ID.match(crew_id):
        raise LyktaError(f"crew id {crew_id!r}: use 1-63 lower-case letters, digits, '-' or '_'")
    if email is not None and not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", email):
        raise LyktaError(f"--email {email!r} is not an e-mail address")
    if webhook is not None and not re.match(r"^https?://[^\s]+$", webhook):
        raise LyktaError(f"--webhook {webhook!r}: expected an http:// or https:// URL")
    if webhook and not secret:
        raise LyktaError("--webhook needs --secret: webhooks are signed")
    with psycopg.connect(url, autocommit=True) as conn:
        tenants.get(conn, tenant_id)  # an unknown tenant is refused with its name
        crew_store.upsert(
            conn,
            Crew(
                tenant_id=tenant_id,
                crew_id=crew_id,
                name=name,
                email=email,
                webhook_url=webhook,
                webhook_secret=secret,
                areas=_list(areas, "area"),
                skills=_list(skills, "skill"),
                active=True,
            ),
        )
    return f"crew {tenant_id}/{crew_id} saved"


def list_crews(url: str, tenant_id: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [
            f"{c.crew_id:<16} {c.name:<24} areas={','.join(c.areas) or '*'} "
            f"skills={','.join(c.skills) or '*'} email={c.email or '-'} webhook={c.webhook_url or '-'}"
            for c in crew_store.crews(conn, tenant_id)
        ]


def create_token(  # noqa: PLR0917 - a token's fields
    url: str, tenant_id: str, role: str, crew_id: str | None, label: str, days: int | None = None
) -> str:
    """A new token, printed once; only its hash is stored. Valid for ``days`` days (a crew's 90, an operator's
    or an Open311 application's 365 by default). A crew's token is personal: ``label`` names its holder."""
    if role not in ("operator", "crew", "app"):
        raise LyktaError("--role must be operator, crew or app (an Open311 application's api_key)")
    days = days if days is not None else (90 if role == "crew" else 365)
    if not 1 <= days <= 3650:
        raise LyktaError(f"--days {days}: a token lives 1 to 3650 days")
    if (role == "crew") != (crew_id is not None):
        raise LyktaError("a crew token needs --crew; an operator's or an application's takes none")
    token = new_token()
    with psycopg.connect(url, autocommit=True) as conn:
        if role == "crew" and crew_store.crew(conn, tenant_id, crew_id or "") is None:
            raise LyktaError(f"unknown crew {tenant_id}/{crew_id}")
        tenants.get(conn, tenant_id)
        api_store.create_token(conn, hash_token(token), tenant_id, role, crew_id, label, days)
    return token


def revoke_token(url: str, token: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        if not api_store.revoke_token(conn, hash_token(token)):
            raise LyktaError("no such active token")
    return "token revoked"


def list_reports(url: str, tenant_id: str | None, triage: str | None) -> list[str]:
    """Citizen reports (those waiting for an operator, with ``triage`` inbox), oldest first."""
    if triage not in (None, "inbox", "attached", "dismissed"):
        raise LyktaError("--triage must be inbox, attached or dismissed")
    out = []
    with psycopg.connect(url) as conn:
        ids = [tenant_id] if tenant_id else [t.tenant_id for t in tenants.all_tenants(conn)]
        for tenant in ids:
            for r in requests_store.by_triage(conn, tenant, triage, 1000, 0):
                where = r.address or (f"{r.lat:.5f},{r.lon:.5f}" if r.lat is not None and r.lon is not None else "-")
                on = f"case #{r.case_id}" if r.case_id else (f"near {r.asset_id}" if r.asset_id else "no asset near")
                out.append(
                    f"report #{r.request_id:<5} {tenant} {iso(r.requested_at)} {r.service_code:<16} {r.triage:<9} "
                    f"{on:<18} {where}"
                )
    out.append(f"{len(out)} report(s)")
    return out


def list_cases(url: str, tenant_id: str | None, status: str) -> list[str]:
    if status not in ("open", "in_repair", "verifying", "resolved", "active"):
        raise LyktaError("--status must be open, in_repair, verifying, resolved or active")
    out = []
    with psycopg.connect(url) as conn:
        ids = [tenant_id] if tenant_id else [t.tenant_id for t in tenants.all_tenants(conn)]
        for tenant in ids:
            for c in api_store.cases(conn, tenant, status, None, None, None, None, 1000, 0):
                out.append(
                    f"#{c.case_id:<6} {tenant}/{c.asset_id:<12} {c.fault:<22} {c.status:<10} "
                    f"{c.priority:<10} due {iso(c.due_at)}" + ("  BREACHED" if c.breached_at else "")
                )
    out.append(f"{len(out)} case(s)")
    return out


def add_operator(url: str, email: str, name: str, tenant_ids: list[str], password: str | None) -> str:
    """A person who signs in to the console, working for ``tenant_ids``. Without ``password`` one is made and
    returned (shown once); with one, the person's password is set. Adding a person again changes their name
    (and password) and adds municipalities."""
    if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", email):
        raise LyktaError(f"--email {email!r} is not an e-mail address")
    if not tenant_ids:
        raise LyktaError("name at least one --tenant the person works for")
    made = password is None
    password = password if password is not None else secrets.token_urlsafe(12)
    try:
        hashed = hash_password(password)
    except ValueError as exc:
        raise LyktaError(str(exc)) from None
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for tenant_id in tenant_ids:
            tenants.get(conn, tenant_id)
        operator_id = console_store.upsert_operator(conn, email, name, hashed)
        console_store.grant(conn, operator_id, tenant_ids)
    return f"{email}: password {password}" if made else f"{email}: password set"


def list_operators(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [
            f"{email:<32} {name:<24} {','.join(ts) or '-'}{' (disabled)' if off else ''}"
            for email, name, ts, off in console_store.operators(conn)
        ]


def disable_operator(url: str, email: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        if not console_store.disable(conn, email):
            raise LyktaError(f"no active person {email!r}")
    return f"{email}: disabled, sessions ended"
