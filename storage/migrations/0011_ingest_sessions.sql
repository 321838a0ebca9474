-- The broker sessions of ingest: one row per client id, with the group it belongs to (the configured client id,
-- from which the workers' ids are made) and the partition (k/N) it stores. When the number of workers changes,
-- the processes of the new layout subscribe first; then the sessions of the old layout are drained (every
-- message stored, whatever its partition) and removed from the broker, so that nothing waiting in them is lost.
CREATE TABLE ingest_sessions (
    client_id  text PRIMARY KEY,
    base       text NOT NULL,
    partition  text NOT NULL CHECK (partition ~ '^[0-9]+/[0-9]+$'),
    seen_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ingest_sessions_base ON ingest_sessions (base);
