-- Maintenance: cases opened from findings and citizen reports, work orders for crews, delivery through an
-- outbox, and the tokens of the HTTP API.

-- Crews (often contractors) that receive work orders: by maintenance area and skill.
CREATE TABLE crews (
    tenant_id      text        NOT NULL REFERENCES tenants (tenant_id),
    crew_id        text        NOT NULL CHECK (crew_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name           text        NOT NULL CHECK (name <> ''),
    email          text,
    webhook_url    text,
    webhook_secret text,
    areas          text[]      NOT NULL DEFAULT '{}',  -- maintenance areas served; empty: all of the tenant's
    skills         text[]      NOT NULL DEFAULT '{}',  -- e.g. lighting, electrical, drainage, waste, roads
    active         boolean     NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, crew_id)
);

CREATE TABLE cases (
    case_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        text        NOT NULL REFERENCES tenants (tenant_id),
    asset_id         text        NOT NULL,
    fault            text        NOT NULL,
    status           text        NOT NULL DEFAULT 'open'
                                 CHECK (status IN ('open', 'in_repair', 'verifying', 'resolved')),
    priority         text        NOT NULL,
    severity         text        NOT NULL CHECK (severity IN ('info', 'minor', 'major', 'critical')),
    source           text        NOT NULL CHECK (source IN ('telemetry', 'citizen', 'operator')),
    observed_at      timestamptz NOT NULL,  -- when the fault began (device time), or when it was reported
    opened_at        timestamptz NOT NULL,
    due_at           timestamptz NOT NULL,
    breached_at      timestamptz,           -- first seen past its due time while not resolved
    escalation       smallint    NOT NULL DEFAULT 0,
    fault_cleared_at timestamptz,           -- the telemetry says the fault went away
    repaired_at      timestamptz,           -- a crew finished its work order
    resolved_at      timestamptz,
    resolution       text CHECK (resolution IN ('cleared', 'verified', 'merged', 'closed')),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, asset_id) REFERENCES assets (tenant_id, asset_id),
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
-- Never two active cases for the same thing, whoever writes.
CREATE UNIQUE INDEX cases_one_active ON cases (tenant_id, asset_id, fault) WHERE status <> 'resolved';
CREATE INDEX cases_tenant_status ON cases (tenant_id, status, due_at);

-- The findings behind a case; for a correlated case, those of the assets below it.
CREATE TABLE case_findings (
    finding_id bigint      PRIMARY KEY REFERENCES findings (finding_id),
    case_id    bigint      NOT NULL REFERENCES cases (case_id),
    asset_id   text        NOT NULL,
    linked_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX case_findings_case ON case_findings (case_id);

-- Every change of a case: who, what, when.
CREATE TABLE case_events (
    event_id bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id  bigint      NOT NULL REFERENCES cases (case_id),
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text        NOT NULL,
    action   text        NOT NULL,
    detail   jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX case_events_case ON case_events (case_id, event_id);

CREATE TABLE work_orders (
    work_order_id bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id       bigint      NOT NULL REFERENCES cases (case_id),
    tenant_id     text        NOT NULL REFERENCES tenants (tenant_id),
    crew_id       text,
    skill         text        NOT NULL,
    status        text        NOT NULL DEFAULT 'new'
                              CHECK (status IN ('new', 'assigned', 'in_progress', 'done', 'rejected', 'cancelled')),
    title         text        NOT NULL,
    reject_reason text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    assigned_at   timestamptz,
    accepted_at   timestamptz,
    started_at    timestamptz,
    finished_at   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (tenant_id, crew_id) REFERENCES crews (tenant_id, crew_id),
    CHECK (status <> 'rejected' OR reject_reason IS NOT NULL)
);
CREATE UNIQUE INDEX work_orders_one_active ON work_orders (case_id) WHERE status IN ('new', 'assigned', 'in_progress');
CREATE INDEX work_orders_crew ON work_orders (tenant_id, crew_id, status);

CREATE TABLE work_order_notes (
    note_id       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_order_id bigint      NOT NULL REFERENCES work_orders (work_order_id),
    at            timestamptz NOT NULL DEFAULT now(),
    author        text        NOT NULL,
    note          text        NOT NULL CHECK (length(note) BETWEEN 1 AND 4000)
);

-- Messages to crews and external systems, written in the transaction that caused them and delivered after
-- commit; the idempotency key travels with the message, so a receiver can drop a repeat.
CREATE TABLE outbox (
    message_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       text        NOT NULL REFERENCES tenants (tenant_id),
    channel         text        NOT NULL CHECK (channel IN ('email', 'webhook')),
    target          text        NOT NULL,
    subject         text        NOT NULL,
    body            jsonb       NOT NULL,
    idempotency_key text        NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    failed_at       timestamptz,            -- gave up after the last attempt
    last_error      text
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;

-- Citizen reports (Open311 GeoReport v2 service requests). Only what handling needs is kept: no name or
-- phone; an e-mail address only if the reporter gives one, for status updates.
CREATE TABLE service_requests (
    request_id   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    text        NOT NULL REFERENCES tenants (tenant_id),
    service_code text        NOT NULL,
    description  text        CHECK (length(description) <= 4000),
    lat          double precision CHECK (lat BETWEEN -90 AND 90),
    lon          double precision CHECK (lon BETWEEN -180 AND 180),
    address      text        CHECK (length(address) <= 500),
    email        text        CHECK (length(email) <= 254),
    asset_id     text,
    case_id      bigint      REFERENCES cases (case_id),
    requested_at timestamptz NOT NULL DEFAULT now(),
    CHECK (lat IS NOT NULL AND lon IS NOT NULL OR address IS NOT NULL)
);
CREATE INDEX service_requests_case ON service_requests (case_id);

-- API tokens (only their SHA-256 is stored), each scoped to one tenant: an operator, or one crew.
CREATE TABLE api_tokens (
    token_hash text        PRIMARY KEY,
    tenant_id  text        NOT NULL REFERENCES tenants (tenant_id),
    role       text        NOT NULL CHECK (role IN ('operator', 'crew')),
    crew_id    text,
    label      text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    FOREIGN KEY (tenant_id, crew_id) REFERENCES crews (tenant_id, crew_id),
    CHECK ((role = 'crew') = (crew_id IS NOT NULL))
);

-- Findings the case handling has not looked at yet: filled by the rules engine's writes, emptied by the case
-- handling in the transaction that acts on them (a queue: commit order does not matter, nothing is skipped).
CREATE TABLE finding_queue (
    finding_id bigint PRIMARY KEY REFERENCES findings (finding_id) ON DELETE CASCADE
);

CREATE FUNCTION queue_finding() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO finding_queue (finding_id) VALUES (NEW.finding_id) ON CONFLICT DO NOTHING;
    PERFORM pg_notify('lykta_findings', NEW.tenant_id);
    RETURN NEW;
END $$;

CREATE TRIGGER findings_to_cases AFTER INSERT OR UPDATE OF status ON findings
    FOR EACH ROW EXECUTE FUNCTION queue_finding();
