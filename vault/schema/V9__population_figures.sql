-- dvault schema, migration 9: what the API and the marts need across the whole
-- population, kept by the loader per batch instead of computed per request (issue 15).
--
-- Before this migration mart.products computed every product's sales, views and
-- revenue rank on each request (the rank is a window over all products, so a filter on
-- one product could not be pushed below it), and mart.customer_360 scored every
-- customer against the RFM boundaries when it was read: a segment filter, the segment
-- summary and the churn figures each scored the whole population. Here:
--
--   * business_vault.product_summary: one row per product with its current details,
--     sales, views and rank in its category; the loader rewrites the rows of the
--     products a batch reached and re-ranks their categories;
--   * business_vault.customer_360_current gains the RFM scores and segment (against
--     business_vault.rfm_cutpoints, rescored in the batch that moves a customer or a
--     boundary), the average gap between orders, the first days on which the customer
--     is at risk and churned (they depend on the orders only), and the predicted CLV
--     of the day in business_vault.customer_scores_day;
--   * business_vault.segment_summary and business_vault.churn_calendar: the segment
--     totals and the number of customers who become at risk or churned on each day,
--     so that mart.segments and mart.churn read a few dozen rows.
--
-- The predicted CLV is the only stored figure that moves with the calendar. It is
-- stored for one day (customer_scores_day.scored_on, the day of the last batch in
-- UTC); the first batch of a new day re-scores it for every customer, and the views
-- compute it from the stored figures when the stored day is not today, so they are
-- never stale, only slower on a day without any load.
--
-- Like the rest of the business vault these are derived: `dvault rebuild` empties
-- them and replays the log (business::TABLES); rules they are computed with change
-- only in a new migration.

-- Churn thresholds as days ----------------------------------------------------------

-- business_vault.churn_risk (views/20_rules.sql) says: churned when days since the last
-- counted order > max(90, 3 × gap), at risk when days > min(60, max(14, 1.5 × gap))
-- (> 60 with a single order, gap NULL). Days are whole, so days > x holds from
-- day floor(x) + 1 on: the first day of each state depends on the orders only, and
-- counting customers by those days gives the churn figures of any day.
CREATE FUNCTION business_vault.at_risk_on(last_order_date date, avg_days_between_orders numeric)
    RETURNS date
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN last_order_date + 1 + CASE WHEN avg_days_between_orders IS NULL THEN 60
        ELSE floor(least(60, greatest(14, 1.5 * avg_days_between_orders)))::integer END;
COMMENT ON FUNCTION business_vault.at_risk_on(date, numeric) IS
    'First day on which a customer with this last counted order day and average gap is at risk (or churned): business_vault.churn_risk as a date.';

CREATE FUNCTION business_vault.churned_on(last_order_date date, avg_days_between_orders numeric)
    RETURNS date
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN last_order_date + 1 + floor(greatest(90, 3 * avg_days_between_orders))::integer;
COMMENT ON FUNCTION business_vault.churned_on(date, numeric) IS
    'First day on which a customer with this last counted order day and average gap is churned: business_vault.churn_risk as a date.';

-- Products ----------------------------------------------------------------------------

CREATE TABLE business_vault.product_summary (
    hk_product            bytea PRIMARY KEY,
    product_id            text NOT NULL,
    -- current sat_product_details version (NULL without one)
    name                  text,
    category              text,
    brand                 text,
    price                 numeric(12,2),
    -- counted orders (not cancelled or returned)
    units_sold            bigint NOT NULL,
    revenue               numeric NOT NULL,
    orders                bigint NOT NULL,
    buyers                bigint NOT NULL,
    -- clickstream
    views                 bigint NOT NULL,
    viewers               bigint NOT NULL,
    viewers_who_bought    bigint NOT NULL,
    view_to_purchase_rate numeric,
    rank_in_category      bigint NOT NULL
);
-- GET /products pages by id, or by revenue or units with the id as tie-break
CREATE INDEX product_summary_product_id_idx ON business_vault.product_summary (product_id);
CREATE INDEX product_summary_revenue_idx ON business_vault.product_summary (revenue, product_id);
CREATE INDEX product_summary_units_idx ON business_vault.product_summary (units_sold, product_id);
-- the loader re-ranks a category: its products by revenue
CREATE INDEX product_summary_category_idx ON business_vault.product_summary (category, revenue);
COMMENT ON TABLE business_vault.product_summary IS
    'One row per product: current details, sales over counted orders, views and conversion, revenue rank in its category. Kept by the loader; mart.products reads it.';
COMMENT ON COLUMN business_vault.product_summary.units_sold IS 'Units in counted orders (not cancelled or returned).';
COMMENT ON COLUMN business_vault.product_summary.revenue IS 'Line amounts (after discounts) in counted orders.';
COMMENT ON COLUMN business_vault.product_summary.buyers IS 'Distinct customers with a counted order of the product.';
COMMENT ON COLUMN business_vault.product_summary.viewers_who_bought IS 'Viewers who also have a counted order of the product (at any time).';
COMMENT ON COLUMN business_vault.product_summary.view_to_purchase_rate IS 'viewers_who_bought / viewers (4 decimals); NULL without views.';
COMMENT ON COLUMN business_vault.product_summary.rank_in_category IS 'Rank by revenue within the current category (1 = best; ties share a rank; products without a category rank among themselves).';

-- A product's row without its rank, by index lookups for that product: what fills the
-- table below. The loader computes the same figures set-based for the products a batch
-- reached (src/load/business.rs), and a test compares both with the definition mart.products
-- had before this migration.
CREATE FUNCTION business_vault.product_figures(product bytea)
RETURNS TABLE (product_id text, name text, category text, brand text, price numeric(12,2),
               units_sold bigint, revenue numeric, orders bigint, buyers bigint, views bigint,
               viewers bigint, viewers_who_bought bigint, view_to_purchase_rate numeric)
LANGUAGE sql STABLE AS $$
    SELECT h.product_id, d.name, d.category, d.brand, d.price,
           coalesce(s.units_sold, 0), coalesce(s.revenue, 0.00), s.orders, s.buyers,
           v.views, v.viewers, c.viewers_who_bought,
           round(c.viewers_who_bought::numeric / nullif(v.viewers, 0), 4)
      FROM raw_vault.hub_product h
      LEFT JOIN LATERAL (
           SELECT x.name, x.category, x.brand, x.price
             FROM raw_vault.sat_product_details x
            WHERE x.hk_product = h.hk_product
            ORDER BY x.applied_dts DESC, x.event_seq DESC LIMIT 1) d ON true
     -- the product's lines, each order's status looked up by its key (OFFSET 0: never
     -- a hash of the whole order summary)
     CROSS JOIN LATERAL (
           SELECT sum(b.quantity) AS units_sold, sum(b.line_amount) AS revenue,
                  count(DISTINCT b.hk_order) AS orders, count(DISTINCT b.hk_customer) AS buyers,
                  array_agg(DISTINCT b.hk_customer) AS buyer_keys
             FROM business_vault.bridge_customer_order_product b
            CROSS JOIN LATERAL (
                  SELECT o.is_counted FROM business_vault.order_summary o
                   WHERE o.hk_order = b.hk_order OFFSET 0) o
            WHERE b.hk_product = h.hk_product AND o.is_counted) s
     CROSS JOIN LATERAL (
           SELECT count(*) AS views, count(DISTINCT x.hk_customer) AS viewers,
                  count(DISTINCT x.hk_customer) FILTER (WHERE x.hk_customer = ANY (s.buyer_keys))
                      AS viewers_who_bought
             FROM raw_vault.link_product_view x
            WHERE x.hk_product = h.hk_product) v
     CROSS JOIN LATERAL (SELECT v.viewers_who_bought OFFSET 0) c
     WHERE h.hk_product = product
$$;
COMMENT ON FUNCTION business_vault.product_figures(bytea) IS
    'One product''s business_vault.product_summary row without its rank: current details, sales over counted orders, views and conversion.';

-- Customers: stored scores ------------------------------------------------------------

ALTER TABLE business_vault.customer_360_current
    ADD COLUMN avg_days_between_orders numeric,
    ADD COLUMN recency_score           integer,
    ADD COLUMN frequency_score         integer,
    ADD COLUMN monetary_score          integer,
    ADD COLUMN segment                 text NOT NULL DEFAULT 'Prospect',
    ADD COLUMN at_risk_on              date,
    ADD COLUMN churned_on              date,
    ADD COLUMN clv_predicted_12m       numeric NOT NULL DEFAULT 0.00;
COMMENT ON COLUMN business_vault.customer_360_current.avg_days_between_orders IS
    '(last − first counted order day) / (orders_count − 1), 1 decimal; NULL with fewer than two counted orders.';
COMMENT ON COLUMN business_vault.customer_360_current.recency_score IS
    'RFM R against business_vault.rfm_cutpoints (kept consistent with it in every batch); NULL without a counted order.';
COMMENT ON COLUMN business_vault.customer_360_current.segment IS
    'RFM segment of the stored scores (business_vault.rfm_segment); ''Prospect'' without a counted order.';
COMMENT ON COLUMN business_vault.customer_360_current.at_risk_on IS
    'First UTC day on which the customer is at risk or churned (business_vault.at_risk_on); NULL without a counted order.';
COMMENT ON COLUMN business_vault.customer_360_current.churned_on IS
    'First UTC day on which the customer is churned (business_vault.churned_on); NULL without a counted order.';
COMMENT ON COLUMN business_vault.customer_360_current.clv_predicted_12m IS
    'Predicted 12-month value on business_vault.customer_scores_day.scored_on (the views compute it on any other day).';
-- GET /customers?segment= and /segments/{name}/customers page a segment by id
CREATE INDEX customer_360_current_segment_idx
    ON business_vault.customer_360_current (segment, customer_id);
-- sort=-last_order_at and sort=-total_spent: the view's sort expressions
CREATE INDEX customer_360_current_last_order_at_idx
    ON business_vault.customer_360_current ((coalesce(last_order_at, '-infinity'::timestamptz)), customer_id);
CREATE INDEX customer_360_current_total_spent_idx
    ON business_vault.customer_360_current ((coalesce(total_spent, 0.00)), customer_id);
-- the loader re-scores the customers between an old and a new RFM boundary
CREATE INDEX customer_360_current_last_order_date_idx
    ON business_vault.customer_360_current (last_order_date);
CREATE INDEX customer_360_current_orders_count_idx
    ON business_vault.customer_360_current (orders_count);

CREATE TABLE business_vault.customer_scores_day (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    scored_on date NOT NULL
);
COMMENT ON TABLE business_vault.customer_scores_day IS
    'The UTC day for which customer_360_current.clv_predicted_12m and segment_summary.clv_predicted_12m are stored (the day of the last batch).';

-- Segments and churn --------------------------------------------------------------------

CREATE TABLE business_vault.segment_summary (
    segment           text PRIMARY KEY,
    customers         bigint NOT NULL,
    revenue           numeric NOT NULL,
    orders            bigint NOT NULL,
    with_orders       bigint NOT NULL,
    last_order_days   bigint NOT NULL,
    clv_predicted_12m numeric NOT NULL
);
COMMENT ON TABLE business_vault.segment_summary IS
    'Per RFM segment (stored scores of customer_360_current): customers, all-time spend, counted orders, and what mart.segments derives its averages from. Rewritten by the loader in each batch that moved a customer.';
COMMENT ON COLUMN business_vault.segment_summary.with_orders IS 'Customers with a counted order.';
COMMENT ON COLUMN business_vault.segment_summary.last_order_days IS 'Sum of their last counted order days, as days since 2000-01-01.';
COMMENT ON COLUMN business_vault.segment_summary.clv_predicted_12m IS 'Sum of the predicted 12-month values on customer_scores_day.scored_on.';

CREATE TABLE business_vault.churn_calendar (
    day      date PRIMARY KEY,
    at_risk  bigint NOT NULL,
    churned  bigint NOT NULL
);
COMMENT ON TABLE business_vault.churn_calendar IS
    'Customers with a counted order by the first day they are at risk (at_risk) or churned (churned): the churn figures of day D add up the rows up to D.';

-- The statements the loader runs (src/load/business.rs) ---------------------------------

-- score_customers calls business_vault.customer_scores, which views/20_rules.sql
-- defines after the migrations (a fresh database has none yet): its body is checked
-- when it first runs. Stored scores follow that function: a change to the scoring rules
-- in views/20_rules.sql needs a `dvault rebuild` (or the fill at the end of this file).
SET check_function_bodies = off;

-- Score the given customers against the current RFM boundaries, on day `today`: the
-- stored scores, segment, gap, churn days and predicted CLV. Writes only rows whose
-- values change.
CREATE FUNCTION business_vault.score_customers(customers bytea[], today date)
RETURNS void
LANGUAGE sql VOLATILE AS $$
    UPDATE business_vault.customer_360_current c
       SET avg_days_between_orders = s.avg_days_between_orders,
           recency_score = s.recency_score, frequency_score = s.frequency_score,
           monetary_score = s.monetary_score, segment = s.segment,
           clv_predicted_12m = s.clv_predicted_12m, at_risk_on = s.at_risk_on,
           churned_on = s.churned_on
      FROM (SELECT x.hk_customer, y.avg_days_between_orders, y.recency_score,
                   y.frequency_score, y.monetary_score, y.segment, y.clv_predicted_12m,
                   business_vault.at_risk_on(CASE WHEN x.orders_count > 0 THEN x.last_order_date END,
                                             y.avg_days_between_orders) AS at_risk_on,
                   business_vault.churned_on(CASE WHEN x.orders_count > 0 THEN x.last_order_date END,
                                             y.avg_days_between_orders) AS churned_on
              FROM unnest(customers) AS u(hk)
             CROSS JOIN LATERAL (
                   SELECT z.* FROM business_vault.customer_360_current z
                    WHERE z.hk_customer = u.hk OFFSET 0) x
              LEFT JOIN business_vault.rfm_cutpoints q ON true
             CROSS JOIN LATERAL business_vault.customer_scores(
                   today, x.first_order_date, x.last_order_date, x.orders_count,
                   x.total_spent, q.recency, q.frequency, q.monetary) y) s
     WHERE c.hk_customer = s.hk_customer
       AND (c.avg_days_between_orders, c.recency_score, c.frequency_score, c.monetary_score,
            c.segment, c.clv_predicted_12m, c.at_risk_on, c.churned_on)
           IS DISTINCT FROM
           (s.avg_days_between_orders, s.recency_score, s.frequency_score, s.monetary_score,
            s.segment, s.clv_predicted_12m, s.at_risk_on, s.churned_on);
$$;
RESET check_function_bodies;
COMMENT ON FUNCTION business_vault.score_customers(bytea[], date) IS
    'Rewrite the stored scores, segment, gap, churn days and predicted CLV (for day today) of these customers, against business_vault.rfm_cutpoints.';

-- Rewrite the segment totals and the churn calendar from the stored scores, and record
-- the day the predicted CLVs are stored for. A sort of the customers: run once per
-- batch that moved a customer.
CREATE FUNCTION business_vault.summarise_customers(today date)
RETURNS void
LANGUAGE sql VOLATILE AS $$
    DELETE FROM business_vault.segment_summary;
    INSERT INTO business_vault.segment_summary
        (segment, customers, revenue, orders, with_orders, last_order_days, clv_predicted_12m)
    SELECT c.segment, count(*), sum(coalesce(c.total_spent, 0.00)),
           sum(coalesce(c.orders_count, 0)),
           count(*) FILTER (WHERE c.orders_count > 0),
           coalesce(sum(c.last_order_date - DATE '2000-01-01') FILTER (WHERE c.orders_count > 0), 0),
           sum(c.clv_predicted_12m)
      FROM business_vault.customer_360_current c
     GROUP BY c.segment;
    DELETE FROM business_vault.churn_calendar;
    INSERT INTO business_vault.churn_calendar (day, at_risk, churned)
    SELECT d.day, sum(d.at_risk), sum(d.churned)
      FROM (SELECT c.at_risk_on AS day, 1 AS at_risk, 0 AS churned
              FROM business_vault.customer_360_current c WHERE c.at_risk_on IS NOT NULL
            UNION ALL
            SELECT c.churned_on, 0, 1
              FROM business_vault.customer_360_current c WHERE c.churned_on IS NOT NULL) d
     GROUP BY d.day;
    INSERT INTO business_vault.customer_scores_day AS s (singleton, scored_on)
    VALUES (true, today)
    ON CONFLICT (singleton) DO UPDATE SET scored_on = excluded.scored_on
    WHERE s.scored_on IS DISTINCT FROM excluded.scored_on;
$$;
COMMENT ON FUNCTION business_vault.summarise_customers(date) IS
    'Rewrite business_vault.segment_summary and business_vault.churn_calendar from customer_360_current, and set customer_scores_day to today.';

-- A database migrated with data in it: fill the new tables and columns as the loader
-- would (the same statements for every product and customer).
INSERT INTO business_vault.product_summary
    (hk_product, product_id, name, category, brand, price, units_sold, revenue, orders,
     buyers, views, viewers, viewers_who_bought, view_to_purchase_rate, rank_in_category)
SELECT h.hk_product, f.*, 0
  FROM raw_vault.hub_product h
 CROSS JOIN LATERAL business_vault.product_figures(h.hk_product) f;
UPDATE business_vault.product_summary p SET rank_in_category = r.rank
  FROM (SELECT x.hk_product, rank() OVER (PARTITION BY x.category ORDER BY x.revenue DESC) AS rank
          FROM business_vault.product_summary x) r
 WHERE r.hk_product = p.hk_product;

-- (in a DO block: a fresh database has no customer_scores yet, and no customer either)
DO $$
BEGIN
    IF EXISTS (SELECT FROM business_vault.customer_360_current) THEN
        PERFORM business_vault.score_customers(
            (SELECT array_agg(c.hk_customer) FROM business_vault.customer_360_current c),
            (now() AT TIME ZONE 'UTC')::date);
        PERFORM business_vault.summarise_customers((now() AT TIME ZONE 'UTC')::date);
    END IF;
END
$$;
