"""``lykta ingest``: MQTT in, TimescaleDB out, acknowledged only after commit.

One asyncio program: the broker link (lykta's MQTT v5 client, :mod:`ingest.mqtt`),
a flusher that hands buffered messages to the write path (:mod:`ingest.write`) one
transaction per batch, a statistics writer and the keepalive ticker, in one TaskGroup.
SIGTERM stops reading, commits and acknowledges what is buffered, disconnects (the
session stays) and exits.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from dataclasses import replace
from urllib.parse import urlsplit

import psycopg
from prometheus_client import start_http_server

from floor.config import Settings
from floor.mqtt_login import client_login, client_tls
from floor.service import sleep_unless, stop_on_signals, wait_any
from ingest.decode import MAX_TOPIC_CHARS, Limits, decode
from ingest.errors import BrokerUnavailable
from ingest.mqtt import MqttLink
from ingest.registry import Registry
from ingest.stats import IngestStats
from ingest.write import Received, Unflushed, WritePath, backoff
from storage import ingest as store
from storage.connection import redact
from storage.editions import StoragePath
from storage.errors import DatabaseUnavailable

log = logging.getLogger("lykta.ingest")

TOPIC_FILTER = "lykta/+/+/+/+"
DRAINED_AFTER_S = 2.0
"""A session being retired is drained once nothing arrived for this long with nothing held or in flight."""


def client_id_for(settings: Settings) -> str:
    return settings.ingest_client_id or f"lykta-ingest-{socket.gethostname()}"[:64]


def session_ids(base: str, partitions: int) -> list[str]:
    """The client ids of a layout: the configured id for one process, ``<id>-<k>of<N>`` for N workers. The
    count is part of the id, so that a session never changes its partition: a new layout gets new sessions."""
    if partitions == 1:
        return [base]
    return [f"{base}-{k}of{partitions}" for k in range(1, partitions + 1)]


def base_of(client_id: str, partition: int, partitions: int) -> str:
    suffix = f"-{partition}of{partitions}"
    return client_id.removesuffix(suffix) if partitions > 1 else client_id


class Ingest:
    def __init__(self, settings: Settings, database_url: str, mqtt_url: str, *, retiring: bool = False) -> None:
        self.settings = settings
        self.database_url = database_url
        self.mqtt_url = mqtt_url
        self.retiring = retiring
        """drain this (earlier layout's) session, storing every message, then remove it from the broker"""
        parts = urlsplit(mqtt_url)
        self.mqtt_tls = client_tls(mqtt_url, settings.mqtt_ca_file)
        self.mqtt_login = client_login(settings, local_ingest=True)
        self.mqtt_host = parts.hostname or "127.0.0.1"
        self.mqtt_port = parts.port or (8883 if self.mqtt_tls else 1883)
        self.client_id = client_id_for(settings)
        self.partition, self.partitions = (int(x) for x in settings.ingest_partition.split("/"))
        self.limits = Limits(
            max_payload_bytes=settings.max_payload_bytes,
            max_future_s=settings.max_future_s,
            max_age_s=settings.max_age_days * 86_400.0,
        )
        self.registry = Registry(register_unknown=settings.ingest_unknown_devices == "register")
        self.stats = IngestStats(self.client_id)
        self.buffer: deque[Received] = deque()
        self.buffered_bytes = 0
        self.in_flight = 0
        """messages taken from the buffer into the batch being written"""
        self.stopping = asyncio.Event()
        self.writer = WritePath(database_url, self.registry, self.stats, self.stopping, lambda: len(self.buffer))
        self.connected = asyncio.Event()
        self.drained = False
        self._session_recorded = asyncio.Event()
        self._wake = asyncio.Event()
        self._path: StoragePath = "apache"
        self.link: MqttLink | None = None

    # -- receiving ----------------------------------------------------------------------------------

    def on_message(self, generation: int, mid: int, topic: str, payload: bytes) -> None:
        now = time.time()
        decoded = decode(topic, payload, now, self.registry.catalogue, self.limits)
        if len(topic) > MAX_TOPIC_CHARS:  # refused by the decoder; keep no more of it than the dead letter shows
            topic = topic[:MAX_TOPIC_CHARS] + "…"
        self.buffer.append(Received(generation, mid, topic, payload, now, decoded))
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

    def _resume_if_room(self) -> None:
        if (
            self.link is not None
            and len(self.buffer) < self.settings.ingest_receive_maximum // 2
            and self.buffered_bytes < self.settings.ingest_max_buffer_bytes // 2
        ):
            self.link.resume()

    def _update_backlog(self) -> None:
        self.stats.backlog.set(len(self.buffer) + self.in_flight)

    def _take(self) -> list[Received]:
        batch: list[Received] = []
        while self.buffer and len(batch) < self.settings.ingest_batch_messages:
            r = self.buffer.popleft()
            self.buffered_bytes -= len(r.payload) + len(r.topic)
            batch.append(r)
        return batch

    async def flush_once(self) -> int:
        batch = self._take()
        if not batch:
            return 0
        started = time.monotonic()
        self.in_flight = len(batch)
        try:
            stored, duplicates, reasons = await self.writer.write(batch)
        finally:
            self.in_flight = 0
        committed = time.time()
        elapsed = time.monotonic() - started
        if self.link is not None:
            for r in batch:
                self.link.ack(r.generation, r.mid)
            self.link.flush_acks()
            self._resume_if_room()
        self.stats.on_batch(
            len(batch),
            stored=stored,
            duplicates=duplicates,
            reasons=reasons,
            seconds=elapsed,
            lag=committed - batch[0].received_at,
        )
        self._update_backlog()
        return len(batch)

    async def _flusher(self) -> None:
        age = self.settings.ingest_batch_age_ms / 1000
        while True:
            if not self.buffer:
                if self.stopping.is_set():
                    return
                self._wake.clear()
                await wait_any(self._wake, self.stopping, within=age)
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
                await sleep_unless(self.stopping, delay)
                continue
            attempt = 0
            # Messages of an earlier connection stay in the buffer and are committed (they cannot be acknowledged
            # on this one): a broker that crashed before saving them will not deliver them again, and one that
            # does gives a duplicate that the write path recognises.
            self._resume_if_room()
            self.stats.broker_up.set(1)
            self.connected.set()
            log.info(
                "connected to %s://%s:%d as %s%s (session %s), subscribed to %s, storing partition %d of %d",
                "mqtts" if self.mqtt_tls else "mqtt",
                self.mqtt_host,
                self.mqtt_port,
                self.client_id,
                f" (account {self.mqtt_login[0]})" if self.mqtt_login else "",
                "resumed" if resumed else "new",
                TOPIC_FILTER,
                self.partition,
                self.partitions,
            )
            if not self.retiring:
                await self._record_session()
            await wait_any(self.link.lost, self.stopping)
            self.connected.clear()
            self.stats.broker_up.set(0)
            if not self.stopping.is_set():
                delay = backoff(0, base=0.5)
                log.warning("lost the connection to the broker; reconnecting in %.1f s", delay)
                await sleep_unless(self.stopping, delay)

    async def _connection(self) -> psycopg.AsyncConnection:
        """A short-lived autocommit connection, for the bookkeeping beside the write path."""
        return await psycopg.AsyncConnection.connect(self.database_url, autocommit=True, connect_timeout=5)

    async def _record_session(self) -> None:
        base = base_of(self.client_id, self.partition, self.partitions)
        try:
            async with await self._connection() as conn:
                await store.record_session(conn, self.client_id, base, f"{self.partition}/{self.partitions}")
        except psycopg.Error as exc:
            log.warning("could not record ingest's broker session (retried at the next connection): %s", exc)
            return
        self._session_recorded.set()

    async def _retire_earlier_layouts(self) -> None:
        """Process 1 of a layout drains and removes the sessions of earlier layouts of the same client id, once
        every process of this layout has subscribed (so every message from then on waits in a current session).
        Each earlier session is drained by storing everything in it, whatever its partition: safe whatever the
        earlier layout was, and the duplicates it makes are recognised."""
        base = base_of(self.client_id, self.partition, self.partitions)
        current = set(session_ids(base, self.partitions))
        await wait_any(self._session_recorded, self.stopping)
        while not self.stopping.is_set():
            try:
                async with await self._connection() as conn:
                    known = await store.sessions(conn, base)
            except psycopg.Error:
                known = None
            if known is not None and current <= set(known):
                break
            await sleep_unless(self.stopping, 1.0)
        else:
            return
        for stale in sorted(set(known) - current):
            if self.stopping.is_set():
                return
            log.info("draining ingest session %s of an earlier layout (%s), then removing it", stale, known[stale])
            settings = replace(self.settings, ingest_client_id=stale, ingest_partition="1/1", ingest_metrics_port=0)
            retiree = Ingest(settings, self.database_url, self.mqtt_url, retiring=True)
            draining = asyncio.create_task(retiree.run(), name=f"retire {stale}")
            stop = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait({draining, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            retiree.stopping.set()  # when this process stops first; a no-op once drained
            try:
                await draining
            except Exception as exc:
                log.warning("could not retire ingest session %s (tried again at the next start): %s", stale, exc)
                continue
            if retiree.drained:
                log.info("ingest session %s drained and removed", stale)

    async def _drain_watch(self) -> None:
        """For a retiring session: stop once nothing arrived for a while with nothing held, then end the session."""
        seen, since = -1, time.monotonic()
        while not self.stopping.is_set():
            await sleep_unless(self.stopping, 0.5)
            received = self.link.received if self.link is not None else 0
            if received != seen:
                seen, since = received, time.monotonic()
            idle = time.monotonic() - since
            if self.connected.is_set() and not self.buffer and not self.in_flight and idle > DRAINED_AFTER_S:
                self.drained = True
                self.stopping.set()

    async def _ticker(self) -> None:
        while not self.stopping.is_set():
            if self.link is not None:
                self.link.misc()
            self._update_backlog()
            await sleep_unless(self.stopping, 1.0)

    async def _stats_writer(self) -> None:
        interval = self.settings.ingest_stats_interval_s
        while True:
            await sleep_unless(self.stopping, interval)
            row = self.stats.take(len(self.buffer) + self.in_flight)
            try:
                async with await self._connection() as conn:
                    await store.record_stats(conn, row)
            except psycopg.Error:
                self.stats.restore(row)
                log.debug("could not write ingest statistics; they go with the next interval", exc_info=True)
            if self.stopping.is_set():
                return

    # -- lifecycle ----------------------------------------------------------------------------------

    async def _wait_for_database(self) -> psycopg.AsyncConnection | None:
        """The database connection, once the database answers (None when told to stop first): a database that is
        down at start is waited for, as at runtime."""
        attempt = 0
        while not self.stopping.is_set():
            try:
                return await self.writer.connection()
            except DatabaseUnavailable as exc:
                delay = backoff(attempt, base=0.5, cap=30)
                log.warning("waiting for the database before starting, retrying in %.1f s: %s", delay, exc)
                attempt += 1
                await sleep_unless(self.stopping, delay)
        return None

    async def run(self) -> None:
        conn = await self._wait_for_database()
        if conn is None:
            log.info("ingest %s stopped before the database answered", self.client_id)
            return
        await self.registry.load(conn)
        self._path = await store.storage_path(conn)
        server = None
        if self.settings.ingest_metrics_port:
            server, _ = start_http_server(
                self.settings.ingest_metrics_port, addr="127.0.0.1", registry=self.stats.registry
            )
        legacy = f"$share/{self.settings.ingest_group}/{TOPIC_FILTER}"
        self.link = MqttLink(
            self.mqtt_host,
            self.mqtt_port,
            self.client_id,
            [] if self.retiring else [TOPIC_FILTER],
            self.on_message,
            unsubscribe=[TOPIC_FILTER, legacy] if self.retiring else [legacy],
            partition=(self.partition, self.partitions),
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
                if self.retiring:
                    tasks.create_task(self._drain_watch(), name="drain")
                elif self.partition == 1:
                    tasks.create_task(self._retire_earlier_layouts(), name="retire")
                await self.stopping.wait()
                self.writer.stop_requested = time.monotonic()
                self.link.pause()
                await flusher
                if self.drained:
                    await self.link.end_session()
                    async with await self._connection() as conn:
                        await store.forget_session(conn, self.client_id)
                else:
                    await self.link.disconnect()
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
            await self.writer.drop()
        log.info("ingest %s stopped", self.client_id)


async def run(settings: Settings, database_url: str, mqtt_url: str) -> None:
    """The ``lykta ingest`` entry: runs until SIGTERM or SIGINT."""
    service = Ingest(settings, database_url, mqtt_url)
    stop_on_signals(service.stopping)
    await service.run()
