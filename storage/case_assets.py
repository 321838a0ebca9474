"""SQL of what the case handling asks about assets: one asset, its tree, its neighbours, and its recent telemetry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import class_row


@dataclass(frozen=True)
class Asset:
    """An asset as a case sees it: where it is, what it is, who maintains it, and its device (if any)."""

    tenant_id: str
    asset_id: str
    kind: str
    parent_id: str | None
    criticality: int
    lat: float | None
    lon: float | None
    maintenance_area: str | None
    district: str | None
    name: str | None
    rated_power_w: float | None
    device_key: int | None
    lamp_type: str | None = None
    install_date: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    """what the inventory says beyond the fixed columns (pole_height_m, luminaire, ...)"""


@dataclass(frozen=True)
class NearAsset:
    asset_id: str
    d: float
    """distance in metres"""


def asset(conn: psycopg.Connection, tenant_id: str, asset_id: str) -> Asset | None:
    with conn.cursor(row_factory=class_row(Asset)) as cur:
        cur.execute(
            """SELECT a.tenant_id, a.asset_id, a.kind, a.parent_id, a.criticality, a.lat, a.lon, a.maintenance_area,
                      a.district, a.name, a.rated_power_w, d.device_key, a.lamp_type,
                      a.install_date::text AS install_date, a.properties
               FROM assets a LEFT JOIN devices d
                 ON d.tenant_id = a.tenant_id AND d.asset_id = a.asset_id AND d.status <> 'retired'
               WHERE a.tenant_id = %s AND a.asset_id = %s""",
            (tenant_id, asset_id),
        )
        return cur.fetchone()


def children_count(conn: psycopg.Connection, tenant_id: str, parent_id: str, kind: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM assets WHERE tenant_id = %s AND parent_id = %s AND kind = %s",
        (tenant_id, parent_id, kind),
    ).fetchone()
    return int(row[0]) if row else 0


def root_of(conn: psycopg.Connection, tenant_id: str, asset_id: str) -> str:
    """The top of an asset's tree (for a streetlight: its cabinet)."""
    row = conn.execute(
        """WITH RECURSIVE up(asset_id, parent_id, depth) AS (
               SELECT asset_id, parent_id, 0 FROM assets WHERE tenant_id = %(t)s AND asset_id = %(a)s
               UNION ALL
               SELECT a.asset_id, a.parent_id, up.depth + 1 FROM assets a JOIN up ON a.asset_id = up.parent_id
               WHERE a.tenant_id = %(t)s AND up.depth < 8)
           SELECT asset_id FROM up ORDER BY depth DESC LIMIT 1""",
        {"t": tenant_id, "a": asset_id},
    ).fetchone()
    return str(row[0]) if row else asset_id


def nearest_assets(  # noqa: PLR0917 - a point, a kind and a distance
    conn: psycopg.Connection, tenant_id: str, lat: float, lon: float, kind: str, within_m: float
) -> list[NearAsset]:
    """Assets of ``kind`` within ``within_m`` metres, nearest first (equirectangular distance: city scale)."""
    with conn.cursor(row_factory=class_row(NearAsset)) as cur:
        cur.execute(
            """SELECT asset_id, d FROM (
                   SELECT asset_id, 6371000 * sqrt(power(radians(lat - %(lat)s), 2)
                          + power(radians(lon - %(lon)s) * cos(radians(%(lat)s)), 2)) AS d
                   FROM assets WHERE tenant_id = %(t)s AND kind = %(k)s AND lat IS NOT NULL AND lon IS NOT NULL) x
               WHERE d <= %(m)s ORDER BY d, asset_id""",
            {"t": tenant_id, "lat": lat, "lon": lon, "k": kind, "m": within_m},
        )
        return cur.fetchall()


def lamps_in_row(conn: psycopg.Connection, tenant_id: str, asset_id: str, faults: list[str], within_m: float) -> int:
    """This lamp and the lamps of its circuit within ``within_m`` metres that have an active lamp-fault case."""
    row = conn.execute(
        """SELECT 1 + count(DISTINCT o.asset_id) FROM assets me
           JOIN assets o ON o.tenant_id = me.tenant_id AND o.parent_id = me.parent_id AND o.asset_id <> me.asset_id
           JOIN cases c ON c.tenant_id = o.tenant_id AND c.asset_id = o.asset_id AND c.status <> 'resolved'
                        AND c.fault = ANY(%(f)s)
           WHERE me.tenant_id = %(t)s AND me.asset_id = %(a)s
             AND 6371000 * sqrt(power(radians(o.lat - me.lat), 2)
                 + power(radians(o.lon - me.lon) * cos(radians(me.lat)), 2)) <= %(m)s""",
        {"t": tenant_id, "a": asset_id, "f": faults, "m": within_m},
    ).fetchone()
    return int(row[0]) if row else 1


def burning_after(
    conn: psycopg.Connection, device_key: int, after: float, min_power_w: float
) -> list[tuple[float, float]]:
    """(device time, power) of readings after ``after`` with the lamp drawing at least ``min_power_w``."""
    rows = conn.execute(
        """SELECT extract(epoch FROM t.device_time)::float8, t.value FROM telemetry t JOIN metrics m USING (metric_id)
           WHERE t.device_key = %s AND m.name = 'power_w' AND t.device_time > to_timestamp(%s) AND t.value >= %s
           ORDER BY t.device_time LIMIT 500""",
        (device_key, after, min_power_w),
    ).fetchall()
    return [(float(r[0]), float(r[1])) for r in rows]


def heard_after(conn: psycopg.Connection, device_key: int, after: float) -> float | None:
    row = conn.execute(
        "SELECT extract(epoch FROM max(received_at))::float8 FROM telemetry "
        "WHERE device_key = %s AND device_time > to_timestamp(%s)",
        (device_key, after),
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def centre(conn: psycopg.Connection, tenant_id: str) -> tuple[float, float] | None:
    """The middle of a tenant's placed assets (where its report page's map opens), or None when none is placed."""
    row = conn.execute(
        "SELECT avg(lat), avg(lon) FROM assets WHERE tenant_id = %s AND lat IS NOT NULL AND lon IS NOT NULL",
        (tenant_id,),
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return float(row[0]), float(row[1])


def readings(  # noqa: PLR0917 - one series of one device
    conn: psycopg.Connection, device_key: int, metric: str, start: float, end: float, bucket_s: float
) -> list[tuple[float, float]]:
    """A device's readings of ``metric`` from ``start`` to ``end`` (device time), averaged per ``bucket_s``."""
    rows = conn.execute(
        """SELECT extract(epoch FROM time_bucket(make_interval(secs => %(b)s), t.device_time))::float8 AS at,
                  avg(t.value)::float8
           FROM telemetry t JOIN metrics m ON m.metric_id = t.metric_id AND m.name = %(m)s
           WHERE t.device_key = %(d)s AND t.device_time >= to_timestamp(%(s)s) AND t.device_time < to_timestamp(%(e)s)
           GROUP BY 1 ORDER BY 1""",
        {"b": bucket_s, "m": metric, "d": device_key, "s": start, "e": end},
    ).fetchall()
    return [(float(r[0]), float(r[1])) for r in rows if r[1] is not None]
