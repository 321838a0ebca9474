"""Synthetic history written straight into storage, for benchmarks that need months of data for thousands of
devices (ingest writes a few hundred thousand readings per second; this writes a month in minutes).

Streetlights burn from 16:00 to 07:00 UTC at full power until 23:00 and half power after; power, dim level and
voltage every ``interval_s``, the energy meter and burning hours every hour. Road-weather stations, wells and
bins report their own metric every ``interval_s``. Rollup hours are marked for ``lykta db maintain``.
"""

from __future__ import annotations

import psycopg

_LAMPS = """
INSERT INTO telemetry (device_key, metric_id, device_time, value, received_at)
SELECT d.device_key, m.metric_id, t.ts,
       CASE m.name
           WHEN 'voltage_v' THEN 229 + 3 * sin(extract(epoch FROM t.ts) / 5000 + d.device_key)
           WHEN 'dim_level_pct' THEN CASE WHEN s.burning THEN s.dim ELSE 0 END
           ELSE CASE WHEN s.burning THEN coalesce(a.rated_power_w, 50) * s.dim / 100 / 0.92 ELSE 0.6 END
       END,
       t.ts + interval '1 second'
FROM generate_series(to_timestamp(%(start)s), to_timestamp(%(end)s) - interval '1 second',
                     make_interval(secs => %(step)s)) AS t(ts)
CROSS JOIN LATERAL (SELECT extract(hour FROM t.ts AT TIME ZONE 'UTC') AS h) hh
CROSS JOIN LATERAL (SELECT (hh.h >= 16 OR hh.h < 7) AS burning,
                           CASE WHEN hh.h >= 23 OR hh.h < 7 THEN 50.0 ELSE 100.0 END AS dim) s
JOIN devices d ON d.tenant_id = %(tenant)s
JOIN assets a ON a.tenant_id = d.tenant_id AND a.asset_id = d.asset_id AND a.kind = 'streetlight'
JOIN metrics m ON m.name IN ('power_w', 'dim_level_pct', 'voltage_v')
ON CONFLICT DO NOTHING
"""

_METERS = """
INSERT INTO telemetry (device_key, metric_id, device_time, value, received_at)
SELECT d.device_key, m.metric_id, t.ts,
       CASE m.name
           WHEN 'burning_hours_h' THEN 15 * extract(epoch FROM t.ts - to_timestamp(%(origin)s)) / 86400
           ELSE coalesce(a.rated_power_w, 50) / 0.92 * 0.75 * 15
                * extract(epoch FROM t.ts - to_timestamp(%(origin)s)) / 86400 / 1000
       END,
       t.ts + interval '1 second'
FROM generate_series(to_timestamp(%(start)s), to_timestamp(%(end)s) - interval '1 second', interval '1 hour') AS t(ts)
JOIN devices d ON d.tenant_id = %(tenant)s
JOIN assets a ON a.tenant_id = d.tenant_id AND a.asset_id = d.asset_id AND a.kind = 'streetlight'
JOIN metrics m ON m.name IN ('energy_kwh', 'burning_hours_h')
ON CONFLICT DO NOTHING
"""

_SENSORS = """
INSERT INTO telemetry (device_key, metric_id, device_time, value, received_at)
SELECT d.device_key, m.metric_id, t.ts,
       CASE m.name
           WHEN 'road_temp_c' THEN 1 + 4 * sin(extract(epoch FROM t.ts) / 13751)
           WHEN 'dew_point_c' THEN -1 + 2 * sin(extract(epoch FROM t.ts) / 20000)
           WHEN 'water_level_m' THEN 1.0 + 0.5 * sin(extract(epoch FROM t.ts) / 30000 + d.device_key)
           ELSE mod(extract(epoch FROM t.ts)::numeric / 3000 + d.device_key, 100)::float8
       END,
       t.ts + interval '1 second'
FROM generate_series(to_timestamp(%(start)s), to_timestamp(%(end)s) - interval '1 second',
                     make_interval(secs => %(step)s)) AS t(ts)
JOIN devices d ON d.tenant_id = %(tenant)s
JOIN assets a ON a.tenant_id = d.tenant_id AND a.asset_id = d.asset_id
JOIN metrics m ON (a.kind, m.name) IN (('road_weather_station', 'road_temp_c'),
                                       ('road_weather_station', 'dew_point_c'),
                                       ('stormwater_well', 'water_level_m'), ('waste_bin', 'fill_pct'))
ON CONFLICT DO NOTHING
"""


def fill(  # noqa: PLR0917 - a tenant, a period, a pace
    conn: psycopg.Connection, tenant_id: str, start: float, end: float, interval_s: float, origin: float
) -> int:
    """Readings of every device of a tenant for [start, end); returns the rows written."""
    params = {"tenant": tenant_id, "start": start, "end": end, "step": interval_s, "origin": origin}
    written = 0
    for statement in (_LAMPS, _METERS, _SENSORS):
        cur = conn.execute(statement, params)
        written += max(cur.rowcount, 0)
    conn.execute(
        """INSERT INTO rollup_pending (bucket)
           SELECT generate_series(date_trunc('hour', to_timestamp(%s)), to_timestamp(%s), interval '1 hour')
           ON CONFLICT DO NOTHING""",
        (start, end),
    )
    conn.execute(
        """INSERT INTO telemetry_latest (device_key, metric_id, device_time, value, received_at)
           SELECT DISTINCT ON (device_key, metric_id) device_key, metric_id, device_time, value, received_at
           FROM telemetry WHERE device_time >= to_timestamp(%s) - interval '1 hour' AND device_time < to_timestamp(%s)
           ORDER BY device_key, metric_id, device_time DESC
           ON CONFLICT (device_key, metric_id) DO UPDATE SET device_time = EXCLUDED.device_time,
               value = EXCLUDED.value, received_at = EXCLUDED.received_at""",
        (end, end),
    )
    conn.execute("UPDATE devices SET last_seen_at = to_timestamp(%s) WHERE tenant_id = %s", (end, tenant_id))
    return written


def fill_ingest_stats(conn: psycopg.Connection, start: float, end: float, instances: int = 2) -> int:
    """Statistics rows of ``instances`` ingest processes every 10 s, with a few rejections."""
    cur = conn.execute(
        """INSERT INTO ingest_stats (at, instance, interval_s, received, stored, duplicates, rejected,
                                     rejected_by_reason, batches, commit_seconds, backlog, lag_seconds)
           SELECT t, 'ingest-' || i, 10, 280, 2500, 1, r, CASE WHEN r > 0 THEN jsonb_build_object('malformed_json', r)
                  ELSE '{}'::jsonb END, 5, 0.2, 0, 0.05
           FROM generate_series(to_timestamp(%s), to_timestamp(%s), interval '10 seconds') AS t,
                generate_series(1, %s) AS i,
                LATERAL (SELECT CASE WHEN extract(minute FROM t)::int %% 17 = 0 THEN 2 ELSE 0 END AS r) x
           ON CONFLICT DO NOTHING""",
        (start, end, instances),
    )
    return max(cur.rowcount, 0)


def fill_latest(conn: psycopg.Connection, since: float) -> int:
    """Each device's newest value of each metric since ``since``, as ingest keeps them in telemetry_latest."""
    cur = conn.execute(
        """INSERT INTO telemetry_latest (device_key, metric_id, device_time, value, received_at)
           SELECT DISTINCT ON (device_key, metric_id) device_key, metric_id, device_time, value, received_at
           FROM telemetry WHERE device_time >= to_timestamp(%s)
           ORDER BY device_key, metric_id, device_time DESC
           ON CONFLICT (device_key, metric_id) DO UPDATE
           SET device_time = EXCLUDED.device_time, value = EXCLUDED.value, received_at = EXCLUDED.received_at""",
        (since,),
    )
    return cur.rowcount
