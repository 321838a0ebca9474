"""What a reporter who gave an e-mail address hears, in the tenant's language: that the report was received,
that a crew has the work order and when it is expected done, and how it ended (repaired, the fault went away,
handled with another report, or the operator's own words when the case was closed by hand or the report
dismissed). Queued in the outbox in the transaction that caused it, each once (idempotency keys)."""

from __future__ import annotations

import psycopg

from cases import texts
from floor.timefmt import local
from storage import citizens as requests_store
from storage import outbox as outbox_store
from storage import tenants
from storage.outbox import NewMessage

SUBJECTS = {
    "received": {"en": "Your report #{id} was received", "sv": "Din anmälan #{id} har tagits emot",
                 "pt": "A sua participação #{id} foi recebida"},
    "ended": {"en": "Your report #{id}: {status}", "sv": "Din anmälan #{id}: {status}",
              "pt": "A sua participação #{id}: {status}"},
    "planned": {"en": "Your report #{id}: repair planned", "sv": "Din anmälan #{id}: åtgärd planerad",
                "pt": "A sua participação #{id}: reparação planeada"},
}  # fmt: skip
PLANNED = {
    "en": "A crew has the work order. Expected done by {due}.",
    "sv": "Ett arbetslag har fått arbetsordern. Beräknas klart senast {due}.",
    "pt": "Uma equipa tem a ordem de trabalho. Prevista até {due}.",
}
THANKS = {
    "en": "Thank you for your report to {name}.",
    "sv": "Tack för din anmälan till {name}.",
    "pt": "Obrigado pela sua participação a {name}.",
}
STATUS = {"en": "Status", "sv": "Status", "pt": "Estado"}


def _send(  # noqa: PLR0917 - one message to one reporter
    conn: psycopg.Connection, tenant_id: str, request_id: int, kind: str, email: str, now: float
) -> None:
    r = requests_store.get(conn, tenant_id, request_id)
    if r is None:
        return
    tenant = tenants.get(conn, tenant_id)
    lang = texts.language(tenant.language)
    status = texts.citizen_status(r.case_status, r.resolution, r.closing_note or r.triage_note, lang, r.triage)
    subject = SUBJECTS[kind][lang].format(id=request_id, status=status)
    lines = [THANKS[lang].format(name=tenant.name), "", f"{STATUS[lang]}: {status}"]
    if kind == "planned" and r.due_at is not None:
        lines.append(PLANNED[lang].format(due=local(r.due_at, tenant.timezone)))
    if r.description:
        lines += ["", f"> {r.description}"]
    outbox_store.enqueue(
        conn,
        NewMessage(
            tenant_id=tenant_id,
            channel="email",
            target=email,
            subject=subject,
            body={"text": "\n".join(lines) + "\n", "event": f"report-{kind}"},
            key=f"{tenant_id}:sr-{request_id}:{kind}",
            at=now,
        ),
    )


def received(conn: psycopg.Connection, tenant_id: str, request_id: int, now: float) -> None:
    """The report is stored: tell its reporter, if they gave an address."""
    email = requests_store.email_of(conn, tenant_id, request_id)
    if email:
        _send(conn, tenant_id, request_id, "received", email, now)


def ended(conn: psycopg.Connection, tenant_id: str, request_id: int, now: float) -> None:
    """The report's case resolved, or the report was dismissed: tell its reporter how."""
    email = requests_store.email_of(conn, tenant_id, request_id)
    if email:
        _send(conn, tenant_id, request_id, "ended", email, now)


def planned(conn: psycopg.Connection, tenant_id: str, case_id: int, now: float) -> None:
    """A crew has the case's work order: tell the case's reporters when it is expected done (each once)."""
    for request_id, email in requests_store.reporters_of_case(conn, case_id):
        _send(conn, tenant_id, request_id, "planned", email, now)


def case_ended(conn: psycopg.Connection, tenant_id: str, case_id: int, now: float) -> None:
    """A case resolved: tell every reporter of it who gave an address."""
    for request_id, email in requests_store.reporters_of_case(conn, case_id):
        _send(conn, tenant_id, request_id, "ended", email, now)
