-- Who may talk to the broker: one account per device, a gateway account per municipality (a field gateway, or
-- the simulators, publishing for all its devices) and the ingest service's account. Only a hash of each
-- password is stored, in the format of Mosquitto's password file (PBKDF2-SHA512, "$7$"), which lykta writes
-- from this table together with the ACL that ties each account to its topics.
CREATE TABLE mqtt_accounts (
    username      text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$'),
    role          text NOT NULL CHECK (role IN ('device', 'gateway', 'ingest')),
    tenant_id     text REFERENCES tenants (tenant_id),
    device_key    bigint UNIQUE REFERENCES devices (device_key),
    password_hash text NOT NULL CHECK (password_hash LIKE '$7$%'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    rotated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'device') = (device_key IS NOT NULL)),
    CHECK (role = 'ingest' OR tenant_id IS NOT NULL)
);
