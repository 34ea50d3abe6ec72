-- (a) single-row insert through the policies: tenant_id comes from the column
-- default tenancy.current_tenant() and is checked by the INSERT policy.
\set mid :mlo + random(0, 9)
\set p random(0, 24)
\set y 2023 + :p / 12
\set mo 1 + :p % 12
\set v random(0, 9999999)
INSERT INTO bench.data_points_rls (entity_id, metric_id, period, value)
VALUES (:eid, :mid, make_date(:y, :mo, 1), :v / 100.0);
