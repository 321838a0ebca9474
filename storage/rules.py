"""SQL of the rules engine: assets with their devices, readings in a window, findings."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any

import pandas as pd
import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class RuleAsset:
    """An asset as the rules see it: what and where it is, and the device that reports for it (if any)."""

    tenant_id: str
    asset_id: str
    kind: str
    parent_id: str | None
    district: str | None
    maintenance_area: str | None
    criticality: int
    lat: float | None
    lon: float | None
    rated_power_w: float | None
    device_id: str | None
    device_key: int | None
    interval_s: float | None
    """the device's reporting interval in seconds"""
    last_seen: float | None
    """when the device was last heard (epoch seconds)"""

    def key(self) -> int:
        """The device key of an asset the rules chose because it has a device."""
        if self.device_key is None:
            raise ValueError(f"asset {self.tenant_id}/{self.asset_id} has no device")
        return self.device_key

    def interval(self) -> float:
        """The reporting interval of its device, in seconds."""
        if self.interval_s is None:
            raise ValueError(f"asset {self.tenant_id}/{self.asset_id} has no device")
        return float(self.interval_s)


RULE_ASSET_FIELDS = tuple(f.name for f in fields(RuleAsset))
_asset_values = attrgetter(*RULE_ASSET_FIELDS)


def asset_frame(assets: Iterable[RuleAsset]) -> pd.DataFrame:
    """The assets as a table, one column per field (without copying each row into a dictionary first)."""
    return pd.DataFrame([_asset_values(a) for a in assets], columns=list(RULE_ASSET_FIELDS))


def load_assets(conn: psycopg.Connection, tenant_id: str | None = None) -> list[RuleAsset]:
    """Every asset with the device reading it (if any)."""
    with conn.cursor(row_factory=class_row(RuleAsset)) as cur:
        cur.execute(
            """SELECT a.tenant_id, a.asset_id, a.kind, a.parent_id, a.district, a.maintenance_area, a.criticality,
                      a.lat, a.lon, a.rated_power_w, d.device_id, d.device_key, d.reporting_interval_s AS interval_s,
                      extract(epoch FROM d.last_seen_at)::float8 AS last_seen
               FROM assets a
               LEFT JOIN devices d
                 ON d.tenant_id = a.tenant_id AND d.asset_id = a.asset_id AND d.status <> 'retired'
               WHERE %(tenant)s::text IS NULL OR a.tenant_id = %(tenant)s
               ORDER BY a.tenant_id, a.asset_id""",
            {"tenant": tenant_id},
        )
        return cur.fetchall()


@dataclass(frozen=True)
class Finding:
    """A fault a rule found on an asset: open until ``cleared_at``; ``finding_id`` once stored."""

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


def recorded_finding(
    conn: psycopg.Connection, tenant_id: str, asset_id: str, rule_id: str, observed_at: float
) -> tuple[int, str] | None:
    """(finding id, status) of the finding of a rule on an asset that began at ``observed_at``, if recorded."""
    row = conn.execute(
        """SELECT finding_id, status FROM findings WHERE tenant_id = %s AND asset_id = %s AND rule_id = %s
             AND observed_at = to_timestamp(%s)""",
        (tenant_id, asset_id, rule_id, observed_at),
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


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


# -- incremental evaluation ----------------------------------------------------------------------------------

StateKey = tuple[str, str, str]
"""(tenant, asset, rule)"""


def load_states(conn: psycopg.Connection) -> dict[StateKey, tuple[float, float]]:
    """(1.0 fault / 0.0 no fault, since) of each asset and rule that carries a state."""
    rows = conn.execute(
        "SELECT tenant_id, asset_id, rule_id, bad, extract(epoch FROM since)::float8 FROM rule_states"
    ).fetchall()
    return {(r[0], r[1], r[2]): (1.0 if r[3] else 0.0, float(r[4])) for r in rows}


def save_states(conn: psycopg.Connection, changed: dict[StateKey, tuple[float, float] | None]) -> None:
    """Write changed states; None removes a state that no longer matters."""
    upserts = [(k, v) for k, v in changed.items() if v is not None]
    gone = [k for k, v in changed.items() if v is None]
    if upserts:
        conn.execute(
            """INSERT INTO rule_states (tenant_id, asset_id, rule_id, bad, since)
               SELECT t, a, r, b, to_timestamp(s) FROM unnest(%s::text[], %s::text[], %s::text[], %s::bool[],
                                                              %s::float8[]) AS u(t, a, r, b, s)
               ON CONFLICT (tenant_id, asset_id, rule_id) DO UPDATE SET bad = EXCLUDED.bad, since = EXCLUDED.since""",
            (
                [k[0] for k, _ in upserts],
                [k[1] for k, _ in upserts],
                [k[2] for k, _ in upserts],
                [v[0] == 1.0 for _, v in upserts],
                [v[1] for _, v in upserts],
            ),
        )
    if gone:
        conn.execute(
            """DELETE FROM rule_states s USING unnest(%s::text[], %s::text[], %s::text[]) AS u(t, a, r)
               WHERE s.tenant_id = u.t AND s.asset_id = u.a AND s.rule_id = u.r""",
            ([k[0] for k in gone], [k[1] for k in gone], [k[2] for k in gone]),
        )


def load_recent(
    conn: psycopg.Connection, device_keys: Sequence[int] | None, starts: dict[str, float], end: float
) -> pd.DataFrame:
    """Readings with ``starts[metric] < device time <= end`` as a frame (device_key, t, metric, value); each
    metric has its own start, so a detector that looks back two hours does not make every metric do so.
    ``device_keys`` None: every device. Streamed as CSV, which pandas parses in C."""
    names = [m for m in starts if not m.startswith("event:")]
    events = [m.removeprefix("event:") for m in starts if m.startswith("event:")]
    parts = []
    keys = None if device_keys is None else list(device_keys)
    if names:
        parts.append(
            _copy_frame(
                conn,
                """COPY (SELECT t.device_key, extract(epoch FROM t.device_time)::float8, m.name, t.value
                         FROM telemetry t
                         JOIN metrics m USING (metric_id)
                         JOIN unnest(%s::text[], %s::float8[]) AS w(name, since) ON w.name = m.name
                         WHERE t.device_time > to_timestamp(%s) AND t.device_time <= to_timestamp(%s)
                           AND t.device_time > to_timestamp(w.since)
                           AND (%s::bigint[] IS NULL OR t.device_key = ANY(%s::bigint[])))
                   TO STDOUT (FORMAT csv)""",
                (names, [starts[n] for n in names], min(starts[n] for n in names), end, keys, keys),
            )
        )
    if events:
        parts.append(
            _copy_frame(
                conn,
                """COPY (SELECT device_key, extract(epoch FROM device_time)::float8, 'event:' || event,
                                coalesce(value, 1)
                         FROM device_events
                         WHERE event = ANY(%s) AND device_time > to_timestamp(%s) AND device_time <= to_timestamp(%s)
                           AND (%s::bigint[] IS NULL OR device_key = ANY(%s::bigint[])))
                   TO STDOUT (FORMAT csv)""",
                (events, min(starts["event:" + e] for e in events), end, keys, keys),
            )
        )
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(
            {
                "device_key": pd.Series(dtype="int64"),
                "t": pd.Series(dtype=float),
                "metric": pd.Series(dtype=object),
                "value": pd.Series(dtype=float),
            }
        )
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def _copy_frame(conn: psycopg.Connection, statement: str, params: Sequence[Any]) -> pd.DataFrame:
    buffer = io.BytesIO()
    with conn.cursor() as cur, cur.copy(statement, params) as copy:
        for chunk in copy:
            buffer.write(chunk)
    buffer.seek(0)
    return pd.read_csv(
        buffer,
        header=None,
        names=["device_key", "t", "metric", "value"],
        dtype={"device_key": "int64", "t": "float64", "metric": "category", "value": "float64"},
    )


def late_devices(
    conn: psycopg.Connection, received_after: float, device_time_before: float
) -> tuple[dict[int, float], float | None]:
    """Devices with readings received after ``received_after`` whose device time is before
    ``device_time_before`` (late for a time already evaluated), with the earliest such device time; and the
    latest receive time seen."""
    rows = conn.execute(
        """SELECT device_key, extract(epoch FROM min(device_time))::float8, extract(epoch FROM max(received_at))::float8
           FROM telemetry WHERE received_at > to_timestamp(%s)
           GROUP BY device_key""",
        (received_after,),
    ).fetchall()
    late = {int(r[0]): float(r[1]) for r in rows if r[1] < device_time_before}
    received = max((float(r[2]) for r in rows), default=None)
    return late, received


def touch_findings(conn: psycopg.Connection, touches: list[tuple[int, float, dict[str, Any]]]) -> None:
    """Several open findings seen again: (finding id, last seen, evidence)."""
    if not touches:
        return
    conn.execute(
        """UPDATE findings f SET last_seen = greatest(f.last_seen, to_timestamp(u.s)), evidence = u.e,
                  updated_at = now()
           FROM unnest(%s::bigint[], %s::float8[], %s::jsonb[]) AS u(i, s, e)
           WHERE f.finding_id = u.i AND f.status = 'open'""",
        ([t[0] for t in touches], [t[1] for t in touches], [Jsonb(t[2]) for t in touches]),
    )


# -- silence by device time -----------------------------------------------------------------------------------


def device_times(
    conn: psycopg.Connection, device_keys: Sequence[int] | None, start: float, end: float
) -> dict[int, list[tuple[float, float]]]:
    """The readings of each device with ``start < device time <= end``: (device time, first receive time),
    in device-time order; ``device_keys`` None: every device."""
    keys = None if device_keys is None else list(device_keys)
    rows = conn.execute(
        """SELECT device_key, extract(epoch FROM device_time)::float8, extract(epoch FROM min(received_at))::float8
           FROM telemetry
           WHERE device_time > to_timestamp(%s) AND device_time <= to_timestamp(%s)
             AND (%s::bigint[] IS NULL OR device_key = ANY(%s::bigint[]))
           GROUP BY device_key, device_time ORDER BY device_key, device_time""",
        (start, end, keys, keys),
    ).fetchall()
    out: dict[int, list[tuple[float, float]]] = {}
    for key, t, received in rows:
        out.setdefault(int(key), []).append((float(t), float(received)))
    return out


def last_readings(
    conn: psycopg.Connection, device_keys: Sequence[int], before: float
) -> dict[int, tuple[float, float]]:
    """(device time, receive time) of each device's last reading with device time at or before ``before``
    (devices without one: absent). The newest readings answer for most devices; the others look it up."""
    keys = list(device_keys)
    if not keys:
        return {}
    rows = conn.execute(
        """SELECT device_key, extract(epoch FROM max(device_time))::float8, extract(epoch FROM max(received_at))::float8
           FROM telemetry_latest WHERE device_key = ANY(%s) GROUP BY device_key""",
        (keys,),
    ).fetchall()
    out = {int(k): (float(t), float(r)) for k, t, r in rows if t <= before}
    later = [int(k) for k, t, _ in rows if t > before]
    if later:  # most of them reported within the hour before: one range scan finds their reading
        recent = conn.execute(
            """SELECT device_key, extract(epoch FROM max(device_time))::float8,
                      extract(epoch FROM max(received_at))::float8
               FROM telemetry
               WHERE device_time > to_timestamp(%s) - interval '1 hour' AND device_time <= to_timestamp(%s)
                 AND device_key = ANY(%s)
               GROUP BY device_key""",
            (before, before, later),
        ).fetchall()
        out.update({int(k): (float(t), float(r)) for k, t, r in recent})
        later = [k for k in later if k not in out]
    if later:
        found = conn.execute(
            """SELECT k, extract(epoch FROM last.t)::float8, extract(epoch FROM last.r)::float8
               FROM unnest(%s::bigint[]) AS k,
               LATERAL (SELECT device_time AS t, received_at AS r FROM telemetry
                        WHERE device_key = k AND device_time <= to_timestamp(%s)
                        ORDER BY device_time DESC LIMIT 1) AS last""",
            (later, before),
        ).fetchall()
        out.update({int(k): (float(t), float(r)) for k, t, r in found})
    return out


def reading_times_frame(
    conn: psycopg.Connection, device_keys: Sequence[int] | None, start: float, end: float
) -> pd.DataFrame:
    """(device_key, t, received) of each distinct device time with ``start < t <= end`` (first receive time)."""
    keys = None if device_keys is None else list(device_keys)
    buffer = io.BytesIO()
    with (
        conn.cursor() as cur,
        cur.copy(
            """COPY (SELECT device_key, extract(epoch FROM device_time)::float8,
                            extract(epoch FROM min(received_at))::float8
                     FROM telemetry
                     WHERE device_time > to_timestamp(%s) AND device_time <= to_timestamp(%s)
                       AND (%s::bigint[] IS NULL OR device_key = ANY(%s::bigint[]))
                     GROUP BY device_key, device_time)
               TO STDOUT (FORMAT csv)""",
            (start, end, keys, keys),
        ) as copy,
    ):
        for chunk in copy:
            buffer.write(chunk)
    buffer.seek(0)
    if not buffer.getbuffer().nbytes:
        return pd.DataFrame(
            {"device_key": pd.Series(dtype="int64"), "t": pd.Series(dtype=float), "received": pd.Series(dtype=float)}
        )
    return pd.read_csv(
        buffer,
        header=None,
        names=["device_key", "t", "received"],
        dtype={"device_key": "int64", "t": "float64", "received": "float64"},
    )


def findings_of_fault_since(
    conn: psycopg.Connection, fault: str, since: float
) -> list[tuple[str, str, float, float | None]]:
    """(tenant, asset, observed, cleared) of the findings of a fault open now or cleared after ``since``."""
    rows = conn.execute(
        """SELECT tenant_id, asset_id, extract(epoch FROM observed_at)::float8, extract(epoch FROM cleared_at)::float8
           FROM findings WHERE fault = %s AND (status = 'open' OR cleared_at > to_timestamp(%s))""",
        (fault, since),
    ).fetchall()
    return [(str(t), str(a), float(o), None if c is None else float(c)) for t, a, o, c in rows]


# -- lamps' switching -------------------------------------------------------------------------------------------


def switch_events(
    conn: psycopg.Connection, device_keys: Sequence[int] | None, start: float, end: float, max_gap_s: float
) -> pd.DataFrame:
    """Each change of ``lamp_on`` whose later reading has ``start < device time <= end`` and follows the earlier
    one within ``max_gap_s``: (device_key, before, t, on) with the two readings' device times; only the changes
    leave the database."""
    keys = None if device_keys is None else list(device_keys)
    rows = conn.execute(
        """SELECT device_key, extract(epoch FROM before)::float8, extract(epoch FROM device_time)::float8, value > 0.5
           FROM (SELECT t.device_key, t.device_time, t.value,
                        lag(t.value) OVER w AS previous, lag(t.device_time) OVER w AS before
                 FROM telemetry t
                 WHERE t.metric_id = (SELECT metric_id FROM metrics WHERE name = 'lamp_on')
                   AND t.device_time > to_timestamp(%(start)s) - make_interval(secs => %(gap)s)
                   AND t.device_time <= to_timestamp(%(end)s)
                   AND (%(keys)s::bigint[] IS NULL OR t.device_key = ANY(%(keys)s::bigint[]))
                 WINDOW w AS (PARTITION BY t.device_key ORDER BY t.device_time)) x
           WHERE (value > 0.5) <> (previous > 0.5) AND device_time > to_timestamp(%(start)s)
             AND device_time - before <= make_interval(secs => %(gap)s)""",
        {"start": start, "end": end, "gap": max_gap_s, "keys": keys},
    ).fetchall()
    return pd.DataFrame(
        {
            "device_key": pd.Series([int(r[0]) for r in rows], dtype="int64"),
            "before": pd.Series([float(r[1]) for r in rows], dtype=float),
            "t": pd.Series([float(r[2]) for r in rows], dtype=float),
            "on": pd.Series([bool(r[3]) for r in rows], dtype=bool),
        }
    )
