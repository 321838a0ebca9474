-- Tenant isolation for the database roles Grafana (or anyone reading the database directly) connects as.
--
-- A reader role is mapped to one municipality (or, for the installation's own reader, to all of them) in
-- tenant_readers. Row-level security on every table with a tenant_id shows a reader the rows of its
-- municipalities only; the owner of the tables (lykta itself) is not subject to it. Telemetry, its rollups and
-- the latest values carry no tenant_id and cannot have row-level security on the TSL path (TimescaleDB refuses
-- it on compressed hypertables and continuous aggregates): readers get no privilege on them and read them
-- through the SECURITY DEFINER functions dash_series and dash_latest, which keep to the caller's
-- municipalities. storage/grafana.py grants a reader exactly the relations the dashboards need.

-- Nobody but the owner creates objects here (PostgreSQL 15 and later already default to this).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

CREATE TABLE tenant_readers (
    role_name  name PRIMARY KEY,
    tenant_id  text REFERENCES tenants (tenant_id),  -- NULL: every municipality
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Whether the logged-in role sees the whole installation (then also rows that belong to no municipality,
-- such as messages on a topic naming none): a reader mapped to every municipality, or an unmapped member of
-- the tables' owner (lykta itself, a superuser). session_user, not current_user: inside a SECURITY DEFINER
-- function current_user is the owner; reader roles are members of no other role, so they cannot SET ROLE
-- away from themselves.
CREATE FUNCTION lykta_sees_installation() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM tenant_readers WHERE role_name = session_user AND tenant_id IS NULL)
        OR (NOT EXISTS (SELECT 1 FROM tenant_readers WHERE role_name = session_user)
            AND pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = 'tenants'::regclass),
                            'MEMBER'))
$$;

-- The municipalities the logged-in role may see: all when it sees the installation, else its mapping (none
-- for anyone unmapped).
CREATE FUNCTION lykta_visible_tenants() RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT CASE
        WHEN lykta_sees_installation() THEN ARRAY(SELECT tenant_id FROM tenants)
        ELSE ARRAY(SELECT tenant_id FROM tenant_readers WHERE role_name = session_user AND tenant_id IS NOT NULL)
    END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'assets', 'devices', 'findings', 'rule_states', 'cases', 'crews',
                             'work_orders', 'outbox', 'service_requests', 'api_tokens', 'daylight',
                             'energy_daily', 'mqtt_accounts', 'tenant_readers']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        -- (SELECT ...): evaluated once per query, not once per row
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = ANY ((SELECT lykta_visible_tenants())::text[]))', t);
    END LOOP;
END
$$;

ALTER TABLE dead_letters ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON dead_letters
    USING (tenant_id = ANY ((SELECT lykta_visible_tenants())::text[]) OR (tenant_id IS NULL AND (SELECT lykta_sees_installation())));

-- The dashboard views over tenant tables read them with the caller's rights, so row-level security applies.
ALTER VIEW dash_assets SET (security_invoker = true);
ALTER VIEW dash_cases SET (security_invoker = true);

-- The energy view reads the daily rollup with the owner's rights: it keeps to the caller's municipalities.
CREATE OR REPLACE VIEW dash_energy_daily AS
SELECT r.bucket AS day, a.tenant_id, a.district, a.asset_id,
       max(r.value_max - r.value_min) FILTER (WHERE m.name = 'energy_kwh') AS kwh,
       max(r.value_max - r.value_min) FILTER (WHERE m.name = 'burning_hours_h') * a.rated_power_w / 0.92 / 1000
           AS full_power_kwh
FROM telemetry_daily r
JOIN metrics m ON m.metric_id = r.metric_id AND m.name IN ('energy_kwh', 'burning_hours_h')
JOIN devices d ON d.device_key = r.device_key
JOIN assets a ON a.tenant_id = d.tenant_id AND a.asset_id = d.asset_id
WHERE a.kind = 'streetlight' AND a.tenant_id = ANY ((SELECT lykta_visible_tenants())::text[])
GROUP BY r.bucket, a.tenant_id, a.district, a.asset_id, a.rated_power_w;

-- Series and latest values: the owner's rights, the caller's municipalities.
CREATE OR REPLACE FUNCTION dash_series(p_tenants text[], p_assets text[], p_metric text, p_from timestamptz,
                                       p_to timestamptz, p_bucket_s double precision)
RETURNS TABLE ("time" timestamptz, asset_id text, value double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH visible AS (
        SELECT d.device_key, d.asset_id FROM devices d
        WHERE d.tenant_id = ANY(p_tenants) AND d.tenant_id = ANY(lykta_visible_tenants())
          AND d.asset_id = ANY(p_assets)
    ), metric AS (SELECT metric_id FROM metrics WHERE name = p_metric)
    SELECT time_bucket(make_interval(secs => greatest(p_bucket_s, 1)), t.device_time), v.asset_id, avg(t.value)
    FROM telemetry t
    JOIN visible v ON v.device_key = t.device_key
    WHERE p_bucket_s < 3600 AND t.metric_id = (SELECT metric_id FROM metric)
      AND t.device_time >= p_from AND t.device_time <= p_to
    GROUP BY 1, 2
    UNION ALL
    SELECT time_bucket(make_interval(secs => p_bucket_s), r.bucket), v.asset_id, avg(r.value_avg)
    FROM telemetry_hourly r
    JOIN visible v ON v.device_key = r.device_key
    WHERE p_bucket_s >= 3600 AND p_bucket_s < 86400 AND r.metric_id = (SELECT metric_id FROM metric)
      AND r.bucket >= p_from - interval '1 hour' AND r.bucket <= p_to
    GROUP BY 1, 2
    UNION ALL
    SELECT time_bucket(make_interval(secs => p_bucket_s), r.bucket), v.asset_id, avg(r.value_avg)
    FROM telemetry_daily r
    JOIN visible v ON v.device_key = r.device_key
    WHERE p_bucket_s >= 86400 AND r.metric_id = (SELECT metric_id FROM metric)
      AND r.bucket >= p_from - interval '1 day' AND r.bucket <= p_to
    GROUP BY 1, 2
    ORDER BY 1, 2
$$;

-- The newest value of each metric of the caller's assets (all assets or those named, all metrics or one).
CREATE FUNCTION dash_latest(p_tenants text[], p_assets text[], p_metric text)
RETURNS TABLE (tenant_id text, asset_id text, metric text, value double precision, unit text,
               device_time timestamptz, received_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT d.tenant_id, d.asset_id, m.name, l.value, m.unit, l.device_time, l.received_at
    FROM telemetry_latest l
    JOIN devices d ON d.device_key = l.device_key
    JOIN metrics m ON m.metric_id = l.metric_id
    WHERE d.tenant_id = ANY(p_tenants) AND d.tenant_id = ANY(lykta_visible_tenants())
      AND (p_assets IS NULL OR d.asset_id = ANY(p_assets)) AND (p_metric IS NULL OR m.name = p_metric)
      AND d.asset_id IS NOT NULL
$$;

-- Functions are executable by PUBLIC by default; the definer functions only by the roles granted them.
REVOKE EXECUTE ON FUNCTION dash_series(text[], text[], text, timestamptz, timestamptz, double precision) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION dash_latest(text[], text[], text) FROM PUBLIC;
