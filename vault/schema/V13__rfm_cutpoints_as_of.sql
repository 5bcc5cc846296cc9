-- dvault schema, migration 13: the RFM boundaries of past business times, remembered.
--
-- A customer's Customer 360 as of a time ts scores it against the quintile boundaries of
-- the whole population at ts, and those need every customer's orders as they were then:
-- seconds at ten times the demo data, where one customer's own figures take
-- milliseconds. So the boundaries of each ts asked for are computed once
-- (business_vault.rfm_cuts_at) and kept here, until the loader writes something that
-- could move them: a batch deletes the rows at or after the earliest business time it
-- wrote (src/load/business.rs). A row is only stored if the loader's checkpoint did not
-- move while it was computed (the function locks the checkpoint row FOR SHARE; a batch
-- holds it FOR UPDATE from its start), so a boundary computed from a vault that a
-- concurrent batch changed is never kept.
CREATE TABLE business_vault.rfm_cutpoints_as_of (
    as_of       timestamptz PRIMARY KEY,
    population  integer NOT NULL,
    recency     date[] NOT NULL,
    frequency   integer[] NOT NULL,
    monetary    numeric[] NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE business_vault.rfm_cutpoints_as_of IS
    'business_vault.rfm_cutpoints as they were at business time as_of, for the as-of functions (mart.customer_360_as_of): kept once computed, deleted by the loader when a batch writes anything at or before as_of. At most 1,000 rows (the least recently computed go first).';
