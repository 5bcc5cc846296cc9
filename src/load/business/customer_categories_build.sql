-- The business vault refresh, 3/9 (first half) when built from the whole raw vault: what
-- each customer bought per product category. Set-based.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

-- customer_categories.sql for every customer at once (the business vault is empty):
-- every counted line, in its product's current category, grouped once.
INSERT INTO business_vault.customer_category
    (hk_customer, category, lines, units, units_known, revenue, revenue_known)
SELECT o.hk_customer, p.category, count(*), coalesce(sum(b.quantity), 0), count(b.quantity),
       coalesce(sum(b.line_amount), 0.00), count(b.line_amount)
  FROM business_vault.order_summary o
  JOIN business_vault.bridge_customer_order_product b ON b.hk_order = o.hk_order
  JOIN (SELECT DISTINCT ON (x.hk_product) x.hk_product, x.category
          FROM raw_vault.sat_product_details x
         ORDER BY x.hk_product, x.applied_dts DESC, x.event_seq DESC) p
    ON p.hk_product = b.hk_product
 WHERE o.is_counted AND p.category IS NOT NULL
 GROUP BY o.hk_customer, p.category;
