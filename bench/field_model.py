"""A second source of truth for detection quality: street lighting as it behaves in the field.

Written from docs/telemetry.md alone and sharing no code with the detectors or the simulators: the sun comes
from astral's elevation (with refraction, as a photocell sees it), every lamp has its own photocell
threshold between -4.5 and -2.5 degrees (with 0.3 degrees of hysteresis), some circuits switch by a clock
schedule the municipality chose, lamps dim to 50 % after local midnight, controllers report every 1 to 15
minutes with jitter and clocks up to four minutes ahead or one behind, and one cabinet's controllers (every
two minutes) sit behind a gateway that delivers a quarter of an hour of readings at once. Ten days: three to
learn from, then the faults.

Faults are injected with their true times: lamps out, lamps burning by day (a stuck relay), cycling lamps,
photocells drifting away from their circuit, controllers that go silent (no buffer: the readings are lost),
cabinets losing their supply (their lamps' controllers go dark with it) and cabinet doors opened. A fault
that cannot be seen (a lamp out while the sun never sets) or lies below a documented minimum (a door open
for less than its meter's interval) is kept apart, so recall is measured on what lykta could know.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
from astral import Observer
from astral.sun import elevation

PLACES = {
    "oeste": (39.36, -9.16, "Europe/Lisbon"),
    "62n": (62.39, 17.31, "Europe/Stockholm"),
    "68n": (68.0, 20.3, "Europe/Stockholm"),
}
SEASONS = {"december": (12, 10), "june": (6, 17)}
INTERVALS = [60, 300, 600, 900]
DAYS = 10
LEARN_DAYS = 3.5
"""Faults start after the first three and a half days (three whole nights and the midnight after them):
lykta learns the lamps' switching from them."""


@dataclass
class Lamp:
    asset_id: str
    device_id: str
    circuit: str
    cabinet: str
    lat: float
    lon: float
    rated_w: float
    interval: float
    skew: float
    threshold: float
    schedule: tuple[float, float] | None  # (on, off) seconds of the local day, or None: photocell
    batched: bool


@dataclass
class Truth:
    asset_id: str
    fault: str
    start: float
    end: float
    seen: bool = True
    """False: the fault could not show (below a documented minimum, or never meant to burn while it lasted)"""


@dataclass
class Town:
    place: str
    start: float
    end: float
    tz: ZoneInfo
    lamps: list[Lamp] = field(default_factory=list)
    cabinets: dict[str, tuple[float, float]] = field(default_factory=dict)
    truth: list[Truth] = field(default_factory=list)


class Sky:
    """The sun's elevation over the town, every minute (one place: a town is a few km across)."""

    def __init__(self, lat: float, lon: float, start: float, end: float) -> None:
        where = Observer(latitude=lat, longitude=lon)
        self.t0 = start - 7200
        self.minutes = np.array(
            [
                elevation(where, dt.datetime.fromtimestamp(self.t0 + 60 * m, dt.UTC))
                for m in range(int((end - start + 14400) / 60) + 1)
            ]
        )

    def at(self, t: np.ndarray) -> np.ndarray:
        return np.interp((t - self.t0) / 60, np.arange(len(self.minutes)), self.minutes)


def build(place: str, season: str, lamps: int, seed: int, year: int = 2026) -> Town:
    rng = random.Random(seed)
    lat, lon, zone = PLACES[place]
    month, day = SEASONS[season]
    tz = ZoneInfo(zone)
    start = dt.datetime(year, month, day, 12, 0, tzinfo=dt.UTC).timestamp()
    town = Town(place, start, start + DAYS * 86400, tz)
    n_cabinets = max(2, round(lamps / 170))
    made = 0
    for c in range(n_cabinets):
        cabinet = f"CAB-{c + 1:02d}"
        clat, clon = lat + rng.uniform(-0.01, 0.01), lon + rng.uniform(-0.02, 0.02)
        town.cabinets[cabinet] = (clat, clon)
        interval = 900.0 if c == 0 else float(rng.choice(INTERVALS))
        batched = c == 1  # its controllers report every minute through a gateway that delivers each quarter hour
        if batched:
            interval = 120.0
        circuit_no = 0
        while made < lamps * (c + 1) / n_cabinets:
            circuit_no += 1
            circuit = f"{cabinet}-K{circuit_no}"
            schedule = None
            if rng.random() < 0.15:  # the municipality switches this circuit by the clock
                schedule = (16.5 * 3600 if season == "december" else 22.0 * 3600, 7.0 * 3600)
                if place != "oeste" and season == "june":
                    schedule = None  # and in a Nordic summer its photocells do
            for _ in range(rng.randint(15, 60)):
                made += 1
                n = made
                town.lamps.append(
                    Lamp(
                        asset_id=f"SL-{n:05d}",
                        device_id=f"SLC-{n:05d}",
                        circuit=circuit,
                        cabinet=cabinet,
                        lat=clat + rng.uniform(-0.004, 0.004),
                        lon=clon + rng.uniform(-0.008, 0.008),
                        rated_w=float(rng.choice([28, 36, 45, 60, 70, 100, 150])),
                        interval=interval,
                        skew=rng.uniform(-60, 240),
                        threshold=rng.uniform(-4.5, -2.5),
                        schedule=schedule,
                        batched=batched,
                    )
                )
    return town


def local_seconds(t: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    offset = dt.datetime.fromtimestamp(float(t[len(t) // 2]), tz).utcoffset()
    return (t + (offset.total_seconds() if offset else 0.0)) % 86400


def inject(town: Town, sky: Sky, seed: int, per_type: int) -> dict[str, dict[str, object]]:
    """Faults on lamps and cabinets: returns each lamp's fault parameters; fills ``town.truth``."""
    rng = random.Random(seed + 1)
    faults: dict[str, dict[str, object]] = {}
    pool = [lamp for lamp in town.lamps if lamp.cabinet != "CAB-01" or rng.random() < 0.5]
    rng.shuffle(pool)
    day = 86400.0

    def window(hours: tuple[float, float]) -> tuple[float, float]:
        begin = town.start + rng.uniform(LEARN_DAYS + 0.5, DAYS - 1.5) * day
        return begin, min(town.end - 3600, begin + rng.uniform(*hours) * 3600)

    for fault, hours in [
        ("lampFailure", (10.0, 40.0)),
        ("lampUnexpectedOn", (4.0, 30.0)),
        ("cyclingFailure", (10.0, 30.0)),
        ("communicationFailure", (1.0, 10.0)),
        ("photocellFailure", (0.0, 0.0)),
    ]:
        for _ in range(per_type):
            lamp = pool.pop()
            if fault == "photocellFailure" and lamp.schedule is not None:
                lamp = next(x for x in pool if x.schedule is None)
                pool.remove(lamp)
            s, e = window(hours)
            if fault == "photocellFailure":
                s, e = town.start + rng.uniform(LEARN_DAYS + 0.5, LEARN_DAYS + 2.0) * day, town.end
                faults[lamp.asset_id] = {"fault": fault, "start": s, "drift": rng.choice([-1, 1]) * rng.uniform(5, 8)}
            else:
                faults[lamp.asset_id] = {"fault": fault, "start": s, "end": e}
            town.truth.append(Truth(lamp.asset_id, fault, s, e))
    # below the documented minimums: a silence of two intervals, a stuck relay for 15 minutes of daylight
    for fault, minutes in [("communicationFailure", 2), ("lampUnexpectedOn", 15)]:
        lamp = pool.pop()
        s = town.start + rng.uniform(LEARN_DAYS + 0.5, DAYS - 1.5) * day
        if fault == "lampUnexpectedOn":
            noon = [t for t in np.arange(s, s + day, 600) if sky.at(np.array([t]))[0] > 5]
            s = noon[0] if noon else s
        e = s + (minutes * lamp.interval if fault == "communicationFailure" else minutes * 60)
        faults[lamp.asset_id] = {"fault": fault, "start": s, "end": e}
        town.truth.append(Truth(lamp.asset_id, fault, s, e, seen=False))
    cabinets = sorted(town.cabinets)
    for n in range(per_type):
        cabinet = cabinets[(n + 2) % len(cabinets)]
        s = town.start + rng.uniform(LEARN_DAYS + 0.5, DAYS - 1) * day
        town.truth.append(Truth(cabinet, "supplyLoss", s, s + rng.uniform(1, 4) * 3600))
        s = town.start + rng.uniform(LEARN_DAYS + 0.5, DAYS - 1) * day
        town.truth.append(Truth(cabinet, "doorOpen", s, s + rng.uniform(4, 40) * 60))
    s = town.start + (LEARN_DAYS + 1.3) * day
    town.truth.append(Truth(cabinets[0], "doorOpen", s, s + 30, seen=False))  # half a minute: no meter saw it
    return faults


def lamp_series(
    town: Town, lamp: Lamp, sky: Sky, fault: dict[str, object] | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(true times, receive times, metrics) of one controller's reports."""
    count = int((town.end - town.start) / lamp.interval)
    t = town.start + np.arange(count) * lamp.interval + rng.uniform(-0.1, 0.1, count) * lamp.interval
    t = np.sort(t)
    elev = sky.at(t)
    # the photocell (or the clock) decides; hysteresis keeps the state between the two thresholds
    threshold = np.full(count, lamp.threshold)
    kind = fault["fault"] if fault else None
    if kind == "photocellFailure":
        assert fault is not None
        start = float(fault["start"])  # type: ignore[arg-type]
        threshold = threshold + np.clip((t - start) / 43200, 0, 1) * float(fault["drift"])  # type: ignore[arg-type]
    if lamp.schedule is not None:
        local = local_seconds(t, town.tz)
        on_at, off_at = lamp.schedule
        want = (local >= on_at) | (local < off_at)
    else:
        want = np.zeros(count, dtype=bool)
        lit = bool(elev[0] < threshold[0])
        for i in range(count):
            if lit and elev[i] > threshold[i] + 0.3:
                lit = False
            elif not lit and elev[i] < threshold[i]:
                lit = True
            want[i] = lit
    relay = want.copy()
    burning = want.copy()
    if kind is not None and kind != "photocellFailure":
        s, e = float(fault["start"]), float(fault["end"])  # type: ignore[index, arg-type]
        during = (t >= s) & (t < e)
        if kind == "lampFailure":
            burning &= ~during
        elif kind == "lampUnexpectedOn":
            relay |= during
            burning |= during
        elif kind == "cyclingFailure":
            flicker = ((t // 300) % 2).astype(bool)
            relay = np.where(during & want, flicker, relay)
            burning = relay.copy()
            # the controller counts every switch-on, not only those its reports happen to see
            fine = np.arange(town.start, town.end + 60, 60.0)
            fine_want = np.interp(fine, t, want.astype(float)) > 0.5
            fine_on = np.where((fine >= s) & (fine < e) & fine_want, ((fine // 300) % 2).astype(bool), fine_want)
            ons = np.cumsum(fine_on & ~np.r_[fine_on[:1], fine_on[:-1]])
            counted = ons[np.clip(np.searchsorted(fine, t, side="right") - 1, 0, len(fine) - 1)]
    local = local_seconds(t, town.tz)
    dim = np.where(relay & (local < 5 * 3600), 50.0, np.where(relay, 100.0, 0.0))
    efficiency = 0.9 + 0.05 * rng.random()
    power = np.where(
        burning, lamp.rated_w * dim / 100 / efficiency * rng.normal(1, 0.015, count), 0.3 + 0.4 * rng.random()
    )
    switches = 1000 + np.cumsum(relay & ~np.r_[relay[:1], relay[:-1]])
    if kind == "cyclingFailure":
        switches = 1000 + counted
    hours = 20000 + np.cumsum(burning * lamp.interval / 3600)
    energy = 4000 + np.cumsum(power * lamp.interval / 3.6e6)
    keep = np.ones(count, dtype=bool)
    if kind == "communicationFailure":
        keep &= ~((t >= float(fault["start"])) & (t < float(fault["end"])))  # type: ignore[index, arg-type]
    for truth in town.truth:
        if truth.fault == "supplyLoss" and truth.asset_id == lamp.cabinet:
            keep &= ~((t >= truth.start) & (t < truth.end))
    received = t + 0.5 + 2.5 * rng.random(count)
    if lamp.batched:
        received = (np.floor(t / 900) + 1) * 900 + 2.0
    metrics = {
        "power_w": np.round(power, 1),
        "lamp_on": relay.astype(float),
        "dim_level_pct": dim,
        "switch_count": switches.astype(float),
        "burning_hours_h": np.round(hours, 2),
        "energy_kwh": np.round(energy, 3),
        "voltage_v": np.round(rng.normal(231, 1.5, count), 1),
    }
    return t[keep], received[keep], {k: v[keep] for k, v in metrics.items()}


def cabinet_series(
    town: Town, cabinet: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A cabinet meter reporting every minute: supply, phases and its door."""
    count = int((town.end - town.start) / 60)
    t = town.start + np.arange(count) * 60.0 + rng.uniform(0, 5, count)
    supply = np.ones(count)
    door = np.zeros(count)
    for truth in town.truth:
        if truth.asset_id != cabinet:
            continue
        during = (t >= truth.start) & (t < truth.end)
        if truth.fault == "supplyLoss":
            supply[during] = 0.0
        elif truth.fault == "doorOpen":
            door[during] = 1.0
    volts = {f"voltage_l{p}_v": np.round(np.where(supply > 0, rng.normal(231, 1.5, count), 0.0), 1) for p in (1, 2, 3)}
    metrics = {"supply_ok": supply, "door_open": door, **volts}
    return t, t + 1.0, metrics


def photocell_switches(sky: Sky, t: np.ndarray, threshold: np.ndarray | float) -> tuple[int, int]:
    """(switch-ons, switch-offs) of a photocell over the times ``t`` (hysteresis as in :func:`lamp_series`)."""
    elev = sky.at(t)
    limit = np.broadcast_to(np.asarray(threshold, dtype=float), t.shape)
    lit = bool(elev[0] < limit[0])
    ons = offs = 0
    for e, x in zip(elev.tolist(), limit.tolist(), strict=True):
        if lit and e > x + 0.3:
            lit, offs = False, offs + 1
        elif not lit and e < x:
            lit, ons = True, ons + 1
    return ons, offs


def observable(town: Town, sky: Sky, faults: dict[str, dict[str, object]], hold_s: float = 1500.0) -> None:
    """Mark lamp faults that could not show as unseen: a lamp out that was never meant to burn for the rule's
    duration while it lasted, a relay stuck on while the lamp was meant to burn anyway, a drifted photocell
    that did not switch three times in three days (the sun never crossed its new threshold: beyond the noon
    sun of a polar night, below the midnight sun) or whose circuit's photocells did not switch at all."""
    by_id = {lamp.asset_id: lamp for lamp in town.lamps}
    last_midnight = math.floor(town.end / 86400) * 86400
    for truth in town.truth:
        lamp = by_id.get(truth.asset_id)
        if lamp is not None and truth.fault == "photocellFailure":
            drift = float(faults[lamp.asset_id]["drift"])  # type: ignore[arg-type]
            recent = np.arange(max(truth.start + 43200, last_midnight - 3 * 86400), last_midnight, 60.0)
            ons, offs = photocell_switches(sky, recent, lamp.threshold + drift) if len(recent) else (0, 0)
            week = np.arange(last_midnight - 5 * 86400, last_midnight, 60.0)
            switching = sum(
                min(photocell_switches(sky, week, other.threshold)) >= 3
                for other in town.lamps
                if other.circuit == lamp.circuit and other.schedule is None and other.asset_id not in faults
            )
            truth.seen = max(ons, offs) >= 3 and switching >= 3
            continue
        if lamp is None or not truth.seen or truth.fault not in ("lampFailure", "lampUnexpectedOn", "cyclingFailure"):
            continue
        t = np.arange(truth.start, truth.end, 60.0)
        if len(t) == 0:
            truth.seen = False
            continue
        if lamp.schedule is not None:
            local = local_seconds(t, town.tz)
            meant = (local >= lamp.schedule[0]) | (local < lamp.schedule[1])
        else:
            meant = sky.at(t) < lamp.threshold - 1.0
        # the longest stretch the lamp was (or was not) meant to burn during the fault
        stretch = meant if truth.fault != "lampUnexpectedOn" else sky.at(t) > lamp.threshold + 2.0
        longest = 0
        run = 0
        for v in stretch:
            run = run + 1 if v else 0
            longest = max(longest, run)
        truth.seen = longest * 60 >= hold_s + 1800


def lamp_switch_minutes(town: Town, sky: Sky) -> dict[str, np.ndarray]:
    """For each photocell lamp, when it switches (true times), for telling false findings near twilight."""
    out = {}
    grid = np.arange(town.start, town.end, 60.0)
    elev = sky.at(grid)
    for lamp in town.lamps:
        below = elev < lamp.threshold
        out[lamp.asset_id] = grid[np.flatnonzero(below[1:] != below[:-1])]
    return out


def round_to(x: float, step: float) -> float:
    return math.floor(x / step) * step
