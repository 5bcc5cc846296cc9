-- dvault schema, migration 28: the sales of every past day (the revenue series, the
-- categories and the top products), kept by the loader.
--
-- Like the boundaries (migration 26) and the population figures (27): the first request
-- of a date for its sales (mart.revenue_as_of, mart.categories_as_of,
-- mart.top_products_as_of, GET /analytics/revenue|categories|top-products?as_of=)
-- computed them from every order and line of then, seconds at ten times the demo data.
-- The loader's sweep of the order history now also keeps them for every past day
-- (src/load/business/past_days/revenue.rs and products.rs). Storing each day's whole series
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
    'The loader''s sweep kept the sales of this day too (in business_vault.revenue_kept, categories_kept and top_products_kept: the versions whose held range contains the day).';

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

CREATE TABLE business_vault.categories_kept (
    category   text,
    held       daterange NOT NULL CHECK (NOT isempty(held)),
    products   bigint NOT NULL,
    units_sold bigint NOT NULL,
    revenue    numeric NOT NULL,
    CONSTRAINT categories_kept_key UNIQUE NULLS NOT DISTINCT (category, held)
);
CREATE INDEX categories_kept_held ON business_vault.categories_kept USING spgist (held);
COMMENT ON TABLE business_vault.categories_kept IS
    'business_vault.category_summary as it was at the end of each past UTC day, kept by the loader: one row per version of a category''s figures (the products known then in that category then, the sales of the orders counted then), held at the end of every day of held. Answers only for the days marked sales_kept.';

CREATE TABLE business_vault.top_products_kept (
    held       daterange PRIMARY KEY CHECK (NOT isempty(held)),
    product_id text[] NOT NULL,
    name       text[] NOT NULL,
    category   text[] NOT NULL,
    units_sold bigint[] NOT NULL,
    revenue    numeric[] NOT NULL
);
CREATE INDEX top_products_kept_held ON business_vault.top_products_kept USING spgist (held);
COMMENT ON TABLE business_vault.top_products_kept IS
    'The 100 products with the most revenue at the end of each past UTC day (ties: product id), with their name and category then, kept by the loader: one row per version of the whole list (the arrays in rank order; the list changes on most days with a sale, and a row a rank cost 100 index entries a day), held at the end of every day of held. Answers only for the days marked sales_kept.';
