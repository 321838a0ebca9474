"""Evaluation "as of" a time: readings by device time in a window, detectors, findings opened, kept or cleared.

Conditions become verdicts with the rule's durations: a fault needs its
condition to hold for ``for`` up to the evaluation time, and an open finding
closes only once the condition has been gone for ``clear``. Unknown readings
(daytime for a lamp-failure rule, the hysteresis band of a threshold) continue
the previous state. Findings live in a store: the database for ``lykta rules
run``, memory for a backtest.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd
import psycopg

from rules.definitions import Rule
from rules.detectors import DETECTORS
from storage import rules as store
from storage.rules import Finding

MIN_LOOKBACK_S = 3 * 3600.0


@dataclass(frozen=True)
class Verdict:
    asset_id: str
    fault: bool
    since: float
    evidence: dict[str, Any]


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: use k/N with 0 <= k < N")

    def owns(self, device_id: str | None) -> bool:
        """Stable across processes and runs: CRC-32 of the device id (assets without a device: shard 0)."""
        if device_id is None:
            return self.index == 0
        return zlib.crc32(device_id.encode()) % self.count == self.index

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def verdicts(conditions: pd.DataFrame, as_of: float, hold_s: float, clear_s: float) -> list[Verdict]:
    """The state of each asset at ``as_of`` from its conditions, with the rule's durations."""
    out: list[Verdict] = []
    if conditions.empty:
        return out
    frame = conditions.sort_values(["asset_id", "t"])
    for asset_id, group in frame.groupby("asset_id", sort=False):
        flags = group["bad"].ffill().to_numpy()
        times = group["t"].to_numpy()
        known = ~np.isnan(flags)
        if not known.any():
            continue
        flags, times = flags[known], times[known]
        last = flags[-1]
        changes = np.nonzero(flags != last)[0]
        start = times[changes[-1] + 1] if len(changes) else times[0]
        if last == 1.0 and as_of - start >= hold_s:
            out.append(Verdict(str(asset_id), True, float(start), {"since": _iso(float(start))}))
        elif last == 0.0 and as_of - start >= clear_s:
            out.append(Verdict(str(asset_id), False, float(start), {"since": _iso(float(start))}))
    return out


def silence(  # noqa: PLR0917 - the window and the devices of one rule
    times: dict[str, list[float]],
    intervals: dict[str, float],
    as_of: float,
    window_start: float,
    k: float,
    ever_seen: set[str] | None = None,
) -> list[Verdict]:
    """Absence: no reading for ``k`` reporting intervals (devices that never reported are not judged)."""
    out = []
    for asset_id, interval in intervals.items():
        seen = sorted(times.get(asset_id, []))
        limit = k * interval
        if not seen and ever_seen is not None and asset_id not in ever_seen:
            continue
        if not seen:
            out.append(Verdict(asset_id, True, window_start, {"last_reading": None, "limit_s": limit}))
            continue
        if as_of - seen[-1] > limit:
            out.append(Verdict(asset_id, True, seen[-1], {"last_reading": _iso(seen[-1]), "limit_s": limit}))
            continue
        gaps = [b for a, b in itertools.pairwise(seen) if b - a > limit]
        since = gaps[-1] if gaps else seen[0]
        out.append(Verdict(asset_id, False, since, {"last_reading": _iso(seen[-1])}))
    return out


class FindingStore(Protocol):
    def open_for(self) -> dict[tuple[str, str, str], Finding]: ...
    def opened(self, finding: Finding) -> None: ...
    def kept(self, finding: Finding, last_seen: float, evidence: dict[str, Any]) -> None: ...
    def cleared(self, finding: Finding, cleared_at: float) -> None: ...


class DatabaseStore:
    """Findings in the ``findings`` table; each evaluation commits as one transaction."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def open_for(self) -> dict[tuple[str, str, str], Finding]:
        return store.open_findings(self.conn)

    def opened(self, finding: Finding) -> None:
        finding.finding_id = store.insert_finding(self.conn, finding)

    def kept(self, finding: Finding, last_seen: float, evidence: dict[str, Any]) -> None:
        if finding.finding_id is not None:
            store.touch_finding(self.conn, finding.finding_id, last_seen, evidence)

    def cleared(self, finding: Finding, cleared_at: float) -> None:
        if finding.finding_id is not None:
            store.clear_finding(self.conn, finding.finding_id, cleared_at)


class MemoryStore:
    """Findings in memory: what a rule set would have produced (backtest)."""

    def __init__(self) -> None:
        self.all: list[Finding] = []

    def open_for(self) -> dict[tuple[str, str, str], Finding]:
        return {(f.tenant_id, f.asset_id, f.rule_id): f for f in self.all if f.cleared_at is None}

    def opened(self, finding: Finding) -> None:
        self.all.append(finding)

    def kept(self, finding: Finding, last_seen: float, evidence: dict[str, Any]) -> None:
        finding.last_seen = max(finding.last_seen, last_seen)
        finding.evidence = evidence

    def cleared(self, finding: Finding, cleared_at: float) -> None:
        finding.cleared_at = max(finding.observed_at, cleared_at)


@dataclass
class Outcome:
    opened: int = 0
    kept: int = 0
    cleared: int = 0


def _lookback(rules: Iterable[Rule]) -> float:
    extra = max((float(r.params.get("window", 0.0)) for r in rules), default=0.0)
    return max(MIN_LOOKBACK_S, max((r.hold_s + r.clear_s for r in rules), default=0.0) + extra + 3600)


def evaluate(
    conn: psycopg.Connection,
    rules: list[Rule],
    as_of: float,
    findings: FindingStore,
    *,
    shard: Shard = Shard(),
    tenant_id: str | None = None,
) -> Outcome:
    """Evaluate every rule as of ``as_of`` (device time) for the shard's assets and reconcile the findings."""
    everything = store.load_assets(conn, tenant_id)
    assets = [a for a in everything if shard.owns(a["device_id"])]
    by_key = {a["device_key"]: a for a in assets if a["device_key"] is not None}
    lookback = _lookback(rules)
    start = as_of - lookback
    metrics = sorted({m for r in rules for m in DETECTORS[r.detector].metrics(r.params)})
    rows = store.load_window(conn, list(by_key), metrics, start, as_of)
    frame = pd.DataFrame(rows, columns=["device_key", "t", "metric", "value"])
    frame["asset_id"] = frame["device_key"].map({k: a["asset_id"] for k, a in by_key.items()})
    table = pd.DataFrame(assets).drop_duplicates("asset_id").set_index("asset_id") if assets else pd.DataFrame()
    open_now = findings.open_for()
    outcome = Outcome()
    times: dict[str, list[float]] | None = None
    results: list[tuple[Rule, list[Verdict], list[dict[str, Any]]]] = []
    for rule in rules:
        chosen = [a for a in assets if rule.applies_to.matches(a) and a["device_key"] is not None]
        if not chosen:
            continue
        ids = {a["asset_id"] for a in chosen}
        if rule.detector == "absence":
            if times is None:
                times = {}
                for key, t in store.reading_times(conn, list(by_key), start, as_of):
                    times.setdefault(by_key[key]["asset_id"], []).append(t)
            result = silence(
                times,
                {a["asset_id"]: float(a["interval_s"]) for a in chosen},
                as_of,
                start,
                float(rule.params["intervals"]),
                {a["asset_id"] for a in chosen if a["last_seen"] is not None},
            )
        else:
            sub = frame[frame["asset_id"].isin(ids)]
            conditions = DETECTORS[rule.detector].run(sub, table, rule.params)
            result = verdicts(conditions, as_of, rule.hold_s, rule.clear_s)
        results.append((rule, result, chosen))
    dark_cabinets = _without_supply(results, open_now)
    parents = {a["asset_id"]: a["parent_id"] for a in everything}
    for rule, result, chosen in results:
        if rule.detector == "absence" and dark_cabinets:
            # a device below a cabinet without supply is silent because of the cabinet: not a finding of its own
            result = [v for v in result if not (v.fault and cabinet_of(v.asset_id, parents) in dark_cabinets)]  # noqa: PLW2901
        _reconcile(rule, result, {a["asset_id"]: a for a in chosen}, as_of, open_now, findings, outcome)
    return outcome


def _without_supply(
    results: list[tuple[Rule, list[Verdict], list[dict[str, Any]]]], open_now: dict[tuple[str, str, str], Finding]
) -> set[str]:
    """Cabinets whose supply is lost now (this evaluation) or still open as a finding."""
    lost = {f.asset_id for f in open_now.values() if f.fault == "supplyLoss"}
    for rule, result, _ in results:
        if rule.detector == "supply_loss":
            lost |= {v.asset_id for v in result if v.fault}
            lost -= {v.asset_id for v in result if not v.fault}
    return lost


def cabinet_of(asset_id: str, parents: dict[str, str | None]) -> str:
    """The root of an asset's tree: for a streetlight, the cabinet feeding it."""
    current = asset_id
    for _ in range(8):
        parent = parents.get(current)
        if not parent:
            break
        current = parent
    return current


def _reconcile(  # noqa: PLR0917 - one call site, all of it the state of one rule
    rule: Rule,
    result: list[Verdict],
    assets: dict[str, dict[str, Any]],
    as_of: float,
    open_now: dict[tuple[str, str, str], Finding],
    findings: FindingStore,
    outcome: Outcome,
) -> None:
    for v in result:
        asset = assets[v.asset_id]
        key = (asset["tenant_id"], v.asset_id, rule.id)
        current = open_now.get(key)
        evidence = {**v.evidence, "rule": rule.id, "detector": rule.detector, "as_of": _iso(as_of)}
        if v.fault:
            if current is None:
                finding = Finding(
                    tenant_id=asset["tenant_id"],
                    asset_id=v.asset_id,
                    device_id=asset["device_id"],
                    rule_id=rule.id,
                    fault=rule.fault,
                    severity=rule.severity,
                    observed_at=v.since,
                    last_seen=as_of,
                    detected_at=as_of,
                    evidence=evidence,
                )
                findings.opened(finding)
                open_now[key] = finding
                outcome.opened += 1
            else:
                findings.kept(current, as_of, evidence)
                outcome.kept += 1
        elif current is not None and v.since >= current.observed_at:
            findings.cleared(current, v.since)
            del open_now[key]
            outcome.cleared += 1
