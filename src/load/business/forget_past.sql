-- The business vault refresh: forget the remembered answers of the past this batch
-- may have changed ($1: the earliest business time it wrote; see FORGET_PAST in
-- src/load/business.rs).
WITH changed AS (
    SELECT least($1::timestamptz,
                 (SELECT min(f.applied_dts)
                    FROM pg_temp.bv_orders o
                   CROSS JOIN LATERAL (
                         SELECT s.applied_dts FROM raw_vault.sat_order_details s
                          WHERE s.hk_order = o.hk_order
                          ORDER BY s.applied_dts LIMIT 1) f)) AS since
), cuts AS (
    DELETE FROM business_vault.rfm_cutpoints_as_of m
     WHERE m.as_of >= (SELECT c.since FROM changed c)
), population AS (
    DELETE FROM business_vault.population_as_of m
     WHERE m.as_of >= (SELECT c.since FROM changed c)
)
DELETE FROM business_vault.sales_as_of m
 WHERE m.as_of >= (SELECT c.since FROM changed c)
