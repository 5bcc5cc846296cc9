-- dvault schema, migration 26: the RFM boundaries of every past day, kept by the loader.
--
-- The boundaries of a business time are remembered once a request has computed them
-- (migration 13), but the first request of a date still computes them: half a second at
-- ten times the demo data, a stall for every request waiting on it. A date as of means
-- the end of that UTC day, and a vault's past has few days: after each run the loader
-- computes the boundaries at the end of every past day that is missing, in one sweep of
-- the order history (src/load/business/past_days.rs), and stores them here with
-- by_loader set. They are forgotten like the others (a batch deletes the rows at or after
-- the earliest business time it wrote) and not counted against the 1,000 rows that
-- requests may remember.
ALTER TABLE business_vault.rfm_cutpoints_as_of
    ADD COLUMN by_loader boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN business_vault.rfm_cutpoints_as_of.by_loader IS
    'Stored by the loader''s sweep of every past day (as_of is the end of a UTC day), not by a request; kept until a batch writes at or before it.';
COMMENT ON TABLE business_vault.rfm_cutpoints_as_of IS
    'business_vault.rfm_cutpoints as they were at business time as_of, for the as-of functions (mart.customer_360_as_of): the end of every past day, kept by the loader (by_loader), and the other times requests asked for, kept once computed (at most 1,000: the least recently computed go first). Deleted when a batch writes anything at or before as_of.';
