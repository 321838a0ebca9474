-- Ingest's counters (every municipality's message counts and rejection reasons) are the installation's business:
-- of the Grafana readers only the installation's role (lykta_grafana) sees them; a municipality's reader sees no
-- row. The view over them reads with the caller's rights, so that the policy applies through it too.
ALTER TABLE ingest_stats ENABLE ROW LEVEL SECURITY;
CREATE POLICY installation_only ON ingest_stats USING ((SELECT lykta_sees_installation()));
ALTER VIEW dash_ingest SET (security_invoker = true);
