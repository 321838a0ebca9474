"""Case lifecycle: findings open, update and resolve cases; crews' work closes them once telemetry agrees.

States of a case: ``open`` (a fault, no one working on it yet) -> ``in_repair`` (a
crew accepted the work order) -> ``verifying`` (the crew finished; the telemetry
must confirm) -> ``resolved``. A case also resolves when its fault clears before
anyone repaired it (``cleared``), when it is merged into a correlated case
(``merged``) and when an operator closes it (``closed``). A fault that comes
back while a case is verifying reopens it. Every change is a case event.

Everything here runs inside the caller's transaction and takes ``now``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from cases import citizen_mail, routing, texts
from cases.errors import CaseError
from cases.policy import Facts, Policies, Policy
from floor.sun import is_dark
from floor.timefmt import iso_or_none as iso
from storage import case_assets as asset_store
from storage import cases as store
from storage import finding_queue as queue
from storage import tenants
from storage import work_orders as order_store
from storage.cases import Case, CaseFinding, NewCase
from storage.finding_queue import QueuedFinding

log = logging.getLogger("lykta.cases")
SYSTEM = "lykta"


@dataclass(frozen=True)
class Subject:
    """What a new case is about: a fault on an asset, seen since ``observed_at``."""

    tenant_id: str
    asset_id: str
    fault: str
    severity: str
    observed_at: float

    @classmethod
    def of(cls, f: QueuedFinding, asset_id: str | None = None) -> Subject:
        """The subject of a finding (on another asset: its circuit, when lamps are grouped)."""
        return cls(f.tenant_id, asset_id or f.asset_id, f.fault, f.severity, f.observed_at)


@dataclass
class SyncReport:
    findings: int = 0
    opened: int = 0
    linked: int = 0
    merged: int = 0
    resolved: int = 0
    reopened: int = 0


def sync(conn: psycopg.Connection, policies: Policies, now: float, limit: int = 500) -> SyncReport:
    """Act on queued findings (at most ``limit``) in the caller's transaction."""
    report = SyncReport()
    # a cabinet without supply explains what its lamps do: its findings first (stable: the rest stays in order)
    rows = sorted(queue.claim(conn, limit), key=lambda r: r.fault != "supplyLoss")
    for tenant in sorted({r.tenant_id for r in rows}):
        store.lock_tenant(conn, tenant)
    for f in rows:
        policy = policies.get(f.tenant_id)
        if f.status == "open":
            _on_open(conn, policy, f, now, report)
        elif store.case_of_finding(conn, f.finding_id) is None:
            _record_past(conn, policy, f, now, report)
        else:
            _on_cleared(conn, f, now, report)
        report.findings += 1
    queue.dequeue(conn, [r.finding_id for r in rows])
    return report


# -- a finding opens ------------------------------------------------------------------------------------------


def _on_open(conn: psycopg.Connection, policy: Policy, f: QueuedFinding, now: float, report: SyncReport) -> None:
    if store.case_of_finding(conn, f.finding_id) is not None:
        return  # already handled (a finding re-queued by a repeated write)
    tenant = f.tenant_id
    if f.kind == "streetlight" and f.parent_id:
        cabinet = asset_store.root_of(conn, tenant, f.asset_id)
        dark = store.active_case(conn, tenant, cabinet, "supplyLoss")
        if dark is not None:  # the cabinet explains it
            _link(conn, dark, f, report)
            return
        if f.fault in policy.correlation_faults:
            group = store.active_case(conn, tenant, f.parent_id, f.fault)
            if group is not None:  # one more lamp of the circuit: its crew hears (a dark cabinet's need not)
                _link(conn, group, f, report)
                routing.refresh_work_order(conn, group.case_id, now)
                return
            if _correlate(conn, policy, f, now, report):
                return
    current = store.active_case(conn, tenant, f.asset_id, f.fault)
    if current is None:
        facts = _facts(conn, policy, f)
        current = open_case(conn, policy, Subject.of(f), facts, now, "telemetry", report)
        if current is None:
            return
    elif current.status == "verifying":
        reopen(conn, policy, current, now, "came_back", report)
    _link(conn, current, f, report)
    if f.fault == "supplyLoss":
        _absorb_below(conn, current, now, report)


def _facts(conn: psycopg.Connection, policy: Policy, f: QueuedFinding) -> Facts:
    row = 1
    if f.kind == "streetlight" and f.fault in policy.lamp_faults:
        row = asset_store.lamps_in_row(conn, f.tenant_id, f.asset_id, sorted(policy.lamp_faults), policy.row_distance_m)
    return Facts(fault=f.fault, kind=f.kind, criticality=int(f.criticality or 2), lamps_in_row=row)


def open_case(  # noqa: PLR0917 - the parts of one new case
    conn: psycopg.Connection,
    policy: Policy,
    subject: Subject,
    facts: Facts,
    now: float,
    source: str,
    report: SyncReport,
    *,
    announce: bool = True,
) -> Case | None:
    """A new case for ``subject`` with its priority, due time and work order (announced to its crew unless
    ``announce`` is false: the caller announces it once it has added what the crew should read)."""
    priority = policy.priority(facts)
    case_id = _insert(conn, subject, priority, source, now, policy.due(priority, now))
    if case_id is None:  # another writer opened it first
        return store.active_case(conn, subject.tenant_id, subject.asset_id, subject.fault)
    store.add_event(
        conn,
        case_id,
        SYSTEM,
        "opened",
        {"source": source, "priority": priority, "facts": facts.__dict__, "observed_at": iso(subject.observed_at)},
    )
    report.opened += 1
    created = store.existing_case(conn, case_id)
    routing.new_work_order(conn, policy, created, now, "assigned" if announce else None)
    if facts.lamps_in_row >= 2:
        _raise_neighbours(conn, policy, created, now)
    return created


def _insert(  # noqa: PLR0917 - the columns of a new case
    conn: psycopg.Connection, subject: Subject, priority: str, source: str, opened: float, due: float
) -> int | None:
    """A case for the asset and fault of ``subject``; None when one is already active."""
    return store.insert_case(
        conn,
        NewCase(
            tenant_id=subject.tenant_id,
            asset_id=subject.asset_id,
            fault=subject.fault,
            priority=priority,
            severity=subject.severity,
            source=source,
            observed_at=subject.observed_at,
            opened_at=opened,
            due_at=due,
        ),
    )


def _link(conn: psycopg.Connection, c: Case, f: QueuedFinding, report: SyncReport) -> None:
    if store.link_finding(conn, c.case_id, f.finding_id, f.asset_id):
        store.add_event(
            conn,
            c.case_id,
            SYSTEM,
            "finding",
            {"finding_id": f.finding_id, "asset_id": f.asset_id, "fault": f.fault, "rule": f.rule_id},
        )
        report.linked += 1
        if c.fault_cleared_at is not None:
            store.update_case(conn, c.case_id, fault_cleared_at=None)


def _correlate(conn: psycopg.Connection, policy: Policy, f: QueuedFinding, now: float, report: SyncReport) -> bool:
    """Enough lamps of one circuit with the same fault at about the same time: one case on the circuit."""
    window = policy.correlation_window_s
    circuit = f.parent_id
    if circuit is None:
        return False
    siblings = store.sibling_findings(
        conn, f.tenant_id, circuit, f.fault, f.observed_at - window, f.observed_at + window
    )
    lamps = {s.asset_id for s in siblings}
    if len(lamps) < policy.min_lamps:
        return False
    facts = _group_facts(conn, f, circuit, lamps)
    first = min(s.finding_id for s in siblings)
    group = open_case(conn, policy, Subject.of(f, circuit), facts, now, "telemetry", report)
    if group is None:
        return False
    store.add_event(conn, group.case_id, SYSTEM, "correlated", {"lamps": sorted(lamps), "first_finding": first})
    for s in siblings:
        if s.case_id is not None and s.case_id != group.case_id:
            _merge(conn, s.case_id, group, now, report)
        store.link_finding(conn, group.case_id, s.finding_id, s.asset_id)
    routing.refresh_work_order(conn, group.case_id, now)
    return True


def _group_facts(conn: psycopg.Connection, f: QueuedFinding, circuit: str, lamps: set[str]) -> Facts:
    """What decides the priority of one case for ``lamps`` of a circuit with the same fault."""
    size = max(asset_store.children_count(conn, f.tenant_id, circuit, "streetlight"), len(lamps))
    parent = asset_store.asset(conn, f.tenant_id, circuit)
    return Facts(
        fault=f.fault,
        kind=parent.kind if parent else "circuit",
        criticality=int(parent.criticality) if parent else 2,
        group=True,
        share=len(lamps) / size,
    )


def _absorb_below(conn: psycopg.Connection, cabinet_case: Case, now: float, report: SyncReport) -> None:
    """A cabinet without supply explains the faults of everything it feeds: one case, not forty."""
    for c in store.active_cases_below(conn, cabinet_case.tenant_id, cabinet_case.asset_id, cabinet_case.case_id):
        _merge(conn, c.case_id, cabinet_case, now, report)
    routing.refresh_work_order(conn, cabinet_case.case_id, now)


def _merge(conn: psycopg.Connection, case_id: int, into: Case, now: float, report: SyncReport) -> None:
    merged = store.case(conn, case_id)
    if merged is None or merged.status == "resolved":
        return
    for f in store.case_findings(conn, case_id):
        store.link_finding(conn, into.case_id, f.finding_id, f.asset_id)
    store.update_case(conn, case_id, status="resolved", resolution="merged", resolved_at=now)
    store.add_event(conn, case_id, SYSTEM, "merged", {"into": into.case_id})
    store.add_event(conn, into.case_id, SYSTEM, "absorbed", {"case_id": case_id, "asset_id": merged.asset_id})
    routing.cancel_work_order(conn, case_id, "merged", now, into=into.case_id)
    report.merged += 1


def _raise_neighbours(conn: psycopg.Connection, policy: Policy, c: Case, now: float) -> None:
    """Two or more lamps in a row: the neighbours' cases get the (higher) priority of a row."""
    for other in store.active_cases_below(
        conn, c.tenant_id, asset_store.root_of(conn, c.tenant_id, c.asset_id), c.case_id
    ):
        if other.fault not in policy.lamp_faults or other.priority != "round":
            continue
        row = asset_store.asset(conn, c.tenant_id, other.asset_id)
        if row is None or row.kind != "streetlight":
            continue
        count = asset_store.lamps_in_row(
            conn, c.tenant_id, other.asset_id, sorted(policy.lamp_faults), policy.row_distance_m
        )
        if count < 2:
            continue
        priority = policy.priority(
            Facts(fault=other.fault, kind="streetlight", criticality=int(row.criticality), lamps_in_row=count)
        )
        if priority != other.priority:
            due = min(other.due_at, policy.due(priority, now))
            store.update_case(conn, other.case_id, priority=priority, due_at=due)
            store.add_event(conn, other.case_id, SYSTEM, "priority", {"priority": priority, "lamps_in_row": count})


def _record_past(conn: psycopg.Connection, policy: Policy, f: QueuedFinding, now: float, report: SyncReport) -> None:
    """A fault that came and went before the case handling saw it (a replay, or this service was down): kept as
    a case resolved as cleared, for the record, without bothering a crew; or joined to an active case."""
    active = store.active_case(conn, f.tenant_id, f.asset_id, f.fault)
    if active is not None:
        _link(conn, active, f, report)
        _on_cleared(conn, f, now, report)
        return
    if _past_in_group(conn, policy, f, now, report):
        return
    priority = policy.priority(_facts(conn, policy, f))
    case_id = _insert(conn, Subject.of(f), priority, "telemetry", now, policy.due(priority, f.observed_at))
    if case_id is None:
        return
    store.link_finding(conn, case_id, f.finding_id, f.asset_id)
    store.update_case(
        conn, case_id, fault_cleared_at=f.cleared_at, status="resolved", resolution="cleared", resolved_at=now
    )
    store.add_event(
        conn, case_id, SYSTEM, "recorded", {"observed_at": iso(f.observed_at), "cleared_at": iso(f.cleared_at)}
    )
    report.opened += 1
    report.resolved += 1


def _past_in_group(conn: psycopg.Connection, policy: Policy, f: QueuedFinding, now: float, report: SyncReport) -> bool:
    """A past lamp fault grouped as the live path groups it: into the case of its cabinet's supply loss at the
    time, or into one case on its circuit when enough of the circuit's lamps had it together."""
    if f.kind != "streetlight" or not f.parent_id:
        return False
    window = policy.correlation_window_s
    cabinet = asset_store.root_of(conn, f.tenant_id, f.asset_id)
    group = store.case_during(conn, f.tenant_id, cabinet, "supplyLoss", f.observed_at, window)
    if group is None and f.fault in policy.correlation_faults:
        group = store.group_case_near(
            conn, f.tenant_id, f.parent_id, f.fault, f.observed_at - window, f.observed_at + window
        )
        if group is None:
            group = _past_group(conn, policy, f, now, report)
    if group is None:
        return False
    if group.status == "resolved":
        _record_link(conn, group, f, report)
    else:
        _link(conn, group, f, report)
        _on_cleared(conn, f, now, report)
    return True


def _past_group(
    conn: psycopg.Connection, policy: Policy, f: QueuedFinding, now: float, report: SyncReport
) -> Case | None:
    """One recorded case on the circuit when ``min_lamps`` of its lamps had the fault within the window."""
    if f.parent_id is None:
        return None
    window = policy.correlation_window_s
    siblings = store.sibling_findings(
        conn, f.tenant_id, f.parent_id, f.fault, f.observed_at - window, f.observed_at + window, cleared_too=True
    )
    lamps = {s.asset_id for s in siblings}
    if len(lamps) < policy.min_lamps or any(s.case_id is not None for s in siblings):
        return None
    priority = policy.priority(_group_facts(conn, f, f.parent_id, lamps))
    subject = Subject.of(f, f.parent_id)
    case_id = _insert(conn, subject, priority, "telemetry", now, policy.due(priority, f.observed_at))
    if case_id is None:
        return None
    store.update_case(conn, case_id, status="resolved", resolution="cleared", resolved_at=now)
    store.add_event(conn, case_id, SYSTEM, "recorded", {"observed_at": iso(f.observed_at), "lamps": sorted(lamps)})
    report.opened += 1
    report.resolved += 1
    group = store.existing_case(conn, case_id)
    for s in siblings:
        if s.finding_id != f.finding_id:
            store.link_finding(conn, case_id, s.finding_id, s.asset_id)
    return group


def _record_link(conn: psycopg.Connection, c: Case, f: QueuedFinding, report: SyncReport) -> None:
    """A past finding joins a case already resolved: recorded with it, the fault's end the latest of its own."""
    if store.link_finding(conn, c.case_id, f.finding_id, f.asset_id):
        store.add_event(
            conn, c.case_id, SYSTEM, "finding", {"finding_id": f.finding_id, "asset_id": f.asset_id, "fault": f.fault}
        )
        report.linked += 1
    cleared = [x.cleared_at for x in store.case_findings(conn, c.case_id) if x.cleared_at is not None]
    if cleared:
        store.update_case(conn, c.case_id, fault_cleared_at=max(cleared))


# -- a finding clears -------------------------------------------------------------------------------------------


def _on_cleared(conn: psycopg.Connection, f: QueuedFinding, now: float, report: SyncReport) -> None:
    c = store.case_of_finding(conn, f.finding_id)
    if c is None or c.status == "resolved":
        return
    findings = store.case_findings(conn, c.case_id)
    if any(x.status == "open" for x in findings):
        return
    cleared = max(x.cleared_at for x in findings if x.cleared_at is not None)
    store.update_case(conn, c.case_id, fault_cleared_at=cleared)
    store.add_event(conn, c.case_id, SYSTEM, "fault cleared", {"cleared_at": iso(cleared)})
    if c.status == "open":
        resolve(conn, c, now, "cleared", SYSTEM)
        routing.cancel_work_order(conn, c.case_id, "cleared", now)
        report.resolved += 1


def resolve(conn: psycopg.Connection, c: Case, now: float, resolution: str, actor: str) -> None:
    store.update_case(conn, c.case_id, status="resolved", resolution=resolution, resolved_at=now)
    store.add_event(conn, c.case_id, actor, "resolved", {"resolution": resolution})
    citizen_mail.case_ended(conn, c.tenant_id, c.case_id, now)


def reopen(  # noqa: PLR0917 - one case reopened, with why
    conn: psycopg.Connection, policy: Policy, c: Case, now: float, reason: str, report: SyncReport
) -> None:
    """A case a crew finished opens again: ``reason`` is came_back, not_confirmed or citizen
    (texts.REOPEN_REASONS); a new work order goes out saying so."""
    store.update_case(conn, c.case_id, status="open", repaired_at=None, fault_cleared_at=None)
    store.add_event(conn, c.case_id, SYSTEM, "reopened", {"why": texts.REOPEN_REASONS[reason]["en"]})
    report.reopened += 1
    fresh = store.existing_case(conn, c.case_id)
    why = texts.REOPEN_REASONS[reason][texts.language(tenants.language(conn, c.tenant_id))]
    routing.new_work_order(conn, policy, fresh, now, f"reopened-{len(order_store.of_case(conn, c.case_id))}", why)


# -- verification and SLA ----------------------------------------------------------------------------------------


def verify(conn: psycopg.Connection, policies: Policies, now: float) -> SyncReport:
    """Cases waiting for the telemetry after a repair: resolved when it confirms, reopened when it does not."""
    report = SyncReport()
    for c in store.cases_to_verify(conn):
        policy = policies.get(c.tenant_id)
        repaired = c.repaired_at or now
        findings = store.case_findings(conn, c.case_id)
        if any(f.status == "open" and f.observed_at > repaired for f in findings):
            reopen(conn, policy, c, now, "came_back", report)
            continue
        confirmed = _confirmed(conn, policy, c, findings, repaired, now)
        if confirmed is not None:
            store.add_event(conn, c.case_id, SYSTEM, "verified", confirmed)
            resolve(conn, c, now, "verified", SYSTEM)
            report.resolved += 1
        elif now - repaired > policy.verify_timeout_s:
            reopen(conn, policy, c, now, "not_confirmed", report)
    return report


def _confirmed(  # noqa: PLR0917 - one case's verification
    conn: psycopg.Connection, policy: Policy, c: Case, findings: list[CaseFinding], repaired: float, now: float
) -> dict[str, Any] | None:
    """Evidence that the repair worked, or None (not yet)."""
    if any(f.status == "open" for f in findings):
        return None
    assets = sorted({f.asset_id for f in findings} or {c.asset_id})
    evidence: dict[str, Any] = {}
    for asset_id in assets:
        a = asset_store.asset(conn, c.tenant_id, asset_id)
        if a is None or a.device_key is None:
            continue
        if a.kind == "streetlight" and c.fault in policy.lamp_faults:
            night = [
                (t, p)
                for t, p in asset_store.burning_after(conn, a.device_key, repaired, policy.min_power_w)
                if a.lat is not None and a.lon is not None and is_dark(a.lat, a.lon, t)
            ]
            if not night:
                return None
            evidence[asset_id] = {"burning_at": iso(night[0][0]), "power_w": night[0][1]}
        else:
            heard = asset_store.heard_after(conn, a.device_key, repaired)
            if heard is None or now - repaired < policy.quiet_s:
                return None
            evidence[asset_id] = {"heard_at": iso(heard), "quiet_s": policy.quiet_s}
    return evidence or None


def check_sla(conn: psycopg.Connection, policies: Policies, now: float) -> int:
    """Flag cases past their due time and escalate them (again every ``escalation.every``); returns escalations."""
    escalated = 0
    for c in store.cases_past_due(conn, now):
        policy = policies.get(c.tenant_id)
        level = int(c.escalation)
        breached = c.breached_at or now
        wanted = 1 + int((now - breached) // policy.escalate_every_s)
        if c.breached_at is not None and level >= wanted:
            continue
        store.update_case(conn, c.case_id, breached_at=breached, escalation=wanted)
        store.add_event(conn, c.case_id, SYSTEM, "escalated", {"level": wanted, "due_at": iso(c.due_at)})
        routing.notify_escalation(conn, policy, c, wanted, now)
        escalated += 1
    return escalated


# -- operators' decisions ------------------------------------------------------------------------------------------


def close_by_hand(conn: psycopg.Connection, c: Case, note: str, actor: str, now: float) -> None:
    """An operator closes a case with a note its reporters read; its crew is told why."""
    if c.status == "resolved":
        raise CaseError(f"case {c.case_id} is already resolved", code="resolved", case=c.case_id)
    if not note.strip():
        raise CaseError("closing a case by hand needs a note (its reporters read it)", code="note_needed")
    store.add_event(conn, c.case_id, actor, "note", {"note": note.strip()})  # before: reporters read it
    resolve(conn, c, now, "closed", actor)
    routing.cancel_work_order(conn, c.case_id, "closed", now, note=note.strip())


def merge_by_hand(conn: psycopg.Connection, c: Case, into: Case, actor: str, now: float) -> None:
    """An operator merges a case into another active case of the tenant (the same fault elsewhere reported
    twice, or a lamp's case into its circuit's): findings move, reporters hear it is handled with the other,
    the crew is told."""
    if c.case_id == into.case_id or c.tenant_id != into.tenant_id:
        raise CaseError("merge a case into another case of the same municipality", code="merge_other")
    if c.status == "resolved" or into.status == "resolved":
        raise CaseError("both cases must be active to merge", code="merge_active")
    _merge(conn, c.case_id, into, now, SyncReport())
    store.add_event(conn, c.case_id, actor, "merged by hand", {"into": into.case_id})
    citizen_mail.case_ended(conn, c.tenant_id, c.case_id, now)


def reopen_by_hand(  # noqa: PLR0917 - one decision
    conn: psycopg.Connection, policy: Policy, c: Case, note: str, actor: str, now: float
) -> None:
    """An operator opens a resolved case again (the fault is back, or it was closed by mistake): a new work order
    goes out saying why."""
    if c.status != "resolved":
        raise CaseError(f"case {c.case_id} is not resolved", code="not_resolved", case=c.case_id)
    if store.active_case(conn, c.tenant_id, c.asset_id, c.fault) is not None:
        raise CaseError(
            f"{c.asset_id} already has an active {c.fault} case: work that one", code="active_exists", asset=c.asset_id
        )
    if not note.strip():
        raise CaseError("reopening a case needs a note (its crew reads it)", code="note_needed")
    store.update_case(conn, c.case_id, status="open", resolution=None, resolved_at=None, repaired_at=None)
    store.add_event(conn, c.case_id, actor, "reopened", {"why": note.strip()})
    fresh = store.existing_case(conn, c.case_id)
    routing.new_work_order(conn, policy, fresh, now, f"reopened-{len(order_store.of_case(conn, c.case_id))}", note)
