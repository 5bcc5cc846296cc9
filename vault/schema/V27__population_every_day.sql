-- dvault schema, migration 27: the population figures of every past day, kept by the
-- loader.
--
-- Like the RFM boundaries of migration 26: the first request of a date for the segments
-- or the churn figures (mart.segments_as_of, mart.churn_as_of) scored every customer of
-- then, seconds at ten times the demo data. After each run the loader now computes, in
-- the same sweep of the order history as the boundaries, the figures per segment at the
-- end of every past day that has none (src/load/business/past_days/population.rs) and
-- stores them here with by_loader set. They are forgotten like the others and not
-- counted against the 1,000 business times that requests may remember. Which days'
-- figures were kept is marked on the day's boundaries (population_kept): a day with
-- nobody to count has no rows here, and is not swept again for them.
ALTER TABLE business_vault.population_as_of
    ADD COLUMN by_loader boolean NOT NULL DEFAULT false;
ALTER TABLE business_vault.rfm_cutpoints_as_of
    ADD COLUMN population_kept boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN business_vault.rfm_cutpoints_as_of.population_kept IS
    'The loader''s sweep kept the population figures of this day too (in business_vault.population_as_of, by_loader; none when nobody was known then).';
COMMENT ON COLUMN business_vault.population_as_of.by_loader IS
    'Stored by the loader''s sweep of every past day (as_of is the end of a UTC day), not by a request; kept until a batch writes at or before it.';
COMMENT ON TABLE business_vault.population_as_of IS
    'Per RFM segment, the customers as they were at business time as_of (what mart.segments_as_of and mart.churn_as_of derive their figures from): the end of every past day, kept by the loader (by_loader), and the other times requests asked for, kept once computed (at most 1,000: the least recently computed go first). Deleted when a batch writes anything at or before as_of.';
