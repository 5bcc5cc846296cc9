-- The business vault refresh, 6/9: what the batch changed in each (product, customer)
-- pair, and how far each product's figures move. Keyed.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

-- A product's figures are sums over customers (business_vault.product_customer), so a
-- batch moves them by what it changed in the pairs it touched: the counted lines of
-- the touched orders after this batch minus before it (an order that moved, stopped
-- or started counting, or whose lines changed, moves both sides), and the views it
-- added (STAGE_NEW_VIEWS). Nothing of a product's or customer's history is read.
INSERT INTO pg_temp.bv_pair_delta (hk_product, hk_customer, orders, units, revenue, views)
SELECT d.hk_product, d.hk_customer, sum(d.orders), sum(d.units), sum(d.revenue), sum(d.views)
  FROM (SELECT c.hk_product, c.hk_customer, count(DISTINCT c.hk_order) AS orders,
               coalesce(sum(c.quantity), 0) AS units, coalesce(sum(c.line_amount), 0.00) AS revenue,
               0 AS views
          FROM pg_temp.bv_lines_now c
         GROUP BY c.hk_product, c.hk_customer
        UNION ALL
        SELECT w.hk_product, w.hk_customer, -count(DISTINCT w.hk_order),
               -coalesce(sum(w.quantity), 0), -coalesce(sum(w.line_amount), 0.00), 0
          FROM pg_temp.bv_lines_was w
         GROUP BY w.hk_product, w.hk_customer
        UNION ALL
        SELECT v.hk_product, v.hk_customer, 0, 0, 0.00, count(*)
          FROM pg_temp.bv_new_views v
         GROUP BY v.hk_product, v.hk_customer) d
 GROUP BY d.hk_product, d.hk_customer
HAVING (sum(d.orders), sum(d.units), sum(d.revenue), sum(d.views)) <> (0, 0, 0, 0);

-- What each product's figures move by: the sums' differences, and for the distinct
-- counts the pairs that started or stopped having an order, a view, or both.
INSERT INTO pg_temp.bv_product_delta
    (hk_product, units, revenue, orders, buyers, views, viewers, viewers_who_bought)
SELECT d.hk_product, sum(d.units), sum(d.revenue), sum(d.orders),
       sum((n.orders > 0)::int - (o.orders > 0)::int), sum(d.views),
       sum((n.views > 0)::int - (o.views > 0)::int),
       sum((n.orders > 0 AND n.views > 0)::int - (o.orders > 0 AND o.views > 0)::int)
  FROM pg_temp.bv_pair_delta d
 CROSS JOIN LATERAL (
       SELECT coalesce(max(x.orders), 0) AS orders, coalesce(max(x.views), 0) AS views
         FROM business_vault.product_customer x
        WHERE (x.hk_product, x.hk_customer) = (d.hk_product, d.hk_customer)) o
 CROSS JOIN LATERAL (SELECT o.orders + d.orders AS orders, o.views + d.views AS views) n
 GROUP BY d.hk_product;

-- The pairs moved by the same differences; a pair left with neither a counted order
-- nor a view has no row.
INSERT INTO business_vault.product_customer AS x
    (hk_product, hk_customer, orders, units, revenue, views)
SELECT d.hk_product, d.hk_customer, d.orders, d.units, d.revenue, d.views
  FROM pg_temp.bv_pair_delta d
ON CONFLICT (hk_product, hk_customer) DO UPDATE SET
    orders = x.orders + excluded.orders, units = x.units + excluded.units,
    revenue = x.revenue + excluded.revenue, views = x.views + excluded.views;
DELETE FROM business_vault.product_customer x
 USING pg_temp.bv_pair_delta d
 WHERE (x.hk_product, x.hk_customer) = (d.hk_product, d.hk_customer)
   AND x.orders = 0 AND x.views = 0;

-- Products whose summary is rewritten (product_summary.sql): those whose figures moved,
-- besides those staged (details changed, new hub rows).
INSERT INTO pg_temp.bv_product_figures (hk_product)
SELECT d.hk_product FROM pg_temp.bv_product_delta d
 WHERE (d.units, d.revenue, d.orders, d.buyers, d.views, d.viewers, d.viewers_who_bought)
       IS DISTINCT FROM (0, 0, 0, 0, 0, 0, 0)
ON CONFLICT DO NOTHING;
ANALYZE pg_temp.bv_product_figures;

-- The categories of those products before this batch: their revenue ranks are
-- recomputed with the categories after it (scores.sql).
INSERT INTO pg_temp.bv_categories (category)
SELECT s.category
  FROM pg_temp.bv_product_figures t
 CROSS JOIN LATERAL (
       SELECT x.category FROM business_vault.product_summary x
        WHERE x.hk_product = t.hk_product OFFSET 0) s;
