-- The business vault refresh, 5/9 when built from the whole raw vault: the revenue
-- periods. Set-based.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

-- The periods of revenue.sql, for every order at once: one grouping of the order
-- summary per grain instead of an index range per period (every order's day, week and
-- month is staged in a build), and nothing to delete (the business vault is empty).
INSERT INTO business_vault.revenue_period
    (grain, period_start, orders_placed, orders, customers, units, revenue,
     orders_cancelled_or_returned, revenue_lost)
SELECT g.grain, date_trunc(g.grain, o.order_date::timestamp)::date, count(*),
       count(*) FILTER (WHERE o.is_counted),
       count(DISTINCT o.hk_customer) FILTER (WHERE o.is_counted),
       coalesce(sum(o.units) FILTER (WHERE o.is_counted), 0),
       coalesce(sum(o.amount) FILTER (WHERE o.is_counted), 0.00),
       count(*) FILTER (WHERE NOT o.is_counted),
       coalesce(sum(o.amount) FILTER (WHERE NOT o.is_counted), 0.00)
  FROM business_vault.order_summary o
 CROSS JOIN (VALUES ('day'), ('week'), ('month')) AS g(grain)
 GROUP BY 1, 2;
