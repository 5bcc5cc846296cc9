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
CREATE TEMP TABLE IF NOT EXISTS bv_order_was (hk_order bytea PRIMARY KEY, hk_customer bytea, order_date date, is_counted boolean, units bigint, amount numeric) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_revenue_delta (grain text NOT NULL, period_start date NOT NULL, orders_placed bigint NOT NULL, orders bigint NOT NULL, customers bigint NOT NULL, units numeric NOT NULL, revenue numeric NOT NULL, orders_cancelled_or_returned bigint NOT NULL, revenue_lost numeric NOT NULL, PRIMARY KEY (grain, period_start)) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_new_views (hk_product bytea NOT NULL, hk_customer bytea NOT NULL) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_lines_was (hk_order bytea NOT NULL, hk_product bytea NOT NULL, hk_customer bytea NOT NULL, quantity integer, line_amount numeric) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_lines_now (hk_order bytea NOT NULL, hk_product bytea NOT NULL, hk_customer bytea NOT NULL, quantity integer, line_amount numeric) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_category_delta (hk_customer bytea NOT NULL, category text NOT NULL, lines bigint NOT NULL, units bigint NOT NULL, units_known bigint NOT NULL, revenue numeric NOT NULL, revenue_known bigint NOT NULL) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_pair_delta (hk_product bytea NOT NULL, hk_customer bytea NOT NULL, orders bigint NOT NULL, units bigint NOT NULL, revenue numeric NOT NULL, views bigint NOT NULL) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS bv_product_delta (hk_product bytea PRIMARY KEY, units numeric, revenue numeric, orders numeric, buyers bigint, views numeric, viewers bigint, viewers_who_bought bigint) ON COMMIT DELETE ROWS;
-- The counted lines of the touched orders, as the business vault holds them when it is
-- read: before the bridge is refreshed (product_lines_was.sql) and after (customer_categories.sql).
-- (created once per session: replacing it per batch would rewrite catalog rows each time)
DO $$ BEGIN
IF to_regclass('pg_temp.bv_counted_lines') IS NULL THEN
CREATE TEMP VIEW bv_counted_lines AS
SELECT t.hk_order, l.hk_product, l.hk_customer, l.quantity, l.line_amount
  FROM pg_temp.bv_orders t
 CROSS JOIN LATERAL (
       SELECT o.is_counted FROM business_vault.order_summary o
        WHERE o.hk_order = t.hk_order OFFSET 0) o
 CROSS JOIN LATERAL (
       SELECT x.hk_product, x.hk_customer, x.quantity, x.line_amount
         FROM business_vault.bridge_customer_order_product x
        WHERE x.hk_order = t.hk_order OFFSET 0) l
 WHERE o.is_counted;
END IF;
END $$;
