"""Incremental evaluation: a cycle reads the readings since the previous cycle, not the whole window.

:func:`rules.evaluate.evaluate` reads every reading of a rule's durations (hours)
on each evaluation. A city of 100,000 devices cannot afford that every few
minutes, so ``lykta rules run`` carries, per asset and rule, whether the fault
condition holds and since when (``rule_states``), and each cycle folds only the
new conditions into it: readings from the previous evaluation time ``t0`` up to
``t1``, plus the little history a detector needs to judge them (its context:
the cycling window, an hour of circuit peers, the previous switch count).

The fold follows each asset's conditions in device-time order, as if the rule
were evaluated after every reading: a condition that held for the rule's
``for`` opens a finding, one that has been gone for ``clear`` closes it, even
when both happen between two cycles. Unknown conditions continue the state but
are no evidence: a duration is measured between known readings only.
Only states that matter are kept: a fault condition, or a good one under a
finding that is still open; everything else is "no fault" by default.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from floor.timefmt import iso
from rules.cadence import RELEARN_S, Cadence
from rules.definitions import Rule
from rules.detectors import DETECTORS
from rules.evaluate import (
    AssetTable,
    FindingStore,
    Outcome,
    cabinet_of,
    open_finding,
    ref,
)
from rules.switching import LEARNS_SWITCHING, Switching
from storage import rules as store
from storage.rules import Finding, StateKey

States = dict[StateKey, tuple[float, float]]

CLOCK_S = 300.0
"""How far a device's clock may be ahead of lykta's (docs/telemetry.md); a silence up to now is judged with it."""


def context_s(rule: Rule) -> float:
    """How much history before ``t0`` the rule's detector needs to judge the readings after it."""
    if rule.detector == "cycling":
        return float(rule.params["window"])
    if rule.detector == "power_deviation":
        return 3600.0  # peers of the same circuit and hour
    if rule.detector in ("lamp_failure", "day_burner", "switching_drift", "rate_of_change"):
        return 1800.0  # the previous reading (a switch: the reading before it)
    return 0.0


class Step:
    """One incremental evaluation from ``t0`` to ``t1`` over one shard's assets; states change in place."""

    def __init__(  # noqa: PLR0917 - the inputs of one step
        self,
        conn: psycopg.Connection,
        rules: list[Rule],
        assets: AssetTable,
        states: States,
        findings: FindingStore,
        every_device: bool,
        *,
        cadence: Cadence | None = None,
        switching: Switching | None = None,
        replaying: bool = False,
    ) -> None:
        """``replaying``: evaluating stored history, so a finding is dated when it would have been detected (the
        reading that completed its duration, the moment a silence passed its limit), not at the step's end."""
        self.conn = conn
        self.cadence = cadence or Cadence()
        self.switching = switching or Switching()
        self.replaying = replaying
        self.last = self.cadence.last
        self.rules = sorted(rules, key=lambda r: r.detector == "absence")  # supply first: it explains silence
        self.assets = assets
        self.states = states
        self.findings = findings
        self.every_device = every_device
        self.changed: dict[StateKey, tuple[float, float] | None] = {}

    def run(self, t0: float, t1: float, outcome: Outcome) -> None:
        """Evaluate (t0, t1] in parts that never cross a multiple of ``RELEARN_S``: what lykta learns
        (intervals, switching) is learned at those times, so the result does not depend on how a period is
        cut into steps (a backtest's hours, the live service's minutes)."""
        while t0 < t1:
            end = min(t1, (math.floor(t0 / RELEARN_S) + 1) * RELEARN_S)
            self._run(t0, end, outcome)
            t0 = end

    def _run(self, t0: float, t1: float, outcome: Outcome) -> None:
        starts: dict[str, float] = {}
        for rule in self.rules:
            for metric in DETECTORS[rule.detector].metrics(rule.params):
                starts[metric] = min(starts.get(metric, math.inf), t0 - context_s(rule))
        keys = None if self.every_device else list(self.assets.by_key)
        raw = store.load_recent(self.conn, keys, starts, t1) if starts else None
        frame = self.assets.frame(raw) if raw is not None else pd.DataFrame(columns=["asset_id", "t", "metric"])
        if any(r.detector in LEARNS_SWITCHING for r in self.rules):
            self.switching.seed(self.conn, keys, t0)
            self.switching.observe(frame, t0)
            self.switching.annotate(self.assets, t0)
        open_now = self.findings.open_for()
        for rule in self.rules:
            mask = self.assets.chosen(rule)
            chosen = np.nonzero(mask)[0].tolist()
            if not chosen:
                continue
            if rule.detector == "absence":
                self._silence(rule, chosen, t0, t1, open_now, outcome)
                continue
            sub = self.assets.select(frame, mask)
            conditions = DETECTORS[rule.detector].run(sub, self.assets.table, rule.params)
            conditions = conditions[conditions["t"] > t0]
            self._fold(rule, conditions, set(chosen), t1, open_now, outcome)
        self.findings.flush()

    def save(self) -> None:
        store.save_states(self.conn, self.changed)
        self.changed = {}

    # -- state ------------------------------------------------------------------------------------------------

    def _key(self, rule: Rule, r: int) -> StateKey:
        asset = self.assets.rows[r]
        return (asset.tenant_id, asset.asset_id, rule.id)

    def _set(self, key: StateKey, value: tuple[float, float] | None) -> None:
        if self.states.get(key) == value:
            return
        if value is None:
            self.states.pop(key, None)
        else:
            self.states[key] = value
        self.changed[key] = value

    # -- conditions ---------------------------------------------------------------------------------------------

    def _fold(  # noqa: PLR0917 - one rule's step
        self,
        rule: Rule,
        conditions: pd.DataFrame,
        chosen: set[int],
        t1: float,
        open_now: dict[StateKey, Finding],
        outcome: Outcome,
    ) -> None:
        """Fold the step's conditions into the state of each asset that could change (see the module doc)."""
        faulty = set(conditions.loc[conditions["bad"] == 1.0, "asset_id"].tolist())
        carried = {
            self.assets.code.get(ref(k[0], k[1]), -1) for k in (*self.states, *open_now) if k[2] == rule.id
        } & chosen

        interesting = faulty | carried
        if not interesting:
            return
        rows = conditions[conditions["asset_id"].isin(interesting)].sort_values(["asset_id", "t"], kind="stable")
        by_asset: dict[int, list[tuple[float, float]]] = {}
        for r, t, bad in zip(rows["asset_id"].tolist(), rows["t"].tolist(), rows["bad"].tolist(), strict=True):
            if not math.isnan(bad):
                by_asset.setdefault(r, []).append((float(t), float(bad)))
        for r in interesting:
            key = self._key(rule, r)
            state = self.states.get(key)
            current = open_now.get(key)
            for t, bad in by_asset.get(r, []):  # known conditions only: the evidence a duration is judged on
                if state is None or bad != state[0]:
                    state = (bad, t)
                flag, since = state
                if flag == 1.0 and current is None and t - since >= rule.hold_s:
                    evidence = self._evidence(rule, since, t1)
                    detected = t if self.replaying else None
                    current = open_finding(
                        rule, self.assets.rows[r], since, t1, evidence, open_now, self.findings, detected
                    )
                    outcome.opened += 1
                elif flag == 0.0 and current is not None and t - since >= rule.clear_s and since >= current.observed_at:
                    self.findings.cleared(current, since)
                    del open_now[key]
                    current = None
                    outcome.cleared += 1
            if state is not None and state[0] == 1.0 and current is not None:
                open_now[key] = self.findings.kept(current, t1, self._evidence(rule, state[1], t1))
                outcome.kept += 1
            keep = state is not None and (state[0] == 1.0 or current is not None)
            self._set(key, state if keep else None)

    def _silence(  # noqa: PLR0917 - one rule's step
        self,
        rule: Rule,
        chosen: list[int],
        t0: float,
        t1: float,
        open_now: dict[StateKey, Finding],
        outcome: Outcome,
    ) -> None:
        """Silence by device time: a gap of more than ``intervals`` of the device's own (learned) interval between
        two readings; or, since the last one up to ``t1``, more than ``intervals`` of how often it is heard (a
        gateway that batches a quarter of an hour is heard every quarter of an hour) and the clock difference
        the contract allows (``CLOCK_S``): the evaluator's clock is not the device's. A silence that began
        before its cabinet lost its supply, but less than the limit before, is the cabinet's (its supply-loss
        finding), not a finding of its own."""
        keys = [self.assets.rows[r].key() for r in chosen]
        self.cadence.refresh(self.conn, None if self.every_device else keys, t0)
        seen = store.device_times(self.conn, None if self.every_device else keys, t0, t1)
        self.cadence.observe(seen, t1)
        missing = [k for k in keys if k not in self.last]
        if missing:
            self.last.update(store.last_readings(self.conn, missing, t0))
        losses = self._losses(t0)
        k = float(rule.params["intervals"])
        for r in chosen:
            asset = self.assets.rows[r]
            device = asset.key()
            fkey = (asset.tenant_id, asset.asset_id, rule.id)
            current = open_now.get(fkey)
            limit = k * self.cadence.measures(asset)
            dark = losses.get(cabinet_of(self.assets.refs[r], self.assets.parents), [])
            prev = self.last.get(device)
            for t, received in seen.get(device, []):
                if prev is not None and t - prev[0] > limit:  # a gap in device time, over now
                    if current is None and not _explained(prev[0], limit, dark):
                        current = self._open_silence(rule, r, prev[0], limit, t1, open_now)
                        outcome.opened += 1
                    if current is not None:
                        self.findings.cleared(current, t)
                        del open_now[fkey]
                        current = None
                        outcome.cleared += 1
                elif current is not None:
                    # no gap after all: stored readings delivered late filled it; heard again when they arrived
                    self.findings.cleared(current, min(received, t1))
                    del open_now[fkey]
                    current = None
                    outcome.cleared += 1
                prev = (t, received)
            if prev is None:
                continue  # never heard: not judged
            self.last[device] = prev
            last_t = prev[0]
            if t1 - last_t <= k * self.cadence.heard(asset) + CLOCK_S:
                continue
            evidence = {"last_reading": iso(last_t), "limit_s": limit, **self._evidence(rule, None, t1)}
            if current is None:
                if not _explained(last_t, limit, dark):
                    self._open_silence(rule, r, last_t, limit, t1, open_now, evidence)
                    outcome.opened += 1
            else:
                open_now[fkey] = self.findings.kept(current, t1, evidence)
                outcome.kept += 1

    def _open_silence(  # noqa: PLR0917 - one finding
        self,
        rule: Rule,
        r: int,
        last_t: float,
        limit: float,
        t1: float,
        open_now: dict[StateKey, Finding],
        evidence: dict[str, Any] | None = None,
    ) -> Finding:
        evidence = evidence or {"last_reading": iso(last_t), "limit_s": limit, **self._evidence(rule, None, t1)}
        detected = last_t + limit if self.replaying else None
        return open_finding(rule, self.assets.rows[r], last_t, t1, evidence, open_now, self.findings, detected)

    def _losses(self, t0: float) -> dict[str, list[tuple[float, float]]]:
        """Cabinets (refs) that lost their supply: (from, to) of each loss open now or over since ``t0``."""
        out: dict[str, list[tuple[float, float]]] = {}
        for tenant, asset, start, end in self.findings.of_fault("supplyLoss", t0 - 86400.0):
            out.setdefault(ref(tenant, asset), []).append((start, math.inf if end is None else end))
        return out

    @staticmethod
    def _evidence(rule: Rule, since: float | None, as_of: float) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": rule.id, "detector": rule.detector, "as_of": iso(as_of)}
        if since is not None:
            out["since"] = iso(since)
        return out


def states_from_runs(
    rules: list[Rule], runs: dict[tuple[str, str], pd.DataFrame], assets: AssetTable, open_now: dict[StateKey, Finding]
) -> dict[StateKey, tuple[float, float] | None]:
    """The states a full-window evaluation implies for its assets (replacing whatever they had)."""
    out: dict[StateKey, tuple[float, float] | None] = {}
    for rule in rules:
        if rule.detector == "absence":
            continue
        for c in np.nonzero(assets.chosen(rule))[0].tolist():
            asset = assets.rows[c]
            out[asset.tenant_id, asset.asset_id, rule.id] = None
        frame = runs.get((rule.id, ""))
        if frame is None:
            continue
        for c, bad, since in zip(
            frame["asset_id"].tolist(), frame["bad"].tolist(), frame["since"].tolist(), strict=True
        ):
            asset = assets.rows[c]
            key = (asset.tenant_id, asset.asset_id, rule.id)
            if bad == 1.0 or key in open_now:
                out[key] = (float(bad), float(since))
    return out


def _explained(last_t: float, limit: float, losses: list[tuple[float, float]]) -> bool:
    """A silence from ``last_t`` is its cabinet's when the supply was lost before it would have become a finding
    of its own (``last_t + limit``) and not restored before it began."""
    return any(start <= last_t + limit and end >= last_t for start, end in losses)
