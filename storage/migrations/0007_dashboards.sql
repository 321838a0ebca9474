-- What the Grafana dashboards read: views and functions, so that panels carry no SQL of their own beyond
-- selecting from these (storage/panels.py holds the panel queries and the tests run every one of them).

-- Dawn and dusk (civil twilight) per tenant and day at the centre of its assets, written by `lykta db maintain`
-- for the dashboards' dusk and dawn marks.
CREATE TABLE daylight (
    tenant_id text        NOT NULL REFERENCES tenants (tenant_id),
    day       date        NOT NULL,
    dawn      timestamptz,
    dusk      timestamptz,
    PRIMARY KEY (tenant_id, day)
);

-- Every asset with its position and state: 3 in repair (a crew is on it), 2 faulty (an active case or an
-- open finding), 1 offline (not heard for four reporting intervals), 0 ok.
CREATE VIEW dash_assets AS
SELECT a.tenant_id, a.asset_id, coalesce(a.name, a.asset_id) AS name, a.kind, a.district, a.maintenance_area,
       a.lat, a.lon, a.criticality, d.device_id, d.device_key, d.last_seen_at,
       CASE
           WHEN EXISTS (SELECT 1 FROM cases c WHERE c.tenant_id = a.tenant_id AND c.asset_id = a.asset_id
                          AND c.status IN ('in_repair', 'verifying')) THEN 3
           WHEN EXISTS (SELECT 1 FROM cases c WHERE c.tenant_id = a.tenant_id AND c.asset_id = a.asset_id
                          AND c.status <> 'resolved')
             OR EXISTS (SELECT 1 FROM findings f WHERE f.tenant_id = a.tenant_id AND f.asset_id = a.asset_id
                          AND f.status = 'open') THEN 2
           WHEN d.device_key IS NOT NULL
                AND (d.last_seen_at IS NULL
                     OR d.last_seen_at < now() - make_interval(secs => 4 * d.reporting_interval_s)) THEN 1
           ELSE 0
       END AS state
FROM assets a
LEFT JOIN devices d ON d.tenant_id = a.tenant_id AND d.asset_id = a.asset_id AND d.status <> 'retired';

-- Cases with what the maintenance panels need: the asset's district, breach and repair times.
CREATE VIEW dash_cases AS
SELECT c.case_id, c.tenant_id, c.asset_id, a.kind, a.district, c.fault, c.status, c.priority, c.severity,
       c.source, c.observed_at, c.opened_at, c.due_at, c.resolved_at, c.resolution,
       (c.breached_at IS NOT NULL) AS breached,
       CASE WHEN c.resolution = 'verified' THEN extract(epoch FROM c.repaired_at - c.opened_at) / 3600 END
           AS hours_to_repair
FROM cases c
JOIN assets a ON a.tenant_id = c.tenant_id AND a.asset_id = c.asset_id;

-- Energy per streetlight and day from the daily rollup: what it used (the day's rise of its energy meter) and
-- what it would have used burning at full power for the same hours (rated power over driver efficiency).
-- Both meters come from one scan of the rollup, pivoted per lamp and day.
CREATE VIEW dash_energy_daily AS
SELECT r.bucket AS day, a.tenant_id, a.district, a.asset_id,
       max(r.value_max - r.value_min) FILTER (WHERE m.name = 'energy_kwh') AS kwh,
       max(r.value_max - r.value_min) FILTER (WHERE m.name = 'burning_hours_h') * a.rated_power_w / 0.92 / 1000
           AS full_power_kwh
FROM telemetry_daily r
JOIN metrics m ON m.metric_id = r.metric_id AND m.name IN ('energy_kwh', 'burning_hours_h')
JOIN devices d ON d.device_key = r.device_key
JOIN assets a ON a.tenant_id = d.tenant_id AND a.asset_id = d.asset_id
WHERE a.kind = 'streetlight'
GROUP BY r.bucket, a.tenant_id, a.district, a.asset_id, a.rated_power_w;

-- One metric of the assets of a tenant as (time, asset, value) between two times, at a resolution that
-- fits: raw readings for buckets under an hour, the hourly rollup up to a day, the daily rollup beyond.
CREATE FUNCTION dash_series(p_tenants text[], p_assets text[], p_metric text, p_from timestamptz,
                            p_to timestamptz, p_bucket_s double precision)
RETURNS TABLE ("time" timestamptz, asset_id text, value double precision)
LANGUAGE sql STABLE AS $$
    SELECT time_bucket(make_interval(secs => greatest(p_bucket_s, 1)), t.device_time), d.asset_id, avg(t.value)
    FROM telemetry t
    JOIN devices d ON d.device_key = t.device_key
    JOIN metrics m ON m.metric_id = t.metric_id
    WHERE p_bucket_s < 3600 AND d.tenant_id = ANY(p_tenants) AND d.asset_id = ANY(p_assets) AND m.name = p_metric
      AND t.device_time >= p_from AND t.device_time <= p_to
    GROUP BY 1, 2
    UNION ALL
    SELECT time_bucket(make_interval(secs => p_bucket_s), r.bucket), d.asset_id, avg(r.value_avg)
    FROM telemetry_hourly r
    JOIN devices d ON d.device_key = r.device_key
    JOIN metrics m ON m.metric_id = r.metric_id
    WHERE p_bucket_s >= 3600 AND p_bucket_s < 86400 AND d.tenant_id = ANY(p_tenants)
      AND d.asset_id = ANY(p_assets) AND m.name = p_metric AND r.bucket >= p_from - interval '1 hour'
      AND r.bucket <= p_to
    GROUP BY 1, 2
    UNION ALL
    SELECT time_bucket(make_interval(secs => p_bucket_s), r.bucket), d.asset_id, avg(r.value_avg)
    FROM telemetry_daily r
    JOIN devices d ON d.device_key = r.device_key
    JOIN metrics m ON m.metric_id = r.metric_id
    WHERE p_bucket_s >= 86400 AND d.tenant_id = ANY(p_tenants) AND d.asset_id = ANY(p_assets)
      AND m.name = p_metric AND r.bucket >= p_from - interval '1 day' AND r.bucket <= p_to
    GROUP BY 1, 2
    ORDER BY 1, 2
$$;

-- The same over every asset of some kinds and districts, averaged per bucket (the environment panels).
CREATE FUNCTION dash_kind_series(p_tenants text[], p_kinds text[], p_districts text[], p_metric text,
                                 p_from timestamptz, p_to timestamptz, p_bucket_s double precision)
RETURNS TABLE ("time" timestamptz, asset_id text, value double precision)
LANGUAGE sql STABLE AS $$
    SELECT s."time", s.asset_id, s.value
    FROM dash_series(
        p_tenants,
        ARRAY(SELECT asset_id FROM assets WHERE tenant_id = ANY(p_tenants) AND kind = ANY(p_kinds)
              AND (p_districts IS NULL OR coalesce(district, '') = ANY(p_districts))),
        p_metric, p_from, p_to, p_bucket_s) s
$$;

-- Ingest health per bucket: messages and rejections per second, and the worst lag, over all processes.
CREATE VIEW dash_ingest AS
SELECT at, instance, interval_s, received, stored, duplicates, rejected, rejected_by_reason, backlog, lag_seconds
FROM ingest_stats;
