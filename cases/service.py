"""``lykta cases run``: findings to cases, verification, SLA checks and outbox delivery, in cycles.

Each step is its own transaction, so a stop at any moment loses nothing: queued
findings stay queued, undelivered messages stay in the outbox. Between cycles the
process waits for ``every`` seconds or until the rules engine announces new
findings (``NOTIFY lykta_findings``), whichever comes first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from cases import lifecycle, outbox
from cases.policy import Policies
from floor.config import Settings
from floor.service import run_cycles, sleep_unless

log = logging.getLogger("lykta.cases")


@dataclass
class Cycle:
    findings: int = 0
    opened: int = 0
    merged: int = 0
    resolved: int = 0
    reopened: int = 0
    escalated: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0


def run_once(url: str, policies: Policies, settings: Settings, now: float) -> Cycle:
    out = Cycle()
    with psycopg.connect(url) as conn:
        while True:
            with conn.transaction():
                report = lifecycle.sync(conn, policies, now)
            out.findings += report.findings
            out.opened += report.opened
            out.merged += report.merged
            out.resolved += report.resolved
            out.reopened += report.reopened
            if report.findings == 0:
                break
        with conn.transaction():
            verified = lifecycle.verify(conn, policies, now)
            out.resolved += verified.resolved
            out.reopened += verified.reopened
        with conn.transaction():
            out.escalated = lifecycle.check_sla(conn, policies, now)
    with psycopg.connect(url, autocommit=True) as conn:
        delivery = outbox.deliver(conn, settings, now)
    out.sent, out.retrying, out.failed = delivery.sent, delivery.retrying, delivery.failed
    return out


async def run_every(
    url: str, policies: Policies, settings: Settings, every_s: float, clock: Callable[[], float] = time.time
) -> None:
    """A cycle every ``every_s`` seconds, and at once when the rules store findings, until SIGTERM."""

    def report(cycle: Cycle, _seconds: float) -> None:
        if cycle.findings or cycle.sent or cycle.escalated or cycle.resolved:
            log.info("cases: %s", cycle)

    wake = asyncio.Event()
    await run_cycles(
        "cases",
        lambda: run_once(url, policies, settings, clock()),
        report,
        every_s,
        skip_on=(psycopg.OperationalError,),
        wake=wake,
        helpers=[lambda stop: _listen(url, wake, stop)],
    )


async def _listen(url: str, wake: asyncio.Event, stop: asyncio.Event) -> None:
    """Wake the loop when findings change; reconnects quietly (the periodic cycle covers any gap)."""
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute("LISTEN lykta_findings")
                async for _ in conn.notifies():
                    wake.set()
        except psycopg.OperationalError:
            await sleep_unless(stop, 5)
