"""Each lamp judged by its own switching, learned from its history (rules/switching.py): a lamp on a schedule
the municipality chose, photocells each at their own sun elevation, and one photocell drifting away."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
from astral import Observer
from astral.sun import elevation

from floor.sun import switch_times
from rules.service import backtest
from tests.integration.test_rules import store_readings

NO_FILES: list[Path] = []
DAY0 = datetime(2026, 11, 4, 12, 0, tzinfo=UTC).timestamp()
DAYS = 7
START = DAY0 + 4 * 86400  # four days of history to learn from before it
STEP = 300.0


def position(url: str, asset: str) -> tuple[float, float]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT lat, lon FROM assets WHERE asset_id = %s", (asset,)).fetchone()
    assert row is not None
    return float(row[0]), float(row[1])


def readings(on: np.ndarray, times: np.ndarray) -> list[tuple[float, dict[str, float]]]:
    """A lamp's reports: on or off at each time, with its power and switch count."""
    rows = []
    switches = 100.0
    for n, (t, lit) in enumerate(zip(times.tolist(), on.tolist(), strict=True)):
        if lit and (n == 0 or not on[n - 1]):
            switches += 1
        rows.append(
            (
                t,
                {
                    "lamp_on": float(lit),
                    "power_w": 40.0 if lit else 0.4,
                    "dim_level_pct": 100.0 if lit else 0.0,
                    "switch_count": switches,
                },
            )
        )
    return rows


def photocell(lat: float, lon: float, times: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
    """On below ``threshold`` degrees of sun elevation, off above it plus 0.3 (a photocell's hysteresis)."""
    where = Observer(latitude=lat, longitude=lon)  # astral's sun, not lykta's: the model shares no code with it
    elev = np.array([elevation(where, datetime.fromtimestamp(t, UTC)) for t in times.tolist()])
    limit = np.broadcast_to(np.asarray(threshold, dtype=float), times.shape)
    state = np.zeros(len(times), dtype=bool)
    lit = bool(elev[0] < limit[0])
    for n in range(len(times)):
        if lit and elev[n] > limit[n] + 0.3:
            lit = False
        elif not lit and elev[n] < limit[n]:
            lit = True
        state[n] = lit
    return state


def test_a_lamp_on_a_schedule_is_judged_by_its_schedule(town_url: str) -> None:
    """SL-0001 burns from 16:00 to 05:20 UTC, the municipality's choice: 45 minutes after civil dusk and 40
    before civil dawn. By civil twilight it failed every evening and morning; by what it learned, never."""
    lat, lon = position(town_url, "SL-0001")
    dawn, dusk = switch_times(lat, lon, datetime.fromtimestamp(DAY0, UTC).date()) or (0.0, 0.0)
    on_s, off_s = (dusk + 2700) % 86400, (dawn - 2400) % 86400
    times = DAY0 + np.arange(0, DAYS * 86400, STEP)
    day_s = times % 86400
    scheduled = (day_s >= on_s) | (day_s < off_s)
    store_readings(town_url, "SLC-0001", readings(scheduled, times))
    failing = scheduled & ~((times > DAY0 + 5 * 86400) & (times < DAY0 + 6 * 86400))  # out all of night 6
    store_readings(town_url, "SLC-0002", readings(failing, times))
    found = backtest(town_url, NO_FILES, START, DAY0 + DAYS * 86400)
    lamp = sorted(
        (f.asset_id, f.fault) for f in found if f.asset_id in ("SL-0001", "SL-0002") and f.observed_at > START
    )
    assert lamp == [("SL-0002", "lampFailure")]


def test_photocells_are_judged_each_by_its_own_and_a_drifting_one_is_found(town_url: str) -> None:
    """Eight lamps of one circuit switch at -4.5 to -2.5 degrees; SL-0009's photocell drifts to +3 degrees
    for the last three days (it switches on in daylight): a photocell failure on SL-0009 (which also burned
    by day until it had learned the new habit) and nothing on the others."""
    times = DAY0 + np.arange(0, DAYS * 86400, STEP)
    lamps = [f"SL-{n:04d}" for n in range(2, 10)]
    for n, asset in enumerate(lamps):
        lat, lon = position(town_url, asset)
        threshold: float | np.ndarray = -4.5 + 2.0 * n / (len(lamps) - 1)
        if asset == "SL-0009":
            threshold = np.where(times > DAY0 + 4 * 86400, 3.0, -3.0)
        store_readings(town_url, "SLC-" + asset[3:], readings(photocell(lat, lon, times, threshold), times))
    found = backtest(town_url, NO_FILES, START, DAY0 + DAYS * 86400)
    faults = {(f.asset_id, f.fault) for f in found if f.asset_id in lamps and f.observed_at > START}
    assert ("SL-0009", "photocellFailure") in faults
    assert faults - {("SL-0009", "lampUnexpectedOn")} == {("SL-0009", "photocellFailure")}


def test_midsummer_photocells_follow_the_sun_and_one_set_low_is_no_lamp_failure(town_url: str) -> None:
    """Midsummer at 62.4 degrees north: the sun goes down to about -4.1 degrees at midnight. Six photocells of
    one circuit (-3.5 to -2.5 degrees) switch on for a while every night; two set at -4.3 never do, so lykta
    learns nothing of their own; SL-0010's photocell drifts to +2 degrees (it switches on before sunset).

    Near a solstice the sun reaches those elevations at the same minute every night, so a photocell looks like
    a schedule; taken for one it had no circuit to be compared with and its drift went unseen. And nothing says
    where in the circuit's spread the two silent photocells lie: they are meant to burn only when nearly every
    lamp of the circuit would be, which no night here reaches (by the circuit's median switch-on less the
    margin, both were failing every midnight). Found: SL-0010's photocell (and its burning by day), nothing
    else."""
    day0 = datetime(2026, 6, 16, 12, 0, tzinfo=UTC).timestamp()
    times = day0 + np.arange(0, DAYS * 86400, STEP)
    lamps = [f"SL-{n:04d}" for n in range(2, 11)]
    with psycopg.connect(town_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE assets SET lat = 62.39 + (lat - 56.05), lon = 17.31 + (lon - 12.69) WHERE asset_id = ANY(%s)",
            (lamps,),
        )
    for n, asset in enumerate(lamps):
        lat, lon = position(town_url, asset)
        threshold: float | np.ndarray = -3.5 + n / 5 if n < 6 else -4.3
        if asset == "SL-0010":
            threshold = np.where(times > day0 + 3 * 86400, 2.0, -3.0)
        store_readings(town_url, "SLC-" + asset[3:], readings(photocell(lat, lon, times, threshold), times))
    start = day0 + 4 * 86400
    found = backtest(town_url, NO_FILES, start, day0 + DAYS * 86400)
    faults = {(f.asset_id, f.fault) for f in found if f.asset_id in lamps and f.observed_at > start}
    assert ("SL-0010", "photocellFailure") in faults
    assert faults - {("SL-0010", "lampUnexpectedOn")} == {("SL-0010", "photocellFailure")}
