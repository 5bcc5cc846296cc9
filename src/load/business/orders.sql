-- The business vault refresh, 2/9: the order summary of the touched orders, and what they
-- were before. Keyed.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

-- Each touched order as it was before this batch (NULLs: not in the summary yet), one
-- lookup each: whether it counted and for whom (where that changes, its products'
-- figures change too: product_keys.sql), its customer and order date, and its units
-- and amount (what it added to its revenue periods: revenue.sql).
INSERT INTO pg_temp.bv_order_was (hk_order, hk_customer, order_date, is_counted, units, amount)
SELECT t.hk_order, o.hk_customer, o.order_date, o.is_counted, o.units, o.amount
  FROM pg_temp.bv_orders t
  LEFT JOIN LATERAL (
       SELECT s.hk_customer, s.order_date, s.is_counted, s.units, s.amount
         FROM business_vault.order_summary s
        WHERE s.hk_order = t.hk_order OFFSET 0) o ON true;

-- The customer and order date of each touched order, before this batch here and
-- after it below: the customers whose figures may change (an order that moved changes
-- both) and the revenue periods to recompute (revenue.sql).
INSERT INTO pg_temp.bv_order_sides (hk_customer, order_date)
SELECT w.hk_customer, w.order_date
  FROM pg_temp.bv_order_was w
 WHERE w.hk_customer IS NOT NULL;

-- The buyers of the touched products: their favourite category may change.
INSERT INTO pg_temp.bv_customers (hk_customer)
SELECT b.hk_customer
  FROM pg_temp.bv_products p
 CROSS JOIN LATERAL (
       SELECT l.hk_customer FROM business_vault.bridge_customer_order_product l
        WHERE l.hk_product = p.hk_product OFFSET 0) b
ON CONFLICT DO NOTHING;

-- Orders: header, current status and totals of the touched orders.
INSERT INTO business_vault.order_summary AS o
    (hk_order, hk_customer, ordered_at, order_date, channel, status, status_known, is_counted,
     lines, units, amount, details_from, details_since, status_since, lines_since)
SELECT t.hk_order, c.hk_customer, d.ordered_at, (d.ordered_at AT TIME ZONE 'UTC')::date,
       d.channel, business_vault.order_status(s.status), s.status IS NOT NULL,
       business_vault.is_counted(s.status), l.lines, coalesce(l.units, 0), coalesce(l.amount, 0),
       f.applied_dts, d.applied_dts, coalesce(s.applied_dts, '-infinity'),
       business_vault.lines_since(l.lines, l.versioned, l.latest)
  FROM pg_temp.bv_orders t
 CROSS JOIN LATERAL (
       SELECT loc.hk_customer FROM raw_vault.link_order_customer loc
        WHERE loc.hk_order = t.hk_order
        ORDER BY loc.load_dts, loc.hk_order_customer LIMIT 1) c
 CROSS JOIN LATERAL (
       SELECT coalesce(x.ordered_at, x.applied_dts) AS ordered_at, x.channel, x.applied_dts
         FROM raw_vault.sat_order_details x
        WHERE x.hk_order = t.hk_order
        ORDER BY x.applied_dts DESC, x.event_seq DESC LIMIT 1) d
 CROSS JOIN LATERAL (
       SELECT x.applied_dts FROM raw_vault.sat_order_details x
        WHERE x.hk_order = t.hk_order
        ORDER BY x.applied_dts, x.event_seq LIMIT 1) f
  LEFT JOIN LATERAL (
       SELECT x.status, x.applied_dts FROM raw_vault.sat_order_status x
        WHERE x.hk_order = t.hk_order
        ORDER BY x.applied_dts DESC, x.event_seq DESC LIMIT 1) s ON true
 CROSS JOIN LATERAL (
       SELECT count(*) AS lines, sum(b.quantity) AS units, sum(b.line_amount) AS amount,
              count(b.line_applied_dts) AS versioned, max(b.line_applied_dts) AS latest
         FROM business_vault.bridge_customer_order_product b
        WHERE b.hk_order = t.hk_order) l
ON CONFLICT (hk_order) DO UPDATE SET
    hk_customer = excluded.hk_customer, ordered_at = excluded.ordered_at,
    order_date = excluded.order_date, channel = excluded.channel, status = excluded.status,
    status_known = excluded.status_known, is_counted = excluded.is_counted,
    lines = excluded.lines, units = excluded.units, amount = excluded.amount,
    details_from = excluded.details_from, details_since = excluded.details_since,
    status_since = excluded.status_since,
    lines_since = excluded.lines_since
WHERE (o.hk_customer, o.ordered_at, o.channel, o.status, o.status_known, o.lines, o.units,
       o.amount, o.details_from, o.details_since, o.status_since, o.lines_since)
      IS DISTINCT FROM
      (excluded.hk_customer, excluded.ordered_at, excluded.channel, excluded.status,
       excluded.status_known, excluded.lines, excluded.units, excluded.amount,
       excluded.details_from, excluded.details_since, excluded.status_since,
       excluded.lines_since);

INSERT INTO pg_temp.bv_order_sides (hk_customer, order_date)
SELECT o.hk_customer, o.order_date
  FROM pg_temp.bv_orders t
 CROSS JOIN LATERAL (
       SELECT s.hk_customer, s.order_date FROM business_vault.order_summary s
        WHERE s.hk_order = t.hk_order OFFSET 0) o;

INSERT INTO pg_temp.bv_customers (hk_customer)
SELECT DISTINCT d.hk_customer FROM pg_temp.bv_order_sides d
ON CONFLICT DO NOTHING;
ANALYZE pg_temp.bv_customers;

