"""``lykta rules run`` and ``lykta rules backtest``."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from rules import definitions
from rules.evaluate import DatabaseStore, MemoryStore, Outcome, Shard, evaluate
from storage import rules as store
from storage.rules import Finding

log = logging.getLogger("lykta.rules")


STEP_S = 600.0
"""Evaluations while catching up: one every ten minutes of device time."""
MAX_CATCH_UP_S = 2 * 86400.0
"""How far back a cycle goes for late data (the contract accepts readings up to 35 days old; older findings
need a backtest)."""


def run_once(url: str, rule_files: list[Path], as_of: float, shard: Shard) -> Outcome:
    """One evaluation as of ``as_of``; progress is left alone (a look at a chosen time)."""
    rules = definitions.load(rule_files)
    with psycopg.connect(url) as conn, conn.transaction():
        return evaluate(conn, rules, as_of, DatabaseStore(conn), shard=shard)


def run_cycle(url: str, rule_files: list[Path], now: float, shard: Shard, step_s: float = STEP_S) -> Outcome:
    """Evaluate up to ``now``: from where the last cycle stopped, or from the oldest device time of data that
    arrived since, in steps of ``step_s``; then record how far it got. Restarts resume from the database."""
    rules = definitions.load(rule_files)
    total = Outcome()
    with psycopg.connect(url) as conn, conn.transaction():
        done = store.progress(conn, shard.label)
        steps = [now]
        received = None
        if done is not None:
            evaluated_to, received_upto = done
            start = evaluated_to
            late, received = store.late_data(conn, received_upto or 0.0, evaluated_to)
            if late is not None:
                start = min(start, late)
            start = max(start, now - MAX_CATCH_UP_S)
            steps = _steps(start, now, step_s)
        else:
            _, received = store.late_data(conn, 0.0, now)
        store_ = DatabaseStore(conn)
        for t in steps:
            outcome = evaluate(conn, rules, t, store_, shard=shard)
            total.opened += outcome.opened
            total.kept += outcome.kept
            total.cleared += outcome.cleared
        store.save_progress(conn, shard.label, now, received)
    return total


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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    definitions.load(rule_files)  # fail at start on a bad rule file
    while not stop.is_set():
        began = time.monotonic()
        try:
            outcome = await asyncio.to_thread(run_cycle, url, rule_files, clock(), shard)
            log.info(
                "rules shard %s: %d opened, %d kept, %d cleared in %.1f s",
                shard.label,
                outcome.opened,
                outcome.kept,
                outcome.cleared,
                time.monotonic() - began,
            )
        except psycopg.OperationalError as exc:
            log.warning("rules evaluation skipped, database unavailable: %s", str(exc).strip().splitlines()[0])
        try:
            async with asyncio.timeout(max(0.0, every_s - (time.monotonic() - began))):
                await stop.wait()
        except TimeoutError:
            pass


def backtest(
    url: str, rule_files: list[Path], start: float, end: float, *, step_s: float, shard: Shard | None = None
) -> list[Finding]:
    """The findings the rules would have produced between start and end, evaluated every ``step_s``."""
    rules = definitions.load(rule_files)
    memory = MemoryStore()
    with psycopg.connect(url) as conn:
        t = start
        while t <= end:
            evaluate(conn, rules, t, memory, shard=shard or Shard())
            t += step_s
    return memory.all
