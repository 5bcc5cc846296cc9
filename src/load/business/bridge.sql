-- The business vault refresh, 1/9: the bridge of the touched orders. Keyed.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

ANALYZE pg_temp.bv_orders;
ANALYZE pg_temp.bv_products;
ANALYZE pg_temp.bv_pit;

-- Bridge: every line of the touched orders, with its current measures (what their
-- products' figures move by is the difference product_keys.sql takes).
INSERT INTO business_vault.bridge_customer_order_product AS b
    (hk_order, hk_order_product, hk_order_customer, hk_customer, hk_product, line_no,
     quantity, unit_price, discount, line_amount, load_dts, line_applied_dts)
SELECT t.hk_order, lop.hk_order_product, c.hk_order_customer, c.hk_customer, lop.hk_product,
       lop.line_no, v.quantity, v.unit_price, v.discount,
       business_vault.line_amount(v.quantity, v.unit_price, v.discount),
       greatest(lop.load_dts, c.load_dts), v.applied_dts
  FROM pg_temp.bv_orders t
 CROSS JOIN LATERAL (
       SELECT loc.hk_order_customer, loc.hk_customer, loc.load_dts
         FROM raw_vault.link_order_customer loc
        WHERE loc.hk_order = t.hk_order
        ORDER BY loc.load_dts, loc.hk_order_customer LIMIT 1) c
 CROSS JOIN LATERAL (
       SELECT l.hk_order_product, l.hk_product, l.line_no, l.load_dts
         FROM raw_vault.link_order_product l
        WHERE l.hk_order = t.hk_order OFFSET 0) lop
  LEFT JOIN LATERAL (
       SELECT s.quantity, s.unit_price, s.discount, s.applied_dts
         FROM raw_vault.sat_order_line s
        WHERE s.hk_order_product = lop.hk_order_product
        ORDER BY s.applied_dts DESC, s.event_seq DESC LIMIT 1) v ON true
ON CONFLICT (hk_order, hk_order_product) DO UPDATE SET
    hk_order_customer = excluded.hk_order_customer, hk_customer = excluded.hk_customer,
    quantity = excluded.quantity, unit_price = excluded.unit_price, discount = excluded.discount,
    line_amount = excluded.line_amount, load_dts = excluded.load_dts,
    line_applied_dts = excluded.line_applied_dts
WHERE (b.hk_order_customer, b.hk_customer, b.quantity, b.unit_price, b.discount, b.line_amount,
       b.load_dts, b.line_applied_dts)
      IS DISTINCT FROM
      (excluded.hk_order_customer, excluded.hk_customer, excluded.quantity, excluded.unit_price,
       excluded.discount, excluded.line_amount, excluded.load_dts, excluded.line_applied_dts);

