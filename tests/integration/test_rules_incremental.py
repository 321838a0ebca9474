"""Incremental cycles (rules/incremental.py): the same findings as whole-window evaluation, state that survives
restarts, faults that come and go between two cycles, and tenants that share asset ids."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import psycopg

from floor import inventory
from rules import definitions
from rules.evaluate import Shard
from rules.service import backtest, run_cycle
from storage import assets, tenants
from tests.integration.test_rules import NIGHT, findings, lamp, store_readings

STEP = 600.0
NO_FILES: list[Path] = []


def lamp_night(power_at: dict[int, float], steps: int) -> list[tuple[float, dict[str, float]]]:
    """A lamp's readings every ten minutes from NIGHT; ``power_at``: step -> power from that step on."""
    out = []
    power = 40.0
    for i in range(steps):
        power = power_at.get(i, power)
        out.append((NIGHT + STEP * i, lamp(power)))
    return out


def test_cycles_find_what_whole_window_evaluation_finds(town_url: str) -> None:
    series = {
        "SLC-0003": lamp_night({2: 0.5, 12: 41.0}, 18),  # dark 22:20-00:00, then burns again
        "SLC-0004": lamp_night({}, 18),  # healthy
        "SLC-0005": lamp_night({5: 0.4}, 18),  # dark from 22:50 to the end
    }
    cabinet = [
        (
            NIGHT + 300 * i,
            {
                "supply_ok": 1.0 if 6 <= i < 14 or i >= 20 else 0.0,
                "voltage_l1_v": 231.0,
                "voltage_l2_v": 231.0,
                "voltage_l3_v": 231.0,
            },
        )
        for i in range(36)
    ]
    rules_file = NO_FILES
    run_cycle(town_url, rules_file, NIGHT - 60, Shard())  # the first cycle, before any reading
    for n in range(1, 19):
        now = NIGHT + STEP * n
        for device, rows in series.items():
            store_readings(town_url, device, [r for r in rows if now - STEP < r[0] <= now])
        store_readings(town_url, "CABM-01", [r for r in cabinet if now - STEP < r[0] <= now])
        run_cycle(town_url, rules_file, now, Shard())
    incremental = sorted((a, f, s, o) for a, f, s, o in findings(town_url) if f in ("lampFailure", "supplyLoss"))
    with psycopg.connect(town_url) as conn:
        conn.execute("DELETE FROM findings")
        conn.execute("DELETE FROM rule_states")
    whole = backtest(town_url, rules_file, NIGHT, NIGHT + STEP * 18, step_s=STEP)
    expected = sorted(
        (f.asset_id, f.fault, f.status, _hhmm(f.observed_at)) for f in whole if f.fault in ("lampFailure", "supplyLoss")
    )
    assert incremental == expected
    assert ("SL-0003", "lampFailure", "cleared", "22:20") in incremental
    assert ("SL-0005", "lampFailure", "open", "22:50") in incremental
    assert [x for x in incremental if x[1] == "supplyLoss"] == [
        ("CAB-01", "supplyLoss", "cleared", "22:05"),
        ("CAB-01", "supplyLoss", "cleared", "23:10"),
    ]


def _hhmm(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%H:%M")


def test_state_carries_the_start_of_a_condition_across_cycles_and_restarts(town_url: str) -> None:
    rules_file = NO_FILES
    run_cycle(town_url, rules_file, NIGHT, Shard())
    # dark from 22:10; the rule needs 25 minutes, so no finding at 22:20
    store_readings(town_url, "SLC-0007", [(NIGHT + 600, lamp(0.5)), (NIGHT + 1200, lamp(0.5))])
    run_cycle(town_url, rules_file, NIGHT + 1200, Shard())
    assert findings(town_url) == []
    with psycopg.connect(town_url) as conn:
        row = conn.execute(
            "SELECT bad, to_char(since AT TIME ZONE 'UTC', 'HH24:MI') FROM rule_states "
            "WHERE asset_id = 'SL-0007' AND rule_id = 'lamp-failure'"
        ).fetchone()
    assert row == (True, "22:10")
    # each later cycle (a new connection, as after a restart) reads only its own ten minutes: where the
    # condition began can only come from the stored state
    for n in (3, 4):
        store_readings(town_url, "SLC-0007", [(NIGHT + 600 * n, lamp(0.5))])
        run_cycle(town_url, rules_file, NIGHT + 600 * n, Shard())
    assert findings(town_url) == [("SL-0007", "lampFailure", "open", "22:10")]
    # healthy again: the state is kept until the finding closes, then dropped
    for n in range(5, 11):
        store_readings(town_url, "SLC-0007", [(NIGHT + 600 * n, lamp(40.0))])
        run_cycle(town_url, rules_file, NIGHT + 600 * n, Shard())
    assert findings(town_url) == [("SL-0007", "lampFailure", "cleared", "22:10")]
    with psycopg.connect(town_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM rule_states WHERE asset_id = 'SL-0007' AND rule_id = 'lamp-failure'"
        ).fetchone() == (0,)


def test_a_fault_that_comes_and_goes_between_two_cycles_is_recorded(town_url: str) -> None:
    rules_file = NO_FILES
    run_cycle(town_url, rules_file, NIGHT, Shard())
    closed = {"door_open": 0.0}
    store_readings(
        town_url,
        "CABM-02",
        [(NIGHT + 60, closed), (NIGHT + 180, {"door_open": 1.0}), (NIGHT + 300, closed), (NIGHT + 540, closed)],
    )
    run_cycle(town_url, rules_file, NIGHT + 600, Shard())
    assert ("CAB-02", "doorOpen", "cleared", "22:03") in findings(town_url)


def test_late_data_in_a_cycle_is_evaluated_over_its_whole_window(town_url: str) -> None:
    rules_file = NO_FILES
    run_cycle(town_url, rules_file, NIGHT, Shard())
    for n in range(1, 7):
        store_readings(town_url, "SLC-0008", [(NIGHT + 600 * n, lamp(40.0))])
        run_cycle(town_url, rules_file, NIGHT + 600 * n, Shard())
    # another lamp's controller replays its buffer: dark all along, received after the cycles had passed it
    store_readings(town_url, "SLC-0009", [(NIGHT + 600 * n, lamp(0.5)) for n in range(1, 7)], received_at=NIGHT + 3650)
    run_cycle(town_url, rules_file, NIGHT + 3700, Shard())
    assert ("SL-0009", "lampFailure", "open", "22:10") in findings(town_url)
    with psycopg.connect(town_url) as conn:
        row = conn.execute(
            "SELECT bad, to_char(since AT TIME ZONE 'UTC', 'HH24:MI') FROM rule_states "
            "WHERE asset_id = 'SL-0009' AND rule_id = 'lamp-failure'"
        ).fetchone()
    assert row == (True, "22:10")


def test_tenants_sharing_asset_ids_are_judged_apart(town_url: str) -> None:
    with psycopg.connect(town_url, autocommit=True) as conn:
        tenants.upsert(conn, "norrvik", "Norrviks kommun", "sv", "Europe/Stockholm")
        records = inventory.parse_file(Path(__file__).resolve().parents[2] / "examples" / "solvik.csv")
        renamed = [replace(r, device_id="N-" + r.device_id) if r.device_id else r for r in records]
        assets.import_records(conn, "norrvik", renamed, "solvik.csv")
    rules = [r for r in definitions.load() if r.id == "lamp-failure"]
    assert rules
    run_cycle(town_url, NO_FILES, NIGHT, Shard())
    for n in range(1, 5):
        store_readings(town_url, "SLC-0011", [(NIGHT + 600 * n, lamp(0.5))])  # solvik's SL-0011: dark
        store_readings(town_url, "N-SLC-0011", [(NIGHT + 600 * n, lamp(40.0))])  # norrvik's SL-0011: fine
        run_cycle(town_url, NO_FILES, NIGHT + 600 * n, Shard())
    with psycopg.connect(town_url) as conn:
        rows = conn.execute("SELECT tenant_id, asset_id, fault FROM findings WHERE asset_id = 'SL-0011'").fetchall()
    assert rows == [("solvik", "SL-0011", "lampFailure")]
