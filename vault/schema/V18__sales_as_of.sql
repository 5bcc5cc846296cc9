-- dvault schema, migration 18: the sales of past business times, remembered.
--
-- The dashboard's as-of picker moves every panel, and the API answers the revenue
-- series, the categories and the top products as they were at a business time ts
-- (orders placed by ts, counted by their status then, products in their category of
-- then). All three come from every order and line as they were at ts: seconds at ten
-- times the demo data. Like the population figures of V15, each ts asked for is
-- computed once, in one pass, and kept until the loader writes something that could
-- move it: a batch deletes the times at or after the earliest business time it wrote
-- (src/load/business.rs), and a time is stored only if the loader's checkpoint did not
-- move while it was computed (business_vault.sales_remembered in
-- views/50_time_travel.sql).
--
-- One row in business_vault.sales_as_of says that ts is remembered (also when it had
-- no sales at all); its figures hang from it and go with it.
CREATE TABLE business_vault.sales_as_of (
    as_of       timestamptz PRIMARY KEY,
    computed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE business_vault.sales_as_of IS
    'The business times whose sales are remembered in business_vault.revenue_as_of, categories_as_of and top_products_as_of: deleted by the loader when a batch writes anything at or before as_of (the figures go with it). At most 1,000 business times (the least recently computed go first).';

CREATE TABLE business_vault.revenue_as_of (
    as_of                        timestamptz NOT NULL
                                 REFERENCES business_vault.sales_as_of ON DELETE CASCADE,
    grain                        text NOT NULL CHECK (grain IN ('day', 'week', 'month')),
    period_start                 date NOT NULL,
    orders                       bigint NOT NULL,
    customers                    bigint NOT NULL,
    units                        numeric NOT NULL,
    revenue                      numeric NOT NULL,
    orders_cancelled_or_returned bigint NOT NULL,
    revenue_lost                 numeric NOT NULL,
    PRIMARY KEY (as_of, grain, period_start)
);
COMMENT ON TABLE business_vault.revenue_as_of IS
    'business_vault.revenue_period as it was at business time as_of: per day, ISO week and month with an order placed by as_of, the orders counted by their status then.';

CREATE TABLE business_vault.categories_as_of (
    as_of      timestamptz NOT NULL
               REFERENCES business_vault.sales_as_of ON DELETE CASCADE,
    category   text,
    products   bigint NOT NULL,
    units_sold bigint NOT NULL,
    revenue    numeric NOT NULL,
    CONSTRAINT categories_as_of_key UNIQUE NULLS NOT DISTINCT (as_of, category)
);
COMMENT ON TABLE business_vault.categories_as_of IS
    'business_vault.category_summary as it was at business time as_of: per category of then, the products known by then (a product version in force, or a line in an order placed by then) and the sales of the orders counted then.';

CREATE TABLE business_vault.top_products_as_of (
    as_of      timestamptz NOT NULL
               REFERENCES business_vault.sales_as_of ON DELETE CASCADE,
    rank       integer NOT NULL,
    product_id text NOT NULL,
    name       text,
    category   text,
    units_sold bigint NOT NULL,
    revenue    numeric NOT NULL,
    PRIMARY KEY (as_of, rank)
);
COMMENT ON TABLE business_vault.top_products_as_of IS
    'The 100 products with the most revenue at business time as_of (ties: product id), with their name and category of then: what GET /analytics/top-products?as_of= reads.';
