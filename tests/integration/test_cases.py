"""Case handling against the real database: findings to cases, correlation, SLA, work orders, verification."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cases import lifecycle, routing
from cases.errors import PolicyError, WorkOrderError
from cases.policy import Facts, Policies
from storage import cases as store
from storage import crews as crew_store
from storage import rules as rule_store
from storage import work_orders as order_store
from storage.crews import Crew
from storage.rules import Finding
from tests.integration.test_rules import NIGHT, store_readings

NOW = NIGHT + 3600
CIRCUIT = [f"SL-{n:04d}" for n in range(1, 35)]  # the 34 lamps of CAB-01-K1 in the sample town


def add_crews(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for crew in [
            {"crew_id": "ljus-norr", "name": "Ljus Norr AB", "areas": ["Norr"], "skills": ["lighting"]},
            {"crew_id": "ljus", "name": "Ljusservice", "areas": [], "skills": ["lighting"]},
            {"crew_id": "el", "name": "Elteknik", "areas": [], "skills": ["electrical"]},
        ]:
            crew_store.upsert(
                conn,
                Crew(
                    tenant_id="solvik",
                    crew_id=str(crew["crew_id"]),
                    name=str(crew["name"]),
                    email=f"{crew['crew_id']}@crews.example",
                    webhook_url=f"http://127.0.0.1:9/{crew['crew_id']}",
                    webhook_secret="s3cret",
                    areas=list(crew["areas"]),
                    skills=list(crew["skills"]),
                    active=True,
                ),
            )


@pytest.fixture
def city(town_url: str) -> str:
    add_crews(town_url)
    return town_url


def finding(url: str, asset_id: str, fault: str, observed: float, rule: str | None = None) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return rule_store.insert_finding(
            conn,
            Finding(
                tenant_id="solvik",
                asset_id=asset_id,
                device_id=None,
                rule_id=rule or fault,
                fault=fault,
                severity="major",
                observed_at=observed,
                last_seen=observed,
                detected_at=observed,
                evidence={},
            ),
        )


def clear(url: str, finding_id: int, at: float) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        rule_store.clear_finding(conn, finding_id, at)


def sync(url: str, now: float, policies: Policies | None = None) -> lifecycle.SyncReport:
    policies = policies or Policies()
    with psycopg.connect(url) as conn, conn.transaction():
        report = lifecycle.sync(conn, policies, now)
        lifecycle.verify(conn, policies, now)
        lifecycle.check_sla(conn, policies, now)
    return report


def cases(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            """SELECT c.case_id, c.asset_id, c.fault, c.status, c.priority, c.resolution,
                      (SELECT count(*) FROM case_findings l WHERE l.case_id = c.case_id) AS findings,
                      (SELECT array_agg(w.status || ':' || coalesce(w.crew_id, '-') ORDER BY w.work_order_id)
                       FROM work_orders w WHERE w.case_id = c.case_id) AS orders
               FROM cases c ORDER BY c.case_id"""
        ).fetchall()


def outbox(url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT channel, target, idempotency_key FROM outbox ORDER BY message_id").fetchall()


def test_a_lamp_failure_opens_one_case_with_a_routed_work_order(city: str) -> None:
    fid = finding(city, "SL-0003", "lampFailure", NIGHT)
    sync(city, NOW)
    sync(city, NOW + 60)  # again: nothing new
    [c] = cases(city)
    assert (c["asset_id"], c["fault"], c["status"], c["priority"]) == ("SL-0003", "lampFailure", "open", "round")
    assert c["orders"] == ["assigned:ljus-norr"]  # the crew of its maintenance area wins over the general one
    assert [(ch, t) for ch, t, _ in outbox(city)] == [
        ("email", "ljus-norr@crews.example"),
        ("webhook", "http://127.0.0.1:9/ljus-norr"),
    ]
    with psycopg.connect(city) as conn:
        row = conn.execute("SELECT due_at FROM cases").fetchone()
        assert row is not None
        due = row[0]
        assert due.weekday() == 0 and due > datetime.fromtimestamp(NOW, UTC)  # the next round: a Monday
        assert [e.action for e in store.events(conn, c["case_id"])] == ["opened", "work order", "finding"]
        assert conn.execute("SELECT count(*) FROM finding_queue").fetchone() == (0,)
    # the finding clears before anyone repaired it: the case resolves and the crew's order is cancelled
    clear(city, fid, NOW + 600)
    sync(city, NOW + 700)
    [c] = cases(city)
    assert (c["status"], c["resolution"], c["orders"]) == ("resolved", "cleared", ["cancelled:ljus-norr"])
    assert outbox(city)[-1][2].endswith(":cancelled:webhook")


def test_several_lamps_of_one_circuit_make_one_case_on_the_circuit(city: str) -> None:
    finding(city, "SL-0001", "lampFailure", NIGHT)
    sync(city, NIGHT + 60)  # one lamp: its own case
    for n, lamp in enumerate(["SL-0005", "SL-0009", "SL-0014"]):
        finding(city, lamp, "lampFailure", NIGHT + 120 * (n + 1))
    sync(city, NIGHT + 600)
    active = [c for c in cases(city) if c["status"] != "resolved"]
    assert [(c["asset_id"], c["findings"]) for c in active] == [("CAB-01-K1", 4)]
    assert active[0]["priority"] == "days"  # a dark street (4 of 34 lamps: not the whole group)
    merged = [c for c in cases(city) if c["resolution"] == "merged"]
    assert [c["asset_id"] for c in merged] == ["SL-0001"]
    assert merged[0]["orders"] == ["cancelled:ljus-norr"]
    # a fifth lamp a little later joins the circuit's case
    finding(city, "SL-0020", "lampFailure", NIGHT + 900)
    sync(city, NIGHT + 1000)
    active = [c for c in cases(city) if c["status"] != "resolved"]
    assert [(c["asset_id"], c["findings"]) for c in active] == [("CAB-01-K1", 5)]


def test_a_cabinet_outage_yields_one_case(city: str) -> None:
    lamps = ["SL-0100", "SL-0110", "SL-0140"]  # under CAB-02
    finding(city, lamps[0], "communicationFailure", NIGHT)  # before the cabinet's own finding arrived
    sync(city, NIGHT + 60)
    finding(city, "CAB-02", "supplyLoss", NIGHT)
    for lamp in lamps[1:]:
        finding(city, lamp, "communicationFailure", NIGHT + 30)
    sync(city, NIGHT + 120)
    active = [c for c in cases(city) if c["status"] != "resolved"]
    assert [(c["asset_id"], c["fault"], c["priority"], c["findings"]) for c in active] == [
        ("CAB-02", "supplyLoss", "immediate", 4)
    ]
    assert active[0]["orders"] == ["assigned:el"]


def test_crew_work_is_verified_by_the_next_night_and_a_returning_fault_reopens(city: str) -> None:
    fid = finding(city, "SL-0003", "lampFailure", NIGHT)
    sync(city, NOW)
    [c] = cases(city)
    with psycopg.connect(city) as conn, conn.transaction():
        order = order_store.active(conn, c["case_id"])
        assert order is not None
        routing.act(conn, order.work_order_id, "accept", "crew:ljus-norr", None, NOW + 60)
        with pytest.raises(WorkOrderError, match="is in progress: it cannot be accepted"):
            routing.act(conn, order.work_order_id, "accept", "crew:ljus-norr", None, NOW + 60)
    assert cases(city)[0]["status"] == "in_repair"
    with psycopg.connect(city) as conn, conn.transaction():
        routing.act(conn, order.work_order_id, "done", "crew:ljus-norr", "new driver fitted", NOW + 3600)
        assert [n.note for n in order_store.notes(conn, order.work_order_id)] == ["new driver fitted"]
    clear(city, fid, NOW + 3600)
    sync(city, NOW + 3700)
    assert cases(city)[0]["status"] == "verifying"  # no night reading after the repair yet
    store_readings(city, "SLC-0003", [(NOW + 5400, {"power_w": 41.0, "lamp_on": 1.0})])
    sync(city, NOW + 5500)
    [c] = cases(city)
    assert (c["status"], c["resolution"]) == ("resolved", "verified")

    # another lamp: repaired, but the fault comes back before it is verified
    fid2 = finding(city, "SL-0004", "lampFailure", NIGHT)
    sync(city, NOW)
    case2 = cases(city)[-1]
    with psycopg.connect(city) as conn, conn.transaction():
        order2 = order_store.active(conn, case2["case_id"])
        assert order2 is not None
        routing.act(conn, order2.work_order_id, "accept", "crew:ljus-norr", None, NOW + 300)
        routing.act(conn, order2.work_order_id, "done", "crew:ljus-norr", None, NOW + 600)
    clear(city, fid2, NOW + 600)
    sync(city, NOW + 700)
    finding(city, "SL-0004", "lampFailure", NOW + 1200)
    sync(city, NOW + 1300)
    case2 = cases(city)[-1]
    assert (case2["status"], case2["orders"]) == ("open", ["done:ljus-norr", "assigned:ljus-norr"])
    with psycopg.connect(city) as conn:
        assert "reopened" in [e.action for e in store.events(conn, case2["case_id"])]


def test_unconfirmed_repairs_reopen_and_rejections_need_a_reason(city: str) -> None:
    finding(city, "SL-0006", "lampFailure", NIGHT)
    sync(city, NOW)
    [c] = cases(city)
    with psycopg.connect(city) as conn, conn.transaction():
        order = order_store.active(conn, c["case_id"])
        assert order is not None
        with pytest.raises(WorkOrderError, match="needs a reason"):
            routing.act(conn, order.work_order_id, "reject", "crew:ljus-norr", "  ", NOW)
        routing.act(conn, order.work_order_id, "accept", "crew:ljus-norr", None, NOW)
        routing.act(conn, order.work_order_id, "done", "crew:ljus-norr", None, NOW)
    sync(city, NOW + 3 * 86400)  # the lamp's finding never cleared and two days passed
    [c] = cases(city)
    assert c["status"] == "open" and c["orders"] == ["done:ljus-norr", "assigned:ljus-norr"]


def test_breached_cases_escalate_and_escalate_again(city: str, tmp_path: Path) -> None:
    override = tmp_path / "solvik.yaml"
    override.write_text("tenant: solvik\nescalation: {every: 1d, email: chef@solvik.example}\n")
    policies = Policies([override])
    finding(city, "SW-01", "wellOverflow", NIGHT)
    sync(city, NOW, policies)
    [c] = cases(city)
    assert c["priority"] == "immediate"
    sync(city, NOW + 3 * 3600, policies)  # within 4 hours: fine
    sync(city, NOW + 5 * 3600, policies)
    sync(city, NOW + 5 * 3600 + 60, policies)
    sync(city, NOW + 30 * 3600, policies)
    with psycopg.connect(city) as conn:
        row = conn.execute("SELECT escalation, breached_at IS NOT NULL FROM cases").fetchone()
        escalations = [e.detail["level"] for e in store.events(conn, c["case_id"]) if e.action == "escalated"]
    assert row == (2, True)
    assert escalations == [1, 2]
    assert [t for ch, t, _ in outbox(city) if t == "chef@solvik.example"] == ["chef@solvik.example"] * 2


def test_two_lamps_in_a_row_raise_both_to_a_month(city: str) -> None:
    finding(city, "SL-0010", "lampFailure", NIGHT)
    sync(city, NOW)
    finding(city, "SL-0011", "lampFailure", NIGHT + 7200)  # the next pole, hours later: no correlation window
    sync(city, NOW + 7200)
    assert [(c["asset_id"], c["priority"]) for c in cases(city)] == [("SL-0010", "month"), ("SL-0011", "month")]


def test_concurrent_case_handlers_never_open_two_cases_for_one_thing(city: str) -> None:
    ids = []
    for n in range(40):
        lamp = f"SL-{150 + n % 20:04d}"  # 20 lamps, each with two findings from different rules
        ids.append(finding(city, lamp, "lampFailure", NIGHT + 7200 * (n % 20), rule=f"rule-{n // 20}"))
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            for _ in range(5):
                with psycopg.connect(city) as conn, conn.transaction():
                    lifecycle.sync(conn, Policies(), NOW, limit=7)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with psycopg.connect(city) as conn:
        dupes = conn.execute(
            "SELECT asset_id, count(*) FROM cases WHERE status <> 'resolved' GROUP BY 1 HAVING count(*) > 1"
        ).fetchall()
        linked = conn.execute("SELECT count(*) FROM case_findings").fetchone()
        queue = conn.execute("SELECT count(*) FROM finding_queue").fetchone()
    assert dupes == []
    assert linked == (40,)
    assert queue == (0,)


def test_policy_files_are_checked_and_tenants_override_their_part(tmp_path: Path) -> None:
    base = Policies()
    assert base.get(None).priority(Facts(fault="poleTilt", kind="streetlight")) == "immediate"
    assert base.get(None).priority(Facts(fault="lampFailure", kind="streetlight", criticality=4)) == "days"
    assert base.get(None).priority(Facts(fault="lampFailure", kind="circuit", group=True, share=0.6)) == "immediate"
    mine = tmp_path / "norr.yaml"
    mine.write_text("tenant: norrvik\npriorities: {round: {every: 7d, anchor: '2026-01-05T06:00:00Z'}}\n")
    both = Policies([mine])
    assert both.get("norrvik").round_every_s == 7 * 86400
    assert both.get("solvik").round_every_s == 14 * 86400
    bad = tmp_path / "bad.yaml"
    for text, message in [
        ("priorities: {immediate: {due: soon}}\n", r"bad.yaml: priorities.immediate.due: 'soon' is not a duration"),
        ("priority_rules: [{when: {colour: red}, priority: days}]\n", r"priority_rules\[0\].when: unknown condition"),
        ("priority_rules: [{when: {}, priority: never}]\n", r"priority_rules\[0\].priority: 'never' is not one of"),
        ("escalation: {every: 1d, email: nobody}\n", r"escalation.email: 'nobody' is not an e-mail address"),
        ("surprise: 1\n", r"unknown section 'surprise'"),
        ("- a list\n", r"bad.yaml: expected a mapping at the top"),
    ]:
        bad.write_text(text)
        with pytest.raises(PolicyError, match=message):
            Policies([bad])


def test_a_fault_that_came_and_went_unseen_is_recorded_without_a_work_order(city: str) -> None:
    fid = finding(city, "SL-0012", "lampFailure", NIGHT)
    clear(city, fid, NIGHT + 3600)  # both before the case handling ran
    sync(city, NOW + 7200)
    [c] = cases(city)
    assert (c["asset_id"], c["status"], c["resolution"], c["findings"], c["orders"]) == (
        "SL-0012",
        "resolved",
        "cleared",
        1,
        None,
    )
    assert outbox(city) == []


def test_every_text_exists_in_english_swedish_and_portuguese() -> None:
    from cases import citizen_mail, texts

    tables = (texts.FAULTS, texts.WORDS, texts.PRIORITIES, texts.STATUSES, texts.CANCEL_REASONS, texts.RESOLUTIONS,
              texts.REOPEN_REASONS, texts.CHANGES, citizen_mail.SUBJECTS)  # fmt: skip
    for table in tables:
        for key, by_language in table.items():
            assert set(by_language) == set(texts.LANGUAGES), key
            assert all("".join(v).strip() for v in by_language.values()), key
    for single in (texts.RECEIVED, texts.ESCALATION, citizen_mail.THANKS, citizen_mail.PLANNED):
        assert set(single) == set(texts.LANGUAGES) and all(single.values())
    assert texts.work_order_title("lampFailure", "SL-1", "Storgatan", "pt") == "Lâmpada apagada: SL-1 (Storgatan)"
    assert texts.fault("lampFailure", "xx") == "Lamp out"  # an unknown language falls back to English


def test_faults_that_came_and_went_are_grouped_as_live_ones_are(city: str) -> None:
    """Findings that arrive already cleared (a replayed week): a dark cabinet's lamps join the cabinet's case and
    a circuit whose lamps burned by day together makes one circuit case, as on the live path; no crew hears."""
    cabinet = finding(city, "CAB-02", "supplyLoss", NIGHT)
    clear(city, cabinet, NIGHT + 3600)
    for n, lamp in enumerate(["SL-0100", "SL-0101", "SL-0102"]):
        fid = finding(city, lamp, "lampFailure", NIGHT + 60 * n)
        clear(city, fid, NIGHT + 3600)
    day = NIGHT + 12 * 3600
    for lamp in CIRCUIT[:15]:
        fid = finding(city, lamp, "lampUnexpectedOn", day + 30 * CIRCUIT.index(lamp))
        clear(city, fid, day + 4 * 3600)
    sync(city, day + 5 * 3600)
    recorded = [(c["asset_id"], c["fault"], c["status"], c["resolution"], c["findings"]) for c in cases(city)]
    assert sorted(recorded) == [
        ("CAB-01-K1", "lampUnexpectedOn", "resolved", "cleared", 15),
        ("CAB-02", "supplyLoss", "resolved", "cleared", 4),
    ]
    assert all(not c["orders"] for c in cases(city))
    assert outbox(city) == []
