-- The business vault refresh, 9/9: segment totals and churn calendar.
-- Population-wide.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

-- Segment totals and churn calendar: population-wide, one pass over the customers,
-- when a stored score moved.
SELECT business_vault.summarise_customers((now() AT TIME ZONE 'UTC')::date)
 WHERE EXISTS (SELECT FROM pg_temp.bv_rescore) OR EXISTS (SELECT FROM pg_temp.bv_customers)
    OR EXISTS (SELECT FROM pg_temp.bv_pit);
