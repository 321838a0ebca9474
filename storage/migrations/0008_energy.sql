-- Energy per municipality, district and day for the energy panels: a month of a whole city is a few hundred
-- rows here instead of 600,000 rows of the daily rollup joined to assets.
--
-- lykta db maintain recomputes a day here whenever the write path touched it (rollup_pending), on both storage
-- paths: on the Apache path right after it recomputed the day's rollups, on the TSL path after refreshing the
-- day in both continuous aggregates. A lamp counts in the district it belongs to when its day is recomputed.

-- The write path marks the hours it touches on the TSL path as well (the Apache path has had this table since
-- 0002).
CREATE TABLE IF NOT EXISTS rollup_pending (
    bucket timestamptz PRIMARY KEY
);

CREATE TABLE energy_daily (
    day            timestamptz NOT NULL,
    tenant_id      text NOT NULL REFERENCES tenants (tenant_id),
    district       text NOT NULL,  -- '' for lamps without a district
    lamps          integer NOT NULL,
    kwh            double precision,
    full_power_kwh double precision,
    PRIMARY KEY (tenant_id, day, district)
);
CREATE INDEX energy_daily_day ON energy_daily (day);

-- Recompute one UTC day from the daily rollup; returns the number of (municipality, district) rows written.
CREATE FUNCTION refresh_energy_day(p_day timestamptz) RETURNS bigint
LANGUAGE sql AS $$
    DELETE FROM energy_daily WHERE day = p_day;
    WITH written AS (
        INSERT INTO energy_daily (day, tenant_id, district, lamps, kwh, full_power_kwh)
        SELECT day, tenant_id, coalesce(district, ''), count(*), sum(kwh), sum(full_power_kwh)
        FROM dash_energy_daily
        WHERE day = p_day
        GROUP BY 1, 2, 3
        RETURNING 1
    )
    SELECT count(*) FROM written;
$$;
