-- (b) single-row insert into the table without RLS, tenant given explicitly.
\set mid :mlo + random(0, 9)
\set p random(0, 24)
\set y 2023 + :p / 12
\set mo 1 + :p % 12
\set v random(0, 9999999)
INSERT INTO bench.data_points_plain (tenant_id, entity_id, metric_id, period, value)
VALUES (:tid, :eid, :mid, make_date(:y, :mo, 1), :v / 100.0);
