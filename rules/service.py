"""``lykta rules run`` and ``lykta rules backtest``."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from floor.service import run_cycles
from rules import definitions
from rules.cadence import Cadence
from rules.evaluate import (
    AssetTable,
    DatabaseStore,
    MemoryStore,
    Outcome,
    Shard,
    evaluate,
    evaluate_with_runs,
)
from rules.incremental import Step, states_from_runs
from rules.replay import HISTORY_STEP_S, backfill, evaluate_history, persist
from rules.switching import Switching
from storage import rules as store
from storage.rules import Finding

log = logging.getLogger("lykta.rules")


STEP_S = 600.0
"""Evaluations while catching up: one every ten minutes of device time."""
MAX_CATCH_UP_S = 2 * 86400.0
"""How far back a cycle goes for late data (the contract accepts readings up to 35 days old; older findings
need a backtest)."""


_CADENCES: dict[tuple[str, str], Cadence] = {}
"""The learned intervals of each database and shard this process evaluates (learned again every hour)."""
_SWITCHING: dict[tuple[str, str], Switching] = {}
"""The lamps' switches each database and shard this process evaluates has seen (learned from once a day)."""


def run_once(url: str, rule_files: list[Path], as_of: float, shard: Shard) -> Outcome:
    """One evaluation as of ``as_of``; progress is left alone (a look at a chosen time)."""
    rules = definitions.load(rule_files)
    with psycopg.connect(url) as conn, conn.transaction():
        return evaluate(conn, rules, as_of, DatabaseStore(conn), shard=shard)


def run_cycle(url: str, rule_files: list[Path], now: float, shard: Shard, step_s: float = STEP_S) -> Outcome:
    """Evaluate up to ``now`` and record how far it got; restarts resume from the database.

    The first cycle (or one after more than two days away) evaluates the whole window of each rule and keeps
    the resulting states. Later cycles fold in what arrived since the previous one (rules/incremental.py), in
    steps of ``step_s`` while catching up. Devices with late data (received since the previous cycle, with
    device times it had already evaluated) have their history evaluated again from the oldest such reading as
    a backtest evaluates it (rules/replay.py: every reading in device-time order, so a fault that began and
    ended inside the late readings is found, dated as a backtest dates it); what was not yet recorded is
    written, and their states are rebuilt as of now.
    """
    rules = definitions.load(rule_files)
    total = Outcome()
    with psycopg.connect(url) as conn, conn.transaction():
        done = store.progress(conn, shard.label)
        findings = DatabaseStore(conn)
        everything = store.load_assets(conn)
        if done is None or done[0] < now - MAX_CATCH_UP_S:
            _, received = store.late_data(conn, 0.0, now)
            _add(total, _full(conn, rules, now, findings, AssetTable(everything, shard), shard, None))
        else:
            evaluated_to, received_upto = done
            late, received = store.late_devices(conn, received_upto or 0.0, evaluated_to)
            owned = {a.device_key for a in everything if shard.owns(a.device_id)}
            late = {k: t for k, t in late.items() if k in owned}
            cadence = _CADENCES.setdefault((url, shard.label), Cadence())
            cadence.forget(list(late))
            switching = _SWITCHING.setdefault((url, shard.label), Switching())
            step = Step(
                conn,
                rules,
                AssetTable(everything, shard, skip=set(late)),
                store.load_states(conn),
                findings,
                every_device=shard.count == 1,
                cadence=cadence,
                switching=switching,
            )
            if now > evaluated_to:
                for t0, t1 in itertools.pairwise([evaluated_to, *_steps(evaluated_to, now, step_s)]):
                    step.run(t0, t1, total)
            step.save()
            if late:
                only = set(late)
                start = max(min(late.values()), now - MAX_CATCH_UP_S)
                found = backfill(conn, rules, start, now, shard, only)
                total.opened += persist(conn, found, now, how="late")
                assets = AssetTable(everything, shard, only=only)
                _add(total, _full(conn, rules, now, findings, assets, shard, only))
        store.save_progress(conn, shard.label, max(now, done[0] if done else now), received)
    return total


def _full(  # noqa: PLR0917 - one full-window evaluation and the states it implies
    conn: psycopg.Connection,
    rules: list[definitions.Rule],
    as_of: float,
    findings: DatabaseStore,
    assets: AssetTable,
    shard: Shard,
    only: set[int] | None,
) -> Outcome:
    outcome, runs = evaluate_with_runs(conn, rules, as_of, findings, shard=shard, only=only)
    store.save_states(conn, states_from_runs(rules, runs, assets, findings.open_for()))
    return outcome


def _add(total: Outcome, outcome: Outcome) -> None:
    total.opened += outcome.opened
    total.kept += outcome.kept
    total.cleared += outcome.cleared


def _steps(start: float, end: float, step: float) -> list[float]:
    out = []
    t = start + step
    while t < end:
        out.append(t)
        t += step
    out.append(end)
    return out


async def run_every(
    url: str, rule_files: list[Path], every_s: float, shard: Shard, clock: Callable[[], float] = time.time
) -> None:
    """Evaluate as of now every ``every_s`` seconds until SIGTERM; state is in the database."""
    definitions.load(rule_files)  # fail at start on a bad rule file

    def report(outcome: Outcome, seconds: float) -> None:
        log.info(
            "rules shard %s: %d opened, %d kept, %d cleared in %.1f s",
            shard.label,
            outcome.opened,
            outcome.kept,
            outcome.cleared,
            seconds,
        )

    await run_cycles(
        "rules",
        lambda: run_cycle(url, rule_files, clock(), shard),
        report,
        every_s,
        skip_on=(psycopg.OperationalError,),
    )


def backtest(
    url: str,
    rule_files: list[Path],
    start: float,
    end: float,
    *,
    step_s: float = HISTORY_STEP_S,
    shard: Shard | None = None,
) -> list[Finding]:
    """The findings the rules would have produced between start and end (:func:`evaluate_history`), written
    nowhere: those open at some time in the period."""
    rules = definitions.load(rule_files)
    memory = MemoryStore()
    with psycopg.connect(url) as conn:
        evaluate_history(conn, rules, start, end, memory, shard, step_s)
    return [f for f in memory.all if f.cleared_at is None or f.cleared_at >= start]
