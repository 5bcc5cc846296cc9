-- dvault schema, migration 15: the population figures of past business times, remembered.
--
-- mart.segments_as_of(ts) and mart.churn_as_of(ts) need every customer as it was at ts:
-- seconds at ten times the demo data (mart.customer_360_as_of(ts) over everyone). Like
-- the RFM boundaries of V13, each ts asked for is computed once and kept here, per
-- segment, until the loader writes something that could move it: a batch deletes the
-- rows at or after the earliest business time it wrote (src/load/business.rs), and a
-- row is stored only if the loader's checkpoint did not move while it was computed
-- (business_vault.population_at in views/50_time_travel.sql).
CREATE TABLE business_vault.population_as_of (
    as_of             timestamptz NOT NULL,
    segment           text NOT NULL,
    customers         bigint NOT NULL,
    with_orders       bigint NOT NULL,
    orders            bigint NOT NULL,
    revenue           numeric NOT NULL,
    with_days         bigint NOT NULL,
    days_sum          bigint NOT NULL,
    clv_predicted_12m numeric NOT NULL,
    active            bigint NOT NULL,
    at_risk           bigint NOT NULL,
    churned           bigint NOT NULL,
    computed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (as_of, segment)
);
COMMENT ON TABLE business_vault.population_as_of IS
    'Per RFM segment, the customers as they were at business time as_of (what mart.segments_as_of and mart.churn_as_of derive their figures from): kept once computed, deleted by the loader when a batch writes anything at or before as_of. At most 1,000 business times (the least recently computed go first).';
COMMENT ON COLUMN business_vault.population_as_of.orders IS 'Counted orders of the segment''s customers.';
COMMENT ON COLUMN business_vault.population_as_of.with_days IS 'Customers with a days_since_last_order (a counted order).';
COMMENT ON COLUMN business_vault.population_as_of.days_sum IS 'Sum of their days_since_last_order.';
COMMENT ON COLUMN business_vault.population_as_of.clv_predicted_12m IS 'Sum of the predicted 12-month values.';
