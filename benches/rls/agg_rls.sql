-- (a) one tenant's aggregate: per-metric totals over all its data points (2,000 rows), through the policies.
SELECT metric_id, count(*), sum(value), avg(value), min(period), max(period)
  FROM bench.data_points_rls GROUP BY metric_id;
