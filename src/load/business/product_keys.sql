-- The business vault refresh, 3/6: the products whose figures may move. Keyed.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

-- Products: the summary of every product the batch reached (details, hub, views, the
-- lines of its orders), then the revenue ranks of their categories before and after.
INSERT INTO pg_temp.bv_product_figures (hk_product)
SELECT p.hk_product FROM pg_temp.bv_products p
UNION
SELECT b.hk_product
  FROM pg_temp.bv_orders t
 CROSS JOIN LATERAL (
       SELECT l.hk_product FROM business_vault.bridge_customer_order_product l
        WHERE l.hk_order = t.hk_order OFFSET 0) b
ON CONFLICT DO NOTHING;
ANALYZE pg_temp.bv_product_figures;

INSERT INTO pg_temp.bv_categories (category)
SELECT s.category
  FROM pg_temp.bv_product_figures t
 CROSS JOIN LATERAL (
       SELECT x.category FROM business_vault.product_summary x
        WHERE x.hk_product = t.hk_product OFFSET 0) s;
