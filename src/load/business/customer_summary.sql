-- The business vault refresh, 3/9: the order figures of the touched customers. Keyed.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

-- Customers: counts and money over counted orders, and the favourite category: the
-- customer's category with the most units, then money, then the first by name
-- (customer_categories.sql keeps the totals).
INSERT INTO business_vault.customer_order_summary AS c
    (hk_customer, orders_placed, orders_count, orders_cancelled, orders_returned, units,
     total_spent, first_order_at, last_order_at, first_order_date, last_order_date,
     favourite_category)
SELECT t.hk_customer, a.orders_placed, a.orders_count, a.orders_cancelled, a.orders_returned,
       a.units, a.total_spent, a.first_order_at, a.last_order_at,
       (a.first_order_at AT TIME ZONE 'UTC')::date, (a.last_order_at AT TIME ZONE 'UTC')::date,
       f.category
  FROM pg_temp.bv_customers t
 CROSS JOIN LATERAL (
       SELECT count(*) AS orders_placed,
              count(*) FILTER (WHERE o.is_counted) AS orders_count,
              count(*) FILTER (WHERE o.status = 'cancelled') AS orders_cancelled,
              count(*) FILTER (WHERE o.status = 'returned') AS orders_returned,
              coalesce(sum(o.units) FILTER (WHERE o.is_counted), 0) AS units,
              coalesce(sum(o.amount) FILTER (WHERE o.is_counted), 0) AS total_spent,
              min(o.ordered_at) FILTER (WHERE o.is_counted) AS first_order_at,
              max(o.ordered_at) FILTER (WHERE o.is_counted) AS last_order_at
         FROM business_vault.order_summary o
        WHERE o.hk_customer = t.hk_customer) a
  LEFT JOIN LATERAL (
       SELECT x.category FROM business_vault.customer_category x
        WHERE x.hk_customer = t.hk_customer
        ORDER BY business_vault.known_total(x.units, x.units_known) DESC NULLS LAST,
                 business_vault.known_total(x.revenue, x.revenue_known) DESC NULLS LAST,
                 x.category
        LIMIT 1) f ON true
 WHERE a.orders_placed > 0
ON CONFLICT (hk_customer) DO UPDATE SET
    orders_placed = excluded.orders_placed, orders_count = excluded.orders_count,
    orders_cancelled = excluded.orders_cancelled, orders_returned = excluded.orders_returned,
    units = excluded.units, total_spent = excluded.total_spent,
    first_order_at = excluded.first_order_at, last_order_at = excluded.last_order_at,
    first_order_date = excluded.first_order_date, last_order_date = excluded.last_order_date,
    favourite_category = excluded.favourite_category
WHERE (c.orders_placed, c.orders_count, c.orders_cancelled, c.orders_returned, c.units,
       c.total_spent, c.first_order_at, c.last_order_at, c.favourite_category)
      IS DISTINCT FROM
      (excluded.orders_placed, excluded.orders_count, excluded.orders_cancelled,
       excluded.orders_returned, excluded.units, excluded.total_spent, excluded.first_order_at,
       excluded.last_order_at, excluded.favourite_category);

