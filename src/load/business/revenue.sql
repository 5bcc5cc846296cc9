-- The business vault refresh, 5/9: the revenue periods (day, week, month), moved by
-- what the touched orders add to them after the batch minus what they added before.
-- Keyed: one lookup per touched order, and one per touched customer (its counted
-- orders, by the customer's index alone: OFFSET 0).
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)
--
-- Every figure of a period but its customers is a sum over its orders, so it moves by
-- the difference. Its customers (distinct, with a counted order there) move by one for
-- each touched customer who has a counted order there after the batch and had none
-- before, or the other way round. Before: a touched order of theirs there as it was,
-- or one the batch did not touch (which is as it was). Only the periods a touched
-- order of theirs is or was in can change for a customer.
INSERT INTO pg_temp.bv_revenue_delta
    (grain, period_start, orders_placed, orders, customers, units, revenue,
     orders_cancelled_or_returned, revenue_lost)
WITH sides AS (
    SELECT -1 AS sign, w.hk_customer, w.order_date, w.is_counted, w.units, w.amount
      FROM pg_temp.bv_order_was w
     WHERE w.hk_customer IS NOT NULL
    UNION ALL
    SELECT 1, o.hk_customer, o.order_date, o.is_counted, o.units, o.amount
      FROM pg_temp.bv_orders t
     CROSS JOIN LATERAL (
           SELECT s.hk_customer, s.order_date, s.is_counted, s.units, s.amount
             FROM business_vault.order_summary s
            WHERE s.hk_order = t.hk_order OFFSET 0) o
), periods AS (
    SELECT g.grain, date_trunc(g.grain, s.order_date::timestamp)::date AS period_start,
           s.sign, s.hk_customer, s.is_counted, s.units, s.amount
      FROM sides s
     CROSS JOIN (VALUES ('day'), ('week'), ('month')) AS g(grain)
), presence AS (
    -- a touched counted side: where the customer is or was through a touched order
    SELECT p.grain, p.period_start, p.hk_customer, p.sign < 0 AS was,
           CASE WHEN p.sign > 0 THEN 1 ELSE 0 END AS touched_now, 0 AS now
      FROM periods p
     WHERE p.is_counted
    UNION ALL
    -- each counted order the customer has now, touched or not
    SELECT g.grain, date_trunc(g.grain, o.order_date::timestamp)::date, c.hk_customer,
           false, 0, 1
      FROM (SELECT DISTINCT p.hk_customer FROM periods p WHERE p.is_counted) c
     CROSS JOIN LATERAL (
           SELECT s.order_date FROM business_vault.order_summary s
            WHERE s.hk_customer = c.hk_customer AND s.is_counted OFFSET 0) o
     CROSS JOIN (VALUES ('day'), ('week'), ('month')) AS g(grain)
), moved AS (
    -- the orders it has there now, less the touched ones: those it had there before too
    SELECT x.grain, x.period_start,
           (sum(x.now) > 0)::integer
         - (bool_or(x.was) OR sum(x.now) - sum(x.touched_now) > 0)::integer AS customers
      FROM presence x
     GROUP BY x.grain, x.period_start, x.hk_customer
    HAVING bool_or(x.was) OR sum(x.touched_now) > 0
)
SELECT x.grain, x.period_start, sum(x.placed), sum(x.orders), sum(x.customers), sum(x.units),
       sum(x.revenue), sum(x.cancelled), sum(x.lost)
  FROM (SELECT p.grain, p.period_start, p.sign AS placed,
               CASE WHEN p.is_counted THEN p.sign ELSE 0 END AS orders, 0 AS customers,
               CASE WHEN p.is_counted THEN p.sign * p.units ELSE 0 END AS units,
               CASE WHEN p.is_counted THEN p.sign * p.amount ELSE 0.00 END AS revenue,
               CASE WHEN p.is_counted THEN 0 ELSE p.sign END AS cancelled,
               CASE WHEN p.is_counted THEN 0.00 ELSE p.sign * p.amount END AS lost
          FROM periods p
        UNION ALL
        SELECT m.grain, m.period_start, 0, 0, m.customers, 0, 0.00, 0, 0.00
          FROM moved m) x
 GROUP BY 1, 2;

-- a period whose last order the batch moved to another date: gone (a period has a row
-- while it has an order)
DELETE FROM business_vault.revenue_period r
 USING pg_temp.bv_revenue_delta d
 WHERE r.grain = d.grain AND r.period_start = d.period_start
   AND r.orders_placed + d.orders_placed <= 0;

-- the others move by the difference; a period new to the batch starts from it (an
-- INSERT ... ON CONFLICT would check a difference against the table's constraints)
UPDATE business_vault.revenue_period r
   SET orders_placed = r.orders_placed + d.orders_placed,
       orders = r.orders + d.orders,
       customers = r.customers + d.customers,
       units = r.units + d.units,
       revenue = r.revenue + d.revenue,
       orders_cancelled_or_returned = r.orders_cancelled_or_returned + d.orders_cancelled_or_returned,
       revenue_lost = r.revenue_lost + d.revenue_lost
  FROM pg_temp.bv_revenue_delta d
 WHERE r.grain = d.grain AND r.period_start = d.period_start
   AND (d.orders_placed, d.orders, d.customers, d.units, d.revenue,
        d.orders_cancelled_or_returned, d.revenue_lost)
       IS DISTINCT FROM (0::bigint, 0::bigint, 0::bigint, 0::numeric, 0::numeric, 0::bigint, 0::numeric);

INSERT INTO business_vault.revenue_period
    (grain, period_start, orders_placed, orders, customers, units, revenue,
     orders_cancelled_or_returned, revenue_lost)
SELECT d.grain, d.period_start, d.orders_placed, d.orders, d.customers, d.units, d.revenue,
       d.orders_cancelled_or_returned, d.revenue_lost
  FROM pg_temp.bv_revenue_delta d
 WHERE d.orders_placed > 0
   AND NOT EXISTS (SELECT FROM business_vault.revenue_period r
                    WHERE r.grain = d.grain AND r.period_start = d.period_start);
