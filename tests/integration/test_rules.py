"""The rules engine: rule files, durations and hysteresis, and detectors on crafted data in the real database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

from rules import definitions
from rules.errors import RuleFileError
from rules.evaluate import DatabaseStore, MemoryStore, Shard, evaluate, verdicts
from rules.service import backtest
from storage.ingest import IngestBatch, write_batch

NIGHT = datetime(2026, 11, 10, 22, 0, tzinfo=UTC).timestamp()  # dark in Solvik
NOON = datetime(2026, 11, 10, 11, 0, tzinfo=UTC).timestamp()


def store_readings(
    url: str, device_id: str, rows: list[tuple[float, dict[str, float]]], received_at: float | None = None
) -> None:
    """Readings through ingest's own write path."""
    with psycopg.connect(url) as conn:
        key_row = conn.execute("SELECT device_key FROM devices WHERE device_id = %s", (device_id,)).fetchone()
        metric_ids: dict[str, int] = dict(conn.execute("SELECT name, metric_id FROM metrics").fetchall())
    assert key_row is not None
    batch = IngestBatch()
    for t, metrics in rows:
        batch.readings.add_message(
            key_row[0], received_at or t + 1, [(t, metric_ids[name], value) for name, value in metrics.items()]
        )

    async def write() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await write_batch(conn, batch)

    asyncio.run(write())


def lamp(power: float, on: float = 1.0) -> dict[str, float]:
    return {"power_w": power, "lamp_on": on, "dim_level_pct": 100.0 * on, "switch_count": 10.0}


def findings(url: str) -> list[tuple[str, str, str, str | None]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """SELECT asset_id, fault, status, to_char(observed_at AT TIME ZONE 'UTC', 'HH24:MI')
               FROM findings ORDER BY finding_id"""
        ).fetchall()


def run(url: str, as_of: float, rules: list[definitions.Rule] | None = None, shard: Shard | None = None) -> None:
    with psycopg.connect(url) as conn, conn.transaction():
        evaluate(conn, rules or definitions.load(), as_of, DatabaseStore(conn), shard=shard or Shard())


# -- rule files ----------------------------------------------------------------------------------------


def test_default_rules_load_and_cover_the_faults() -> None:
    rules = definitions.load()
    assert {r.fault for r in rules} >= {
        "lampFailure",
        "lampUnexpectedOn",
        "cyclingFailure",
        "powerDeviation",
        "communicationFailure",
        "supplyLoss",
        "icyRoad",
        "wellOverflow",
        "binFull",
        "poleTilt",
    }
    assert len({r.id for r in rules}) == len(rules)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("{id: x, detector: telepathy, fault: lampFailure, severity: major}", "rule x, field 'detector'"),
        ("{id: x, detector: lamp_failure, fault: lampFailure, severity: urgent}", "rule x, field 'severity'"),
        ("{id: x, detector: lamp_failure, fault: lampFailure, severity: major, for: soon}", "rule x, field 'for'"),
        (
            "{id: x, detector: lamp_failure, fault: lampFailure, severity: major, params: {max_watts: 3}}",
            "lamp_failure has no parameter 'max_watts'",
        ),
        (
            "{id: x, detector: threshold, fault: binFull, severity: info, params: {metric: fill_pct}}",
            "threshold needs 'above' or 'below'",
        ),
        (
            "{id: x, detector: lamp_failure, fault: lampFailure, severity: major, applies_to: {kind: lamp}}",
            "kind 'lamp'",
        ),
        ("{id: X Y, detector: lamp_failure, fault: lampFailure, severity: major}", "field 'id'"),
        ("{id: x, detector: lamp_failure, fault: lampFailure, severity: major, colour: red}", "field 'colour'"),
    ],
)
def test_bad_rules_name_file_rule_and_field(rule: str, message: str) -> None:
    with pytest.raises(RuleFileError) as exc:
        definitions.parse(f"rules:\n  - {rule}\n", "tenant.yaml")
    assert str(exc.value).startswith("tenant.yaml, rule ")
    assert message in str(exc.value)


def test_overrides_change_only_what_they_name(tmp_path: Path) -> None:
    override = tmp_path / "solvik.yaml"
    override.write_text(
        "rules:\n  - {id: lamp-failure, params: {max_power_w: 5}, for: 40m}\n  - {id: bin-full, enabled: false}\n"
    )
    rules = {r.id: r for r in definitions.load([override])}
    assert rules["lamp-failure"].params["max_power_w"] == 5.0
    assert rules["lamp-failure"].hold_s == 2400
    assert rules["lamp-failure"].severity == "major"
    assert "bin-full" not in rules


# -- durations and hysteresis (pure) -----------------------------------------------------------------------


def test_verdicts_need_the_condition_for_its_duration_and_carry_unknowns() -> None:
    t = np.arange(0, 7) * 600.0
    cond = pd.DataFrame({"asset_id": "A", "t": t, "bad": [0, 0, 1, np.nan, 1, 1, np.nan]})
    assert verdicts(cond, as_of=t[-1], hold_s=1800, clear_s=0)[0].fault is True
    assert verdicts(cond, as_of=t[-1], hold_s=1800, clear_s=0)[0].since == 1200.0
    assert verdicts(cond, as_of=t[-1], hold_s=3600, clear_s=0) == []
    healing = pd.DataFrame({"asset_id": "A", "t": t, "bad": [1, 1, 0, 0, 0, np.nan, np.nan]})
    # gone from 1200 s, last seen gone at 2400 s: the unknowns after it are no evidence it stayed gone
    assert verdicts(healing, as_of=t[-1], hold_s=0, clear_s=1500) == []
    cleared = verdicts(healing, as_of=t[-1], hold_s=0, clear_s=1200)
    assert cleared[0].fault is False and cleared[0].since == 1200.0


# -- detectors against the database ------------------------------------------------------------------------


def test_lamp_failure_opens_once_stays_open_and_clears(town_url: str) -> None:
    store_readings(town_url, "SLC-0003", [(NIGHT + 600 * i, lamp(0.6)) for i in range(6)])
    store_readings(town_url, "SLC-0004", [(NIGHT + 600 * i, lamp(40.0)) for i in range(6)])
    as_of = NIGHT + 3000
    rules = [r for r in definitions.load() if r.id == "lamp-failure"]
    run(town_url, as_of, rules)
    run(town_url, as_of, rules)  # the same evaluation again: no second finding
    assert findings(town_url) == [("SL-0003", "lampFailure", "open", "22:00")]
    store_readings(town_url, "SLC-0003", [(NIGHT + 3600 + 600 * i, lamp(41.0)) for i in range(6)])
    run(town_url, NIGHT + 3600 + 3000, rules)
    assert findings(town_url) == [("SL-0003", "lampFailure", "cleared", "22:00")]


def test_late_data_is_judged_by_device_time(town_url: str) -> None:
    as_of = NIGHT + 3000
    rules = [r for r in definitions.load() if r.id == "lamp-failure"]
    run(town_url, as_of, rules)
    assert findings(town_url) == []
    # a store-and-forward replay arrives hours later, carrying the night's readings
    store_readings(town_url, "SLC-0010", [(NIGHT + 600 * i, lamp(0.5)) for i in range(6)], received_at=NIGHT + 6 * 3600)
    run(town_url, as_of, rules)
    assert findings(town_url) == [("SL-0010", "lampFailure", "open", "22:00")]


def test_day_burner_and_silence(town_url: str) -> None:
    store_readings(town_url, "SLC-0020", [(NOON + 600 * i, lamp(40.0)) for i in range(6)])
    store_readings(town_url, "SLC-0021", [(NOON + 600 * i, lamp(0.6, on=0.0)) for i in range(6)])
    store_readings(town_url, "SLC-0022", [(NOON - 7200 + 600 * i, lamp(0.6, on=0.0)) for i in range(3)])
    rules = [r for r in definitions.load() if r.id in ("day-burner", "communication-loss")]
    run(town_url, NOON + 3000, rules)
    found = findings(town_url)
    assert ("SL-0020", "lampUnexpectedOn", "open", "11:00") in found
    assert ("SL-0022", "communicationFailure", "open", "09:20") in found
    assert not any(a == "SL-0021" for a, *_ in found)


def test_cabinet_supply_loss_and_icy_road(town_url: str) -> None:
    dead = {"supply_ok": 0.0, "voltage_l1_v": 0.0, "voltage_l2_v": 0.0, "voltage_l3_v": 0.0}
    store_readings(town_url, "CABM-02", [(NIGHT + 300 * i, dead) for i in range(4)])
    frost = {"road_temp_c": -1.5, "dew_point_c": -1.0}
    store_readings(town_url, "D-RWS-01", [(NIGHT + 300 * i, frost) for i in range(4)])
    store_readings(
        town_url, "D-RWS-02", [(NIGHT + 300 * i, {"road_temp_c": 2.0, "dew_point_c": -1.0}) for i in range(4)]
    )
    rules = [r for r in definitions.load() if r.id in ("cabinet-supply-loss", "icy-road")]
    run(town_url, NIGHT + 900, rules)
    assert sorted(findings(town_url)) == [
        ("CAB-02", "supplyLoss", "open", "22:00"),
        ("RWS-01", "icyRoad", "open", "22:00"),
    ]


def test_shards_split_the_devices_and_together_cover_them(town_url: str) -> None:
    for n in range(1, 13):
        store_readings(town_url, f"SLC-{n:04d}", [(NIGHT + 600 * i, lamp(0.6)) for i in range(6)])
    rules = [r for r in definitions.load() if r.id == "lamp-failure"]
    run(town_url, NIGHT + 3000, rules, Shard(0, 2))
    first = {a for a, *_ in findings(town_url)}
    run(town_url, NIGHT + 3000, rules, Shard(1, 2))
    both = {a for a, *_ in findings(town_url)}
    assert 0 < len(first) < 12
    assert both == {f"SL-{n:04d}" for n in range(1, 13)}


def test_backtest_reports_without_writing_findings(town_url: str) -> None:
    store_readings(
        town_url,
        "SLC-0030",
        [(NIGHT + 600 * i, lamp(0.6)) for i in range(6)] + [(NIGHT + 3600 + 600 * i, lamp(40.0)) for i in range(6)],
    )
    rules_file: list[Path] = []
    found = backtest(town_url, rules_file, NIGHT, NIGHT + 7200, step_s=600)
    lamp_failures = [f for f in found if f.fault == "lampFailure"]
    assert [(f.asset_id, f.observed_at, f.cleared_at) for f in lamp_failures] == [("SL-0030", NIGHT, NIGHT + 3600)]
    assert findings(town_url) == []
    memory = MemoryStore()
    assert memory.open_for() == {}


def test_rules_cli_once_and_backtest(town_url: str) -> None:
    store_readings(town_url, "SLC-0040", [(NIGHT + 600 * i, lamp(0.6)) for i in range(6)])
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LYKTA_")}, "LYKTA_DATABASE_URL": town_url}
    iso = datetime.fromtimestamp(NIGHT + 3000, UTC).isoformat()
    once = subprocess.run(
        [sys.executable, "-m", "lykta.cli", "rules", "run", "--once", "--as-of", iso],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert once.returncode == 0, once.stderr
    assert once.stdout.startswith("findings: 1 opened")
    test = subprocess.run(
        [
            sys.executable,
            "-m",
            "lykta.cli",
            "rules",
            "backtest",
            "--from",
            datetime.fromtimestamp(NIGHT, UTC).isoformat(),
            "--to",
            iso,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert test.returncode == 0, test.stderr
    assert "lampFailure" in test.stdout and "solvik/SL-0040" in test.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "lykta.cli", "rules", "run", "--once", "--shard", "3/2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1 and "--shard '3/2'" in bad.stderr


def test_cycles_catch_up_with_late_data_and_resume_after_a_restart(town_url: str) -> None:
    from rules.service import run_cycle

    rules_file: list[Path] = []
    first = run_cycle(town_url, rules_file, NIGHT + 3 * 3600, Shard())
    assert (first.opened, first.cleared) == (0, 0)
    # a replay arrives: a lamp that was dark for an hour and then burned again, all before the last cycle
    store_readings(
        town_url,
        "SLC-0050",
        [(NIGHT + 600 * i, lamp(0.6)) for i in range(6)] + [(NIGHT + 3600 + 600 * i, lamp(40.0)) for i in range(8)],
        received_at=NIGHT + 3.5 * 3600,
    )
    second = run_cycle(town_url, rules_file, NIGHT + 4 * 3600, Shard())
    assert (second.opened, second.cleared) >= (1, 1)
    lamp_rows = [f for f in findings(town_url) if f[0] == "SL-0050"]
    # the lamp failure happened and ended inside the replay; and the replay's last reading is from 00:10 (device
    # time): since then the lamp has measured nothing, a communication failure judged by device time
    assert ("SL-0050", "lampFailure", "cleared", "22:00") in lamp_rows
    assert [f[1:] for f in lamp_rows if f[1] == "communicationFailure"] == [("communicationFailure", "open", "00:10")]
    assert len(lamp_rows) == 2
    # a new process (a restart) resumes from the recorded progress: nothing to redo, nothing duplicated
    third = run_cycle(town_url, rules_file, NIGHT + 4 * 3600 + 600, Shard())
    assert third.opened == 0
    assert [f for f in findings(town_url) if f[0] == "SL-0050"] == lamp_rows


def _frame(rows: list[tuple[str, float, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["asset_id", "t", "metric", "value"])


def test_rate_threshold_cycling_and_peer_detectors_on_crafted_frames() -> None:
    from rules.detectors import DETECTORS

    def check(name: str, params: dict[str, object]) -> dict[str, object]:
        return DETECTORS[name].check_params(params, "test")

    rising = _frame(
        [("W", 0.0, "water_level_m", 0.4), ("W", 600.0, "water_level_m", 0.5), ("W", 1200.0, "water_level_m", 1.5)]
    )
    rate = DETECTORS["rate_of_change"].run(
        rising, pd.DataFrame(), check("rate_of_change", {"metric": "water_level_m", "max_per_hour": 2.0})
    )
    assert rate["bad"].tolist()[1:] == [0.0, 1.0]

    cold = _frame(
        [
            ("R", 0.0, "air_temp_c", 3.0),
            ("R", 1.0, "air_temp_c", -1.0),
            ("R", 2.0, "air_temp_c", 0.5),
            ("R", 3.0, "air_temp_c", 2.5),
        ]
    )
    below = DETECTORS["threshold"].run(
        cold, pd.DataFrame(), check("threshold", {"metric": "air_temp_c", "below": 0.0, "clear_above": 2.0})
    )
    assert below["bad"].fillna(-1).tolist() == [0.0, 1.0, -1, 0.0]

    switches = _frame([("L", 600.0 * i, "switch_count", float(3 * i)) for i in range(13)])
    where = pd.DataFrame({"lat": [56.05], "lon": [12.69]}, index=pd.Index(["L"], name="asset_id"))
    cyc = DETECTORS["cycling"].run(switches, where, check("cycling", {"window": "1h", "min_switches": 6}))
    assert cyc["bad"].iloc[-1] == 1.0

    assets = pd.DataFrame(
        {"rated_power_w": [50.0] * 4, "parent_id": ["K"] * 4}, index=pd.Index(["A", "B", "C", "D"], name="asset_id")
    )
    rows = []
    for asset, factor in [("A", 1.0), ("B", 1.02), ("C", 0.98), ("D", 1.6)]:
        for name, value in [("power_w", 50 / 0.92 * factor), ("dim_level_pct", 100.0), ("lamp_on", 1.0)]:
            rows.append((asset, 3600.0, name, value))
    dev = DETECTORS["power_deviation"].run(_frame(rows), assets, check("power_deviation", {}))
    assert dict(zip(dev["asset_id"], dev["bad"], strict=True)) == {"A": 0.0, "B": 0.0, "C": 0.0, "D": 1.0}


def test_a_dark_cabinet_explains_the_silence_of_its_lamps(town_url: str) -> None:
    dead = {"supply_ok": 0.0, "voltage_l1_v": 0.0, "voltage_l2_v": 0.0, "voltage_l3_v": 0.0}
    healthy = {"supply_ok": 1.0, "voltage_l1_v": 231.0, "voltage_l2_v": 231.0, "voltage_l3_v": 231.0}
    store_readings(
        town_url,
        "CABM-02",
        [(NIGHT - 3600 + 300 * i, healthy) for i in range(12)] + [(NIGHT + 300 * i, dead) for i in range(24)],
    )
    with psycopg.connect(town_url) as conn:
        lamps = [
            r[0]
            for r in conn.execute(
                """SELECT d.device_id FROM devices d JOIN assets a USING (tenant_id, asset_id)
               JOIN assets c ON c.tenant_id = a.tenant_id AND c.asset_id = a.parent_id
               WHERE c.parent_id = 'CAB-02' ORDER BY 1"""
            ).fetchall()
        ]
    for device in [*lamps, "SLC-0001"]:  # SLC-0001 hangs under CAB-01, which keeps its supply
        store_readings(town_url, device, [(NIGHT - 3600 + 600 * i, lamp(40.0)) for i in range(7)])
    rules = [r for r in definitions.load() if r.id in ("cabinet-supply-loss", "communication-loss")]
    run(town_url, NIGHT + 7200, rules)
    found = findings(town_url)
    assert ("CAB-02", "supplyLoss", "open", "22:00") in found
    silent = {a for a, fault, *_ in found if fault == "communicationFailure"}
    assert "SL-0001" in silent
    assert not silent & {f"SL-{d[4:]}" for d in lamps}
