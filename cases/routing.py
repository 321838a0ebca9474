"""Work orders: routed to a crew by tenant, maintenance area and skill; crews' actions; messages for the outbox.

A work order moves ``new`` (no crew found: an operator assigns one) or
``assigned`` -> ``in_progress`` (the crew accepted it) -> ``done``, or
``rejected`` with a reason; the case handling cancels one whose case resolved or
merged. Each assignment queues an e-mail and a webhook for the crew, with an
idempotency key, in the same transaction.
"""

from __future__ import annotations

from typing import Any

import psycopg

from cases import citizen_mail, messages, texts
from cases.errors import WorkOrderError
from cases.policy import Policy
from floor.timefmt import local
from storage import case_assets as asset_store
from storage import cases as store
from storage import crews as crew_store
from storage import outbox as outbox_store
from storage import tenants
from storage import work_orders as order_store
from storage.cases import Case
from storage.crews import Crew
from storage.outbox import NewMessage
from storage.work_orders import NewWorkOrder, WorkOrder

ACTIVE = ("new", "assigned", "in_progress")
SYSTEM = "lykta"


def choose_crew(crews: list[Crew], area: str | None, skill: str) -> Crew | None:
    """The crew for an area and skill: active, serving the area (or every area) and having the skill (or listing
    none); a crew naming the area wins over one serving everywhere; ties by crew id."""
    fits = [c for c in crews if c.active and (not c.areas or area in c.areas) and (not c.skills or skill in c.skills)]
    fits.sort(key=lambda c: (not (area and area in c.areas), not c.skills, c.crew_id))
    return fits[0] if fits else None


def new_work_order(  # noqa: PLR0917 - one work order, and what its crew is told
    conn: psycopg.Connection,
    policy: Policy,
    c: Case,
    now: float,
    change: str | None = "assigned",
    why: str | None = None,
) -> int:
    """A work order for a case, routed and announced as ``change`` (assigned, or reopened with ``why``; None: the
    caller announces it later)."""
    asset = asset_store.asset(conn, c.tenant_id, c.asset_id)
    area = asset.maintenance_area if asset else None
    skill = policy.skill(c.fault)
    crew = choose_crew(crew_store.crews(conn, c.tenant_id), area, skill)
    lang = tenants.language(conn, c.tenant_id)
    title = texts.work_order_title(c.fault, c.asset_id, (asset.name or asset.district) if asset else None, lang)
    work_order_id = order_store.insert(
        conn,
        NewWorkOrder(
            case_id=c.case_id,
            tenant_id=c.tenant_id,
            crew_id=crew.crew_id if crew else None,
            skill=skill,
            status="assigned" if crew else "new",
            title=title,
        ),
    )
    detail: dict[str, Any] = {"work_order_id": work_order_id, "skill": skill}
    if crew is None:
        detail["unrouted"] = f"no active crew for area {area!r} and skill {skill!r}"
    else:
        detail["crew_id"] = crew.crew_id
        if change is not None:
            announce(conn, work_order_id, change, now, why=why)
    store.add_event(conn, c.case_id, SYSTEM, "work order", detail)
    return work_order_id


def announce_active(conn: psycopg.Connection, case_id: int, change: str, now: float) -> None:
    """Tell the crew of the case's active work order about ``change`` (if it has a crew)."""
    order = order_store.active(conn, case_id)
    if order is not None and order.crew_id is not None:
        announce(conn, order.work_order_id, change, now)


def refresh_work_order(conn: psycopg.Connection, case_id: int, now: float) -> None:
    """Tell the crew again when a case grew (assets added by correlation)."""
    order = order_store.active(conn, case_id)
    if order is not None and order.crew_id is not None:
        announce(conn, order.work_order_id, f"updated-{len(store.case_findings(conn, case_id))}", now)


def cancel_work_order(
    conn: psycopg.Connection,
    case_id: int,
    reason: str,
    now: float,
    *,
    into: int | None = None,
    note: str | None = None,
) -> None:
    """Cancel the case's active work order: ``reason`` is cleared, merged (``into`` that case) or closed (with
    the operator's ``note``); its crew is told, in the tenant's language."""
    order = order_store.active(conn, case_id)
    if order is None:
        return
    why = texts.cancel_reason(reason, tenants.language(conn, order.tenant_id), into, note)
    order_store.set_status(conn, order.work_order_id, "cancelled", reason=why)
    order_store.add_note(conn, order.work_order_id, SYSTEM, why)
    if order.crew_id is not None:
        announce(conn, order.work_order_id, "cancelled", now, why=why)


def announce(
    conn: psycopg.Connection,
    work_order_id: int,
    change: str,
    now: float,
    *,
    crew_id: str | None = None,
    why: str | None = None,
) -> None:
    """Queue the e-mail and webhook of a work order change (``assigned-<crew>``, ``updated-<n>``,
    ``report-<request>``, ``cancelled``, ``withdrawn-<crew>``, ``escalated-<level>``, ``reopened-<n>``) for its
    crew, or for ``crew_id`` (each once: idempotency keys). cases/messages.py writes them."""
    order = order_store.existing(conn, work_order_id)
    target = crew_id or order.crew_id
    crew = crew_store.crew(conn, order.tenant_id, target) if target else None
    if crew is None:
        return
    composed = messages.compose(conn, order, change, why)
    key = f"{order.tenant_id}:wo-{work_order_id}:{change}"
    if crew.email:
        body = {"text": composed.text, "event": change}
        outbox_store.enqueue(
            conn, NewMessage(order.tenant_id, "email", crew.email, composed.subject, body, key + ":email", now)
        )
    if crew.webhook_url:
        outbox_store.enqueue(
            conn,
            NewMessage(
                order.tenant_id, "webhook", crew.webhook_url, composed.subject, composed.payload, key + ":webhook", now
            ),
        )


def notify_escalation(conn: psycopg.Connection, policy: Policy, c: Case, level: int, now: float) -> None:
    """A case past its due time: its crew hears (the work order comes first) and so does the escalation
    address."""
    order = order_store.active(conn, c.case_id)
    tenant = tenants.get(conn, c.tenant_id)
    if order is not None and order.crew_id is not None:
        why = texts.ESCALATION[texts.language(tenant.language)].format(
            due=local(c.due_at, tenant.timezone), level=level
        )
        announce(conn, order.work_order_id, f"escalated-{level}", now, why=why)
    if not policy.escalation_email:
        return
    lang = texts.language(tenant.language)
    outbox_store.enqueue(
        conn,
        NewMessage(
            tenant_id=c.tenant_id,
            channel="email",
            target=policy.escalation_email,
            subject=f"[{texts.word('case', lang)} #{c.case_id}] SLA {level}: {texts.fault(c.fault, lang)} {c.asset_id}",
            body={"text": f"case {c.case_id} is past its due time; escalation level {level}\n", "level": level},
            key=f"{c.tenant_id}:case-{c.case_id}:escalation-{level}",
            at=now,
        ),
    )


# -- crews' and operators' actions ---------------------------------------------------------------------------------


def act(  # noqa: PLR0917 - one action on one work order
    conn: psycopg.Connection, work_order_id: int, action: str, actor: str, note: str | None, now: float
) -> WorkOrder:
    """``accept``, ``done`` or ``reject`` (``note`` is then the reason) by the crew ``actor``; the work order
    must be theirs (the API checks) and in a state that allows it. Returns the updated work order."""
    order = order_store.work_order(conn, work_order_id, lock=True)
    if order is None:
        raise WorkOrderError(f"work order {work_order_id} does not exist")
    allowed = {"accept": ("assigned",), "done": ("in_progress",), "reject": ("assigned", "in_progress")}
    if action not in allowed:
        raise WorkOrderError(f"unknown action {action!r}: use accept, done or reject")
    if order.status not in allowed[action]:
        raise WorkOrderError(refusal(work_order_id, order.status, action))
    if action == "reject" and not (note and note.strip()):
        raise WorkOrderError("a rejection needs a reason")
    c = store.existing_case(conn, order.case_id)
    if action == "accept":
        order_store.set_status(conn, work_order_id, "in_progress")
        if c.status == "open":
            store.update_case(conn, c.case_id, status="in_repair")
    elif action == "done":
        order_store.set_status(conn, work_order_id, "done")
        if c.status != "resolved":
            store.update_case(conn, c.case_id, status="verifying", repaired_at=now)
    else:
        order_store.set_status(conn, work_order_id, "rejected", reason=(note or "").strip())
        if c.status == "in_repair":
            store.update_case(conn, c.case_id, status="open")
    if note and note.strip():
        order_store.add_note(conn, work_order_id, actor, note.strip())
    store.add_event(
        conn, c.case_id, actor, f"work order {action}", {"work_order_id": work_order_id, "note": note or None}
    )
    return order_store.existing(conn, work_order_id)


def refusal(work_order_id: int, status: str, action: str) -> str:
    """Why a crew's action does not fit its work order's state, in words a crew understands."""
    doing = {"accept": "accepted", "done": "finished", "reject": "rejected"}[action]
    if action == "done" and status == "assigned":
        return f"work order {work_order_id} is assigned, not started: accept it before finishing it"
    return f"work order {work_order_id} is {status.replace('_', ' ')}: it cannot be {doing}"


def assign(  # noqa: PLR0917 - one assignment
    conn: psycopg.Connection, policy: Policy, case_id: int, crew_id: str, actor: str, now: float
) -> int:
    """An operator sends a case to a crew that has the skill its fault needs: the active work order moves to
    it, or a new one is made."""
    c = store.case(conn, case_id)
    if c is None or c.status == "resolved":
        raise WorkOrderError(f"case {case_id} does not exist or is resolved", code="case_gone", case=case_id)
    crew = crew_store.crew(conn, c.tenant_id, crew_id)
    if crew is None or not crew.active:
        raise WorkOrderError(f"crew {crew_id!r} does not exist or is inactive", code="no_crew", crew=crew_id)
    skill = policy.skill(c.fault)
    if crew.skills and skill not in crew.skills:
        raise WorkOrderError(
            f"crew {crew_id!r} does not do {skill} work ({c.fault} needs it); its skills: {', '.join(crew.skills)}",
            code="skill",
            crew=crew_id,
            skill=skill,
        )
    order = order_store.active(conn, case_id)
    if order is None:
        lang = tenants.language(conn, c.tenant_id)
        work_order_id = order_store.insert(
            conn,
            NewWorkOrder(
                case_id=case_id,
                tenant_id=c.tenant_id,
                crew_id=crew_id,
                skill=skill,
                status="assigned",
                title=texts.work_order_title(c.fault, c.asset_id, None, lang),
            ),
        )
    else:
        work_order_id = order.work_order_id
        previous = order.crew_id
        order_store.set_status(conn, work_order_id, "assigned", crew_id=crew_id)
        if previous is not None and previous != crew_id:  # the crew it was taken from hears so
            announce(conn, work_order_id, f"withdrawn-{previous}", now, crew_id=previous)
    announce(conn, work_order_id, f"assigned-{crew_id}", now)
    store.add_event(conn, case_id, actor, "assigned", {"work_order_id": work_order_id, "crew_id": crew_id})
    citizen_mail.planned(conn, c.tenant_id, case_id, now)
    return work_order_id
