-- What a Grafana reader may not do goes beyond the grants of storage/grafana.py: a reader role must not create
-- anything, not even temporarily. ensure_reader revokes TEMPORARY on the database from PUBLIC when it makes a
-- reader (a temporary function that is cheap, IMMUTABLE and chatty, placed in the WHERE of a query on a view that
-- runs with its owner's rights, was evaluated on rows the view's own filter would have removed: another
-- municipality's assets and districts). Here, the view itself: a security barrier, so that even a leaky function
-- a reader could call is applied only after the view's municipality filter.
ALTER VIEW dash_energy_daily SET (security_barrier = true);
