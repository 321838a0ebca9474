"""A condition holds on evidence, not on the absence of it: readings that cannot tell neither carry a fault
forward into a duration nor open one on their own; equal readings after rounding are no evidence of frost.
Each path that turns conditions into findings is checked: an evaluation as of a time, live cycles, replay."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import psycopg

from floor.sun import switch_times
from rules import definitions
from rules.detectors import DETECTORS
from rules.evaluate import Shard, verdicts
from rules.service import backtest, run_cycle
from tests.integration.test_rules import findings, lamp, run, store_readings

DAY = dt.date(2026, 11, 10)
NO_FILES: list[Path] = []


def _dusk(url: str, asset: str) -> float:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT lat, lon FROM assets WHERE asset_id = %s", (asset,)).fetchone()
    assert row is not None
    times = switch_times(float(row[0]), float(row[1]), DAY)
    assert times is not None
    return times[1]


def early_photocell(url: str) -> tuple[float, list[tuple[float, dict[str, float]]]]:
    """A healthy lamp whose photocell switches it on 31 minutes before civil dusk: one 42 W reading 67 s before
    the day burner's window closes (dusk - 30 min), then readings every 5 minutes in the twilight and the night,
    where the day-burner rule cannot tell."""
    first_on = _dusk(url, "SL-0030") - 1800 - 67
    rows = [(first_on - 900 * i, lamp(0.4, on=0.0)) for i in range(4, 0, -1)]
    rows += [(first_on + 300 * i, lamp(42.0)) for i in range(24)]
    return first_on, rows


def test_one_reading_and_then_cannot_tell_opens_no_day_burner_as_of(town_url: str) -> None:
    first_on, rows = early_photocell(town_url)
    store_readings(town_url, "SLC-0030", rows)
    rules = [r for r in definitions.load() if r.id == "day-burner"]
    for minutes in (26, 40, 90):
        run(town_url, first_on + minutes * 60, rules)
    assert findings(town_url) == []


def test_one_reading_and_then_cannot_tell_opens_no_day_burner_live(town_url: str) -> None:
    first_on, rows = early_photocell(town_url)
    run_cycle(town_url, NO_FILES, first_on - 3600, Shard())
    now = first_on - 3600
    while now < rows[-1][0]:
        now += 300
        store_readings(town_url, "SLC-0030", [r for r in rows if now - 300 < r[0] <= now])
        run_cycle(town_url, NO_FILES, now, Shard())
    assert [f for f in findings(town_url) if f[1] == "lampUnexpectedOn"] == []


def test_one_reading_and_then_cannot_tell_is_no_finding_in_a_backtest(town_url: str) -> None:
    first_on, rows = early_photocell(town_url)
    store_readings(town_url, "SLC-0030", rows)
    frame = pd.DataFrame(
        [("SL-0030", t, name, value) for t, metrics in rows for name, value in metrics.items()],
        columns=["asset_id", "t", "metric", "value"],
    )
    with psycopg.connect(town_url) as conn:
        lat, lon = conn.execute("SELECT lat, lon FROM assets WHERE asset_id = 'SL-0030'").fetchone() or (0, 0)
    assets = pd.DataFrame({"lat": [lat], "lon": [lon]}, index=pd.Index(["SL-0030"], name="asset_id"))
    rule = next(r for r in definitions.load() if r.id == "day-burner")
    conditions = DETECTORS[rule.detector].run(frame, assets, rule.params)
    assert conditions["bad"].eq(1.0).sum() == 1  # the one reading is a fair day-burner condition
    found = backtest(town_url, NO_FILES, first_on - 3600, rows[-1][0] + 3600)
    assert [f for f in found if f.fault == "lampUnexpectedOn"] == []


def test_a_duration_is_measured_between_known_readings() -> None:
    """A fault seen at 0 and 600 s, then unknown: it held for 600 s, whatever the time of evaluation."""
    cond = pd.DataFrame({"asset_id": "A", "t": [0.0, 600.0, 1200.0, 1800.0], "bad": [1.0, 1.0, None, None]})
    assert verdicts(cond, as_of=7200.0, hold_s=600.0, clear_s=0.0)[0].fault is True
    assert verdicts(cond, as_of=7200.0, hold_s=900.0, clear_s=0.0) == []


def test_a_road_equal_to_its_dew_point_after_rounding_is_no_frost(town_url: str) -> None:
    equal = {"road_temp_c": -2.4, "dew_point_c": -2.4, "air_temp_c": -1.0}
    start = dt.datetime(2026, 11, 10, 4, 0, tzinfo=dt.UTC).timestamp()
    store_readings(town_url, "D-RWS-01", [(start + 300 * i, equal) for i in range(12)])
    below = {"road_temp_c": -2.5, "dew_point_c": -2.4, "air_temp_c": -1.0}
    store_readings(town_url, "D-RWS-02", [(start + 300 * i, below) for i in range(12)])
    rules = [r for r in definitions.load() if r.id == "icy-road"]
    run(town_url, start + 3600, rules)
    assert [(a, f) for a, f, *_ in findings(town_url)] == [("RWS-02", "icyRoad")]
