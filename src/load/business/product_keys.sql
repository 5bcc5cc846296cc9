-- The business vault refresh, 6/9: the products whose figures may move. Keyed.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

-- Products: the summary of every product whose figures the batch may move, then the
-- revenue ranks of their categories before and after. A product's figures read its
-- details, hub and views (staged by the loader, and products touched in details), the
-- bridge lines of its orders (those written: customers.sql) and whether those orders
-- count: the products of the orders whose customer or counting changed. An order whose
-- status moved within the counted ones (placed, shipped, delivered), or whose header
-- alone changed, moves no product figure.
INSERT INTO pg_temp.bv_product_figures (hk_product)
SELECT p.hk_product FROM pg_temp.bv_products p
UNION
SELECT b.hk_product
  FROM pg_temp.bv_order_was w
 CROSS JOIN LATERAL (
       SELECT o.hk_customer, o.is_counted FROM business_vault.order_summary o
        WHERE o.hk_order = w.hk_order OFFSET 0) o
 CROSS JOIN LATERAL (
       SELECT l.hk_product FROM business_vault.bridge_customer_order_product l
        WHERE l.hk_order = w.hk_order OFFSET 0) b
 WHERE (w.hk_customer, w.is_counted) IS DISTINCT FROM (o.hk_customer, o.is_counted)
ON CONFLICT DO NOTHING;
ANALYZE pg_temp.bv_product_figures;

INSERT INTO pg_temp.bv_categories (category)
SELECT s.category
  FROM pg_temp.bv_product_figures t
 CROSS JOIN LATERAL (
       SELECT x.category FROM business_vault.product_summary x
        WHERE x.hk_product = t.hk_product OFFSET 0) s;
