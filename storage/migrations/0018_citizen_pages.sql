-- Open311 GeoReport v2 in full: a report keeps the media_url its client sent and the values of its service's
-- attributes (attribute[code]=value), checked against the service definition.
ALTER TABLE service_requests
    ADD COLUMN media_url  text CHECK (length(media_url) <= 2000),
    ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}'::jsonb;

-- Photos a citizen takes with the report page (at most three a report), decoded and encoded again as JPEG so
-- that no location or camera metadata is kept; crews and operators see them with the case.
CREATE TABLE report_photos (
    photo_id   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  text        NOT NULL REFERENCES tenants (tenant_id),
    request_id bigint      NOT NULL REFERENCES service_requests (request_id),
    width      integer     NOT NULL CHECK (width BETWEEN 1 AND 4096),
    height     integer     NOT NULL CHECK (height BETWEEN 1 AND 4096),
    jpeg       bytea       NOT NULL CHECK (length(jpeg) <= 4194304),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX report_photos_request ON report_photos (request_id);
ALTER TABLE report_photos ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON report_photos USING (tenant_id = ANY ((SELECT lykta_visible_tenants())::text[]));

-- Open311 application keys (api_key): a token of role app may post reports for its tenant, nothing else.
-- A crew's tokens are personal: the label names the person; what they do is recorded under that name.
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check CHECK (role IN ('operator', 'crew', 'app'));

-- A crew's taps on the phone carry a key the phone chose: a tap taken offline and sent again when the phone is
-- back (perhaps twice) is applied once, and answered with what happened the first time.
CREATE TABLE crew_actions (
    tenant_id     text        NOT NULL REFERENCES tenants (tenant_id),
    action_key    text        NOT NULL CHECK (action_key ~ '^[A-Za-z0-9_-]{8,64}$'),
    work_order_id bigint      NOT NULL REFERENCES work_orders (work_order_id),
    action        text        NOT NULL,
    outcome       text        NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, action_key)
);
ALTER TABLE crew_actions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON crew_actions USING (tenant_id = ANY ((SELECT lykta_visible_tenants())::text[]));
