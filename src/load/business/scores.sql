-- The business vault refresh, 8/9: category ranks and the stored scores of
-- customers whose score moved with the RFM boundaries. Keyed.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

INSERT INTO pg_temp.bv_categories (category)
SELECT s.category
  FROM pg_temp.bv_product_figures t
 CROSS JOIN LATERAL (
       SELECT x.category FROM business_vault.product_summary x
        WHERE x.hk_product = t.hk_product OFFSET 0) s;

-- (products without a category rank among themselves, as rank() partitions them)
UPDATE business_vault.product_summary p SET rank_in_category = r.rank
  FROM (SELECT x.hk_product, rank() OVER (PARTITION BY x.category ORDER BY x.revenue DESC) AS rank
          FROM (SELECT DISTINCT c.category FROM pg_temp.bv_categories c) c
         CROSS JOIN LATERAL (
               SELECT y.hk_product, y.category, y.revenue FROM business_vault.product_summary y
                WHERE y.category = c.category
               UNION ALL
               SELECT y.hk_product, y.category, y.revenue FROM business_vault.product_summary y
                WHERE y.category IS NULL AND c.category IS NULL) x) r
 WHERE p.hk_product = r.hk_product AND p.rank_in_category IS DISTINCT FROM r.rank;

-- Customer scores of the others (the rows rewritten above are scored): those whose
-- value lies between an old and a new RFM boundary (their score moved with the
-- boundary), and everybody on the first batch (no boundaries before) and on the first
-- batch of a day (the stored predicted CLV is of another day).
INSERT INTO pg_temp.bv_rescore (hk_customer)
SELECT c.hk_customer FROM business_vault.customer_360_current c
 WHERE NOT EXISTS (SELECT FROM pg_temp.bv_old_cuts)
    OR NOT EXISTS (SELECT FROM business_vault.customer_scores_day d
                    WHERE d.scored_on = (now() AT TIME ZONE 'UTC')::date)
ON CONFLICT DO NOTHING;

INSERT INTO pg_temp.bv_rescore (hk_customer)
SELECT x.hk_customer
  FROM pg_temp.bv_old_cuts o
 CROSS JOIN business_vault.rfm_cutpoints n
 CROSS JOIN generate_series(1, 4) AS k(k)
 CROSS JOIN LATERAL (
       SELECT y.hk_customer FROM business_vault.customer_360_current y
        WHERE o.recency[k.k] IS DISTINCT FROM n.recency[k.k]
          AND y.last_order_date >= least(o.recency[k.k], n.recency[k.k])
          AND y.last_order_date < CASE WHEN o.recency[k.k] IS NULL OR n.recency[k.k] IS NULL
                                       THEN 'infinity'::date
                                       ELSE greatest(o.recency[k.k], n.recency[k.k]) END
       UNION ALL
       SELECT y.hk_customer FROM business_vault.customer_360_current y
        WHERE o.frequency[k.k] IS DISTINCT FROM n.frequency[k.k]
          AND y.orders_count >= least(o.frequency[k.k], n.frequency[k.k])
          AND y.orders_count < CASE WHEN o.frequency[k.k] IS NULL OR n.frequency[k.k] IS NULL
                                    THEN 2147483647
                                    ELSE greatest(o.frequency[k.k], n.frequency[k.k]) END
       UNION ALL
       SELECT y.hk_customer FROM business_vault.customer_360_current y
        WHERE o.monetary[k.k] IS DISTINCT FROM n.monetary[k.k]
          AND coalesce(y.total_spent, 0.00) >= least(o.monetary[k.k], n.monetary[k.k])
          AND coalesce(y.total_spent, 0.00) < CASE WHEN o.monetary[k.k] IS NULL OR n.monetary[k.k] IS NULL
                                                   THEN 'Infinity'::numeric
                                                   ELSE greatest(o.monetary[k.k], n.monetary[k.k]) END) x
ON CONFLICT DO NOTHING;
ANALYZE pg_temp.bv_rescore;

SELECT business_vault.score_customers(a.customers, (now() AT TIME ZONE 'UTC')::date)
  FROM (SELECT array_agg(r.hk_customer) AS customers FROM pg_temp.bv_rescore r) a
 WHERE a.customers IS NOT NULL;
