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
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd
import psycopg

from floor.timefmt import iso
from rules.cadence import Cadence
from rules.definitions import Rule
from rules.detectors import DETECTORS
from rules.switching import LEARNS_SWITCHING, Switching
from storage import rules as store
from storage.rules import Finding, RuleAsset

MIN_LOOKBACK_S = 3 * 3600.0


@dataclass(frozen=True)
class Verdict:
    asset_id: Any
    """the asset's key in the conditions: its code in an :class:`AssetTable`, or any label"""
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


def runs(conditions: pd.DataFrame) -> pd.DataFrame:
    """The current run of each asset: its last known condition (``bad``), since when it has held, and the last
    reading that said so (``last``): the evidence it holds on.

    Unknown conditions continue the previous state but are no evidence: a run lasts from its first to its last
    known reading. An asset with no known condition has no run.
    """
    if conditions.empty:
        return pd.DataFrame({"asset_id": [], "bad": [], "since": [], "last": []})
    frame = conditions.sort_values(["asset_id", "t"], kind="stable")
    known = frame["bad"].notna().to_numpy()
    ids = frame["asset_id"].to_numpy()[known]
    times = frame["t"].to_numpy(dtype=float)[known]
    flags = frame["bad"].to_numpy(dtype=float)[known]
    if len(ids) == 0:
        return pd.DataFrame({"asset_id": [], "bad": [], "since": [], "last": []})
    first = np.r_[True, ids[1:] != ids[:-1]]
    change = first | np.r_[True, flags[1:] != flags[:-1]]
    since = pd.Series(np.where(change, times, np.nan)).ffill().to_numpy()
    last = np.r_[first[1:], True]
    return pd.DataFrame({"asset_id": ids[last], "bad": flags[last], "since": since[last], "last": times[last]})


def verdicts(conditions: pd.DataFrame, as_of: float, hold_s: float, clear_s: float) -> list[Verdict]:
    """The state of each asset at ``as_of`` from its conditions, with the rule's durations: a condition has held
    for as long as readings say so (from the first to the last known reading of its run, never up to ``as_of``
    on the strength of readings that cannot tell)."""
    current = runs(conditions)
    out: list[Verdict] = []
    for asset_id, bad, since, last in zip(
        current["asset_id"], current["bad"], current["since"], current["last"], strict=True
    ):
        if bad == 1.0 and last - since >= hold_s:
            out.append(Verdict(asset_id, True, float(since), {"since": iso(float(since))}))
        elif bad == 0.0 and last - since >= clear_s:
            out.append(Verdict(asset_id, False, float(since), {"since": iso(float(since))}))
    return out


def silence(
    times: dict[str, list[tuple[float, float]]],
    limits: dict[str, tuple[float, float]],
    as_of: float,
    before: dict[str, float],
    clock_s: float = 300.0,
) -> list[Verdict]:
    """Absence by device time: ``times`` are each device's readings in the window (device time, receive time),
    ``limits`` its (measured, heard) limits, ``before`` the last device time of devices with nothing in the
    window (devices in neither were never heard: not judged). Silent at ``as_of`` when the last reading is
    older than the heard limit and the clock difference the contract allows (see rules/incremental.py)."""
    out = []
    for asset_id, (limit, heard_limit) in limits.items():
        seen = times.get(asset_id, [])
        if not seen:
            if asset_id in before:
                last = before[asset_id]
                out.append(Verdict(asset_id, True, last, {"last_reading": iso(last), "limit_s": limit}))
            continue
        last_t = seen[-1][0]
        if as_of - last_t > heard_limit + clock_s:
            out.append(Verdict(asset_id, True, last_t, {"last_reading": iso(last_t), "limit_s": limit}))
            continue
        gaps = [b for (a, _), (b, _) in itertools.pairwise(seen) if b - a > limit]
        since = gaps[-1] if gaps else seen[0][0]
        out.append(Verdict(asset_id, False, since, {"last_reading": iso(last_t)}))
    return out


class FindingStore(Protocol):
    """Where findings go; each change returns the finding as it now is (findings are frozen)."""

    def open_for(self) -> dict[tuple[str, str, str], Finding]: ...
    def of_fault(self, fault: str, since: float) -> list[tuple[str, str, float, float | None]]:
        """(tenant, asset, observed, cleared) of the findings of ``fault`` open now or cleared after ``since``."""
        ...

    def opened(self, finding: Finding) -> Finding: ...
    def kept(self, finding: Finding, last_seen: float, evidence: dict[str, Any]) -> Finding: ...
    def cleared(self, finding: Finding, cleared_at: float) -> Finding: ...
    def flush(self) -> None: ...


class DatabaseStore:
    """Findings in the ``findings`` table; each evaluation commits as one transaction."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.touches: list[tuple[int, float, dict[str, Any]]] = []

    def open_for(self) -> dict[tuple[str, str, str], Finding]:
        return store.open_findings(self.conn)

    def of_fault(self, fault: str, since: float) -> list[tuple[str, str, float, float | None]]:
        return store.findings_of_fault_since(self.conn, fault, since)

    def opened(self, finding: Finding) -> Finding:
        return replace(finding, finding_id=store.insert_finding(self.conn, finding))

    def kept(self, finding: Finding, last_seen: float, evidence: dict[str, Any]) -> Finding:
        if finding.finding_id is not None:
            self.touches.append((finding.finding_id, last_seen, evidence))
        return finding

    def cleared(self, finding: Finding, cleared_at: float) -> Finding:
        if finding.finding_id is not None:
            self.flush()
            store.clear_finding(self.conn, finding.finding_id, cleared_at)
        return finding

    def flush(self) -> None:
        """Write the findings seen again, in one statement."""
        store.touch_findings(self.conn, self.touches)
        self.touches = []


class MemoryStore:
    """Findings in memory: what a rule set would have produced (backtest)."""

    def __init__(self) -> None:
        self.all: list[Finding] = []
        self._at: dict[tuple[str, str, str, float], int] = {}

    def open_for(self) -> dict[tuple[str, str, str], Finding]:
        return {(f.tenant_id, f.asset_id, f.rule_id): f for f in self.all if f.cleared_at is None}

    def of_fault(self, fault: str, since: float) -> list[tuple[str, str, float, float | None]]:
        return [
            (f.tenant_id, f.asset_id, f.observed_at, f.cleared_at)
            for f in self.all
            if f.fault == fault and (f.cleared_at is None or f.cleared_at > since)
        ]

    def opened(self, finding: Finding) -> Finding:
        self._at[self._key(finding)] = len(self.all)
        self.all.append(finding)
        return finding

    def kept(self, finding: Finding, last_seen: float, evidence: dict[str, Any]) -> Finding:
        return self._put(replace(finding, last_seen=max(finding.last_seen, last_seen), evidence=evidence))

    def cleared(self, finding: Finding, cleared_at: float) -> Finding:
        return self._put(replace(finding, cleared_at=max(finding.observed_at, cleared_at)))

    def _put(self, finding: Finding) -> Finding:
        self.all[self._at[self._key(finding)]] = finding
        return finding

    @staticmethod
    def _key(f: Finding) -> tuple[str, str, str, float]:
        return f.tenant_id, f.asset_id, f.rule_id, f.observed_at

    def flush(self) -> None:
        """Nothing to write."""


@dataclass
class Outcome:
    opened: int = 0
    kept: int = 0
    cleared: int = 0


def lookback(rules: Iterable[Rule]) -> float:
    extra = max((float(r.params.get("window", 0.0)) for r in rules), default=0.0)
    return max(MIN_LOOKBACK_S, max((r.hold_s + r.clear_s for r in rules), default=0.0) + extra + 3600)


def ref(tenant_id: str, asset_id: str) -> str:
    """An asset's key inside an evaluation: asset ids are unique per tenant only (tenant ids have no '/')."""
    return f"{tenant_id}/{asset_id}"


class AssetTable:
    """The assets of one evaluation. Frames and verdicts name an asset by its code (0, 1, ...): integers group
    and filter much faster than strings. ``refs``/``rows`` give each code's :func:`ref` and database row."""

    def __init__(
        self,
        everything: list[RuleAsset],
        shard: Shard,
        *,
        skip: set[int] | None = None,
        only: set[int] | None = None,
    ) -> None:
        """The shard's assets; without the devices in ``skip``; with ``only``: the assets of these devices."""
        skip = skip or set()
        self.refs: list[str] = []
        self.rows: list[RuleAsset] = []
        self.code: dict[str, int] = {}
        self.parents: dict[str, str | None] = {}
        for a in everything:
            r = ref(a.tenant_id, a.asset_id)
            self.parents[r] = ref(a.tenant_id, a.parent_id) if a.parent_id else None
            key = a.device_key
            wanted = key not in skip if only is None else key in only
            if shard.owns(a.device_id) and wanted and r not in self.code:
                self.code[r] = len(self.refs)
                self.refs.append(r)
                self.rows.append(a)
        self.by_key = {a.device_key: n for n, a in enumerate(self.rows) if a.device_key is not None}
        table = store.asset_frame(self.rows)
        if table.empty:
            table = pd.DataFrame(columns=["kind", "lat", "lon", "rated_power_w", "parent_id", "device_key"])
        table.index = pd.RangeIndex(len(table), name="asset_id")
        # the parent (for a streetlight: its circuit) as a code too; tenants never share one
        table["parent_id"] = pd.factorize(pd.Series([self.parents[r] for r in self.refs], dtype=object))[0]
        self.table = table

    def chosen(self, rule: Rule) -> np.ndarray:
        """A mask over the codes: the assets (with a device) the rule applies to."""
        t = self.table
        mask = t["device_key"].notna().to_numpy().copy()
        a = rule.applies_to
        if a.kind is not None:
            mask &= (t["kind"] == a.kind).to_numpy()
        if a.district is not None:
            mask &= (t["district"] == a.district).to_numpy()
        if a.maintenance_area is not None:
            mask &= (t["maintenance_area"] == a.maintenance_area).to_numpy()
        if a.min_criticality is not None:
            mask &= (t["criticality"].fillna(2).astype(int) >= a.min_criticality).to_numpy()
        return mask

    def frame(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Readings by device key (``device_key, t, metric, value``) with the asset code of each device."""
        codes = rows["device_key"].map(self.by_key)
        rows = rows[codes.notna()].copy()
        rows["asset_id"] = codes[codes.notna()].astype(np.int64)
        return rows

    def select(self, frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
        """The rows of ``frame`` whose asset is in ``mask``."""
        if frame.empty:
            return frame
        chosen: pd.DataFrame = frame[mask[frame["asset_id"].to_numpy(dtype=np.int64)]]
        return chosen


def evaluate(
    conn: psycopg.Connection, rules: list[Rule], as_of: float, findings: FindingStore, **scope: Any
) -> Outcome:
    """Evaluate every rule as of ``as_of`` (device time) for the shard's assets and reconcile the findings.

    Reads the whole window a rule needs (its durations and detector window): simple and independent of earlier
    evaluations, used for one-off looks, backtests and devices with late data. ``scope``: ``shard``,
    ``tenant_id`` and ``only`` (these devices only), as for :func:`evaluate_with_runs`.
    """
    return evaluate_with_runs(conn, rules, as_of, findings, **scope)[0]


def evaluate_with_runs(
    conn: psycopg.Connection,
    rules: list[Rule],
    as_of: float,
    findings: FindingStore,
    *,
    shard: Shard = Shard(),
    tenant_id: str | None = None,
    only: set[int] | None = None,
    cadence: Cadence | None = None,
    switching: Switching | None = None,
) -> tuple[Outcome, dict[tuple[str, str], pd.DataFrame]]:
    """:func:`evaluate`, also returning the runs of every rule by (rule id, tenant/asset ref)."""
    assets = AssetTable(store.load_assets(conn, tenant_id), shard, only=only)
    start = as_of - lookback(rules)
    metrics = sorted({m for r in rules for m in DETECTORS[r.detector].metrics(r.params)})
    keys = None if shard.count == 1 and only is None else list(assets.by_key)
    frame = assets.frame(store.load_recent(conn, keys, dict.fromkeys(metrics, start), as_of))
    if any(r.detector in LEARNS_SWITCHING for r in rules):
        switching = switching or Switching()
        switching.seed(conn, keys, as_of)
        switching.annotate(assets, as_of)
    open_now = findings.open_for()
    outcome = Outcome()
    times: dict[str, list[tuple[float, float]]] | None = None
    before: dict[str, float] = {}
    results: list[tuple[Rule, list[Verdict], list[int]]] = []
    all_runs: dict[tuple[str, str], pd.DataFrame] = {}
    for rule in rules:
        mask = assets.chosen(rule)
        chosen = np.nonzero(mask)[0].tolist()
        if not chosen:
            continue
        if rule.detector == "absence":
            cadence = cadence or Cadence()
            cadence.refresh(conn, keys, as_of)
            if times is None:
                times = {str(assets.by_key[k]): v for k, v in store.device_times(conn, keys, start, as_of).items()}
                quiet = [
                    a.key()
                    for a in assets.rows
                    if a.device_key is not None and str(assets.by_key[a.key()]) not in times
                ]
                before = {str(assets.by_key[k]): t for k, (t, _) in store.last_readings(conn, quiet, start).items()}
            k = float(rule.params["intervals"])
            result = silence(
                times,
                {str(c): (k * cadence.measures(assets.rows[c]), k * cadence.heard(assets.rows[c])) for c in chosen},
                as_of,
                before,
            )
            result = [Verdict(int(v.asset_id), v.fault, v.since, v.evidence) for v in result]
        else:
            sub = assets.select(frame, mask)
            conditions = DETECTORS[rule.detector].run(sub, assets.table, rule.params)
            all_runs[rule.id, ""] = runs(conditions)
            result = verdicts(conditions, as_of, rule.hold_s, rule.clear_s)
        results.append((rule, result, chosen))
    dark_cabinets = _without_supply([(r, v) for r, v, _ in results], open_now, assets)
    for rule, result, _ in results:
        if rule.detector == "absence" and dark_cabinets:
            # a device below a cabinet without supply is silent because of the cabinet: not a finding of its own
            result = [  # noqa: PLW2901
                v
                for v in result
                if not (v.fault and cabinet_of(assets.refs[v.asset_id], assets.parents) in dark_cabinets)
            ]
        _reconcile(rule, result, assets, as_of, open_now, findings, outcome)
    findings.flush()
    return outcome, all_runs


def _without_supply(
    results: list[tuple[Rule, list[Verdict]]], open_now: dict[tuple[str, str, str], Finding], assets: AssetTable
) -> set[str]:
    """Cabinets (refs) whose supply is lost now (this evaluation) or still open as a finding."""
    lost = {ref(f.tenant_id, f.asset_id) for f in open_now.values() if f.fault == "supplyLoss"}
    for rule, result in results:
        if rule.detector == "supply_loss":
            lost |= {assets.refs[v.asset_id] for v in result if v.fault}
            lost -= {assets.refs[v.asset_id] for v in result if not v.fault}
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
    assets: AssetTable,
    as_of: float,
    open_now: dict[tuple[str, str, str], Finding],
    findings: FindingStore,
    outcome: Outcome,
) -> None:
    for v in result:
        asset = assets.rows[v.asset_id]
        key = (asset.tenant_id, asset.asset_id, rule.id)
        current = open_now.get(key)
        evidence = {**v.evidence, "rule": rule.id, "detector": rule.detector, "as_of": iso(as_of)}
        if v.fault:
            if current is None:
                open_finding(rule, asset, v.since, as_of, evidence, open_now, findings)
                outcome.opened += 1
            else:
                open_now[key] = findings.kept(current, as_of, evidence)
                outcome.kept += 1
        elif current is not None and v.since >= current.observed_at:
            findings.cleared(current, v.since)
            del open_now[key]
            outcome.cleared += 1


def open_finding(  # noqa: PLR0917 - the parts of one new finding
    rule: Rule,
    asset: RuleAsset,
    since: float,
    as_of: float,
    evidence: dict[str, Any],
    open_now: dict[tuple[str, str, str], Finding],
    findings: FindingStore,
    detected_at: float | None = None,
) -> Finding:
    """Open a finding seen as of ``as_of``; ``detected_at``: when it would have been detected, if not then."""
    finding = findings.opened(
        new_finding(rule, asset, since, as_of, as_of if detected_at is None else detected_at, evidence)
    )
    open_now[asset.tenant_id, asset.asset_id, rule.id] = finding
    return finding


def new_finding(  # noqa: PLR0917 - the parts of one finding
    rule: Rule, asset: RuleAsset, observed_at: float, last_seen: float, detected_at: float, evidence: dict[str, Any]
) -> Finding:
    """A finding of ``rule`` on ``asset`` (not yet stored)."""
    return Finding(
        tenant_id=asset.tenant_id,
        asset_id=asset.asset_id,
        device_id=asset.device_id,
        rule_id=rule.id,
        fault=rule.fault,
        severity=rule.severity,
        observed_at=observed_at,
        last_seen=last_seen,
        detected_at=detected_at,
        evidence=evidence,
    )
