"""The telemetry write path: one transaction per batch, binary COPY, identical readings stored once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from storage.editions import StoragePath


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated value of one metric of one device at one device time."""

    device_key: int
    metric_id: int
    device_time: datetime
    value: float


@dataclass(frozen=True)
class WriteResult:
    stored: int
    duplicates: int


_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS telemetry_staging (
    device_time timestamptz      NOT NULL,
    device_key  bigint           NOT NULL,
    metric_id   smallint         NOT NULL,
    value       double precision NOT NULL
) ON COMMIT DELETE ROWS
"""

_COPY = "COPY telemetry_staging (device_time, device_key, metric_id, value) FROM STDIN (FORMAT BINARY)"

_INSERT = """
INSERT INTO telemetry (device_time, device_key, metric_id, value, received_at)
SELECT device_time, device_key, metric_id, value, %(received_at)s FROM telemetry_staging
ON CONFLICT DO NOTHING
"""

_LATEST = """
INSERT INTO telemetry_latest AS l (device_key, metric_id, device_time, value, received_at)
SELECT DISTINCT ON (device_key, metric_id) device_key, metric_id, device_time, value, %(received_at)s
FROM telemetry_staging
ORDER BY device_key, metric_id, device_time DESC
ON CONFLICT (device_key, metric_id) DO UPDATE
SET device_time = EXCLUDED.device_time, value = EXCLUDED.value, received_at = EXCLUDED.received_at
WHERE l.device_time < EXCLUDED.device_time
"""

_LAST_SEEN = """
UPDATE devices d SET last_seen_at = %(received_at)s
FROM (SELECT DISTINCT device_key FROM telemetry_staging) s
WHERE d.device_key = s.device_key AND (d.last_seen_at IS NULL OR d.last_seen_at < %(received_at)s)
"""

_PENDING = """
INSERT INTO rollup_pending (bucket)
SELECT DISTINCT time_bucket(INTERVAL '1 hour', device_time) FROM telemetry_staging
ON CONFLICT DO NOTHING
"""


def write_readings(
    conn: psycopg.Connection, readings: Sequence[Reading], received_at: datetime, path: StoragePath
) -> WriteResult:
    """Store a batch in one transaction; readings already stored are counted as duplicates."""
    if not readings:
        return WriteResult(stored=0, duplicates=0)
    params = {"received_at": received_at}
    with conn.transaction():
        conn.execute(_STAGING)
        with conn.cursor() as cur:
            with cur.copy(_COPY) as copy:
                copy.set_types(["timestamptz", "int8", "int2", "float8"])
                for r in readings:
                    copy.write_row((r.device_time, r.device_key, r.metric_id, r.value))
            cur.execute(_INSERT, params)
            stored = max(cur.rowcount, 0)
            cur.execute(_LATEST, params)
            cur.execute(_LAST_SEEN, params)
            if path == "apache":
                cur.execute(_PENDING)
    return WriteResult(stored=stored, duplicates=len(readings) - stored)
