"""The skeleton of a long-running lykta service: stop on SIGTERM or SIGINT, helpers in one TaskGroup, cycles.

The ingest, rules and cases services are each one asyncio program. They share how they stop (a signal sets one
event; whatever waits, waits for that event too) and, for the services that work in cycles, the loop itself:
run a cycle in a worker thread, report it, skip it with a warning when a transient error (the database away)
says so, then sleep until the next cycle, an early wake-up, or the stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from floor.errors import first_line

log = logging.getLogger(__name__)

T = TypeVar("T")


def stop_on_signals(stop: asyncio.Event | None = None) -> asyncio.Event:
    """An event (``stop``, or a new one) that SIGTERM and SIGINT set; call from the running loop."""
    event = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    return event


async def wait_any(*events: asyncio.Event, within: float | None = None) -> None:
    """Until one of ``events`` is set or ``within`` seconds have passed."""
    if any(e.is_set() for e in events):
        return
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; returns whether it is set."""
    await wait_any(stop, within=max(0.0, seconds))
    return stop.is_set()


async def run_cycles(
    name: str,
    cycle: Callable[[], T],
    report: Callable[[T, float], None],
    every_s: float,
    *,
    skip_on: tuple[type[BaseException], ...] = (),
    wake: asyncio.Event | None = None,
    helpers: Sequence[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = (),
    stop: asyncio.Event | None = None,
) -> None:
    """Run the blocking ``cycle`` in a worker thread every ``every_s`` seconds (counted from each start) until
    SIGTERM or SIGINT (or ``stop``). ``report`` gets each result and its seconds; an error of ``skip_on`` skips
    the cycle with a warning. ``wake`` starts the next cycle early; ``helpers`` run beside the loop in one
    TaskGroup and are cancelled when it stops."""
    stopping = stop if stop is not None else stop_on_signals()
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(helper(stopping)) for helper in helpers]
        try:
            while not stopping.is_set():
                began = time.monotonic()
                if wake is not None:
                    wake.clear()
                try:
                    result = await asyncio.to_thread(cycle)
                except skip_on as exc:
                    log.warning("%s cycle skipped, database unavailable: %s", name, first_line(exc))
                else:
                    report(result, time.monotonic() - began)
                log.debug("%s cycle done", name)
                left = every_s - (time.monotonic() - began)
                await wait_any(stopping, *([wake] if wake is not None else []), within=max(0.0, left))
        finally:
            for task in tasks:
                task.cancel()
