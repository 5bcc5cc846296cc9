-- The business vault refresh, 5/9: the revenue periods (day, week, month), moved by
-- what the touched orders add to them after the batch minus what they added before.
-- Keyed: one lookup per touched order, and per touched customer and period.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)
--
-- Every figure of a period but its customers is a sum over its orders, so it moves by
-- the difference. Its customers (distinct, with a counted order there) move by one for
-- each touched customer who has a counted order there after the batch and had none
-- before, or the other way round: before, an order of theirs the batch did not touch
-- (as it is now) or a touched one as it was.
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
           (date_trunc(g.grain, s.order_date::timestamp) + ('1 ' || g.grain)::interval)::date
               AS period_end,
           s.sign, s.hk_customer, s.is_counted, s.units, s.amount
      FROM sides s
     CROSS JOIN (VALUES ('day'), ('week'), ('month')) AS g(grain)
), buyers AS (
    SELECT p.grain, p.period_start, p.period_end, p.hk_customer,
           bool_or(p.sign < 0) AS had_touched
      FROM periods p
     WHERE p.is_counted
     GROUP BY 1, 2, 3, 4
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
        SELECT b.grain, b.period_start, 0, 0,
               EXISTS (SELECT FROM business_vault.order_summary o
                        WHERE o.hk_customer = b.hk_customer AND o.is_counted
                          AND o.order_date >= b.period_start AND o.order_date < b.period_end)::integer
             - (b.had_touched
                OR EXISTS (SELECT FROM business_vault.order_summary o
                            WHERE o.hk_customer = b.hk_customer AND o.is_counted
                              AND o.order_date >= b.period_start AND o.order_date < b.period_end
                              AND NOT EXISTS (SELECT FROM pg_temp.bv_orders t
                                               WHERE t.hk_order = o.hk_order)))::integer,
               0, 0.00, 0, 0.00
          FROM buyers b) x
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
