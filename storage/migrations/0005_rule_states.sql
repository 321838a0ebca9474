-- What the rules engine carries from one cycle to the next, so that a cycle reads only the readings that
-- arrived since the previous one: per asset and rule, whether the fault condition holds and since when. Only
-- states that matter are kept: a condition that holds, or one that went away under a still-open finding.
CREATE TABLE rule_states (
    tenant_id text        NOT NULL,
    asset_id  text        NOT NULL,
    rule_id   text        NOT NULL,
    bad       boolean     NOT NULL,
    since     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, asset_id, rule_id),
    FOREIGN KEY (tenant_id, asset_id) REFERENCES assets (tenant_id, asset_id)
);
