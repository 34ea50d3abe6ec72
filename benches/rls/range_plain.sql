-- (b) one tenant's range scan: a quarter of data points (3 months, 240 rows), tenant given explicitly.
\set p random(0, 22)
\set y1 2023 + :p / 12
\set m1 1 + :p % 12
\set y2 2023 + (:p + 2) / 12
\set m2 1 + (:p + 2) % 12
SELECT id, entity_id, metric_id, period, value FROM bench.data_points_plain
 WHERE tenant_id = :tid AND period BETWEEN make_date(:y1, :m1, 1) AND make_date(:y2, :m2, 1) ORDER BY period;
