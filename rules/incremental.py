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
from storage import rules as store
from storage.rules import Finding, StateKey

States = dict[StateKey, tuple[float, float]]


def context_s(rule: Rule) -> float:
    """How much history before ``t0`` the rule's detector needs to judge the readings after it."""
    if rule.detector == "cycling":
        return float(rule.params["window"])
    if rule.detector == "power_deviation":
        return 3600.0  # peers of the same circuit and hour
    if rule.detector in ("lamp_failure", "rate_of_change"):
        return 1800.0  # the previous reading
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
    ) -> None:
        self.conn = conn
        self.rules = sorted(rules, key=lambda r: r.detector == "absence")  # supply first: it explains silence
        self.assets = assets
        self.states = states
        self.findings = findings
        self.every_device = every_device
        self.changed: dict[StateKey, tuple[float, float] | None] = {}

    def run(self, t0: float, t1: float, outcome: Outcome) -> None:
        starts: dict[str, float] = {}
        for rule in self.rules:
            for metric in DETECTORS[rule.detector].metrics(rule.params):
                starts[metric] = min(starts.get(metric, math.inf), t0 - context_s(rule))
        keys = None if self.every_device else list(self.assets.by_key)
        raw = store.load_recent(self.conn, keys, starts, t1) if starts else None
        frame = self.assets.frame(raw) if raw is not None else pd.DataFrame(columns=["asset_id", "t", "metric"])
        open_now = self.findings.open_for()
        lost = {ref(f.tenant_id, f.asset_id) for f in open_now.values() if f.fault == "supplyLoss"}
        for rule in self.rules:
            mask = self.assets.chosen(rule)
            chosen = np.nonzero(mask)[0].tolist()
            if not chosen:
                continue
            if rule.detector == "absence":
                self._silence(rule, chosen, t0, t1, open_now, lost, outcome)
                continue
            sub = self.assets.select(frame, mask)
            conditions = DETECTORS[rule.detector].run(sub, self.assets.table, rule.params)
            conditions = conditions[conditions["t"] > t0]
            self._fold(rule, conditions, set(chosen), t1, open_now, outcome)
            if rule.detector == "supply_loss":
                lost |= {
                    self.assets.refs[c] for c in chosen if self.states.get(self._key(rule, c), (0.0, 0.0))[0] == 1.0
                }
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
                    current = open_finding(rule, self.assets.rows[r], since, t1, evidence, open_now, self.findings)
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
        lost: set[str],
        outcome: Outcome,
    ) -> None:
        """Absence by receive time: silent for more than ``intervals`` reporting intervals at ``t1``."""
        heard = store.heard_between(self.conn, t0, t1)
        k = float(rule.params["intervals"])
        last: dict[int, float] = {}
        unknown: dict[int, int] = {}
        for r in chosen:
            asset = self.assets.rows[r]
            key = asset.key()
            if key in heard:
                last[r] = heard[key][1]
            elif asset.last_seen is not None and asset.last_seen <= t1:
                last[r] = float(asset.last_seen)
            elif asset.last_seen is not None:
                unknown[key] = r  # heard after t1 but not in this step: a cycle catching up
        for key, t in store.last_heard(self.conn, unknown, t1).items():
            last[unknown[key]] = t
        for r in chosen:
            asset = self.assets.rows[r]
            key_ = (asset.tenant_id, asset.asset_id, rule.id)
            current = open_now.get(key_)
            device = asset.key()
            limit = k * asset.interval()
            if current is not None and device in heard:
                self.findings.cleared(current, heard[device][0])
                del open_now[key_]
                current = None
                outcome.cleared += 1
            seen = last.get(r)
            if seen is None or t1 - seen <= limit:
                continue
            if current is None:
                if cabinet_of(self.assets.refs[r], self.assets.parents) in lost:
                    continue  # silent because its cabinet has no supply: not a finding of its own
                evidence = {"last_reading": iso(seen), "limit_s": limit, **self._evidence(rule, None, t1)}
                open_finding(rule, asset, seen, t1, evidence, open_now, self.findings)
                outcome.opened += 1
            else:
                evidence = {"last_reading": iso(seen), "limit_s": limit, **self._evidence(rule, None, t1)}
                open_now[key_] = self.findings.kept(current, t1, evidence)
                outcome.kept += 1

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
