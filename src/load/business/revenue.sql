-- The business vault refresh, 5/9: the revenue periods (day, week, month) of the
-- touched orders' order dates, before and after the batch. Keyed: each period is an
-- index range of business_vault.order_summary.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

INSERT INTO business_vault.revenue_period AS r
    (grain, period_start, orders_placed, orders, customers, units, revenue,
     orders_cancelled_or_returned, revenue_lost)
SELECT p.grain, p.period_start, a.orders_placed, a.orders, a.customers, a.units, a.revenue,
       a.orders_cancelled_or_returned, a.revenue_lost
  FROM (SELECT DISTINCT g.grain, date_trunc(g.grain, d.order_date::timestamp)::date AS period_start
          FROM pg_temp.bv_order_sides d
         CROSS JOIN (VALUES ('day'), ('week'), ('month')) AS g(grain)) p
 CROSS JOIN LATERAL (
       SELECT count(*) AS orders_placed,
              count(*) FILTER (WHERE o.is_counted) AS orders,
              count(DISTINCT o.hk_customer) FILTER (WHERE o.is_counted) AS customers,
              coalesce(sum(o.units) FILTER (WHERE o.is_counted), 0) AS units,
              coalesce(sum(o.amount) FILTER (WHERE o.is_counted), 0.00) AS revenue,
              count(*) FILTER (WHERE NOT o.is_counted) AS orders_cancelled_or_returned,
              coalesce(sum(o.amount) FILTER (WHERE NOT o.is_counted), 0.00) AS revenue_lost
         FROM business_vault.order_summary o
        WHERE o.order_date >= p.period_start
          AND o.order_date < (p.period_start + ('1 ' || p.grain)::interval)::date) a
 WHERE a.orders_placed > 0
ON CONFLICT (grain, period_start) DO UPDATE SET
    orders_placed = excluded.orders_placed, orders = excluded.orders,
    customers = excluded.customers, units = excluded.units, revenue = excluded.revenue,
    orders_cancelled_or_returned = excluded.orders_cancelled_or_returned,
    revenue_lost = excluded.revenue_lost
WHERE (r.orders_placed, r.orders, r.customers, r.units, r.revenue,
       r.orders_cancelled_or_returned, r.revenue_lost)
      IS DISTINCT FROM
      (excluded.orders_placed, excluded.orders, excluded.customers, excluded.units,
       excluded.revenue, excluded.orders_cancelled_or_returned, excluded.revenue_lost);

-- a period whose last order moved to another date (a corrected order time)
DELETE FROM business_vault.revenue_period r
 USING (SELECT DISTINCT g.grain, date_trunc(g.grain, d.order_date::timestamp)::date AS period_start
          FROM pg_temp.bv_order_sides d
         CROSS JOIN (VALUES ('day'), ('week'), ('month')) AS g(grain)) p
 WHERE r.grain = p.grain AND r.period_start = p.period_start
   AND NOT EXISTS (SELECT FROM business_vault.order_summary o
                    WHERE o.order_date >= p.period_start
                      AND o.order_date < (p.period_start + ('1 ' || p.grain)::interval)::date);
