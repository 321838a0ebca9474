-- What a Grafana reader role may not do, beyond the grants of storage/grafana.py: create anything. PostgreSQL
-- lets every role (PUBLIC) create temporary objects, and a temporary function that is cheap, IMMUTABLE and
-- chatty (RAISE NOTICE), placed in the WHERE of a query on a view that runs with its owner's rights, was
-- evaluated on rows the view's own filter would have removed: another municipality's assets and districts.
-- lykta's services connect as the owner and need no temporary objects of PUBLIC.
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END
$$;

-- And even a function a reader could call is applied only after the view's municipality filter.
ALTER VIEW dash_energy_daily SET (security_barrier = true);
