-- Ingest health: counters written periodically by every ingest process.
CREATE TABLE ingest_stats (
    at                 timestamptz      NOT NULL,
    instance           text             NOT NULL,
    interval_s         double precision NOT NULL CHECK (interval_s > 0),
    received           bigint           NOT NULL,
    stored             bigint           NOT NULL,
    duplicates         bigint           NOT NULL,
    rejected           bigint           NOT NULL,
    rejected_by_reason jsonb            NOT NULL DEFAULT '{}'::jsonb,
    batches            bigint           NOT NULL,
    commit_seconds     double precision NOT NULL,
    backlog            integer          NOT NULL,
    lag_seconds        double precision,
    PRIMARY KEY (instance, at)
);
CREATE INDEX ingest_stats_at ON ingest_stats (at);
