"""Stored history evaluated by the live service's own evaluator, and its findings as episodes.

``lykta rules backtest``, the demo's week and the detection-quality benchmark all go through
:func:`evaluate_history`: the incremental evaluator of ``lykta rules run`` (rules/incremental.py) fed the
stored readings in device-time order, so they find what the live service finds, to the second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import psycopg

from rules.definitions import Rule
from rules.evaluate import AssetTable, FindingStore, MemoryStore, Outcome, Shard, lookback, new_finding
from rules.incremental import Step
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


HISTORY_STEP_S = 6 * 3600.0
"""Stored history is evaluated an hour of device time at a time; every reading is folded in on its own, so the
step changes nothing but memory."""


class RecordedLosses(MemoryStore):
    """Findings in memory, with the cabinets' supply losses already recorded: what the history of some
    devices finds when evaluated again (a cabinet that was dark explains its lamps' silence, although the
    cabinet itself is not evaluated again)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        super().__init__()
        self.conn = conn

    def of_fault(self, fault: str, since: float) -> list[tuple[str, str, float, float | None]]:
        return super().of_fault(fault, since) + rule_store.findings_of_fault_since(self.conn, fault, since)


def evaluate_history(  # noqa: PLR0917 - the period and where its findings go
    conn: psycopg.Connection,
    rules: list[Rule],
    start: float,
    end: float,
    findings: FindingStore,
    shard: Shard | None = None,
    step_s: float = HISTORY_STEP_S,
    only: set[int] | None = None,
) -> Outcome:
    """Stored history through the live service's own evaluator (rules/incremental.py), in device-time order,
    as if a cycle had run after every reading: the findings it would have produced, dated when they would have
    been detected. The rules' longest window before ``start`` is evaluated first, so conditions already
    holding at ``start`` are known then. ``only``: these devices (keys) only."""
    shard = shard or Shard()
    step = Step(
        conn,
        rules,
        AssetTable(rule_store.load_assets(conn), shard, only=only),
        {},
        findings,
        every_device=shard.count == 1 and only is None,
        replaying=True,
    )
    total = Outcome()
    t0 = start - lookback(rules)
    while t0 < end:
        t1 = min(end, (math.floor(t0 / step_s) + 1) * step_s)  # steps on whole multiples: fewer parts
        step.run(t0, t1, total)
        t0 = t1
    return total


def backfill(  # noqa: PLR0917 - the period, and which devices
    conn: psycopg.Connection,
    rules: list[Rule],
    start: float,
    end: float,
    shard: Shard | None = None,
    only: set[int] | None = None,
) -> list[tuple[Rule, RuleAsset, Episode]]:
    """Every finding of every rule open at some time in [start, end], as an episode of its rule and asset;
    ``only``: of these devices (keys), with the supply losses recorded for the others."""
    memory = MemoryStore() if only is None else RecordedLosses(conn)
    evaluate_history(conn, rules, start, end, memory, shard, only=only)
    assets = {(a.tenant_id, a.asset_id): a for a in rule_store.load_assets(conn)}
    by_id = {r.id: r for r in rules}
    return [
        (
            by_id[f.rule_id],
            assets[f.tenant_id, f.asset_id],
            Episode(f.asset_id, f.observed_at, f.detected_at, f.cleared_at),
        )
        for f in memory.all
        if f.cleared_at is None or f.cleared_at >= start
    ]


def persist(
    conn: psycopg.Connection, found: list[tuple[Rule, RuleAsset, Episode]], end: float, how: str = "replayed"
) -> int:
    """Write episodes as findings (open or cleared); an episode already recorded is skipped, except that one
    recorded open that has since ended is cleared. ``how`` is marked true in their evidence (``replayed``:
    stored history; ``late``: readings that arrived after the live service had evaluated their time).
    Returns the new ones."""
    written = 0
    for rule, asset, e in found:
        recorded = rule_store.recorded_finding(conn, asset.tenant_id, asset.asset_id, rule.id, e.observed_at)
        if recorded is not None:
            if recorded[1] == "open" and e.cleared_at is not None:
                rule_store.clear_finding(conn, recorded[0], e.cleared_at)
            continue
        evidence = {"rule": rule.id, "detector": rule.detector, how: True}
        finding = new_finding(rule, asset, e.observed_at, e.cleared_at or end, e.detected_at, evidence)
        finding_id = rule_store.insert_finding(conn, finding)
        if e.cleared_at is not None:
            rule_store.clear_finding(conn, finding_id, e.cleared_at)
        written += 1
    return written
