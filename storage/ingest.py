"""SQL of the ingest service: the registry it resolves devices against and the batch write path.

One transaction per batch: readings through binary COPY into a staging table and
from there into the hypertable with duplicates dropped, the latest values, the
devices' last-seen times, the hours touched (for maintenance), statuses, events and
dead letters.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from storage.editions import StoragePath
from storage.errors import MigrationError


@dataclass(frozen=True, slots=True)
class DeviceRef:
    device_key: int
    device_kind: str
    status: str


@dataclass(frozen=True, slots=True)
class MetricRow:
    metric_id: int
    name: str
    senml_unit: str | None
    min_value: float
    max_value: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_at: float
    topic: str
    payload: bytes
    reason: str
    detail: str
    tenant_id: str | None
    device_id: str | None


_ROW = struct.Struct("!hidiqihidid")
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)


class ReadingRows:
    """Readings packed as PostgreSQL binary COPY rows as they are added, with what the batch changes besides.

    Each row: (device time, device key, metric id, value, received time), times in epoch seconds. Alongside,
    the newest reading per device and metric, the last receive time per device and the hours touched, so that
    the database updates those from a few hundred rows instead of scanning the batch again.
    """

    __slots__ = ("_buf", "count", "hours", "latest", "seen")

    def __init__(self) -> None:
        self._buf = bytearray(_COPY_HEADER)
        self.count = 0
        self.latest: dict[tuple[int, int], tuple[float, float, float]] = {}
        self.seen: dict[int, float] = {}
        self.hours: set[int] = set()

    def add_message(self, device_key: int, received_at: float, readings: list[tuple[float, int, float]]) -> None:
        pack = _ROW.pack
        buf = self._buf
        latest = self.latest
        hours = self.hours
        for device_time, metric_id, value in readings:
            buf += pack(5, 8, device_time, 8, device_key, 2, metric_id, 8, value, 8, received_at)
            key = (device_key, metric_id)
            current = latest.get(key)
            if current is None or device_time > current[0]:
                latest[key] = (device_time, value, received_at)
            hours.add(int(device_time // 3600))
        if self.seen.get(device_key, 0.0) < received_at:
            self.seen[device_key] = received_at
        self.count += len(readings)

    def __len__(self) -> int:
        return self.count

    def copy_data(self) -> bytes:
        return bytes(self._buf) + _COPY_TRAILER

    def latest_arrays(self) -> tuple[list[int], list[int], list[float], list[float], list[float]]:
        """Sorted by device and metric, so concurrent writers lock rows in the same order."""
        keys, metrics, times, values, received = [], [], [], [], []
        for (k, m), (t, v, r) in sorted(self.latest.items()):
            keys.append(k)
            metrics.append(m)
            times.append(t)
            values.append(v)
            received.append(r)
        return keys, metrics, times, values, received

    def seen_arrays(self) -> tuple[list[int], list[float]]:
        ordered = sorted(self.seen.items())
        return [k for k, _ in ordered], [r for _, r in ordered]


@dataclass(frozen=True, slots=True)
class StatusRow:
    """A device's online or offline announcement (times in epoch seconds)."""

    device_key: int
    device_time: float
    online: bool
    reason: str | None
    received_at: float


@dataclass(frozen=True, slots=True)
class EventRow:
    """A device's event (times in epoch seconds)."""

    device_key: int
    device_time: float
    event: str
    value: float | None
    detail: dict[str, Any]
    received_at: float


@dataclass
class IngestBatch:
    """What one batch of messages carried, resolved to device keys; written in one transaction."""

    readings: ReadingRows = field(default_factory=ReadingRows)
    statuses: list[StatusRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


@dataclass(frozen=True)
class BatchResult:
    stored: int
    duplicates: int
    dead_letters: int


async def load_metrics(conn: psycopg.AsyncConnection) -> list[MetricRow]:
    cur = await conn.execute("SELECT metric_id, name, senml_unit, min_value, max_value FROM metrics")
    return [MetricRow(*row) for row in await cur.fetchall()]


async def load_tenants(conn: psycopg.AsyncConnection) -> set[str]:
    cur = await conn.execute("SELECT tenant_id FROM tenants")
    return {row[0] for row in await cur.fetchall()}


async def load_devices(conn: psycopg.AsyncConnection) -> dict[tuple[str, str], DeviceRef]:
    cur = await conn.execute(
        "SELECT tenant_id, device_id, device_key, device_kind, status FROM devices WHERE status <> 'retired'"
    )
    return {(r[0], r[1]): DeviceRef(r[2], r[3], r[4]) for r in await cur.fetchall()}


async def find_devices(
    conn: psycopg.AsyncConnection, wanted: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], DeviceRef]:
    pairs = list(wanted)
    if not pairs:
        return {}
    cur = await conn.execute(
        """SELECT d.tenant_id, d.device_id, d.device_key, d.device_kind, d.status
           FROM devices d JOIN unnest(%s::text[], %s::text[]) AS w(tenant_id, device_id)
             USING (tenant_id, device_id)
           WHERE d.status <> 'retired'""",
        ([p[0] for p in pairs], [p[1] for p in pairs]),
    )
    return {(r[0], r[1]): DeviceRef(r[2], r[3], r[4]) for r in await cur.fetchall()}


async def register_devices(
    conn: psycopg.AsyncConnection, new: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str], DeviceRef]:
    """Register (tenant, device id, kind) as unprovisioned devices; existing ones are returned as they are."""
    if not new:
        return {}
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO devices (tenant_id, device_id, device_kind, status)
               SELECT t, d, k, 'unprovisioned' FROM unnest(%s::text[], %s::text[], %s::text[]) AS n(t, d, k)
               WHERE t IN (SELECT tenant_id FROM tenants)
               ON CONFLICT (tenant_id, device_id) DO NOTHING""",
            ([n[0] for n in new], [n[1] for n in new], [n[2] for n in new]),
        )
    return await find_devices(conn, [(n[0], n[1]) for n in new])


_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS ingest_staging (
    t  double precision NOT NULL,
    k  bigint           NOT NULL,
    m  smallint         NOT NULL,
    v  double precision NOT NULL,
    r  double precision NOT NULL
) ON COMMIT DELETE ROWS
"""

_COPY = "COPY ingest_staging (t, k, m, v, r) FROM STDIN (FORMAT BINARY)"

_INSERT = """
INSERT INTO telemetry (device_time, device_key, metric_id, value, received_at)
SELECT to_timestamp(t), k, m, v, to_timestamp(r) FROM ingest_staging
ON CONFLICT DO NOTHING
"""

_LATEST = """
INSERT INTO telemetry_latest AS l (device_key, metric_id, device_time, value, received_at)
SELECT k, m, to_timestamp(t), v, to_timestamp(r)
FROM unnest(%s::int8[], %s::int2[], %s::float8[], %s::float8[], %s::float8[]) AS n(k, m, t, v, r)
ON CONFLICT (device_key, metric_id) DO UPDATE
SET device_time = EXCLUDED.device_time, value = EXCLUDED.value, received_at = EXCLUDED.received_at
WHERE l.device_time < EXCLUDED.device_time
"""

_LAST_SEEN = """
UPDATE devices d SET last_seen_at = to_timestamp(s.r)
FROM unnest(%s::int8[], %s::float8[]) AS s(k, r)
WHERE d.device_key = s.k AND (d.last_seen_at IS NULL OR d.last_seen_at < to_timestamp(s.r))
"""

_PENDING = """
INSERT INTO rollup_pending (bucket)
SELECT to_timestamp(h * 3600) FROM unnest(%s::int8[]) AS p(h)
ON CONFLICT DO NOTHING
"""

_STATUS = """
INSERT INTO device_status (device_key, device_time, online, reason, received_at)
VALUES (%s, to_timestamp(%s), %s, %s, to_timestamp(%s))
ON CONFLICT DO NOTHING
"""

_ONLINE = """
UPDATE devices SET online = %(online)s, online_changed_at = to_timestamp(%(t)s),
       last_seen_at = greatest(last_seen_at, to_timestamp(%(r)s))
WHERE device_key = %(k)s AND (online_changed_at IS NULL OR online_changed_at <= to_timestamp(%(t)s))
"""

_EVENT = """
INSERT INTO device_events (device_key, device_time, event, value, detail, received_at)
VALUES (%s, to_timestamp(%s), %s, %s, %s, to_timestamp(%s))
ON CONFLICT DO NOTHING
"""

_DEAD = """
INSERT INTO dead_letters (received_at, topic, payload, reason, detail, tenant_id, device_id)
VALUES (to_timestamp(%s), %s, %s, %s, %s, %s, %s)
"""


def _text(value: str, limit: int) -> str:
    """Text a dead letter can always keep: no U+0000 (PostgreSQL refuses it), at most ``limit`` characters (the
    raw bytes are kept whole in ``payload``)."""
    clean = value.replace("\x00", "\ufffd")
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


async def write_batch(conn: psycopg.AsyncConnection, batch: IngestBatch) -> BatchResult:
    """Write everything in one transaction; raise psycopg errors unchanged for the caller to classify."""
    stored = 0
    async with conn.transaction(), conn.cursor() as cur:
        if batch.readings:
            await cur.execute(_STAGING)
            async with cur.copy(_COPY) as copy:
                await copy.write(batch.readings.copy_data())
            await cur.execute(_INSERT)
            stored = max(cur.rowcount, 0)
            await cur.execute(_LATEST, batch.readings.latest_arrays())
            await cur.execute(_LAST_SEEN, batch.readings.seen_arrays())
            await cur.execute(_PENDING, (sorted(batch.readings.hours),))
        if batch.statuses:
            await cur.executemany(
                _STATUS, [(s.device_key, s.device_time, s.online, s.reason, s.received_at) for s in batch.statuses]
            )
            await cur.executemany(
                _ONLINE,
                [
                    {"k": s.device_key, "t": s.device_time, "online": s.online, "r": s.received_at}
                    for s in sorted(batch.statuses, key=lambda s: s.device_time)
                ],
            )
        if batch.events:
            await cur.executemany(
                _EVENT,
                [(e.device_key, e.device_time, e.event, e.value, Jsonb(e.detail), e.received_at) for e in batch.events],
            )
        if batch.dead_letters:
            await cur.executemany(
                _DEAD,
                [
                    (
                        d.received_at,
                        _text(d.topic, 1024),
                        d.payload,
                        d.reason,
                        _text(d.detail, 1000),
                        d.tenant_id,
                        _text(d.device_id, 128) if d.device_id else None,
                    )
                    for d in batch.dead_letters
                ],
            )
    return BatchResult(stored=stored, duplicates=len(batch.readings) - stored, dead_letters=len(batch.dead_letters))


@dataclass(frozen=True)
class StatsRow:
    instance: str
    interval_s: float
    received: int
    stored: int
    duplicates: int
    rejected: int
    rejected_by_reason: dict[str, int]
    batches: int
    commit_seconds: float
    backlog: int
    lag_seconds: float | None


async def record_stats(conn: psycopg.AsyncConnection, row: StatsRow) -> None:
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO ingest_stats (at, instance, interval_s, received, stored, duplicates, rejected,
                                         rejected_by_reason, batches, commit_seconds, backlog, lag_seconds)
               VALUES (now(), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT DO NOTHING""",
            (
                row.instance,
                row.interval_s,
                row.received,
                row.stored,
                row.duplicates,
                row.rejected,
                Jsonb(row.rejected_by_reason),
                row.batches,
                row.commit_seconds,
                row.backlog,
                row.lag_seconds,
            ),
        )


async def storage_path(conn: psycopg.AsyncConnection) -> StoragePath:
    cur = await conn.execute("SELECT value FROM storage_settings WHERE key = 'storage_path'")
    row = await cur.fetchone()
    if row is None or row[0] not in ("tsl", "apache"):
        raise MigrationError("the database schema is not migrated; run lykta db migrate")
    return "tsl" if row[0] == "tsl" else "apache"


async def record_session(conn: psycopg.AsyncConnection, client_id: str, base: str, partition: str) -> None:
    """This ingest process holds a subscribed broker session under ``client_id``, storing ``partition``."""
    await conn.execute(
        """INSERT INTO ingest_sessions (client_id, base, partition) VALUES (%s, %s, %s)
           ON CONFLICT (client_id) DO UPDATE SET base = EXCLUDED.base, partition = EXCLUDED.partition,
                                                 seen_at = now()""",
        (client_id, base, partition),
    )


async def sessions(conn: psycopg.AsyncConnection, base: str) -> dict[str, str]:
    """The sessions recorded for the group ``base``: client id -> partition."""
    cur = await conn.execute("SELECT client_id, partition FROM ingest_sessions WHERE base = %s", (base,))
    return dict(await cur.fetchall())


async def forget_session(conn: psycopg.AsyncConnection, client_id: str) -> None:
    await conn.execute("DELETE FROM ingest_sessions WHERE client_id = %s", (client_id,))
