-- The operator console: people sign in with their own account (e-mail and a password hashed with scrypt); a
-- person may work for several municipalities (an association's staff) and switches between them. Sessions
-- are kept by the SHA-256 of their cookie, with an expiry and a CSRF token for the forms.
CREATE TABLE operators (
    operator_id   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         text        NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 254),
    name          text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz
);
CREATE UNIQUE INDEX operators_email ON operators (lower(email));

CREATE TABLE operator_tenants (
    operator_id bigint NOT NULL REFERENCES operators (operator_id) ON DELETE CASCADE,
    tenant_id   text   NOT NULL REFERENCES tenants (tenant_id),
    PRIMARY KEY (operator_id, tenant_id)
);
ALTER TABLE operator_tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON operator_tenants
    USING (tenant_id = ANY ((SELECT lykta_visible_tenants())::text[]));

CREATE TABLE console_sessions (
    session_hash text        PRIMARY KEY,
    operator_id  bigint      NOT NULL REFERENCES operators (operator_id) ON DELETE CASCADE,
    csrf         text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    seen_at      timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz
);
CREATE INDEX console_sessions_operator ON console_sessions (operator_id);

-- Failed sign-ins, by e-mail digest and network address digest, for slowing down guessing.
CREATE TABLE console_failures (
    key text        NOT NULL,
    at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_failures_key ON console_failures (key, at);

-- The console lists cases with their crew and place, filtered and paged, for municipalities of 10,000 cases.
CREATE INDEX IF NOT EXISTS work_orders_case ON work_orders (case_id, work_order_id);
CREATE INDEX cases_tenant_due ON cases (tenant_id, due_at, case_id);
CREATE INDEX outbox_failing ON outbox (tenant_id) WHERE sent_at IS NULL AND (failed_at IS NOT NULL OR attempts >= 3);

-- Replication, for the installation's ingestion-health dashboard: on the primary, each replica with its
-- synchronous state and how far behind it is; read on a replica (Grafana may read one), how far behind that
-- replica is. The installation's reader only.
CREATE FUNCTION dash_replication()
RETURNS TABLE (member text, role text, sync_state text, lag_s double precision, lag_bytes double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT coalesce(r.application_name, host(r.client_addr)), 'replica', r.sync_state,
           extract(epoch FROM coalesce(r.replay_lag, interval '0'))::float8,
           pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::float8
    FROM pg_stat_replication r
    WHERE NOT pg_is_in_recovery() AND (SELECT lykta_sees_installation())
    UNION ALL
    SELECT 'this replica (read here)', 'replica', 'read',
           coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)::float8,
           coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::float8
    WHERE pg_is_in_recovery() AND (SELECT lykta_sees_installation())
$$;
REVOKE EXECUTE ON FUNCTION dash_replication() FROM PUBLIC;
