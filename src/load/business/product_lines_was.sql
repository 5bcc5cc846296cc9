-- The business vault refresh, 0/9: the counted lines of the touched orders before this
-- batch, which product_keys.sql subtracts from what they are after it. Keyed.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)
INSERT INTO pg_temp.bv_lines_was (hk_order, hk_product, hk_customer, quantity, line_amount)
SELECT c.hk_order, c.hk_product, c.hk_customer, c.quantity, c.line_amount
  FROM pg_temp.bv_counted_lines c;
