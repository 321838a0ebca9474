-- Rollups with the TimescaleDB Apache edition: plain hypertables that lykta maintains
-- incrementally (`lykta db maintain`). The write path records every hour it touches in
-- rollup_pending; maintenance recomputes exactly those hours and their days.
CREATE TABLE telemetry_hourly (
    bucket     timestamptz      NOT NULL,
    device_key bigint           NOT NULL,
    metric_id  smallint         NOT NULL,
    n          bigint           NOT NULL,
    value_avg  double precision NOT NULL,
    value_min  double precision NOT NULL,
    value_max  double precision NOT NULL,
    value_sum  double precision NOT NULL,
    PRIMARY KEY (device_key, metric_id, bucket)
);
SELECT create_hypertable('telemetry_hourly', 'bucket', chunk_time_interval => INTERVAL '30 days');

CREATE TABLE telemetry_daily (
    bucket     timestamptz      NOT NULL,
    device_key bigint           NOT NULL,
    metric_id  smallint         NOT NULL,
    n          bigint           NOT NULL,
    value_avg  double precision NOT NULL,
    value_min  double precision NOT NULL,
    value_max  double precision NOT NULL,
    value_sum  double precision NOT NULL,
    PRIMARY KEY (device_key, metric_id, bucket)
);
SELECT create_hypertable('telemetry_daily', 'bucket', chunk_time_interval => INTERVAL '365 days');

CREATE TABLE rollup_pending (
    bucket timestamptz PRIMARY KEY
);
