-- The business vault refresh, 7/9: the product summary. Keyed.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

-- Each staged product's current details, and its figures moved by what the batch
-- changed in its pairs (product_keys.sql; in a build, from zero by their sums): the
-- same figures as business_vault.product_figures, without reading the product's history.
INSERT INTO business_vault.product_summary AS p
    (hk_product, product_id, name, category, brand, price, units_sold, revenue, orders,
     buyers, views, viewers, viewers_who_bought, view_to_purchase_rate, rank_in_category)
SELECT f.hk_product, f.product_id, f.name, f.category, f.brand, f.price, f.units_sold,
       f.revenue, f.orders, f.buyers, f.views, f.viewers, f.viewers_who_bought,
       round(f.viewers_who_bought::numeric / nullif(f.viewers, 0), 4), 0
  FROM (SELECT t.hk_product, h.product_id, d.name, d.category, d.brand, d.price,
               coalesce(o.units_sold, 0) + coalesce(x.units, 0) AS units_sold,
               coalesce(o.revenue, 0.00) + coalesce(x.revenue, 0.00) AS revenue,
               coalesce(o.orders, 0) + coalesce(x.orders, 0) AS orders,
               coalesce(o.buyers, 0) + coalesce(x.buyers, 0) AS buyers,
               coalesce(o.views, 0) + coalesce(x.views, 0) AS views,
               coalesce(o.viewers, 0) + coalesce(x.viewers, 0) AS viewers,
               coalesce(o.viewers_who_bought, 0) + coalesce(x.viewers_who_bought, 0)
                   AS viewers_who_bought
          FROM pg_temp.bv_product_figures t
         CROSS JOIN LATERAL (
               SELECT y.product_id FROM raw_vault.hub_product y
                WHERE y.hk_product = t.hk_product OFFSET 0) h
          LEFT JOIN LATERAL (
               SELECT y.name, y.category, y.brand, y.price
                 FROM raw_vault.sat_product_details y
                WHERE y.hk_product = t.hk_product
                ORDER BY y.applied_dts DESC, y.event_seq DESC LIMIT 1) d ON true
          LEFT JOIN LATERAL (
               SELECT y.units_sold, y.revenue, y.orders, y.buyers, y.views, y.viewers,
                      y.viewers_who_bought
                 FROM business_vault.product_summary y
                WHERE y.hk_product = t.hk_product OFFSET 0) o ON true
          LEFT JOIN LATERAL (
               SELECT y.units, y.revenue, y.orders, y.buyers, y.views, y.viewers,
                      y.viewers_who_bought
                 FROM pg_temp.bv_product_delta y
                WHERE y.hk_product = t.hk_product OFFSET 0) x ON true) f
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
