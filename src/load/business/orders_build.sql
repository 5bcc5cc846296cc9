-- The business vault refresh, 2/9 when built from the whole raw vault: the order
-- summary. Set-based.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

-- The order summary of orders.sql, for every order at once: the same rows by hash joins.
-- Nothing was there before (the business vault is empty), so nothing to remember of it:
-- every product and every customer is staged anyway.
INSERT INTO business_vault.order_summary
    (hk_order, hk_customer, ordered_at, order_date, channel, status, status_known, is_counted,
     lines, units, amount, details_from, details_since, status_since, lines_since)
SELECT t.hk_order, c.hk_customer, d.ordered_at, (d.ordered_at AT TIME ZONE 'UTC')::date,
       d.channel, business_vault.order_status(s.status), s.status IS NOT NULL,
       business_vault.is_counted(s.status), coalesce(l.lines, 0), coalesce(l.units, 0),
       coalesce(l.amount, 0), d.first_applied_dts, d.applied_dts, coalesce(s.applied_dts, '-infinity'),
       business_vault.lines_since(l.lines, l.versioned, l.latest)
  FROM pg_temp.bv_orders t
  JOIN (SELECT DISTINCT ON (loc.hk_order) loc.hk_order, loc.hk_customer
          FROM raw_vault.link_order_customer loc
         ORDER BY loc.hk_order, loc.load_dts, loc.hk_order_customer) c ON c.hk_order = t.hk_order
  JOIN (SELECT DISTINCT ON (x.hk_order) x.hk_order,
               coalesce(x.ordered_at, x.applied_dts) AS ordered_at, x.channel, x.applied_dts,
               min(x.applied_dts) OVER (PARTITION BY x.hk_order) AS first_applied_dts
          FROM raw_vault.sat_order_details x
         ORDER BY x.hk_order, x.applied_dts DESC, x.event_seq DESC) d ON d.hk_order = t.hk_order
  LEFT JOIN (SELECT DISTINCT ON (x.hk_order) x.hk_order, x.status, x.applied_dts
               FROM raw_vault.sat_order_status x
              ORDER BY x.hk_order, x.applied_dts DESC, x.event_seq DESC) s ON s.hk_order = t.hk_order
  LEFT JOIN (SELECT b.hk_order, count(*) AS lines, sum(b.quantity) AS units,
                    sum(b.line_amount) AS amount, count(b.line_applied_dts) AS versioned,
                    max(b.line_applied_dts) AS latest
               FROM business_vault.bridge_customer_order_product b
              GROUP BY b.hk_order) l ON l.hk_order = t.hk_order;

INSERT INTO pg_temp.bv_order_sides (hk_customer, order_date)
SELECT o.hk_customer, o.order_date FROM business_vault.order_summary o;

INSERT INTO pg_temp.bv_customers (hk_customer)
SELECT DISTINCT d.hk_customer FROM pg_temp.bv_order_sides d
ON CONFLICT DO NOTHING;
ANALYZE pg_temp.bv_customers;
