-- dvault schema, migration 11: order pages and revenue series without a pass over
-- every order per request (issue 15, section 2).
--
-- `GET /orders` sorted every order to return a page (3 s at 10x the demo data), and
-- `GET /analytics/revenue` aggregated every order into periods on each request. Here:
--
--   * business_vault.order_summary gets indexes on ordered_at and amount (the orders'
--     sort keys: a page is an index range, then a sort of the page's ties) and on
--     order_date (the periods the loader recomputes are index ranges);
--   * business_vault.revenue_period: one row per day, ISO week and month that has at
--     least one order, with the figures of mart.revenue_daily|weekly|monthly. The
--     loader recomputes the periods of the orders a batch touched (their order date
--     before and after the batch), so the views read a few hundred rows.
--
-- Derived like the rest of the business vault: `dvault rebuild` empties it and replays
-- the log (business::TABLES).

CREATE INDEX order_summary_ordered_at_idx ON business_vault.order_summary (ordered_at);
CREATE INDEX order_summary_amount_idx ON business_vault.order_summary (amount);
CREATE INDEX order_summary_order_date_idx ON business_vault.order_summary (order_date);

CREATE TABLE business_vault.revenue_period (
    grain                        text NOT NULL CHECK (grain IN ('day', 'week', 'month')),
    period_start                 date NOT NULL,
    orders_placed                bigint NOT NULL CHECK (orders_placed > 0),
    orders                       bigint NOT NULL,
    customers                    bigint NOT NULL,
    units                        numeric NOT NULL,
    revenue                      numeric NOT NULL,
    orders_cancelled_or_returned bigint NOT NULL,
    revenue_lost                 numeric NOT NULL,
    PRIMARY KEY (grain, period_start)
);
COMMENT ON TABLE business_vault.revenue_period IS
    'Revenue per UTC day, ISO week (starting Monday) and calendar month of ordered_at, for the periods with at least one order; kept by the loader (src/load/business/revenue.sql), read by mart.revenue_daily|weekly|monthly.';
COMMENT ON COLUMN business_vault.revenue_period.period_start IS 'The day, the Monday of the week, or the first day of the month.';
COMMENT ON COLUMN business_vault.revenue_period.orders_placed IS 'Every order placed in the period, whatever its status (a row exists only when there is one).';
COMMENT ON COLUMN business_vault.revenue_period.orders IS 'Counted orders (not cancelled or returned, by current status).';
COMMENT ON COLUMN business_vault.revenue_period.customers IS 'Distinct customers with a counted order in the period.';

-- the vault as it stands
INSERT INTO business_vault.revenue_period
    (grain, period_start, orders_placed, orders, customers, units, revenue,
     orders_cancelled_or_returned, revenue_lost)
SELECT g.grain, date_trunc(g.grain, o.order_date::timestamp)::date, count(*),
       count(*) FILTER (WHERE o.is_counted),
       count(DISTINCT o.hk_customer) FILTER (WHERE o.is_counted),
       coalesce(sum(o.units) FILTER (WHERE o.is_counted), 0),
       coalesce(sum(o.amount) FILTER (WHERE o.is_counted), 0.00),
       count(*) FILTER (WHERE NOT o.is_counted),
       coalesce(sum(o.amount) FILTER (WHERE NOT o.is_counted), 0.00)
  FROM business_vault.order_summary o
 CROSS JOIN (VALUES ('day'), ('week'), ('month')) AS g(grain)
 GROUP BY 1, 2;
