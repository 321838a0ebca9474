-- Findings of the rules engine, and how far each rule set has been evaluated.
CREATE TABLE findings (
    finding_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   text        NOT NULL REFERENCES tenants (tenant_id),
    asset_id    text        NOT NULL,
    device_id   text,
    rule_id     text        NOT NULL,
    fault       text        NOT NULL,
    severity    text        NOT NULL CHECK (severity IN ('info', 'minor', 'major', 'critical')),
    status      text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'cleared')),
    observed_at timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    cleared_at  timestamptz,
    evidence    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    detected_at timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, asset_id) REFERENCES assets (tenant_id, asset_id),
    CHECK (cleared_at IS NULL OR cleared_at >= observed_at)
);
-- A fault that persists is one finding: at most one open finding per asset and rule.
CREATE UNIQUE INDEX findings_one_open ON findings (tenant_id, asset_id, rule_id) WHERE status = 'open';
CREATE INDEX findings_asset ON findings (tenant_id, asset_id, observed_at DESC);
CREATE INDEX findings_status ON findings (status, observed_at DESC);

CREATE TABLE rules_progress (
    shard         text        PRIMARY KEY,
    evaluated_to  timestamptz NOT NULL,
    received_upto timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The rules engine finds late data (received after it last looked, with older device times) through this.
CREATE INDEX telemetry_received ON telemetry USING brin (received_at);
