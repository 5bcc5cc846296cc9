-- The Customer 360: one row per customer, read from business_vault.customer_360_current
-- (current profile, order figures, RFM scores and segment, churn days and predicted CLV,
-- kept by the loader; the scores against the boundaries of the current population,
-- business_vault.rfm_cutpoints), plus what must not be stored because it moves by
-- itself: contact details for the roles that may see them, the days since the last
-- order and the churn risk of today. The predicted CLV is stored for one day
-- (business_vault.customer_scores_day); on any other day it is computed here from the
-- stored figures. A single customer is one primary-key lookup; a page in customer_id
-- order (or of a segment, or by last order or spend) is a range scan of one of the
-- table's indexes that stops after its rows.

CREATE OR REPLACE VIEW mart.customer_360 AS
SELECT t.customer_id,
       t.first_name, t.last_name, t.city, t.country, t.signup_date,
       c.email, c.phone,
       coalesce(t.orders_count, 0) AS orders_count,
       coalesce(t.orders_cancelled + t.orders_returned, 0) AS orders_cancelled_or_returned,
       coalesce(t.total_spent, 0.00) AS total_spent,
       round(t.total_spent / nullif(t.orders_count, 0), 2) AS avg_order_value,
       t.first_order_at, t.last_order_at,
       d.days AS days_since_last_order, t.avg_days_between_orders,
       t.favourite_category,
       t.recency_score, t.frequency_score, t.monetary_score,
       t.recency_score::text || t.frequency_score::text || t.monetary_score::text AS rfm_cell,
       t.segment,
       coalesce(t.total_spent, 0.00) AS clv_historic,
       CASE WHEN d.today = (SELECT x.scored_on FROM business_vault.customer_scores_day x)
            THEN t.clv_predicted_12m
            ELSE business_vault.clv_predicted_12m(t.total_spent, d.today - t.first_order_date, r.risk)
       END AS clv_predicted_12m,
       r.risk AS churn_risk,
       coalesce(r.risk = 'churned', false) AS is_churned,
       t.hk_customer
  FROM business_vault.customer_360_current t
  -- contact details: personal data, read from the satellite (a primary-key lookup)
  -- only for the roles that may read it
  LEFT JOIN LATERAL (
       SELECT x.email, x.phone
         FROM raw_vault.sat_customer_contact x
        WHERE business_vault.pii_visible()
          AND x.hk_customer = t.hk_customer
          AND x.applied_dts = t.contact_applied_dts
          AND x.event_seq = t.contact_event_seq) c ON true
 -- each step fenced (OFFSET 0) so that the next receives plain columns and the rule
 -- functions are inlined (see business_vault.customer_scores)
 CROSS JOIN LATERAL (
       SELECT (now() AT TIME ZONE 'UTC')::date AS today,
              CASE WHEN t.orders_count > 0
                   THEN (now() AT TIME ZONE 'UTC')::date - t.last_order_date END AS days
       OFFSET 0) d
 CROSS JOIN LATERAL (
       SELECT business_vault.churn_risk(d.days, t.avg_days_between_orders) AS risk OFFSET 0) r;
COMMENT ON VIEW mart.customer_360 IS
    'One row per customer: current profile and contact, order figures, RFM scores and segment, lifetime value and churn risk, relative to today (UTC). Orders count unless cancelled or returned. For another date: mart.customer_360_as_of(ts).';
COMMENT ON COLUMN mart.customer_360.customer_id IS 'Business key, as first seen (trimmed; keys match case-insensitively when loaded).';
COMMENT ON COLUMN mart.customer_360.email IS 'Personal data: NULL unless the role may read raw_vault.sat_customer_contact.';
COMMENT ON COLUMN mart.customer_360.phone IS 'Personal data: NULL unless the role may read raw_vault.sat_customer_contact.';
COMMENT ON COLUMN mart.customer_360.orders_count IS 'Counted orders: all but cancelled and returned.';
COMMENT ON COLUMN mart.customer_360.orders_cancelled_or_returned IS 'Orders whose current status is cancelled or returned (not in any other figure).';
COMMENT ON COLUMN mart.customer_360.total_spent IS 'Amount of counted orders, after line discounts.';
COMMENT ON COLUMN mart.customer_360.avg_order_value IS 'total_spent / orders_count.';
COMMENT ON COLUMN mart.customer_360.first_order_at IS 'First counted order.';
COMMENT ON COLUMN mart.customer_360.last_order_at IS 'Last counted order.';
COMMENT ON COLUMN mart.customer_360.days_since_last_order IS 'UTC days from the last counted order to today.';
COMMENT ON COLUMN mart.customer_360.avg_days_between_orders IS '(last − first counted order day) / (orders_count − 1); NULL with one order.';
COMMENT ON COLUMN mart.customer_360.favourite_category IS 'Current category with the most units in counted orders (ties: more money, then name).';
COMMENT ON COLUMN mart.customer_360.recency_score IS 'RFM R, 1-5 (5 = most recent last order day), quintile among customers with a counted order; ties share the lower score.';
COMMENT ON COLUMN mart.customer_360.frequency_score IS 'RFM F, 1-5 (5 = most counted orders), quintile as recency_score.';
COMMENT ON COLUMN mart.customer_360.monetary_score IS 'RFM M, 1-5 (5 = highest total_spent), quintile as recency_score.';
COMMENT ON COLUMN mart.customer_360.rfm_cell IS 'R, F and M scores as one string, e.g. ''545''.';
COMMENT ON COLUMN mart.customer_360.segment IS 'RFM segment, see mart.rfm_segment_rules; ''Prospect'' without a counted order.';
COMMENT ON COLUMN mart.customer_360.clv_historic IS 'Historic lifetime value: total_spent.';
COMMENT ON COLUMN mart.customer_360.clv_predicted_12m IS 'Predicted next 12 months: total_spent × 365 / max(days since first counted order, 90) × retention (active 1, at risk 0.5, churned 0).';
COMMENT ON COLUMN mart.customer_360.churn_risk IS 'active, at risk or churned (see business_vault.churn_risk); NULL without a counted order.';
COMMENT ON COLUMN mart.customer_360.is_churned IS 'churn_risk = ''churned''.';
COMMENT ON COLUMN mart.customer_360.hk_customer IS 'Hash key, to join the vault.';

-- The day the stored scores are for, and whether that is today (UTC): on any other day
-- mart.customer_list_keys is empty and lists read mart.customer_360 alone.
CREATE OR REPLACE VIEW mart.customer_scores_day AS
SELECT x.scored_on, x.scored_on = (now() AT TIME ZONE 'UTC')::date AS is_today
  FROM business_vault.customer_scores_day x;
COMMENT ON VIEW mart.customer_scores_day IS
    'The UTC day for which the loader stored the customers'' predicted CLV (the day of its last batch), and whether that is today.';

-- The keys lists page by on a day the loader has scored: the columns GET /customers
-- filters on and the stored predicted CLV, in the order of the table's CLV indexes
-- (V14), without contact details. The API pages these first and then reads the page's
-- rows from mart.customer_360, where the same CLV is computed per row (a CASE on the
-- stored day that no index serves). Empty on any other day.
CREATE OR REPLACE VIEW mart.customer_list_keys AS
SELECT t.hk_customer, t.customer_id, t.segment, t.country,
       coalesce(t.total_spent, 0.00) AS total_spent,
       r.risk AS churn_risk,
       t.clv_predicted_12m,
       t.first_name, t.last_name
  FROM business_vault.customer_360_current t
 CROSS JOIN LATERAL (
       SELECT CASE WHEN t.orders_count > 0
                   THEN (now() AT TIME ZONE 'UTC')::date - t.last_order_date END AS days
       OFFSET 0) d
 CROSS JOIN LATERAL (
       SELECT business_vault.churn_risk(d.days, t.avg_days_between_orders) AS risk OFFSET 0) r
 WHERE (SELECT x.scored_on FROM business_vault.customer_scores_day x) = (now() AT TIME ZONE 'UTC')::date;
COMMENT ON VIEW mart.customer_list_keys IS
    'On a day the loader has scored (mart.customer_scores_day.is_today), the columns of mart.customer_360 that lists filter and sort on, with the same values; empty on any other day. Sorted by coalesce(clv_predicted_12m, 0), with or without a segment, it is an index range.';

-- The segment totals are kept by the loader (business_vault.segment_summary); the
-- averages and shares are derived here from its sums, the days since the last order
-- against today. The predicted CLV is summed for the day it is stored for; on any other
-- day it is summed over the segment's customers here (slower, never stale).
CREATE OR REPLACE VIEW mart.segments AS
SELECT r.segment,
       coalesce(s.customers, 0) AS customers,
       round(100.0 * coalesce(s.customers, 0) / nullif(sum(coalesce(s.customers, 0)) OVER (), 0), 2) AS customers_pct,
       coalesce(s.revenue, 0.00) AS revenue,
       round(100.0 * s.revenue / nullif(sum(s.revenue) OVER (), 0), 2) AS revenue_pct,
       round(s.orders::numeric / s.customers, 2) AS avg_orders,
       round(s.revenue / s.customers, 2) AS avg_total_spent,
       round((s.with_orders * ((now() AT TIME ZONE 'UTC')::date - DATE '2000-01-01') - s.last_order_days)::numeric
             / nullif(s.with_orders, 0), 1) AS avg_days_since_last_order,
       coalesce(CASE WHEN (now() AT TIME ZONE 'UTC')::date = (SELECT x.scored_on FROM business_vault.customer_scores_day x)
                     THEN s.clv_predicted_12m
                     ELSE (SELECT sum(c.clv_predicted_12m) FROM mart.customer_360 c WHERE c.segment = r.segment)
                END, 0.00) AS clv_predicted_12m,
       r.description
  FROM mart.rfm_segment_rules r
  LEFT JOIN business_vault.segment_summary s ON s.segment = r.segment
 ORDER BY r.sort_order;
COMMENT ON VIEW mart.segments IS 'Customers and revenue per RFM segment today (every segment listed, also when empty).';
COMMENT ON COLUMN mart.segments.customers_pct IS 'Share of all customers, percent.';
COMMENT ON COLUMN mart.segments.revenue IS 'Total spent (counted orders) by the segment''s customers, all time.';
COMMENT ON COLUMN mart.segments.revenue_pct IS 'Share of all revenue, percent.';
COMMENT ON COLUMN mart.segments.clv_predicted_12m IS 'Sum of the customers'' predicted 12-month value.';

-- From the segment totals (customers with and without a counted order) and the churn
-- calendar: on day D, the customers whose first at-risk (churned) day is D or earlier
-- are at risk or churned (churned).
CREATE OR REPLACE VIEW mart.churn AS
SELECT p.with_orders AS customers_with_orders,
       p.with_orders - k.at_risk AS active,
       k.at_risk - k.churned AS at_risk,
       k.churned,
       round(k.churned::numeric / nullif(p.with_orders, 0), 4) AS churn_rate,
       round((k.at_risk - k.churned)::numeric / nullif(p.with_orders, 0), 4) AS at_risk_rate,
       p.customers - p.with_orders AS prospects,
       p.customers
  FROM (SELECT coalesce(sum(s.with_orders), 0)::bigint AS with_orders,
               coalesce(sum(s.customers), 0)::bigint AS customers
          FROM business_vault.segment_summary s) p,
       (SELECT coalesce(sum(c.at_risk), 0)::bigint AS at_risk,
               coalesce(sum(c.churned), 0)::bigint AS churned
          FROM business_vault.churn_calendar c
         WHERE c.day <= (now() AT TIME ZONE 'UTC')::date) k;
COMMENT ON VIEW mart.churn IS 'Churn today: customers with a counted order by churn risk (see business_vault.churn_risk), and the rates.';
COMMENT ON COLUMN mart.churn.churn_rate IS 'churned / customers_with_orders (0..1).';
COMMENT ON COLUMN mart.churn.at_risk_rate IS 'at_risk / customers_with_orders (0..1).';
COMMENT ON COLUMN mart.churn.prospects IS 'Customers without a counted order (not in the rates).';
COMMENT ON COLUMN mart.churn.customers IS 'All customers.';
