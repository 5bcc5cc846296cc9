-- Order, product and revenue views (current state). They read the business vault
-- tables the loader keeps current (order_summary, bridge_customer_order_product), not
-- satellite history. An order counts (revenue, units, buyers) unless its current
-- status is cancelled or returned; an order without a status row is 'placed'.

CREATE OR REPLACE VIEW mart.orders AS
SELECT ho.order_id, hc.customer_id, o.ordered_at, o.order_date, o.channel, o.status,
       o.status_known, o.is_counted, o.lines, o.units, o.amount, o.hk_order, o.hk_customer
  FROM business_vault.order_summary o
  JOIN raw_vault.hub_order ho ON ho.hk_order = o.hk_order
  JOIN raw_vault.hub_customer hc ON hc.hk_customer = o.hk_customer;
COMMENT ON VIEW mart.orders IS 'One row per order: header, current status, number of lines, units and amount.';
COMMENT ON COLUMN mart.orders.order_date IS 'UTC day of ordered_at.';
COMMENT ON COLUMN mart.orders.status IS 'Current status (placed, paid, shipped, delivered, cancelled, returned); ''placed'' when the source sent none.';
COMMENT ON COLUMN mart.orders.status_known IS 'False when status is the ''placed'' default (e.g. flat transaction files).';
COMMENT ON COLUMN mart.orders.is_counted IS 'True unless cancelled or returned: only counted orders make revenue.';
COMMENT ON COLUMN mart.orders.amount IS 'Sum of line amounts (quantity × unit_price − discount), whatever the status.';

CREATE OR REPLACE VIEW mart.order_line_items AS
SELECT b.hk_order, b.line_no, hp.product_id, pd.name AS product_name, pd.category,
       b.quantity, b.unit_price, b.discount, b.line_amount, b.hk_product,
       b.hk_order_product, b.hk_customer
  FROM business_vault.bridge_customer_order_product b
  JOIN raw_vault.hub_product hp ON hp.hk_product = b.hk_product
  LEFT JOIN LATERAL (
        SELECT s.name, s.category FROM raw_vault.sat_product_details s
         WHERE s.hk_product = b.hk_product
         ORDER BY s.applied_dts DESC, s.event_seq DESC LIMIT 1) pd ON true;
COMMENT ON VIEW mart.order_line_items IS 'The lines of mart.order_lines without their order''s header (customer, time, status): what the API reads for orders it has already listed, by hk_order; three tables joined instead of six (planned per request, half the time).';

CREATE OR REPLACE VIEW mart.order_lines AS
SELECT ho.order_id, i.line_no, i.product_id, i.product_name, i.category,
       hc.customer_id, o.ordered_at, o.order_date, o.status, o.is_counted,
       i.quantity, i.unit_price, i.discount, i.line_amount,
       i.hk_order, i.hk_order_product, i.hk_product, i.hk_customer
  FROM business_vault.order_summary o
  JOIN mart.order_line_items i ON i.hk_order = o.hk_order
  JOIN raw_vault.hub_order ho ON ho.hk_order = o.hk_order
  JOIN raw_vault.hub_customer hc ON hc.hk_customer = o.hk_customer;
COMMENT ON VIEW mart.order_lines IS 'One row per order line: product (current name and category), quantities, prices and the order''s status.';
COMMENT ON COLUMN mart.order_lines.line_no IS 'Line number within the order (transaction id for flat transaction files).';
COMMENT ON COLUMN mart.order_lines.discount IS 'Money amount off the line (not a rate).';
COMMENT ON COLUMN mart.order_lines.line_amount IS 'quantity × unit_price − discount.';
COMMENT ON COLUMN mart.order_lines.is_counted IS 'True unless the order is cancelled or returned.';

CREATE OR REPLACE VIEW mart.customer_orders AS
SELECT x.customer_id, ho.order_id, x.ordered_at, x.order_date, x.channel, x.status,
       x.is_counted, x.lines, x.units, x.amount, x.order_number, x.days_since_previous_order,
       x.cumulative_spent, x.hk_customer, x.hk_order
  FROM (SELECT hc.customer_id, o.*,
               row_number() OVER w AS order_number,
               o.order_date - lag(o.order_date) OVER w AS days_since_previous_order,
               coalesce(sum(o.amount) FILTER (WHERE o.is_counted) OVER w, 0) AS cumulative_spent
          FROM business_vault.order_summary o
          JOIN raw_vault.hub_customer hc ON hc.hk_customer = o.hk_customer
        WINDOW w AS (PARTITION BY o.hk_customer, hc.customer_id ORDER BY o.ordered_at, o.hk_order)) x
  JOIN raw_vault.hub_order ho ON ho.hk_order = x.hk_order;
COMMENT ON VIEW mart.customer_orders IS 'Each customer''s orders in time order, with their rank and the running total spent.';
COMMENT ON COLUMN mart.customer_orders.order_number IS '1 for the customer''s first order, 2 for the second, ... (all orders, whatever the status).';
COMMENT ON COLUMN mart.customer_orders.days_since_previous_order IS 'UTC days since the customer''s previous order; NULL for the first.';
COMMENT ON COLUMN mart.customer_orders.cumulative_spent IS 'Amount of the customer''s counted orders up to and including this one.';

-- Kept per product by the loader (business_vault.product_summary, V9): one row, found
-- by its key or read in the order of one of the table's indexes.
CREATE OR REPLACE VIEW mart.products AS
SELECT p.product_id, p.name, p.category, p.brand, p.price, p.units_sold, p.revenue,
       p.orders, p.buyers, p.views, p.viewers, p.viewers_who_bought,
       p.view_to_purchase_rate, p.rank_in_category, p.hk_product
  FROM business_vault.product_summary p;
COMMENT ON VIEW mart.products IS 'One row per product: current details, sales over counted orders, views and conversion, revenue rank in its category.';
COMMENT ON COLUMN mart.products.price IS 'Current list price.';
COMMENT ON COLUMN mart.products.units_sold IS 'Units in counted orders (not cancelled or returned).';
COMMENT ON COLUMN mart.products.revenue IS 'Line amounts (after discounts) in counted orders.';
COMMENT ON COLUMN mart.products.buyers IS 'Distinct customers with a counted order of the product.';
COMMENT ON COLUMN mart.products.views IS 'Product views in the clickstream.';
COMMENT ON COLUMN mart.products.viewers IS 'Distinct customers who viewed the product.';
COMMENT ON COLUMN mart.products.viewers_who_bought IS 'Viewers who also have a counted order of the product (at any time).';
COMMENT ON COLUMN mart.products.view_to_purchase_rate IS 'viewers_who_bought / viewers (0..1, 4 decimals); NULL without views.';
COMMENT ON COLUMN mart.products.rank_in_category IS 'Rank by revenue within the current category (1 = best; ties share a rank).';

-- Kept per category by the loader (business_vault.category_summary, V17).
CREATE OR REPLACE VIEW mart.categories AS
SELECT c.category, c.products, c.units_sold, c.revenue,
       round(100.0 * c.revenue / nullif(sum(c.revenue) OVER (), 0), 2) AS revenue_pct
  FROM business_vault.category_summary c
 ORDER BY c.revenue DESC, c.category NULLS LAST;
COMMENT ON VIEW mart.categories IS 'One row per current product category (NULL: products without one), by revenue: products, units sold and revenue of counted orders, share of all revenue.';
COMMENT ON COLUMN mart.categories.revenue_pct IS 'Share of all revenue, percent.';

-- Revenue by period. An order belongs to the UTC day (ISO week starting Monday,
-- month) of ordered_at; its current status decides whether it counts, so a later
-- cancellation or return removes it from the period it was ordered in. Periods
-- between the first and the last order with no order show zeros.
CREATE OR REPLACE VIEW mart.revenue_daily AS
SELECT p.period::date AS day,
       coalesce(r.orders, 0) AS orders,
       coalesce(r.customers, 0) AS customers,
       coalesce(r.units, 0) AS units,
       coalesce(r.revenue, 0.00) AS revenue,
       round(r.revenue / nullif(r.orders, 0), 2) AS avg_order_value,
       coalesce(r.orders_cancelled_or_returned, 0) AS orders_cancelled_or_returned,
       coalesce(r.revenue_lost, 0.00) AS revenue_lost
  FROM (SELECT generate_series(min(x.period_start)::timestamp, max(x.period_start)::timestamp,
                               interval '1 day') AS period
          FROM business_vault.revenue_period x
         WHERE x.grain = 'day') p
  LEFT JOIN business_vault.revenue_period r
         ON r.grain = 'day' AND r.period_start = p.period::date;
COMMENT ON VIEW mart.revenue_daily IS
    'Revenue per UTC day of ordered_at, counted orders only (not cancelled or returned, by current status); days without orders show zeros.';
COMMENT ON COLUMN mart.revenue_daily.orders IS 'Counted orders placed that day.';
COMMENT ON COLUMN mart.revenue_daily.customers IS 'Distinct customers with a counted order that day.';
COMMENT ON COLUMN mart.revenue_daily.revenue IS 'Amount of the counted orders (after line discounts).';
COMMENT ON COLUMN mart.revenue_daily.avg_order_value IS 'revenue / orders; NULL without orders.';
COMMENT ON COLUMN mart.revenue_daily.orders_cancelled_or_returned IS 'Orders placed that day that are now cancelled or returned.';
COMMENT ON COLUMN mart.revenue_daily.revenue_lost IS 'Amount of those cancelled or returned orders.';

CREATE OR REPLACE VIEW mart.revenue_weekly AS
SELECT p.period::date AS week,
       coalesce(r.orders, 0) AS orders,
       coalesce(r.customers, 0) AS customers,
       coalesce(r.units, 0) AS units,
       coalesce(r.revenue, 0.00) AS revenue,
       round(r.revenue / nullif(r.orders, 0), 2) AS avg_order_value,
       coalesce(r.orders_cancelled_or_returned, 0) AS orders_cancelled_or_returned,
       coalesce(r.revenue_lost, 0.00) AS revenue_lost
  FROM (SELECT generate_series(min(x.period_start)::timestamp, max(x.period_start)::timestamp,
                               interval '1 week') AS period
          FROM business_vault.revenue_period x
         WHERE x.grain = 'week') p
  LEFT JOIN business_vault.revenue_period r
         ON r.grain = 'week' AND r.period_start = p.period::date;
COMMENT ON VIEW mart.revenue_weekly IS
    'Revenue per ISO week (starting Monday, UTC) of ordered_at, counted orders only; same columns as mart.revenue_daily.';
COMMENT ON COLUMN mart.revenue_weekly.week IS 'Monday of the ISO week.';
COMMENT ON COLUMN mart.revenue_weekly.customers IS 'Distinct customers with a counted order that week.';

CREATE OR REPLACE VIEW mart.revenue_monthly AS
SELECT p.period::date AS month,
       coalesce(r.orders, 0) AS orders,
       coalesce(r.customers, 0) AS customers,
       coalesce(r.units, 0) AS units,
       coalesce(r.revenue, 0.00) AS revenue,
       round(r.revenue / nullif(r.orders, 0), 2) AS avg_order_value,
       coalesce(r.orders_cancelled_or_returned, 0) AS orders_cancelled_or_returned,
       coalesce(r.revenue_lost, 0.00) AS revenue_lost
  FROM (SELECT generate_series(min(x.period_start)::timestamp, max(x.period_start)::timestamp,
                               interval '1 month') AS period
          FROM business_vault.revenue_period x
         WHERE x.grain = 'month') p
  LEFT JOIN business_vault.revenue_period r
         ON r.grain = 'month' AND r.period_start = p.period::date;
COMMENT ON VIEW mart.revenue_monthly IS
    'Revenue per calendar month (UTC) of ordered_at, counted orders only; same columns as mart.revenue_daily.';
COMMENT ON COLUMN mart.revenue_monthly.month IS 'First day of the month.';
COMMENT ON COLUMN mart.revenue_monthly.customers IS 'Distinct customers with a counted order that month.';
