-- Core schema: tenants, the asset tree, devices, the metric catalogue, telemetry, dead letters.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE storage_settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE tenants (
    tenant_id  text PRIMARY KEY CHECK (tenant_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name       text NOT NULL CHECK (name <> ''),
    language   text NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'sv', 'pt')),
    timezone   text NOT NULL DEFAULT 'UTC',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE asset_kinds (
    kind        text PRIMARY KEY,
    parent_kinds text[] NOT NULL,
    device_kind text,
    description text NOT NULL
);

INSERT INTO asset_kinds (kind, parent_kinds, device_kind, description) VALUES
    ('cabinet', '{}', 'cabinet_meter', 'lighting cabinet feeding one or more circuits'),
    ('circuit', '{cabinet}', NULL, 'lighting circuit (group) of a cabinet'),
    ('streetlight', '{circuit,cabinet}', 'streetlight_controller', 'luminaire on a pole'),
    ('road_weather_station', '{}', 'road_weather_station', 'road-surface and air weather station'),
    ('stormwater_well', '{}', 'well_level_sensor', 'stormwater well with a level sensor'),
    ('pump_station', '{cabinet}', 'pump_controller', 'stormwater or sewage pump station'),
    ('waste_bin', '{}', 'bin_fill_sensor', 'public waste bin with a fill sensor');

CREATE TABLE assets (
    tenant_id        text NOT NULL REFERENCES tenants (tenant_id),
    asset_id         text NOT NULL CHECK (asset_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
    kind             text NOT NULL REFERENCES asset_kinds (kind),
    parent_id        text,
    name             text,
    district         text,
    maintenance_area text,
    lat              double precision CHECK (lat BETWEEN -90 AND 90),
    lon              double precision CHECK (lon BETWEEN -180 AND 180),
    rated_power_w    real CHECK (rated_power_w > 0),
    lamp_type        text,
    install_date     date,
    criticality      smallint NOT NULL DEFAULT 2 CHECK (criticality BETWEEN 1 AND 5),
    properties       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, asset_id),
    FOREIGN KEY (tenant_id, parent_id) REFERENCES assets (tenant_id, asset_id) DEFERRABLE INITIALLY DEFERRED,
    CHECK (parent_id IS DISTINCT FROM asset_id)
);
CREATE INDEX assets_parent ON assets (tenant_id, parent_id);
CREATE INDEX assets_kind ON assets (tenant_id, kind);

CREATE TABLE devices (
    device_key           bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    tenant_id            text NOT NULL REFERENCES tenants (tenant_id),
    device_id            text NOT NULL CHECK (device_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
    device_kind          text NOT NULL CHECK (device_kind IN (
                             'streetlight_controller', 'cabinet_meter', 'road_weather_station',
                             'well_level_sensor', 'pump_controller', 'bin_fill_sensor')),
    asset_id             text,
    status               text NOT NULL DEFAULT 'provisioned'
                             CHECK (status IN ('provisioned', 'unprovisioned', 'retired')),
    reporting_interval_s integer NOT NULL DEFAULT 600 CHECK (reporting_interval_s > 0),
    last_seen_at         timestamptz,
    online               boolean,
    online_changed_at    timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, device_id),
    FOREIGN KEY (tenant_id, asset_id) REFERENCES assets (tenant_id, asset_id)
);
CREATE UNIQUE INDEX devices_one_per_asset ON devices (tenant_id, asset_id) WHERE status <> 'retired';

CREATE TABLE metrics (
    metric_id   smallint PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_]*$'),
    unit        text NOT NULL,
    senml_unit  text,
    kind        text NOT NULL CHECK (kind IN ('gauge', 'counter', 'state')),
    min_value   double precision NOT NULL,
    max_value   double precision NOT NULL,
    description text NOT NULL,
    CHECK (min_value < max_value)
);

INSERT INTO metrics (metric_id, name, unit, senml_unit, kind, min_value, max_value, description) VALUES
    (1,  'power_w',          'W',     'W',   'gauge',   0,       250000,   'active power'),
    (2,  'voltage_v',        'V',     'V',   'gauge',   0,       300,      'supply voltage (single phase)'),
    (3,  'current_a',        'A',     'A',   'gauge',   0,       400,      'current'),
    (4,  'power_factor',     '1',     '/',   'gauge',   0,       1,        'power factor'),
    (5,  'dim_level_pct',    '%',     '%',   'gauge',   0,       100,      'commanded dim level'),
    (6,  'lamp_on',          'bool',  NULL,  'state',   0,       1,        'lamp switched on (1) or off (0)'),
    (7,  'energy_kwh',       'kWh',   'kWh', 'counter', 0,       1e9,      'cumulative active energy'),
    (8,  'burning_hours_h',  'h',     'h',   'counter', 0,       1e6,      'cumulative burning hours'),
    (9,  'switch_count',     'count', NULL,  'counter', 0,       1e9,      'cumulative switch-on count'),
    (10, 'voltage_l1_v',     'V',     'V',   'gauge',   0,       300,      'phase L1 voltage'),
    (11, 'voltage_l2_v',     'V',     'V',   'gauge',   0,       300,      'phase L2 voltage'),
    (12, 'voltage_l3_v',     'V',     'V',   'gauge',   0,       300,      'phase L3 voltage'),
    (13, 'door_open',        'bool',  NULL,  'state',   0,       1,        'cabinet door open (1)'),
    (14, 'supply_ok',        'bool',  NULL,  'state',   0,       1,        'mains supply present (1)'),
    (15, 'road_temp_c',      'Cel',   'Cel', 'gauge',   -60,     80,       'road-surface temperature'),
    (16, 'air_temp_c',       'Cel',   'Cel', 'gauge',   -60,     60,       'air temperature'),
    (17, 'humidity_pct',     '%RH',   '%RH', 'gauge',   0,       100,      'relative humidity'),
    (18, 'dew_point_c',      'Cel',   'Cel', 'gauge',   -80,     60,       'dew point'),
    (19, 'water_level_m',    'm',     'm',   'gauge',   0,       20,       'water level above well bottom'),
    (20, 'pump_running',     'bool',  NULL,  'state',   0,       1,        'pump running (1)'),
    (21, 'motor_current_a',  'A',     'A',   'gauge',   0,       500,      'pump motor current'),
    (22, 'pump_fault',       'bool',  NULL,  'state',   0,       1,        'pump fault flag (1)'),
    (23, 'fill_pct',         '%',     '%',   'gauge',   0,       100,      'waste-bin fill level'),
    (24, 'battery_v',        'V',     'V',   'gauge',   0,       60,       'device battery voltage'),
    (25, 'rssi_dbm',         'dBm',   'dBm', 'gauge',   -150,    0,        'radio signal strength'),
    (26, 'tilt_deg',         'deg',   'deg', 'gauge',   0,       180,      'pole tilt from vertical');

CREATE TABLE telemetry (
    device_time timestamptz      NOT NULL,
    device_key  bigint           NOT NULL,
    metric_id   smallint         NOT NULL,
    value       double precision NOT NULL,
    received_at timestamptz      NOT NULL
);
-- No default B-tree on device_time: it would cost a quarter of the insert time. Time ranges over all devices
-- use chunk exclusion and the BRIN index; per-device history uses the identity index.
SELECT create_hypertable('telemetry', 'device_time', chunk_time_interval => INTERVAL '1 day',
                         create_default_indexes => false);
-- Identical readings (same device, metric and device time) are stored once.
CREATE UNIQUE INDEX telemetry_identity ON telemetry (device_key, metric_id, device_time DESC);
CREATE INDEX telemetry_time ON telemetry USING brin (device_time);

CREATE TABLE telemetry_latest (
    device_key  bigint           NOT NULL,
    metric_id   smallint         NOT NULL REFERENCES metrics (metric_id),
    device_time timestamptz      NOT NULL,
    value       double precision NOT NULL,
    received_at timestamptz      NOT NULL,
    PRIMARY KEY (device_key, metric_id)
);

CREATE TABLE device_status (
    device_key  bigint      NOT NULL,
    device_time timestamptz NOT NULL,
    online      boolean     NOT NULL,
    reason      text,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (device_key, device_time, online)
);

CREATE TABLE device_events (
    device_key  bigint      NOT NULL,
    device_time timestamptz NOT NULL,
    event       text        NOT NULL CHECK (event ~ '^[a-z][a-z0-9_]*$'),
    value       double precision,
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (device_key, event, device_time)
);

CREATE TABLE dead_letters (
    dead_letter_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at    timestamptz NOT NULL DEFAULT now(),
    topic          text        NOT NULL,
    payload        bytea       NOT NULL,
    reason         text        NOT NULL CHECK (reason ~ '^[a-z][a-z0-9_]*$'),
    detail         text,
    tenant_id      text,
    device_id      text
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);
CREATE INDEX dead_letters_reason ON dead_letters (reason, received_at);
