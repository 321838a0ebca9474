"""The write path of ingest: a batch of received messages becomes one transaction, or dead letters.

Device identities are resolved against the registry, readings, statuses, events and dead letters are assembled
into an :class:`~storage.ingest.IngestBatch` and committed by :mod:`storage.ingest`. While the database is away
the batch is retried with capped, jittered backoff (nothing is acknowledged meanwhile); a batch the database
refuses is split until the message it refuses is found and kept as a dead letter ``storage_rejected``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from floor.errors import first_line
from floor.service import sleep_unless
from ingest.decode import Decoded, Rejection
from ingest.registry import Registry
from ingest.stats import IngestStats
from storage import ingest as store
from storage.connection import redact
from storage.errors import DatabaseUnavailable
from storage.ingest import DeadLetter, EventRow, IngestBatch, StatusRow

log = logging.getLogger("lykta.ingest")

STOP_GRACE_S = 10.0
"""After SIGTERM, how long ingest keeps trying to commit while the database is away before it exits."""


class Unflushed(Exception):
    """Stopping while the database is away: these messages stay unacknowledged for the broker to redeliver."""

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} messages")
        self.count = count


RETRYABLE = (psycopg.OperationalError, psycopg.InterfaceError)


def backoff(attempt: int, base: float = 0.2, cap: float = 15.0) -> float:
    """Capped exponential backoff with jitter: somewhere in [d/2, d] for d = min(cap, base * 2**attempt)."""
    return min(cap, base * 2.0 ** min(attempt, 20)) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not secrets


@dataclass(slots=True)
class Received:
    """A message as it came from the broker, decoded, waiting in the buffer."""

    generation: int
    mid: int
    topic: str
    payload: bytes
    received_at: float
    decoded: Decoded


class WritePath:
    """One database connection of an ingest process and what it commits through it."""

    def __init__(
        self,
        database_url: str,
        registry: Registry,
        stats: IngestStats,
        stopping: asyncio.Event,
        waiting: Callable[[], int],
    ) -> None:
        self.database_url = database_url
        self.registry = registry
        self.stats = stats
        self.stopping = stopping
        self.stop_requested = 0.0
        self._waiting = waiting
        self._conn: psycopg.AsyncConnection | None = None
        self.transactions = 0
        """batch transactions attempted (committed or refused), for the metrics and the tests"""

    # -- the connection -----------------------------------------------------------------------------------

    async def connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True, connect_timeout=5
                )
            except psycopg.OperationalError as exc:
                self.stats.database_up.set(0)
                raise DatabaseUnavailable(
                    f"cannot connect to {redact(self.database_url)}: {redact(first_line(exc))}"
                ) from exc
            self.stats.database_up.set(1)
        return self._conn

    async def drop(self) -> None:
        self.stats.database_up.set(0)
        if self._conn is not None:
            try:
                await self._conn.close()
            except psycopg.Error:
                log.debug("closing a broken database connection failed", exc_info=True)
            self._conn = None

    # -- batches ------------------------------------------------------------------------------------

    async def _assemble(self, conn: psycopg.AsyncConnection, batch: list[Received]) -> tuple[IngestBatch, list[str]]:
        wanted = {
            (r.decoded.topic.tenant, r.decoded.topic.device_id, r.decoded.topic.device_kind)
            for r in batch
            if r.decoded.topic is not None
        }
        resolved = await self.registry.resolve(conn, wanted)
        out = IngestBatch()
        reasons: list[str] = []
        for r in batch:
            d = r.decoded
            t = d.topic
            rejection = d.rejected
            if t is not None:
                ref = resolved[(t.tenant, t.device_id, t.device_kind)]
                if isinstance(ref, Rejection):
                    rejection = ref
                else:
                    key = ref.device_key
                    if d.readings:
                        out.readings.add_message(key, r.received_at, d.readings)
                    if d.status is not None:
                        out.statuses.append(
                            StatusRow(key, d.status.time, d.status.online, d.status.reason, r.received_at)
                        )
                    if d.event is not None:
                        e = d.event
                        out.events.append(EventRow(key, e.time, e.event, e.value, e.detail, r.received_at))
            if rejection is not None:
                reasons.append(rejection.reason)
                out.dead_letters.append(
                    DeadLetter(
                        received_at=r.received_at,
                        topic=r.topic,
                        payload=r.payload,
                        reason=rejection.reason,
                        detail=rejection.detail,
                        tenant_id=t.tenant if t else None,
                        device_id=t.device_id if t else None,
                    )
                )
        return out, reasons

    async def write(self, batch: list[Received]) -> tuple[int, int, list[str]]:
        """Commit a batch, retrying while the database is away; split it when the database refuses its data."""
        attempt = 0
        while True:
            try:
                conn = await self.connection()
                assembled, reasons = await self._assemble(conn, batch)
                self.transactions += 1
                result = await store.write_batch(conn, assembled)
            except (*RETRYABLE, DatabaseUnavailable) as exc:
                await self.drop()
                delay = backoff(attempt)
                if attempt % 10 == 0:
                    log.warning(
                        "database unavailable, holding %d messages unacknowledged, retrying in %.1f s: %s",
                        self._waiting() + len(batch),
                        delay,
                        redact(first_line(exc)),
                    )
                attempt += 1
                if self.stopping.is_set() and time.monotonic() - self.stop_requested > STOP_GRACE_S:
                    raise Unflushed(len(batch) + self._waiting()) from exc
                if self.stopping.is_set():
                    await asyncio.sleep(min(delay, 1.0))
                else:
                    await sleep_unless(self.stopping, delay)
                continue
            except psycopg.Error as exc:
                if len(batch) == 1:
                    return await self._refused(batch[0], exc)
                log.warning(
                    "the database refused a batch of %d messages (%s); halving it to find what it refuses",
                    len(batch),
                    type(exc).__name__,
                )
                half = len(batch) // 2
                s1, d1, r1 = await self.write(batch[:half])
                s2, d2, r2 = await self.write(batch[half:])
                return s1 + s2, d1 + d2, r1 + r2
            if attempt:
                log.info("database back after %d attempts", attempt)
            return result.stored, result.duplicates, reasons

    async def _refused(self, message: Received, exc: psycopg.Error) -> tuple[int, int, list[str]]:
        """A single message the database will not take: keep it as a dead letter."""
        t = message.decoded.topic
        letter = DeadLetter(
            received_at=message.received_at,
            topic=message.topic,
            payload=message.payload,
            reason="storage_rejected",
            detail=f"{type(exc).__name__}: {exc}"[:500],
            tenant_id=t.tenant if t else None,
            device_id=t.device_id if t else None,
        )
        attempt = 0
        while True:
            try:
                await store.write_batch(await self.connection(), IngestBatch(dead_letters=[letter]))
            except (*RETRYABLE, DatabaseUnavailable, psycopg.Error) as again:
                await self.drop()
                log.warning("cannot even store a dead letter (%s); retrying", type(again).__name__)
                attempt += 1
                await asyncio.sleep(backoff(attempt, cap=30))
                continue
            return 0, 0, ["storage_rejected"]
