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
        f"""SELECT lat, lon, name, asset_id, kind, state FROM dash_assets
WHERE {SCOPE} AND lat IS NOT NULL AND lon IS NOT NULL ORDER BY state, asset_id""",
        "table",
        ("lat", "lon", "name", "asset_id", "kind", "state"),
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
        f"""SELECT coalesce(sum(kwh), 0) AS "kWh today" FROM dash_energy_daily
WHERE {TENANT} AND coalesce(district, '') = ANY (lykta_var('${{district:percentencode}}'))
  AND day >= date_trunc('day', now())""",
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
        f"""SELECT $__timeGroupAlias(day, 1d), coalesce(nullif(district, ''), '-') AS metric, sum(kwh) AS value
FROM energy_daily WHERE {TENANT} AND district = ANY (lykta_var('${{district:percentencode}}'))
  AND $__timeFilter(day)
GROUP BY 1, 2 ORDER BY 1, 2""",
        "time_series",
        ("time", "metric", "value"),
    ),
    "energy.savings": PanelQuery(
        f"""SELECT $__timeGroupAlias(day, 1d), sum(kwh) AS "used", sum(full_power_kwh) AS "at full power",
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
        f"""SELECT coalesce(avg(hours_to_repair), 0) AS "mean time to repair"
FROM dash_cases WHERE {SCOPE} AND $__timeFilter(opened_at) AND hours_to_repair IS NOT NULL""",
        "table",
        ("mean time to repair",),
    ),
    "maintenance.overdue": PanelQuery(
        f"""SELECT case_id AS "case", asset_id AS asset, fault, priority, due_at AS due, status FROM dash_cases
WHERE {SCOPE} AND status <> 'resolved' AND due_at < now() ORDER BY due_at LIMIT 200""",
        "table",
        ("case", "asset", "fault", "priority", "due", "status"),
    ),
    # -- ingestion health -------------------------------------------------------------------------------------
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
    "asset": "SELECT asset_id FROM assets WHERE tenant_id = ANY (lykta_var('${tenant:percentencode}')) "
    "AND kind = 'streetlight' "
    "ORDER BY 1 LIMIT 1000",
}
"""The template variables' own queries (Grafana runs them to list the choices)."""
