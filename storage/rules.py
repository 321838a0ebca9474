"""SQL of the rules engine: assets with their devices, readings in a window, findings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def load_assets(conn: psycopg.Connection, tenant_id: str | None = None) -> list[dict[str, Any]]:
    """Every asset with the device reading it (if any)."""
    rows = conn.execute(
        """SELECT a.tenant_id, a.asset_id, a.kind, a.parent_id, a.district, a.maintenance_area, a.criticality,
                  a.lat, a.lon, a.rated_power_w, d.device_id, d.device_key, d.reporting_interval_s,
                  extract(epoch FROM d.last_seen_at)::float8
           FROM assets a
           LEFT JOIN devices d ON d.tenant_id = a.tenant_id AND d.asset_id = a.asset_id AND d.status <> 'retired'
           WHERE %(tenant)s::text IS NULL OR a.tenant_id = %(tenant)s
           ORDER BY a.tenant_id, a.asset_id""",
        {"tenant": tenant_id},
    ).fetchall()
    keys = (
        "tenant_id",
        "asset_id",
        "kind",
        "parent_id",
        "district",
        "maintenance_area",
        "criticality",
        "lat",
        "lon",
        "rated_power_w",
        "device_id",
        "device_key",
        "interval_s",
        "last_seen",
    )
    return [dict(zip(keys, row, strict=True)) for row in rows]


def load_window(
    conn: psycopg.Connection, device_keys: Sequence[int], metrics: Sequence[str], start: float, end: float
) -> list[tuple[int, float, str, float]]:
    """(device key, device epoch, metric, value) with start < device time <= end; events as ``event:<name>``."""
    if not device_keys:
        return []
    names = [m for m in metrics if not m.startswith("event:")]
    events = [m.removeprefix("event:") for m in metrics if m.startswith("event:")]
    out: list[tuple[int, float, str, float]] = []
    if names:
        out += conn.execute(
            """SELECT t.device_key, extract(epoch FROM t.device_time)::float8, m.name, t.value
               FROM telemetry t JOIN metrics m USING (metric_id)
               WHERE t.device_key = ANY(%s) AND m.name = ANY(%s)
                 AND t.device_time > to_timestamp(%s) AND t.device_time <= to_timestamp(%s)""",
            (list(device_keys), names, start, end),
        ).fetchall()
    if events:
        out += conn.execute(
            """SELECT device_key, extract(epoch FROM device_time)::float8, 'event:' || event, coalesce(value, 1)
               FROM device_events
               WHERE device_key = ANY(%s) AND event = ANY(%s)
                 AND device_time > to_timestamp(%s) AND device_time <= to_timestamp(%s)""",
            (list(device_keys), events, start, end),
        ).fetchall()
    return out


def reading_times(
    conn: psycopg.Connection, device_keys: Sequence[int], start: float, end: float
) -> list[tuple[int, float]]:
    """When lykta heard from each device in the window, by receive time: a store-and-forward replay fills the
    gap in device time, but not the silence the system lived through."""
    if not device_keys:
        return []
    return conn.execute(
        """SELECT DISTINCT device_key, extract(epoch FROM received_at)::float8 FROM telemetry
           WHERE device_key = ANY(%s) AND received_at > to_timestamp(%s) AND received_at <= to_timestamp(%s)""",
        (list(device_keys), start, end),
    ).fetchall()


@dataclass
class Finding:
    tenant_id: str
    asset_id: str
    device_id: str | None
    rule_id: str
    fault: str
    severity: str
    observed_at: float
    last_seen: float
    detected_at: float
    evidence: dict[str, Any]
    cleared_at: float | None = None
    finding_id: int | None = None

    @property
    def status(self) -> str:
        return "open" if self.cleared_at is None else "cleared"


def open_findings(conn: psycopg.Connection) -> dict[tuple[str, str, str], Finding]:
    rows = conn.execute(
        """SELECT finding_id, tenant_id, asset_id, device_id, rule_id, fault, severity,
                  extract(epoch FROM observed_at), extract(epoch FROM last_seen), extract(epoch FROM detected_at),
                  evidence
           FROM findings WHERE status = 'open'"""
    ).fetchall()
    return {
        (r[1], r[2], r[4]): Finding(
            finding_id=r[0],
            tenant_id=r[1],
            asset_id=r[2],
            device_id=r[3],
            rule_id=r[4],
            fault=r[5],
            severity=r[6],
            observed_at=float(r[7]),
            last_seen=float(r[8]),
            detected_at=float(r[9]),
            evidence=r[10],
        )
        for r in rows
    }


def insert_finding(conn: psycopg.Connection, f: Finding) -> int:
    row = conn.execute(
        """INSERT INTO findings (tenant_id, asset_id, device_id, rule_id, fault, severity, observed_at, last_seen,
                                 detected_at, evidence)
           VALUES (%s, %s, %s, %s, %s, %s, to_timestamp(%s), to_timestamp(%s), to_timestamp(%s), %s)
           ON CONFLICT (tenant_id, asset_id, rule_id) WHERE status = 'open' DO UPDATE
           SET last_seen = greatest(findings.last_seen, EXCLUDED.last_seen), evidence = EXCLUDED.evidence,
               updated_at = now()
           RETURNING finding_id""",
        (
            f.tenant_id,
            f.asset_id,
            f.device_id,
            f.rule_id,
            f.fault,
            f.severity,
            f.observed_at,
            f.last_seen,
            f.detected_at,
            Jsonb(f.evidence),
        ),
    ).fetchone()
    return int(row[0]) if row else 0


def finding_exists(conn: psycopg.Connection, tenant_id: str, asset_id: str, rule_id: str, observed_at: float) -> bool:
    row = conn.execute(
        """SELECT 1 FROM findings WHERE tenant_id = %s AND asset_id = %s AND rule_id = %s
             AND observed_at = to_timestamp(%s)""",
        (tenant_id, asset_id, rule_id, observed_at),
    ).fetchone()
    return row is not None


def touch_finding(conn: psycopg.Connection, finding_id: int, last_seen: float, evidence: dict[str, Any]) -> None:
    conn.execute(
        """UPDATE findings SET last_seen = greatest(last_seen, to_timestamp(%s)), evidence = %s, updated_at = now()
           WHERE finding_id = %s AND status = 'open'""",
        (last_seen, Jsonb(evidence), finding_id),
    )


def clear_finding(conn: psycopg.Connection, finding_id: int, cleared_at: float) -> None:
    conn.execute(
        """UPDATE findings SET status = 'cleared', cleared_at = greatest(observed_at, to_timestamp(%s)),
                  updated_at = now()
           WHERE finding_id = %s AND status = 'open'""",
        (cleared_at, finding_id),
    )


def progress(conn: psycopg.Connection, shard: str) -> tuple[float, float | None] | None:
    """(evaluated up to, received up to) of a shard, or None before its first run."""
    row = conn.execute(
        "SELECT extract(epoch FROM evaluated_to), extract(epoch FROM received_upto) FROM rules_progress "
        "WHERE shard = %s",
        (shard,),
    ).fetchone()
    if row is None:
        return None
    return float(row[0]), None if row[1] is None else float(row[1])


def save_progress(conn: psycopg.Connection, shard: str, evaluated_to: float, received_upto: float | None) -> None:
    conn.execute(
        """INSERT INTO rules_progress (shard, evaluated_to, received_upto)
           VALUES (%s, to_timestamp(%s), to_timestamp(%s))
           ON CONFLICT (shard) DO UPDATE SET evaluated_to = EXCLUDED.evaluated_to,
               received_upto = coalesce(EXCLUDED.received_upto, rules_progress.received_upto), updated_at = now()""",
        (shard, evaluated_to, received_upto),
    )


def late_data(
    conn: psycopg.Connection, received_after: float, device_time_before: float
) -> tuple[float | None, float | None]:
    """(earliest device time, latest receive time) of readings received after ``received_after`` whose device
    time is before ``device_time_before``: data that arrived late for a time already evaluated."""
    row = conn.execute(
        """SELECT extract(epoch FROM min(device_time) FILTER (WHERE device_time < to_timestamp(%s))),
                  extract(epoch FROM max(received_at))
           FROM telemetry WHERE received_at > to_timestamp(%s)""",
        (device_time_before, received_after),
    ).fetchone()
    if row is None:
        return None, None
    return (None if row[0] is None else float(row[0])), (None if row[1] is None else float(row[1]))
