-- The business vault refresh: the keys a batch touched, one temporary table per kind,
-- emptied at commit, and the settings of the refresh (KEY_TABLES in src/load/business.rs).
SET LOCAL jit = off;
SET LOCAL work_mem = '64MB';
-- (each batch after a connection's first would log that its tables exist)
SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE IF NOT EXISTS bv_orders (hk_order bytea PRIMARY KEY) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_products (hk_product bytea PRIMARY KEY) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_pit (hk_customer bytea NOT NULL, since timestamptz) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_customers (hk_customer bytea PRIMARY KEY) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_product_figures (hk_product bytea PRIMARY KEY) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_categories (category text) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_old_cuts (recency date[], frequency integer[], monetary numeric[]) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_rescore (hk_customer bytea PRIMARY KEY) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_order_sides (hk_customer bytea NOT NULL, order_date date NOT NULL) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_order_was (hk_order bytea PRIMARY KEY, hk_customer bytea, order_date date, is_counted boolean) ON COMMIT DELETE ROWS;
