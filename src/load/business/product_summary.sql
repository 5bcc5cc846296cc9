-- The business vault refresh, 7/9: the product summary. Set-based.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

-- (set-based, the planner free to hash: a batch often reaches most products, and then
-- one pass over their lines costs a tenth of a lookup per product; the same figures as
-- business_vault.product_figures)
INSERT INTO business_vault.product_summary AS p
    (hk_product, product_id, name, category, brand, price, units_sold, revenue, orders,
     buyers, views, viewers, viewers_who_bought, view_to_purchase_rate, rank_in_category)
SELECT t.hk_product, h.product_id, d.name, d.category, d.brand, d.price,
       coalesce(s.units_sold, 0), coalesce(s.revenue, 0.00), coalesce(s.orders, 0),
       coalesce(s.buyers, 0), coalesce(v.views, 0), coalesce(v.viewers, 0),
       coalesce(c.viewers_who_bought, 0),
       round(coalesce(c.viewers_who_bought, 0)::numeric / nullif(v.viewers, 0), 4), 0
  FROM pg_temp.bv_product_figures t
  JOIN raw_vault.hub_product h ON h.hk_product = t.hk_product
  LEFT JOIN LATERAL (
       SELECT x.name, x.category, x.brand, x.price
         FROM raw_vault.sat_product_details x
        WHERE x.hk_product = t.hk_product
        ORDER BY x.applied_dts DESC, x.event_seq DESC LIMIT 1) d ON true
  LEFT JOIN (
       SELECT b.hk_product, sum(b.quantity) AS units_sold, sum(b.line_amount) AS revenue,
              count(DISTINCT b.hk_order) AS orders, count(DISTINCT b.hk_customer) AS buyers
         FROM pg_temp.bv_product_figures x
         JOIN business_vault.bridge_customer_order_product b ON b.hk_product = x.hk_product
         JOIN business_vault.order_summary o ON o.hk_order = b.hk_order
        WHERE o.is_counted
        GROUP BY b.hk_product) s ON s.hk_product = t.hk_product
  LEFT JOIN (
       SELECT v.hk_product, count(*) AS views, count(DISTINCT v.hk_customer) AS viewers
         FROM pg_temp.bv_product_figures x
         JOIN raw_vault.link_product_view v ON v.hk_product = x.hk_product
        GROUP BY v.hk_product) v ON v.hk_product = t.hk_product
  LEFT JOIN (
       SELECT w.hk_product, count(*) AS viewers_who_bought
         FROM (SELECT DISTINCT v.hk_product, v.hk_customer
                 FROM pg_temp.bv_product_figures x
                 JOIN raw_vault.link_product_view v ON v.hk_product = x.hk_product) w
        WHERE EXISTS (SELECT FROM business_vault.bridge_customer_order_product b
                        JOIN business_vault.order_summary o ON o.hk_order = b.hk_order
                       WHERE b.hk_product = w.hk_product AND b.hk_customer = w.hk_customer
                         AND o.is_counted)
        GROUP BY w.hk_product) c ON c.hk_product = t.hk_product
ON CONFLICT (hk_product) DO UPDATE SET
    product_id = excluded.product_id, name = excluded.name, category = excluded.category,
    brand = excluded.brand, price = excluded.price, units_sold = excluded.units_sold,
    revenue = excluded.revenue, orders = excluded.orders, buyers = excluded.buyers,
    views = excluded.views, viewers = excluded.viewers,
    viewers_who_bought = excluded.viewers_who_bought,
    view_to_purchase_rate = excluded.view_to_purchase_rate
WHERE (p.product_id, p.name, p.category, p.brand, p.price, p.units_sold, p.revenue, p.orders,
       p.buyers, p.views, p.viewers, p.viewers_who_bought, p.view_to_purchase_rate)
      IS DISTINCT FROM
      (excluded.product_id, excluded.name, excluded.category, excluded.brand, excluded.price,
       excluded.units_sold, excluded.revenue, excluded.orders, excluded.buyers, excluded.views,
       excluded.viewers, excluded.viewers_who_bought, excluded.view_to_purchase_rate);
