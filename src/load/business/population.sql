-- The business vault refresh, 9/9: segment totals, churn calendar, category totals.
-- Population-wide.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

-- Segment totals and churn calendar: population-wide, one pass over the customers,
-- when a stored score moved.
SELECT business_vault.summarise_customers((now() AT TIME ZONE 'UTC')::date)
 WHERE EXISTS (SELECT FROM pg_temp.bv_rescore) OR EXISTS (SELECT FROM pg_temp.bv_customers)
    OR EXISTS (SELECT FROM pg_temp.bv_pit);

-- Category totals: a pass over the products (few rows out), when a product figure was
-- recomputed (a product that moved to another category moves its figures with it).
DELETE FROM business_vault.category_summary
 WHERE EXISTS (SELECT FROM pg_temp.bv_product_figures);
INSERT INTO business_vault.category_summary (category, products, units_sold, revenue)
SELECT p.category, count(*), sum(p.units_sold), sum(p.revenue)
  FROM business_vault.product_summary p
 WHERE EXISTS (SELECT FROM pg_temp.bv_product_figures)
 GROUP BY p.category;
