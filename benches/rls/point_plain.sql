-- (b) point lookup by key on the table without RLS, tenant given explicitly.
\set id :lo + random(0, :n - 1)
SELECT id, entity_id, metric_id, period, value FROM bench.data_points_plain WHERE id = :id AND tenant_id = :tid;
