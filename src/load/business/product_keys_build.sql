-- The business vault build, 6/9: every (product, customer) pair, and each product's
-- figures as their sums (what product_keys.sql moves a batch at a time). Set-based.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

INSERT INTO business_vault.product_customer (hk_product, hk_customer, orders, units, revenue, views)
SELECT coalesce(b.hk_product, v.hk_product), coalesce(b.hk_customer, v.hk_customer),
       coalesce(b.orders, 0), coalesce(b.units, 0), coalesce(b.revenue, 0.00), coalesce(v.views, 0)
  FROM (SELECT l.hk_product, l.hk_customer, count(DISTINCT l.hk_order) AS orders,
               coalesce(sum(l.quantity), 0) AS units, coalesce(sum(l.line_amount), 0.00) AS revenue
          FROM business_vault.bridge_customer_order_product l
          JOIN business_vault.order_summary o ON o.hk_order = l.hk_order
         WHERE o.is_counted
         GROUP BY l.hk_product, l.hk_customer) b
  FULL JOIN (SELECT x.hk_product, x.hk_customer, count(*) AS views
               FROM raw_vault.link_product_view x
              GROUP BY x.hk_product, x.hk_customer) v
    ON (v.hk_product, v.hk_customer) = (b.hk_product, b.hk_customer);

-- (the summary is empty: each product's figures move from zero by its sums)
INSERT INTO pg_temp.bv_product_delta
    (hk_product, units, revenue, orders, buyers, views, viewers, viewers_who_bought)
SELECT x.hk_product, sum(x.units), sum(x.revenue), sum(x.orders),
       count(*) FILTER (WHERE x.orders > 0), sum(x.views), count(*) FILTER (WHERE x.views > 0),
       count(*) FILTER (WHERE x.orders > 0 AND x.views > 0)
  FROM business_vault.product_customer x
 GROUP BY x.hk_product;
ANALYZE pg_temp.bv_product_delta;
ANALYZE pg_temp.bv_product_figures;
