-- (b) one tenant's aggregate: per-metric totals over all its data points (2,000 rows), tenant given explicitly.
SELECT metric_id, count(*), sum(value), avg(value), min(period), max(period)
  FROM bench.data_points_plain WHERE tenant_id = :tid GROUP BY metric_id;
