-- The business vault refresh, 1/9 when built from the whole raw vault: the bridge.
-- Set-based.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

-- The bridge of bridge.sql, for every order at once (a first load on the bulk path:
-- the business vault is empty): the same rows, by hash joins and one sort per table
-- instead of index lookups per order. Each order's first customer link, each line's
-- latest measures.
ANALYZE pg_temp.bv_orders;
ANALYZE pg_temp.bv_products;
ANALYZE pg_temp.bv_pit;


INSERT INTO business_vault.bridge_customer_order_product
    (hk_order, hk_order_product, hk_order_customer, hk_customer, hk_product, line_no,
     quantity, unit_price, discount, line_amount, load_dts, line_applied_dts)
SELECT t.hk_order, lop.hk_order_product, c.hk_order_customer, c.hk_customer, lop.hk_product,
       lop.line_no, v.quantity, v.unit_price, v.discount,
       business_vault.line_amount(v.quantity, v.unit_price, v.discount),
       greatest(lop.load_dts, c.load_dts), v.applied_dts
  FROM pg_temp.bv_orders t
  JOIN (SELECT DISTINCT ON (loc.hk_order) loc.hk_order, loc.hk_order_customer, loc.hk_customer,
               loc.load_dts
          FROM raw_vault.link_order_customer loc
         ORDER BY loc.hk_order, loc.load_dts, loc.hk_order_customer) c ON c.hk_order = t.hk_order
  JOIN raw_vault.link_order_product lop ON lop.hk_order = t.hk_order
  LEFT JOIN (SELECT DISTINCT ON (s.hk_order_product) s.hk_order_product, s.quantity,
                    s.unit_price, s.discount, s.applied_dts
               FROM raw_vault.sat_order_line s
              ORDER BY s.hk_order_product, s.applied_dts DESC, s.event_seq DESC) v
    ON v.hk_order_product = lop.hk_order_product;
