"""``lykta ingest``: MQTT in, TimescaleDB out, acknowledged only after commit.

One asyncio program: the broker link (paho on the event loop), a flusher that
turns buffered messages into one transaction per batch, a statistics writer and
the keepalive ticker, in one TaskGroup. SIGTERM stops reading, commits and
acknowledges what is buffered, disconnects (the session stays) and exits.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg
from prometheus_client import start_http_server

from ingest.decode import Decoded, Limits, Rejection, decode
from ingest.errors import BrokerUnavailable
from ingest.mqtt import MqttLink
from ingest.registry import Registry
from ingest.stats import IngestStats
from lykta.broker_auth import client_login, client_tls
from lykta.config import Settings
from storage import ingest as store
from storage.connection import redact
from storage.editions import StoragePath
from storage.errors import DatabaseUnavailable
from storage.ingest import DeadLetter, IngestBatch

log = logging.getLogger("lykta.ingest")

TOPIC_FILTER = "lykta/+/+/+/+"
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
    generation: int
    mid: int
    topic: str
    payload: bytes
    received_at: float
    decoded: Decoded


def client_id_for(settings: Settings) -> str:
    return settings.ingest_client_id or f"lykta-ingest-{socket.gethostname()}"[:64]


class Ingest:
    def __init__(self, settings: Settings, database_url: str, mqtt_url: str) -> None:
        self.settings = settings
        self.database_url = database_url
        parts = urlsplit(mqtt_url)
        self.mqtt_tls = client_tls(mqtt_url, settings.mqtt_ca_file)
        self.mqtt_login = client_login(settings, local_ingest=True)
        self.mqtt_host = parts.hostname or "127.0.0.1"
        self.mqtt_port = parts.port or (8883 if self.mqtt_tls else 1883)
        self.client_id = client_id_for(settings)
        self.limits = Limits(
            max_payload_bytes=settings.max_payload_bytes,
            max_future_s=settings.max_future_s,
            max_age_s=settings.max_age_days * 86_400.0,
        )
        self.registry = Registry(register_unknown=settings.ingest_unknown_devices == "register")
        self.stats = IngestStats(self.client_id)
        self.buffer: deque[Received] = deque()
        self.buffered_bytes = 0
        self.stopping = asyncio.Event()
        self.connected = asyncio.Event()
        self._wake = asyncio.Event()
        self._conn: psycopg.AsyncConnection | None = None
        self._path: StoragePath = "apache"
        self._stop_requested = 0.0
        self.link: MqttLink | None = None

    # -- database -----------------------------------------------------------------------------------

    async def _db(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True, connect_timeout=5
                )
            except psycopg.OperationalError as exc:
                self.stats.database_up.set(0)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
                raise DatabaseUnavailable(f"cannot connect to {redact(self.database_url)}: {redact(first)}") from exc
            self.stats.database_up.set(1)
        return self._conn

    async def _drop_db(self) -> None:
        self.stats.database_up.set(0)
        if self._conn is not None:
            try:
                await self._conn.close()
            except psycopg.Error:
                log.debug("closing a broken database connection failed", exc_info=True)
            self._conn = None

    # -- receiving ----------------------------------------------------------------------------------

    def on_message(self, generation: int, mid: int, topic: str, payload: bytes) -> None:
        now = time.time()
        self.buffer.append(
            Received(
                generation, mid, topic, payload, now, decode(topic, payload, now, self.registry.catalogue, self.limits)
            )
        )
        self.buffered_bytes += len(payload) + len(topic)
        self.stats.on_received()
        if self.link is not None and (
            len(self.buffer) >= self.settings.ingest_receive_maximum
            or self.buffered_bytes > self.settings.ingest_max_buffer_bytes
        ):
            # Brokers need not honour Receive Maximum for queued messages (Mosquitto 2.0 does not): stop reading.
            self.link.pause()
        if len(self.buffer) >= self.settings.ingest_batch_messages:
            self._wake.set()

    # -- writing ------------------------------------------------------------------------------------

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
                ref = resolved[(t.tenant, t.device_id)]
                if isinstance(ref, Rejection):
                    rejection = ref
                else:
                    key = ref.device_key
                    if d.readings:
                        out.readings.add_message(key, r.received_at, d.readings)
                    if d.status is not None:
                        out.statuses.append((key, d.status.time, d.status.online, d.status.reason, r.received_at))
                    if d.event is not None:
                        out.events.append(
                            (key, d.event.time, d.event.event, d.event.value, d.event.detail, r.received_at)
                        )
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

    async def _write(self, batch: list[Received]) -> tuple[int, int, list[str]]:
        """Commit a batch, retrying while the database is away; split it when the database refuses its data."""
        attempt = 0
        while True:
            try:
                conn = await self._db()
                assembled, reasons = await self._assemble(conn, batch)
                result = await store.write_batch(conn, assembled)
            except (*RETRYABLE, DatabaseUnavailable) as exc:
                await self._drop_db()
                delay = backoff(attempt)
                if attempt % 10 == 0:
                    log.warning(
                        "database unavailable, holding %d messages unacknowledged, retrying in %.1f s: %s",
                        len(self.buffer) + len(batch),
                        delay,
                        redact(str(exc).strip().splitlines()[0]),
                    )
                attempt += 1
                if self.stopping.is_set() and time.monotonic() - self._stop_requested > STOP_GRACE_S:
                    raise Unflushed(len(batch) + len(self.buffer)) from exc
                if self.stopping.is_set():
                    await asyncio.sleep(min(delay, 1.0))
                else:
                    await self._sleep_unless_stopping(delay)
                continue
            except psycopg.Error as exc:
                if len(batch) == 1:
                    return await self._refused(batch[0], exc)
                log.warning(
                    "the database refused a batch of %d messages (%s); writing them one by one",
                    len(batch),
                    type(exc).__name__,
                )
                stored = duplicates = 0
                all_reasons: list[str] = []
                for one in batch:
                    s, d, rs = await self._write([one])
                    stored, duplicates = stored + s, duplicates + d
                    all_reasons.extend(rs)
                return stored, duplicates, all_reasons
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
                await store.write_batch(await self._db(), IngestBatch(dead_letters=[letter]))
            except (*RETRYABLE, DatabaseUnavailable, psycopg.Error) as again:
                await self._drop_db()
                log.warning("cannot even store a dead letter (%s); retrying", type(again).__name__)
                attempt += 1
                await asyncio.sleep(backoff(attempt, cap=30))
                continue
            return 0, 0, ["storage_rejected"]

    def _take(self) -> list[Received]:
        current = self.link.generation if self.link else 0
        batch: list[Received] = []
        while self.buffer and len(batch) < self.settings.ingest_batch_messages:
            r = self.buffer.popleft()
            self.buffered_bytes -= len(r.payload) + len(r.topic)
            if r.mid and r.generation != current:
                continue  # came on an earlier connection: the broker redelivers it on this one
            batch.append(r)
        return batch

    async def flush_once(self) -> int:
        batch = self._take()
        if not batch:
            return 0
        started = time.monotonic()
        stored, duplicates, reasons = await self._write(batch)
        committed = time.time()
        elapsed = time.monotonic() - started
        if self.link is not None:
            for r in batch:
                self.link.ack(r.generation, r.mid)
            self.link.flush_acks()
            if (
                len(self.buffer) < self.settings.ingest_receive_maximum // 2
                and self.buffered_bytes < self.settings.ingest_max_buffer_bytes // 2
            ):
                self.link.resume()
        self.stats.on_batch(
            len(batch),
            stored=stored,
            duplicates=duplicates,
            reasons=reasons,
            seconds=elapsed,
            lag=committed - batch[0].received_at,
        )
        self.stats.backlog.set(len(self.buffer))
        return len(batch)

    async def _flusher(self) -> None:
        age = self.settings.ingest_batch_age_ms / 1000
        while True:
            if not self.buffer:
                if self.stopping.is_set():
                    return
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(self.stopping.wait())
                await asyncio.wait({waiter, stopper}, timeout=age, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                continue
            wait = self.buffer[0].received_at + age - time.time()
            if len(self.buffer) < self.settings.ingest_batch_messages and wait > 0 and not self.stopping.is_set():
                self._wake.clear()
                try:
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            try:
                await self.flush_once()
            except Unflushed as exc:
                log.warning(
                    "stopping with the database away: %d messages were not committed and stay "
                    "unacknowledged; the broker delivers them again",
                    exc.count,
                )
                return

    # -- background ---------------------------------------------------------------------------------

    async def _broker(self) -> None:
        attempt = 0
        if self.link is None:
            raise RuntimeError("the broker link is created in run()")
        while not self.stopping.is_set():
            try:
                resumed = await self.link.connect()
            except BrokerUnavailable as exc:
                delay = backoff(attempt, base=0.5, cap=30)
                log.warning("%s; retrying in %.1f s", exc, delay)
                attempt += 1
                await self._sleep_unless_stopping(delay)
                continue
            attempt = 0
            self.stats.broker_up.set(1)
            self.connected.set()
            log.info(
                "connected to %s://%s:%d as %s%s (session %s), subscribed to $share/%s/%s",
                "mqtts" if self.mqtt_tls else "mqtt",
                self.mqtt_host,
                self.mqtt_port,
                self.client_id,
                f" (account {self.mqtt_login[0]})" if self.mqtt_login else "",
                "resumed" if resumed else "new",
                self.settings.ingest_group,
                TOPIC_FILTER,
            )
            lost = asyncio.ensure_future(self.link.lost.wait())
            stop = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait({lost, stop}, return_when=asyncio.FIRST_COMPLETED)
            lost.cancel()
            stop.cancel()
            self.connected.clear()
            self.stats.broker_up.set(0)
            if not self.stopping.is_set():
                delay = backoff(0, base=0.5)
                log.warning("lost the connection to the broker; reconnecting in %.1f s", delay)
                await self._sleep_unless_stopping(delay)

    async def _sleep_unless_stopping(self, delay: float) -> None:
        try:
            async with asyncio.timeout(delay):
                await self.stopping.wait()
        except TimeoutError:
            pass

    async def _ticker(self) -> None:
        while not self.stopping.is_set():
            if self.link is not None:
                self.link.misc()
            await self._sleep_unless_stopping(1.0)

    async def _stats_writer(self) -> None:
        interval = self.settings.ingest_stats_interval_s
        while True:
            await self._sleep_unless_stopping(interval)
            row = self.stats.take(len(self.buffer))
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True, connect_timeout=5
                ) as conn:
                    await store.record_stats(conn, row)
            except psycopg.Error:
                self.stats.restore(row)
                log.debug("could not write ingest statistics; they go with the next interval", exc_info=True)
            if self.stopping.is_set():
                return

    # -- lifecycle ----------------------------------------------------------------------------------

    async def run(self) -> None:
        conn = await self._db()
        await self.registry.load(conn)
        self._path = await store.storage_path(conn)
        server = None
        if self.settings.ingest_metrics_port:
            server, _ = start_http_server(
                self.settings.ingest_metrics_port, addr="127.0.0.1", registry=self.stats.registry
            )
        self.link = MqttLink(
            self.mqtt_host,
            self.mqtt_port,
            self.client_id,
            [f"$share/{self.settings.ingest_group}/{TOPIC_FILTER}"],
            self.on_message,
            receive_maximum=self.settings.ingest_receive_maximum,
            session_expiry_s=self.settings.ingest_session_expiry_s,
            username=self.mqtt_login[0] if self.mqtt_login else None,
            password=self.mqtt_login[1] if self.mqtt_login else None,
            tls=self.mqtt_tls,
        )
        log.info(
            "ingest %s starting: database %s, storage path %s, %d devices known",
            self.client_id,
            redact(self.database_url),
            self._path,
            len(await store.load_devices(conn)),
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._broker(), name="broker")
                flusher = tasks.create_task(self._flusher(), name="flusher")
                tasks.create_task(self._ticker(), name="keepalive")
                tasks.create_task(self._stats_writer(), name="stats")
                await self.stopping.wait()
                self._stop_requested = time.monotonic()
                self.link.pause()
                await flusher
                await self.link.disconnect()
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
            await self._drop_db()
        log.info("ingest %s stopped", self.client_id)


async def run(settings: Settings, database_url: str, mqtt_url: str) -> None:
    """The ``lykta ingest`` entry: runs until SIGTERM or SIGINT."""
    service = Ingest(settings, database_url, mqtt_url)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stopping.set)
    await service.run()
