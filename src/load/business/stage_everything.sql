-- The business vault build: every order, product and customer of the raw vault as
-- touched, each customer from its first day (STAGE_EVERYTHING in src/load/business.rs).
INSERT INTO pg_temp.bv_orders (hk_order) SELECT h.hk_order FROM raw_vault.hub_order h;
INSERT INTO pg_temp.bv_products (hk_product) SELECT h.hk_product FROM raw_vault.hub_product h;
INSERT INTO pg_temp.bv_product_figures (hk_product) SELECT h.hk_product FROM raw_vault.hub_product h;
INSERT INTO pg_temp.bv_pit (hk_customer, since)
SELECT h.hk_customer, '-infinity' FROM raw_vault.hub_customer h;
