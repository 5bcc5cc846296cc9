-- dvault schema, migration 28: the revenue series of every past day, kept by the loader.
--
-- Like the boundaries (migration 26) and the population figures (27): the first request
-- of a date for the revenue series (mart.revenue_as_of, GET /analytics/revenue?as_of=)
-- computed the sales of then from every order and line, seconds at ten times the demo
-- data. The loader's sweep of the order history now also keeps the series of every
-- past day (src/load/business/past_days/revenue.rs). Storing each day's whole series
-- would be some 440 rows a day, most of them the same as the day before's: a period's
-- figures change only on the days one of its orders is placed or changes. So each
-- version of a period's figures is kept once, with the days it held (`held`: the ends of
-- the days from its lower bound up to, not including, its upper one).
--
-- The versions are rewritten whole by every fill that finds a day without them; which
-- days they answer for is marked on the day's boundaries (sales_kept), so a batch that
-- forgets a day (src/load/business/forget_past.sql deletes its boundaries' row) also
-- forgets that its series is kept.
ALTER TABLE business_vault.rfm_cutpoints_as_of
    ADD COLUMN sales_kept boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN business_vault.rfm_cutpoints_as_of.sales_kept IS
    'The loader''s sweep kept the revenue series of this day too (in business_vault.revenue_kept, the versions whose held range contains the day).';

CREATE TABLE business_vault.revenue_kept (
    grain                        text NOT NULL CHECK (grain IN ('day', 'week', 'month')),
    period_start                 date NOT NULL,
    held                         daterange NOT NULL CHECK (NOT isempty(held)),
    orders                       bigint NOT NULL,
    customers                    bigint NOT NULL,
    units                        numeric NOT NULL,
    revenue                      numeric NOT NULL,
    orders_cancelled_or_returned bigint NOT NULL,
    revenue_lost                 numeric NOT NULL,
    PRIMARY KEY (grain, period_start, held)
);
-- a day's series: the versions whose range holds it. SP-GiST, not GiST: the ranges are
-- long and overlap (a period's last version holds to yesterday), and a GiST descent for
-- one day visited ~1,800 entries at ten times the demo data (1.4 ms); SP-GiST's quad tree
-- of (lower, upper) finds the ~250 in 0.25 ms (EXPLAIN ANALYZE, bench/README.md).
CREATE INDEX revenue_kept_held ON business_vault.revenue_kept USING spgist (held);
COMMENT ON TABLE business_vault.revenue_kept IS
    'business_vault.revenue_period as it was at the end of each past UTC day, kept by the loader: one row per version of a period''s figures (orders placed by then, counted by their status then), held at the end of every day of held. A period without an order placed by a day has no version holding that day. Answers only for the days whose business_vault.rfm_cutpoints_as_of row is marked sales_kept.';
COMMENT ON COLUMN business_vault.revenue_kept.held IS
    'The days at whose end the period had these figures.';
