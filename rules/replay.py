"""Replaying a rule over a whole period at once: the episodes that evaluating after every reading would produce.

Equivalent to evaluating "as of" each reading time in turn (rules.evaluate), but
one pass over the condition series per asset, so a week of a city can be scored
in seconds. Used by the detection-quality benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg

from rules.definitions import Rule
from rules.detectors import DETECTORS
from rules.evaluate import cabinet_of, new_finding
from storage import rules as rule_store
from storage.rules import RuleAsset


@dataclass(frozen=True)
class Episode:
    asset_id: str
    observed_at: float
    """when the condition started"""
    detected_at: float
    """when it had held long enough for a finding to open"""
    cleared_at: float | None
    """when it went away, for good enough to close the finding; None: still open at the end"""


def replay(conditions: pd.DataFrame, hold_s: float, clear_s: float) -> list[Episode]:
    out: list[Episode] = []
    if conditions.empty:
        return out
    for asset_id, group in conditions.sort_values(["asset_id", "t"]).groupby("asset_id", sort=False):
        flags = group["bad"].to_numpy(dtype=float)
        times = group["t"].to_numpy()
        known = ~np.isnan(flags)  # unknown conditions continue a run but are no evidence of its duration
        flags, times = flags[known], times[known]
        opened: tuple[float, float] | None = None
        run_start = times[0] if len(times) else 0.0
        for i in range(len(times)):
            if i > 0 and flags[i] != flags[i - 1]:
                run_start = times[i]
            if flags[i] == 1.0 and opened is None and times[i] - run_start >= hold_s:
                opened = (float(run_start), float(times[i]))
            elif flags[i] == 0.0 and opened is not None and times[i] - run_start >= clear_s:
                out.append(Episode(str(asset_id), opened[0], opened[1], float(run_start)))
                opened = None
        if opened is not None:
            out.append(Episode(str(asset_id), opened[0], opened[1], None))
    return out


def replay_silence(times: dict[str, np.ndarray], limits: dict[str, float], end: float) -> list[Episode]:
    """Gaps longer than each device's limit: observed at the last reading, detected a limit later."""
    out = []
    for asset_id, limit in limits.items():
        seen = np.sort(times.get(asset_id, np.array([])))
        if len(seen) == 0:
            continue
        gaps: list[int] = np.flatnonzero(np.diff(seen) > limit).tolist()
        for g in gaps:
            out.append(Episode(asset_id, float(seen[g]), float(seen[g] + limit), float(seen[g + 1])))
        if end - seen[-1] > limit:
            out.append(Episode(asset_id, float(seen[-1]), float(seen[-1] + limit), None))
    return out


@dataclass(frozen=True)
class TimeMap:
    """Maps receive (wall) times to simulated time for a paced simulation: sim = start + (wall - wall0) * speed."""

    start: float
    wall0: float
    speed: float

    def __call__(self, wall: float) -> float:
        return self.start + (wall - self.wall0) * self.speed


def backfill(
    conn: psycopg.Connection, rules: list[Rule], start: float, end: float, received: TimeMap | None = None
) -> list[tuple[Rule, RuleAsset, Episode]]:
    """Every episode of every rule over [start, end], with lamps below a dark cabinet left to the cabinet.

    Silence is judged by receive time; ``received`` maps receive times into the period when it was simulated
    at a pace (without it, receive times are taken as they are).
    """
    assets = rule_store.load_assets(conn)
    table = rule_store.asset_frame(assets).drop_duplicates("asset_id").set_index("asset_id")
    by_key = {a.device_key: a for a in assets if a.device_key is not None}
    found: list[tuple[Rule, RuleAsset, Episode]] = []
    for rule in rules:
        chosen = {a.asset_id: a for a in assets if rule.applies_to.matches(a) and a.device_key is not None}
        keys = [a.key() for a in chosen.values()]
        if rule.detector == "absence":
            lo, hi = (
                (received.wall0 - 60, received.wall0 + (end - start) / received.speed + 3600)
                if received
                else (start, end)
            )
            times: dict[str, list[float]] = {}
            for key, t in rule_store.reading_times(conn, keys, lo, hi):
                times.setdefault(by_key[key].asset_id, []).append(received(t) if received else t)
            limits = {
                a: float(rule.params["intervals"]) * x.interval() for a, x in chosen.items() if x.last_seen is not None
            }
            episodes = replay_silence({a: np.array(v) for a, v in times.items()}, limits, end)
        else:
            metrics = DETECTORS[rule.detector].metrics(rule.params)
            frame = rule_store.load_recent(conn, keys, dict.fromkeys(metrics, start - 1), end)
            frame["asset_id"] = frame["device_key"].map({k: a.asset_id for k, a in by_key.items()})
            episodes = replay(DETECTORS[rule.detector].run(frame, table, rule.params), rule.hold_s, rule.clear_s)
        found += [(rule, chosen[e.asset_id], e) for e in episodes if e.asset_id in chosen]
    parents = {a.asset_id: a.parent_id for a in assets}
    dark = [
        (x.asset_id, e.observed_at - 900, e.cleared_at or float("inf"))
        for r, x, e in found
        if r.detector == "supply_loss"
    ]

    return [
        (r, x, e)
        for r, x, e in found
        if not (
            r.detector == "absence"
            and any(cabinet_of(x.asset_id, parents) == c and s <= e.observed_at <= t for c, s, t in dark)
        )
    ]


def persist(conn: psycopg.Connection, found: list[tuple[Rule, RuleAsset, Episode]], end: float) -> int:
    """Write episodes as findings (open or cleared); an episode already recorded is skipped, except that one
    recorded open that has since ended is cleared. Returns the new ones."""
    written = 0
    for rule, asset, e in found:
        recorded = rule_store.recorded_finding(conn, asset.tenant_id, asset.asset_id, rule.id, e.observed_at)
        if recorded is not None:
            if recorded[1] == "open" and e.cleared_at is not None:
                rule_store.clear_finding(conn, recorded[0], e.cleared_at)
            continue
        evidence = {"rule": rule.id, "detector": rule.detector, "replayed": True}
        finding = new_finding(rule, asset, e.observed_at, e.cleared_at or end, e.detected_at, evidence)
        finding_id = rule_store.insert_finding(conn, finding)
        if e.cleared_at is not None:
            rule_store.clear_finding(conn, finding_id, e.cleared_at)
        written += 1
    return written
