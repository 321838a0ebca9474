-- Rollups, compression and retention with the TimescaleDB Community (TSL) edition:
-- continuous aggregates refreshed by TimescaleDB's own policies.
ALTER TABLE telemetry SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_key, metric_id',
    timescaledb.compress_orderby = 'device_time DESC'
);
SELECT add_compression_policy('telemetry', compress_after => INTERVAL '7 days');

CREATE MATERIALIZED VIEW telemetry_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', device_time) AS bucket,
       device_key,
       metric_id,
       count(*)   AS n,
       avg(value) AS value_avg,
       min(value) AS value_min,
       max(value) AS value_max,
       sum(value) AS value_sum
FROM telemetry
GROUP BY 1, 2, 3
WITH NO DATA;

SELECT add_continuous_aggregate_policy('telemetry_hourly',
    start_offset => INTERVAL '40 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '15 minutes');

CREATE MATERIALIZED VIEW telemetry_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket,
       device_key,
       metric_id,
       sum(n)::bigint             AS n,
       sum(value_sum) / sum(n)    AS value_avg,
       min(value_min)             AS value_min,
       max(value_max)             AS value_max,
       sum(value_sum)             AS value_sum
FROM telemetry_hourly
GROUP BY 1, 2, 3
WITH NO DATA;

SELECT add_continuous_aggregate_policy('telemetry_daily',
    start_offset => INTERVAL '45 days', end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 hour');
