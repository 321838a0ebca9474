-- What operators look for on the dashboards: open faults and cases with their crew, the map with each asset's
-- fault, lamps' burning hours against their rated life, lamps burning by day, devices that went offline with
-- their last status, and days counted in each municipality's own time zone.

-- Rated life of a lamp by its family: the first word of assets.lamp_type ("HPS 70 W" is HPS). An asset's
-- properties may carry its own figure (rated_life_h), which wins. Typical manufacturers' figures; the same table
-- is floor/lamps.py, which the simulators use.
CREATE TABLE lamp_families (
    family       text    PRIMARY KEY,
    rated_life_h integer NOT NULL CHECK (rated_life_h > 0),
    description  text    NOT NULL
);
INSERT INTO lamp_families (family, rated_life_h, description) VALUES
    ('LED', 60000, 'LED luminaire (L70: 70 % of its light left)'),
    ('HPS', 24000, 'high-pressure sodium'),
    ('LPS', 18000, 'low-pressure sodium'),
    ('CMH', 15000, 'ceramic metal halide'),
    ('MH', 12000, 'metal halide'),
    ('HPM', 16000, 'high-pressure mercury'),
    ('CFL', 12000, 'compact fluorescent');

-- Each streetlight's day, in its municipality's time zone: energy used, what it would have used at full power,
-- hours burned and the hours the day was dark (civil dusk to dawn, from the daylight table).
CREATE TABLE lamp_days (
    tenant_id      text        NOT NULL REFERENCES tenants (tenant_id),
    local_day      date        NOT NULL,
    day            timestamptz NOT NULL,  -- when the local day began
    asset_id       text        NOT NULL,
    district       text        NOT NULL,  -- '' for lamps without a district
    kwh            double precision,
    full_power_kwh double precision,
    burned_h       double precision,
    dark_h         double precision,      -- NULL where the sun neither rises nor sets
    PRIMARY KEY (tenant_id, local_day, asset_id)
);
CREATE INDEX lamp_days_day ON lamp_days (tenant_id, day);
ALTER TABLE lamp_days ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON lamp_days USING (tenant_id = ANY ((SELECT lykta_visible_tenants())::text[]));

-- A municipality's reports per hour by device time and kind of device: what arrived of its devices' data. A
-- report is a reading of the kind's main metric (every message carries it). Counted by lykta db maintain from
-- the hourly rollup with the energy of each day (counting the rollup at every look took 28 s for a month of a
-- whole city).
CREATE TABLE device_reports (
    tenant_id   text        NOT NULL REFERENCES tenants (tenant_id),
    bucket      timestamptz NOT NULL,
    device_kind text        NOT NULL,
    reports     bigint      NOT NULL,
    PRIMARY KEY (tenant_id, bucket, device_kind)
);
ALTER TABLE device_reports ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON device_reports USING (tenant_id = ANY ((SELECT lykta_visible_tenants())::text[]));

-- A lamp burns "by day" for the hours it burned beyond the dark ones and an hour's allowance (photocells switch
-- up to half an hour before civil dusk and after civil dawn).
CREATE FUNCTION lykta_day_burning(p_burned_h double precision, p_dark_h double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE AS $$
    SELECT greatest(p_burned_h - p_dark_h - 1.0, 0.0)
$$;

-- energy_daily now holds the municipality's local days: day is when the local day began.
ALTER TABLE energy_daily ADD COLUMN local_day date;
ALTER TABLE energy_daily ADD COLUMN burned_h double precision;
ALTER TABLE energy_daily ADD COLUMN day_burned_h double precision;
UPDATE energy_daily SET local_day = (day AT TIME ZONE 'UTC')::date;
ALTER TABLE energy_daily ALTER COLUMN local_day SET NOT NULL;

-- How much a counter rose over [p_from, p_to) by the hourly rollup: its last value in the span less its last
-- value before (within two days; else its first in the span). A counter that went back (a new controller)
-- counts from its first value in the span.
CREATE FUNCTION lykta_counter_rise(p_device_key bigint, p_metric_id smallint, p_from timestamptz,
                                   p_to timestamptz)
RETURNS double precision LANGUAGE sql STABLE AS $$
    WITH span AS (
        SELECT max(value_max) AS top, min(value_min) AS bottom FROM telemetry_hourly
        WHERE device_key = p_device_key AND metric_id = p_metric_id AND bucket >= p_from AND bucket < p_to
    ), before AS (
        SELECT value_max AS last FROM telemetry_hourly
        WHERE device_key = p_device_key AND metric_id = p_metric_id AND bucket < p_from
          AND bucket >= p_from - interval '2 days'
        ORDER BY bucket DESC LIMIT 1
    )
    SELECT CASE WHEN (SELECT last FROM before) <= top THEN top - (SELECT last FROM before) ELSE top - bottom END
    FROM span
$$;

-- Recompute the local days (of every municipality, in its own time zone) that overlap the UTC day p_day, per
-- lamp and per district, and the day's reports per hour. lykta db maintain calls it for every UTC day it
-- refreshed, in order, so a local day that straddles two UTC days is computed again once the second one is done.
-- Returns the energy_daily rows written.
CREATE OR REPLACE FUNCTION refresh_energy_day(p_day timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    written bigint := 0;
    n bigint;
    r record;
    energy_id smallint := (SELECT metric_id FROM metrics WHERE name = 'energy_kwh');
    burning_id smallint := (SELECT metric_id FROM metrics WHERE name = 'burning_hours_h');
BEGIN
    FOR r IN
        SELECT t.tenant_id, d.local_day, d.local_day::timestamp AT TIME ZONE t.timezone AS day_start,
               (d.local_day + 1)::timestamp AT TIME ZONE t.timezone AS day_end
        FROM tenants t
        CROSS JOIN LATERAL (
            SELECT DISTINCT x::date AS local_day
            FROM unnest(ARRAY[p_day AT TIME ZONE t.timezone,
                              (p_day + interval '1 day' - interval '1 microsecond') AT TIME ZONE t.timezone]) x
        ) d
        ORDER BY 1, 2
    LOOP
        DELETE FROM lamp_days WHERE tenant_id = r.tenant_id AND local_day = r.local_day;
        INSERT INTO lamp_days (tenant_id, local_day, day, asset_id, district, kwh, full_power_kwh, burned_h, dark_h)
        SELECT r.tenant_id, r.local_day, r.day_start, x.asset_id, x.district, sum(x.kwh),
               sum(x.burned) * x.rated_power_w / 0.92 / 1000, sum(x.burned),
               (SELECT 24 - extract(epoch FROM dl.dusk - dl.dawn) / 3600 FROM daylight dl
                WHERE dl.tenant_id = r.tenant_id AND dl.day = r.local_day)
        FROM (
            SELECT a.asset_id, coalesce(a.district, '') AS district, a.rated_power_w,
                   lykta_counter_rise(d.device_key, energy_id, r.day_start, r.day_end) AS kwh,
                   lykta_counter_rise(d.device_key, burning_id, r.day_start, r.day_end) AS burned
            FROM assets a
            JOIN devices d ON d.tenant_id = a.tenant_id AND d.asset_id = a.asset_id
            WHERE a.tenant_id = r.tenant_id AND a.kind = 'streetlight'
        ) x
        WHERE x.kwh IS NOT NULL OR x.burned IS NOT NULL
        GROUP BY x.asset_id, x.district, x.rated_power_w;

        DELETE FROM energy_daily WHERE tenant_id = r.tenant_id AND local_day = r.local_day;
        INSERT INTO energy_daily (day, local_day, tenant_id, district, lamps, kwh, full_power_kwh, burned_h,
                                  day_burned_h)
        SELECT r.day_start, r.local_day, r.tenant_id, l.district, count(*), sum(l.kwh), sum(l.full_power_kwh),
               sum(l.burned_h), sum(lykta_day_burning(l.burned_h, l.dark_h))
        FROM lamp_days l WHERE l.tenant_id = r.tenant_id AND l.local_day = r.local_day
        GROUP BY l.district;
        GET DIAGNOSTICS n = ROW_COUNT;
        written := written + n;
    END LOOP;

    DELETE FROM device_reports WHERE bucket >= p_day AND bucket < p_day + interval '1 day';
    INSERT INTO device_reports (tenant_id, bucket, device_kind, reports)
    SELECT d.tenant_id, h.bucket, d.device_kind, sum(h.n)
    FROM telemetry_hourly h
    JOIN devices d ON d.device_key = h.device_key
    JOIN (VALUES ('streetlight_controller', 'power_w'), ('cabinet_meter', 'power_w'),
                 ('road_weather_station', 'road_temp_c'), ('well_level_sensor', 'water_level_m'),
                 ('pump_controller', 'pump_running'), ('bin_fill_sensor', 'fill_pct')) main (device_kind, metric)
      ON main.device_kind = d.device_kind
    JOIN metrics m ON m.name = main.metric AND m.metric_id = h.metric_id
    WHERE h.bucket >= p_day AND h.bucket < p_day + interval '1 day'
    GROUP BY 1, 2, 3;
    RETURN written;
END
$$;

-- Days already computed are recomputed in their municipalities' time zones where the hourly rollup still has
-- them (older ones keep their UTC days).
DELETE FROM energy_daily e
WHERE EXISTS (SELECT 1 FROM telemetry_hourly h WHERE h.bucket >= e.day AND h.bucket < e.day + interval '1 day');
SELECT refresh_energy_day(d)
FROM (SELECT DISTINCT time_bucket(interval '1 day', bucket) AS d FROM telemetry_hourly) days ORDER BY d;

-- Open faults and cases, one row each: every case not resolved, with its asset's address, the crew of its
-- active work order and whether it is past due; and every open finding no active case holds yet. A function
-- with the owner's rights (work orders and the findings' links to cases are not the readers' to read) that keeps
-- to the caller's municipalities; the view over it is what panels select from. Not a view with the owner's
-- rights: a security barrier does not hold over a UNION, and a leaky function in a reader's WHERE saw other
-- municipalities' rows; a function's rows are filtered only after it has returned them.
CREATE FUNCTION dash_open_faults_of()
RETURNS TABLE (tenant_id text, case_id bigint, asset_id text, address text, kind text, district text, fault text,
               status text, priority text, severity text, source text, observed_at timestamptz,
               opened_at timestamptz, due_at timestamptz, breached boolean, crew text, age_h double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT c.tenant_id, c.case_id, c.asset_id, coalesce(a.name, a.asset_id), a.kind, a.district,
           c.fault, c.status, c.priority, c.severity, c.source, c.observed_at, c.opened_at, c.due_at,
           (c.breached_at IS NOT NULL OR c.due_at < now()),
           (SELECT w.crew_id FROM work_orders w WHERE w.case_id = c.case_id
              AND w.status IN ('new', 'assigned', 'in_progress') ORDER BY w.created_at DESC LIMIT 1),
           extract(epoch FROM now() - c.opened_at)::double precision / 3600
    FROM cases c
    JOIN assets a ON a.tenant_id = c.tenant_id AND a.asset_id = c.asset_id
    WHERE c.status <> 'resolved' AND c.tenant_id = ANY (lykta_visible_tenants())
    UNION ALL
    SELECT f.tenant_id, NULL, f.asset_id, coalesce(a.name, a.asset_id), a.kind, a.district,
           f.fault, 'finding', NULL, f.severity, 'telemetry', f.observed_at, f.detected_at, NULL,
           false, NULL, extract(epoch FROM now() - f.observed_at)::double precision / 3600
    FROM findings f
    JOIN assets a ON a.tenant_id = f.tenant_id AND a.asset_id = f.asset_id
    WHERE f.status = 'open' AND f.tenant_id = ANY (lykta_visible_tenants())
      AND NOT EXISTS (SELECT 1 FROM case_findings cf JOIN cases c ON c.case_id = cf.case_id
                      WHERE cf.finding_id = f.finding_id AND c.status <> 'resolved')
$$;
CREATE VIEW dash_open_faults WITH (security_invoker = true) AS SELECT * FROM dash_open_faults_of();

-- The map: every asset with its state and, where it has one, its most severe open fault and since when.
CREATE VIEW dash_map WITH (security_invoker = true) AS
SELECT a.tenant_id, a.asset_id, a.name, a.kind, a.district, a.lat, a.lon, a.state, a.last_seen_at,
       o.fault, o.observed_at AS since
FROM dash_assets a
LEFT JOIN LATERAL (
    SELECT f.fault, f.observed_at FROM dash_open_faults f
    WHERE f.tenant_id = a.tenant_id AND f.asset_id = a.asset_id
    ORDER BY array_position(ARRAY['critical', 'major', 'minor', 'info'], f.severity), f.observed_at
    LIMIT 1
) o ON true;

-- Streetlights with their burning hours (the controller's counter) against their lamp's rated life.
CREATE FUNCTION dash_lamp_life(p_tenants text[], p_districts text[])
RETURNS TABLE (tenant_id text, asset_id text, address text, district text, lamp_type text,
               burning_h double precision, rated_life_h integer, life_used_pct double precision,
               reading_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT a.tenant_id, a.asset_id, coalesce(a.name, a.asset_id), a.district, a.lamp_type, l.value, life.h,
           100 * l.value / life.h, l.device_time
    FROM assets a
    JOIN devices d ON d.tenant_id = a.tenant_id AND d.asset_id = a.asset_id AND d.status <> 'retired'
    JOIN telemetry_latest l ON l.device_key = d.device_key
     AND l.metric_id = (SELECT metric_id FROM metrics WHERE name = 'burning_hours_h')
    CROSS JOIN LATERAL (
        SELECT coalesce(
            CASE WHEN a.properties->>'rated_life_h' ~ '^[0-9]{1,7}$' THEN (a.properties->>'rated_life_h')::integer END,
            (SELECT f.rated_life_h FROM lamp_families f WHERE f.family = upper(split_part(a.lamp_type, ' ', 1))))
            AS h
    ) life
    WHERE a.kind = 'streetlight' AND a.tenant_id = ANY(p_tenants) AND a.tenant_id = ANY(lykta_visible_tenants())
      AND coalesce(a.district, '') = ANY(p_districts) AND life.h > 0
$$;

-- Devices not heard for four reporting intervals, never heard, or whose last status said offline (a device's
-- own goodbye or the Last Will the broker published for it), with that status.
CREATE FUNCTION dash_offline(p_tenants text[], p_kinds text[], p_districts text[])
RETURNS TABLE (tenant_id text, device_id text, asset_id text, address text, kind text, district text,
               last_seen_at timestamptz, silent_h double precision, last_status text, status_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT d.tenant_id, d.device_id, d.asset_id, coalesce(a.name, a.asset_id), a.kind, a.district,
           d.last_seen_at, extract(epoch FROM now() - d.last_seen_at) / 3600,
           CASE s.online WHEN true THEN 'online' WHEN false THEN 'offline' || coalesce(': ' || s.reason, '')
                ELSE 'none received' END,
           s.device_time
    FROM devices d
    JOIN assets a ON a.tenant_id = d.tenant_id AND a.asset_id = d.asset_id
    LEFT JOIN LATERAL (
        SELECT ds.online, ds.reason, ds.device_time FROM device_status ds WHERE ds.device_key = d.device_key
        ORDER BY ds.device_time DESC, ds.online LIMIT 1
    ) s ON true
    WHERE d.status <> 'retired' AND d.tenant_id = ANY(p_tenants) AND d.tenant_id = ANY(lykta_visible_tenants())
      AND a.kind = ANY(p_kinds) AND coalesce(a.district, '') = ANY(p_districts)
      AND (d.last_seen_at IS NULL OR d.last_seen_at < now() - make_interval(secs => 4 * d.reporting_interval_s)
           OR s.online = false)
$$;

-- A municipality's own view of ingest: how late its devices' newest readings arrived, per kind of device.
CREATE FUNCTION dash_delivery(p_tenants text[])
RETURNS TABLE (tenant_id text, device_kind text, devices bigint, median_s double precision, p95_s double precision,
               max_s double precision, newest timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT d.tenant_id, d.device_kind, count(*),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY x.delay), percentile_cont(0.95) WITHIN GROUP (ORDER BY x.delay),
           max(x.delay), max(x.received_at)
    FROM devices d
    CROSS JOIN LATERAL (
        SELECT extract(epoch FROM l.received_at - l.device_time) AS delay, l.received_at FROM telemetry_latest l
        WHERE l.device_key = d.device_key ORDER BY l.device_time DESC LIMIT 1
    ) x
    WHERE d.status <> 'retired' AND d.tenant_id = ANY(p_tenants) AND d.tenant_id = ANY(lykta_visible_tenants())
    GROUP BY 1, 2
$$;

REVOKE EXECUTE ON FUNCTION dash_open_faults_of() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION dash_lamp_life(text[], text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION dash_offline(text[], text[], text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION dash_delivery(text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION lykta_counter_rise(bigint, smallint, timestamptz, timestamptz) FROM PUBLIC;
