-- Citizen reports wait for an operator's triage unless the municipality's policy dispatches them directly;
-- reports with no asset near (an address only, or far from any asset) always do. An operator attaches a
-- report to a case or an asset, or dismisses it with a note its reporter reads. Rate limits count a reporter's
-- reports (by e-mail) and a network address's: both kept only as SHA-256 digests.
ALTER TABLE service_requests
    ADD COLUMN triage       text NOT NULL DEFAULT 'attached' CHECK (triage IN ('inbox', 'attached', 'dismissed')),
    ADD COLUMN triage_note  text CHECK (length(triage_note) <= 4000),
    ADD COLUMN triaged_at   timestamptz,
    ADD COLUMN triaged_by   text,
    ADD COLUMN reporter_key text,
    ADD COLUMN client_key   text;
-- Reports stored before with no case were lost to every list: they wait in the inbox now.
UPDATE service_requests SET triage = 'inbox' WHERE case_id IS NULL;
CREATE INDEX service_requests_inbox ON service_requests (tenant_id, requested_at) WHERE triage = 'inbox';
CREATE INDEX service_requests_reporter ON service_requests (reporter_key, requested_at);
CREATE INDEX service_requests_client ON service_requests (client_key, requested_at);
