-- The business vault refresh, 3/9 when built from the whole raw vault: the order
-- figures of every customer with an order. Set-based.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

-- customer_summary.sql for every customer at once (the business vault is empty): the
-- same rows, by grouping the order summary once instead of reading each customer's
-- orders by index, and each customer's favourite category from their category totals
-- (customer_categories_build.sql).
INSERT INTO business_vault.customer_order_summary
    (hk_customer, orders_placed, orders_count, orders_cancelled, orders_returned, units,
     total_spent, first_order_at, last_order_at, first_order_date, last_order_date,
     favourite_category)
SELECT a.hk_customer, a.orders_placed, a.orders_count, a.orders_cancelled, a.orders_returned,
       a.units, a.total_spent, a.first_order_at, a.last_order_at,
       (a.first_order_at AT TIME ZONE 'UTC')::date, (a.last_order_at AT TIME ZONE 'UTC')::date,
       f.category
  FROM (SELECT o.hk_customer,
               count(*) AS orders_placed,
               count(*) FILTER (WHERE o.is_counted) AS orders_count,
               count(*) FILTER (WHERE o.status = 'cancelled') AS orders_cancelled,
               count(*) FILTER (WHERE o.status = 'returned') AS orders_returned,
               coalesce(sum(o.units) FILTER (WHERE o.is_counted), 0) AS units,
               coalesce(sum(o.amount) FILTER (WHERE o.is_counted), 0) AS total_spent,
               min(o.ordered_at) FILTER (WHERE o.is_counted) AS first_order_at,
               max(o.ordered_at) FILTER (WHERE o.is_counted) AS last_order_at
          FROM business_vault.order_summary o
          JOIN pg_temp.bv_customers t ON t.hk_customer = o.hk_customer
         GROUP BY o.hk_customer) a
  LEFT JOIN (
       SELECT DISTINCT ON (x.hk_customer) x.hk_customer, x.category
         FROM business_vault.customer_category x
        ORDER BY x.hk_customer,
                 business_vault.known_total(x.units, x.units_known) DESC NULLS LAST,
                 business_vault.known_total(x.revenue, x.revenue_known) DESC NULLS LAST,
                 x.category) f
    ON f.hk_customer = a.hk_customer;
