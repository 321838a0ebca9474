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


def run_once(url: str, rule_files: list[Path], as_of: float, shard: Shard) -> Outcome:
    rules = definitions.load(rule_files)
    with psycopg.connect(url) as conn, conn.transaction():
        outcome = evaluate(conn, rules, as_of, DatabaseStore(conn), shard=shard)
        store.save_progress(conn, shard.label, as_of)
    return outcome


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
            outcome = await asyncio.to_thread(run_once, url, rule_files, clock(), shard)
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
