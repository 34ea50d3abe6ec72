-- (a) point lookup by key through the tenancy.enable policies (context set by PGOPTIONS).
\set id :lo + random(0, :n - 1)
SELECT id, entity_id, metric_id, period, value FROM bench.data_points_rls WHERE id = :id;
