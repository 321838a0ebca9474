"""The SQL of every Grafana panel, by name: thin selects from the dashboard views and functions of
``0007_dashboards.sql``, the energy table of ``0008_energy.sql`` and the tenant-bound functions of
``0010_tenant_isolation.sql``, written for Grafana's PostgreSQL data source with TimescaleDB enabled. A
reader role sees only its municipalities' rows whatever the variables say (row-level security and the
functions' own check).

Variables are always formatted with ``${var:percentencode}`` inside a string literal and decoded into a text
array by ``lykta_var`` (``0014_dashboard_variables.sql``): percent-encoding leaves only letters, digits and
``-_.~%``, so a value can neither close the string nor hold a Grafana macro (Grafana expands ``$__macro(...)``
after it has put the variables in, also inside quoted values; with ``sqlstring`` quoting, hostile values in
several variables together broke out of their quotes). Time comes from the time picker through
``$__timeFilter``, ``$__timeGroupAlias``, ``$__timeFrom()``/``$__timeTo()`` and ``$__interval_ms``; series
functions pick raw readings, the hourly or the daily rollup from the interval, so long ranges read rollups.
"""

from __future__ import annotations

from dataclasses import dataclass

TENANT = "tenant_id = ANY (lykta_var('${tenant:percentencode}'))"
SCOPE = (
    TENANT
    + " AND kind = ANY (lykta_var('${kind:percentencode}'))"
    + " AND coalesce(district, '') = ANY (lykta_var('${district:percentencode}'))"
)


@dataclass(frozen=True)
class PanelQuery:
    sql: str
    format: str  # "time_series" or "table"
    columns: tuple[str, ...]
    """columns the panel needs, in order for time series (``time`` first)"""


def _series(metric: str, assets: str = "lykta_var('${asset:percentencode}')") -> str:
    return f"""SELECT $__timeGroupAlias("time", $__interval), asset_id AS metric, avg(value) AS value
FROM dash_series(lykta_var('${{tenant:percentencode}}'), {assets}, '{metric}', $__timeFrom(), $__timeTo(),
                 $__interval_ms / 1000.0)
WHERE $__timeFilter("time")
GROUP BY 1, 2 ORDER BY 1, 2"""


def _kind_series(metric: str, kind: str) -> str:
    return f"""SELECT $__timeGroupAlias("time", $__interval), asset_id AS metric, avg(value) AS value
FROM dash_kind_series(lykta_var('${{tenant:percentencode}}'), ARRAY['{kind}'],
                      lykta_var('${{district:percentencode}}'), '{metric}',
                      $__timeFrom(), $__timeTo(), $__interval_ms / 1000.0)
WHERE $__timeFilter("time")
GROUP BY 1, 2 ORDER BY 1, 2"""


QUERIES: dict[str, PanelQuery] = {
    # -- city overview -----------------------------------------------------------------------------------
    "city.map": PanelQuery(
        f"""SELECT lat, lon, name, asset_id, tenant_id, kind, state, fault, since, last_seen_at AS "last seen"
FROM dash_map WHERE {SCOPE} AND lat IS NOT NULL AND lon IS NOT NULL ORDER BY state, asset_id""",
        "table",
        ("lat", "lon", "name", "asset_id", "tenant_id", "kind", "state", "fault", "since", "last seen"),
    ),
    "city.open_faults": PanelQuery(
        f"""SELECT case_id AS "case", tenant_id, asset_id AS asset, address, fault, status, priority, severity,
       due_at AS due, breached, crew, round(age_h::numeric, 1) AS "age (h)"
FROM dash_open_faults WHERE {SCOPE}
ORDER BY breached DESC, due_at NULLS LAST, observed_at LIMIT 500""",
        "table",
        (
            "case",
            "tenant_id",
            "asset",
            "address",
            "fault",
            "status",
            "priority",
            "severity",
            "due",
            "breached",
            "crew",
            "age (h)",
        ),
    ),
    "city.counts": PanelQuery(
        f"""SELECT count(*) FILTER (WHERE state = 0) AS "ok", count(*) FILTER (WHERE state = 2) AS "faulty",
       count(*) FILTER (WHERE state = 1) AS "offline", count(*) FILTER (WHERE state = 3) AS "in repair"
FROM dash_assets WHERE {SCOPE} AND device_key IS NOT NULL""",
        "table",
        ("ok", "faulty", "offline", "in repair"),
    ),
    "city.cases_by_severity": PanelQuery(
        f"""SELECT severity, count(*) AS cases FROM dash_cases
WHERE {SCOPE} AND status <> 'resolved' GROUP BY 1
ORDER BY array_position(ARRAY['critical', 'major', 'minor', 'info'], severity)""",
        "table",
        ("severity", "cases"),
    ),
    "city.energy_today": PanelQuery(
        f"""SELECT sum(e.kwh) AS "kWh today" FROM energy_daily e JOIN tenants t ON t.tenant_id = e.tenant_id
WHERE e.{TENANT} AND e.district = ANY (lykta_var('${{district:percentencode}}'))
  AND e.local_day = (now() AT TIME ZONE t.timezone)::date""",
        "table",
        ("kWh today",),
    ),
    # -- asset detail -------------------------------------------------------------------------------------
    "asset.power": PanelQuery(_series("power_w"), "time_series", ("time", "metric", "value")),
    "asset.dim": PanelQuery(_series("dim_level_pct"), "time_series", ("time", "metric", "value")),
    "asset.voltage": PanelQuery(_series("voltage_v"), "time_series", ("time", "metric", "value")),
    "asset.daylight": PanelQuery(
        """SELECT dusk AS "time", dawn_next AS "timeend", 'dark' AS text FROM (
    SELECT dusk, lead(dawn) OVER (ORDER BY day) AS dawn_next FROM daylight
    WHERE tenant_id = ANY (lykta_var('${tenant:percentencode}'))
) d WHERE $__timeFilter(dusk) ORDER BY 1""",
        "table",
        ("time", "timeend", "text"),
    ),
    "asset.latest": PanelQuery(
        """SELECT metric, value, unit, device_time AS "device time", received_at AS "received"
FROM dash_latest(lykta_var('${tenant:percentencode}'), lykta_var('${asset:percentencode}'), NULL) ORDER BY metric""",
        "table",
        ("metric", "value", "unit", "device time", "received"),
    ),
    "asset.cases": PanelQuery(
        """SELECT case_id AS "case", fault, status, priority, observed_at AS "observed", due_at AS "due",
       resolution FROM dash_cases
WHERE tenant_id = ANY (lykta_var('${tenant:percentencode}')) AND asset_id = ANY (lykta_var('${asset:percentencode}'))
ORDER BY observed_at DESC""",
        "table",
        ("case", "fault", "status", "priority", "observed", "due", "resolution"),
    ),
    # -- energy ---------------------------------------------------------------------------------------------
    "energy.by_district": PanelQuery(
        f"""SELECT day AS "time", coalesce(nullif(district, ''), '-') AS metric, sum(kwh) AS value
FROM energy_daily WHERE {TENANT} AND district = ANY (lykta_var('${{district:percentencode}}'))
  AND $__timeFilter(day)
GROUP BY 1, 2 ORDER BY 1, 2""",
        "time_series",
        ("time", "metric", "value"),
    ),
    "energy.savings": PanelQuery(
        f"""SELECT day AS "time", sum(kwh) AS "used", sum(full_power_kwh) AS "at full power",
       sum(full_power_kwh) - sum(kwh) AS "saved by dimming"
FROM energy_daily WHERE {TENANT} AND district = ANY (lykta_var('${{district:percentencode}}'))
  AND $__timeFilter(day)
GROUP BY 1 ORDER BY 1""",
        "time_series",
        ("time", "used", "at full power", "saved by dimming"),
    ),
    "energy.saved_share": PanelQuery(
        f"""SELECT coalesce(100 * (1 - sum(kwh) / nullif(sum(full_power_kwh), 0)), 0) AS "saved by dimming"
FROM energy_daily WHERE {TENANT} AND district = ANY (lykta_var('${{district:percentencode}}'))
  AND $__timeFilter(day)""",
        "table",
        ("saved by dimming",),
    ),
    # -- maintenance ----------------------------------------------------------------------------------------
    "maintenance.by_fault_state": PanelQuery(
        f"""SELECT fault, count(*) FILTER (WHERE status = 'open') AS "open",
       count(*) FILTER (WHERE status = 'in_repair') AS "in repair",
       count(*) FILTER (WHERE status = 'verifying') AS "verifying",
       count(*) FILTER (WHERE status = 'resolved') AS "resolved"
FROM dash_cases WHERE {SCOPE} AND $__timeFilter(opened_at) GROUP BY 1 ORDER BY 1""",
        "table",
        ("fault", "open", "in repair", "verifying", "resolved"),
    ),
    "maintenance.opened": PanelQuery(
        f"""SELECT $__timeGroupAlias(opened_at, $__interval), priority AS metric, count(*) AS value
FROM dash_cases WHERE {SCOPE} AND $__timeFilter(opened_at) GROUP BY 1, 2 ORDER BY 1, 2""",
        "time_series",
        ("time", "metric", "value"),
    ),
    "maintenance.breaches": PanelQuery(
        f"""SELECT count(*) FILTER (WHERE breached AND status <> 'resolved') AS "breached now",
       count(*) FILTER (WHERE breached) AS "breached in range"
FROM dash_cases WHERE {SCOPE} AND $__timeFilter(opened_at)""",
        "table",
        ("breached now", "breached in range"),
    ),
    "maintenance.mttr": PanelQuery(
        f"""SELECT avg(hours_to_repair) AS "mean time to repair"
FROM dash_cases WHERE {SCOPE} AND $__timeFilter(opened_at) AND hours_to_repair IS NOT NULL
HAVING count(*) > 0""",
        "table",
        ("mean time to repair",),
    ),
    "maintenance.overdue": PanelQuery(
        f"""SELECT case_id AS "case", tenant_id, asset_id AS asset, fault, priority, due_at AS due, status
FROM dash_cases WHERE {SCOPE} AND status <> 'resolved' AND due_at < now() ORDER BY due_at LIMIT 200""",
        "table",
        ("case", "tenant_id", "asset", "fault", "priority", "due", "status"),
    ),
    "maintenance.offline": PanelQuery(
        """SELECT device_id AS device, tenant_id, asset_id AS asset, address, kind, last_seen_at AS "last seen",
       round(silent_h::numeric, 1) AS "silent (h)", last_status AS "last status", status_at AS "status since"
FROM dash_offline(lykta_var('${tenant:percentencode}'), lykta_var('${kind:percentencode}'),
                  lykta_var('${district:percentencode}'))
ORDER BY last_seen_at NULLS FIRST, device_id LIMIT 1000""",
        "table",
        ("device", "tenant_id", "asset", "address", "kind", "last seen", "silent (h)", "last status", "status since"),
    ),
    # -- lamps: burning hours ---------------------------------------------------------------------------------
    "lamps.by_district": PanelQuery(
        f"""SELECT day AS "time", coalesce(nullif(district, ''), '-') AS metric, sum(burned_h) AS value
FROM energy_daily WHERE {TENANT} AND district = ANY (lykta_var('${{district:percentencode}}'))
  AND $__timeFilter(day)
GROUP BY 1, 2 ORDER BY 1, 2""",
        "time_series",
        ("time", "metric", "value"),
    ),
    "lamps.by_day": PanelQuery(
        f"""SELECT day AS "time", coalesce(nullif(district, ''), '-') AS metric, sum(day_burned_h) AS value
FROM energy_daily WHERE {TENANT} AND district = ANY (lykta_var('${{district:percentencode}}'))
  AND $__timeFilter(day)
GROUP BY 1, 2 ORDER BY 1, 2""",
        "time_series",
        ("time", "metric", "value"),
    ),
    "lamps.near_life": PanelQuery(
        """SELECT count(*) FILTER (WHERE life_used_pct >= 90) AS "at 90 % of rated life or more",
       count(*) FILTER (WHERE life_used_pct >= 100) AS "past rated life"
FROM dash_lamp_life(lykta_var('${tenant:percentencode}'), lykta_var('${district:percentencode}'))""",
        "table",
        ("at 90 % of rated life or more", "past rated life"),
    ),
    "lamps.life": PanelQuery(
        """SELECT asset_id AS asset, tenant_id, address, district, lamp_type AS "lamp type",
       round(burning_h::numeric) AS "burning hours", rated_life_h AS "rated life (h)",
       round(life_used_pct::numeric) AS "life used (%)"
FROM dash_lamp_life(lykta_var('${tenant:percentencode}'), lykta_var('${district:percentencode}'))
ORDER BY life_used_pct DESC, asset_id LIMIT 1000""",
        "table",
        ("asset", "tenant_id", "address", "district", "lamp type", "burning hours", "rated life (h)", "life used (%)"),
    ),
    "lamps.day_burners": PanelQuery(
        f"""SELECT l.asset_id AS asset, l.tenant_id, coalesce(a.name, l.asset_id) AS address, l.district,
       count(*) AS days, round(sum(lykta_day_burning(l.burned_h, l.dark_h))::numeric, 1) AS "hours by day",
       max(l.local_day) AS "last day"
FROM lamp_days l JOIN assets a ON a.tenant_id = l.tenant_id AND a.asset_id = l.asset_id
WHERE l.{TENANT} AND l.district = ANY (lykta_var('${{district:percentencode}}')) AND $__timeFilter(l.day)
  AND lykta_day_burning(l.burned_h, l.dark_h) > 0
GROUP BY 1, 2, 3, 4 ORDER BY 6 DESC, 1 LIMIT 500""",
        "table",
        ("asset", "tenant_id", "address", "district", "days", "hours by day", "last day"),
    ),
    # -- ingestion health: a municipality's own devices ---------------------------------------------------------
    "ingest.devices": PanelQuery(
        f"""SELECT count(*) FILTER (WHERE last_seen_at >= now() - make_interval(secs => 4 * reporting_interval_s))
           AS "reporting",
       count(*) FILTER (WHERE last_seen_at < now() - make_interval(secs => 4 * reporting_interval_s)) AS "silent",
       count(*) FILTER (WHERE last_seen_at IS NULL) AS "never heard"
FROM devices WHERE {TENANT} AND status <> 'retired'""",
        "table",
        ("reporting", "silent", "never heard"),
    ),
    "ingest.reports": PanelQuery(
        f"""SELECT $__timeGroupAlias(bucket, $__interval), device_kind AS metric, sum(reports) AS value
FROM device_reports WHERE {TENANT} AND $__timeFilter(bucket) GROUP BY 1, 2 ORDER BY 1, 2""",
        "time_series",
        ("time", "metric", "value"),
    ),
    "ingest.delivery": PanelQuery(
        """SELECT tenant_id, device_kind AS "device kind", devices, round(median_s::numeric, 1) AS "median (s)",
       round(p95_s::numeric, 1) AS "95th percentile (s)", round(max_s::numeric, 1) AS "longest (s)",
       newest AS "newest received"
FROM dash_delivery(lykta_var('${tenant:percentencode}')) ORDER BY 1, 2""",
        "table",
        ("tenant_id", "device kind", "devices", "median (s)", "95th percentile (s)", "longest (s)", "newest received"),
    ),
    "ingest.tenant_rejections": PanelQuery(
        """SELECT $__timeGroupAlias(received_at, $__interval), reason AS metric, count(*) AS value FROM dead_letters
WHERE $__timeFilter(received_at) AND tenant_id = ANY (lykta_var('${tenant:percentencode}'))
GROUP BY 1, 2 ORDER BY 1, 2""",
        "time_series",
        ("time", "metric", "value"),
    ),
    # -- ingestion health: the installation (only its reader sees ingest's counters) ------------------------------
    "ingest.rate": PanelQuery(
        """SELECT $__timeGroupAlias(at, $__interval), sum(received) / $__interval_ms * 1000.0 AS "received",
       sum(stored) / $__interval_ms * 1000.0 AS "stored (readings)",
       sum(rejected) / $__interval_ms * 1000.0 AS "rejected"
FROM dash_ingest WHERE $__timeFilter(at) GROUP BY 1 ORDER BY 1""",
        "time_series",
        ("time", "received", "stored (readings)", "rejected"),
    ),
    "ingest.rejections": PanelQuery(
        """SELECT $__timeGroupAlias(at, $__interval), r.key AS metric, sum(r.value::bigint) AS value
FROM dash_ingest, jsonb_each_text(rejected_by_reason) r WHERE $__timeFilter(at) GROUP BY 1, 2 ORDER BY 1, 2""",
        "time_series",
        ("time", "metric", "value"),
    ),
    "ingest.lag": PanelQuery(
        """SELECT $__timeGroupAlias(at, $__interval), max(lag_seconds) AS "lag", max(backlog) AS "backlog"
FROM dash_ingest WHERE $__timeFilter(at) GROUP BY 1 ORDER BY 1""",
        "time_series",
        ("time", "lag", "backlog"),
    ),
    "ingest.replication": PanelQuery(
        """SELECT member, role, sync_state AS "synchronous", round(lag_s::numeric, 1) AS "behind (s)",
       round((lag_bytes / 1048576)::numeric, 1) AS "behind (MiB)" FROM dash_replication() ORDER BY 1""",
        "table",
        ("member", "role", "synchronous", "behind (s)", "behind (MiB)"),
    ),
    "ingest.dead_letters": PanelQuery(
        """SELECT reason, count(*) AS messages, max(received_at) AS "last" FROM dead_letters
WHERE $__timeFilter(received_at) AND (tenant_id IS NULL OR tenant_id = ANY (lykta_var('${tenant:percentencode}')))
GROUP BY 1 ORDER BY 2 DESC""",
        "table",
        ("reason", "messages", "last"),
    ),
    # -- environment --------------------------------------------------------------------------------------------
    "environment.road": PanelQuery(
        _kind_series("road_temp_c", "road_weather_station"), "time_series", ("time", "metric", "value")
    ),
    "environment.dew": PanelQuery(
        _kind_series("dew_point_c", "road_weather_station"), "time_series", ("time", "metric", "value")
    ),
    "environment.icing": PanelQuery(
        """SELECT a.asset_id AS station, a.name, f.observed_at AS "since", f.severity FROM findings f
JOIN dash_assets a ON a.tenant_id = f.tenant_id AND a.asset_id = f.asset_id
WHERE f.tenant_id = ANY (lykta_var('${tenant:percentencode}')) AND f.fault = 'icyRoad' AND f.status = 'open'
  AND coalesce(a.district, '') = ANY (lykta_var('${district:percentencode}')) ORDER BY f.observed_at""",
        "table",
        ("station", "name", "since", "severity"),
    ),
    "environment.wells": PanelQuery(
        _kind_series("water_level_m", "stormwater_well"), "time_series", ("time", "metric", "value")
    ),
    "environment.bins": PanelQuery(
        """SELECT l.asset_id AS bin, l.value AS "fill"
FROM dash_latest(lykta_var('${tenant:percentencode}'), NULL, 'fill_pct') l
JOIN assets a ON a.tenant_id = l.tenant_id AND a.asset_id = l.asset_id
WHERE coalesce(a.district, '') = ANY (lykta_var('${district:percentencode}')) ORDER BY l.value DESC LIMIT 50""",
        "table",
        ("bin", "fill"),
    ),
}

VARIABLES: dict[str, str] = {
    "tenant": "SELECT tenant_id FROM tenants ORDER BY 1",
    "district": "SELECT DISTINCT coalesce(district, '') FROM assets "
    "WHERE tenant_id = ANY (lykta_var('${tenant:percentencode}')) "
    "ORDER BY 1",
    "kind": "SELECT kind FROM asset_kinds ORDER BY 1",
    "asset": "SELECT a.asset_id FROM assets a WHERE a.tenant_id = ANY (lykta_var('${tenant:percentencode}')) "
    "AND EXISTS (SELECT 1 FROM devices d WHERE d.tenant_id = a.tenant_id AND d.asset_id = a.asset_id) "
    "ORDER BY 1",
}
"""The template variables' own queries (Grafana runs them to list the choices)."""
