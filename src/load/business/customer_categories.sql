-- The business vault refresh, 3/9 (first half): what each touched customer bought per
-- product category. Keyed.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

-- The touched orders' counted lines after this batch, read once here and again by
-- product_keys.sql (before the batch: bv_lines_was, product_lines_was.sql).
INSERT INTO pg_temp.bv_lines_now (hk_order, hk_product, hk_customer, quantity, line_amount)
SELECT c.hk_order, c.hk_product, c.hk_customer, c.quantity, c.line_amount
  FROM pg_temp.bv_counted_lines c;

-- The totals per (customer, category) are sums over counted lines, each line in its
-- product's category. A product's lines stand in the category its summary still holds
-- (the category before this batch: product_summary.sql rewrites it later), so first
-- the touched orders' lines after this batch minus before it, in those categories ...
INSERT INTO pg_temp.bv_category_delta
    (hk_customer, category, lines, units, units_known, revenue, revenue_known)
SELECT d.hk_customer, s.category, sum(d.lines), sum(d.units), sum(d.units_known),
       sum(d.revenue), sum(d.revenue_known)
  FROM (SELECT c.hk_customer, c.hk_product, count(*) AS lines,
               coalesce(sum(c.quantity), 0) AS units, count(c.quantity) AS units_known,
               coalesce(sum(c.line_amount), 0.00) AS revenue, count(c.line_amount) AS revenue_known
          FROM pg_temp.bv_lines_now c
         GROUP BY c.hk_customer, c.hk_product
        UNION ALL
        SELECT w.hk_customer, w.hk_product, -count(*), -coalesce(sum(w.quantity), 0),
               -count(w.quantity), -coalesce(sum(w.line_amount), 0.00), -count(w.line_amount)
          FROM pg_temp.bv_lines_was w
         GROUP BY w.hk_customer, w.hk_product) d
 CROSS JOIN LATERAL (
       SELECT x.category FROM business_vault.product_summary x
        WHERE x.hk_product = d.hk_product OFFSET 0) s
 WHERE s.category IS NOT NULL
 GROUP BY d.hk_customer, s.category
HAVING (sum(d.lines), sum(d.units), sum(d.units_known), sum(d.revenue), sum(d.revenue_known))
       <> (0, 0, 0, 0, 0);

-- ... then every counted line of each product whose category this batch changed (its
-- details staged, its current category not the one its summary holds, or no summary
-- yet), out of the old category and into the new one.
INSERT INTO pg_temp.bv_category_delta
    (hk_customer, category, lines, units, units_known, revenue, revenue_known)
SELECT b.hk_customer, m.category, m.sign * count(*), m.sign * coalesce(sum(b.quantity), 0),
       m.sign * count(b.quantity), m.sign * coalesce(sum(b.line_amount), 0.00),
       m.sign * count(b.line_amount)
  FROM (SELECT t.hk_product, was.category AS was, now.category AS now
          FROM pg_temp.bv_products t
          LEFT JOIN LATERAL (
               SELECT x.category FROM business_vault.product_summary x
                WHERE x.hk_product = t.hk_product OFFSET 0) was ON true
          LEFT JOIN LATERAL (
               SELECT x.category FROM raw_vault.sat_product_details x
                WHERE x.hk_product = t.hk_product
                ORDER BY x.applied_dts DESC, x.event_seq DESC LIMIT 1) now ON true
         WHERE was.category IS DISTINCT FROM now.category
        OFFSET 0) p
 CROSS JOIN LATERAL (VALUES (-1, p.was), (1, p.now)) AS m(sign, category)
 CROSS JOIN LATERAL (
       SELECT l.hk_customer, l.quantity, l.line_amount
         FROM business_vault.bridge_customer_order_product l
        WHERE l.hk_product = p.hk_product
          AND (SELECT o.is_counted FROM business_vault.order_summary o
                WHERE o.hk_order = l.hk_order)
       OFFSET 0) b
 WHERE m.category IS NOT NULL
 GROUP BY b.hk_customer, m.category, m.sign;

INSERT INTO business_vault.customer_category AS c
    (hk_customer, category, lines, units, units_known, revenue, revenue_known)
SELECT d.hk_customer, d.category, sum(d.lines), sum(d.units), sum(d.units_known),
       sum(d.revenue), sum(d.revenue_known)
  FROM pg_temp.bv_category_delta d
 GROUP BY d.hk_customer, d.category
ON CONFLICT (hk_customer, category) DO UPDATE SET
    lines = c.lines + excluded.lines, units = c.units + excluded.units,
    units_known = c.units_known + excluded.units_known, revenue = c.revenue + excluded.revenue,
    revenue_known = c.revenue_known + excluded.revenue_known;
DELETE FROM business_vault.customer_category c
 USING pg_temp.bv_category_delta d
 WHERE (c.hk_customer, c.category) = (d.hk_customer, d.category) AND c.lines = 0;
