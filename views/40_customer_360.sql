-- The Customer 360: one row per customer, read from business_vault.customer_360_current
-- (current profile and order figures, kept by the loader), plus what must not be
-- stored because it moves by itself: contact details for the roles that may see them,
-- and the RFM scores, recency, churn risk and predicted CLV against today and the RFM
-- boundaries of the current population. A single customer is one primary-key lookup;
-- a page in customer_id order is a range scan of the table's customer_id index that
-- stops after its rows.

CREATE OR REPLACE VIEW mart.customer_360 AS
SELECT t.customer_id,
       t.first_name, t.last_name, t.city, t.country, t.signup_date,
       c.email, c.phone,
       coalesce(t.orders_count, 0) AS orders_count,
       coalesce(t.orders_cancelled + t.orders_returned, 0) AS orders_cancelled_or_returned,
       coalesce(t.total_spent, 0.00) AS total_spent,
       round(t.total_spent / nullif(t.orders_count, 0), 2) AS avg_order_value,
       t.first_order_at, t.last_order_at,
       s.days_since_last_order, s.avg_days_between_orders,
       t.favourite_category,
       s.recency_score, s.frequency_score, s.monetary_score, s.rfm_cell, s.segment,
       coalesce(t.total_spent, 0.00) AS clv_historic,
       s.clv_predicted_12m,
       s.churn_risk,
       coalesce(s.churn_risk = 'churned', false) AS is_churned,
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
  LEFT JOIN business_vault.rfm_cutpoints q ON true
 CROSS JOIN LATERAL business_vault.customer_scores(
       (now() AT TIME ZONE 'UTC')::date, t.first_order_date, t.last_order_date,
       t.orders_count, t.total_spent, q.recency, q.frequency, q.monetary) s;
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

CREATE OR REPLACE VIEW mart.segments AS
SELECT r.segment,
       count(c.customer_id) AS customers,
       round(100.0 * count(c.customer_id) / nullif(sum(count(c.customer_id)) OVER (), 0), 2) AS customers_pct,
       coalesce(sum(c.total_spent), 0.00) AS revenue,
       round(100.0 * sum(c.total_spent) / nullif(sum(sum(c.total_spent)) OVER (), 0), 2) AS revenue_pct,
       round(avg(c.orders_count), 2) AS avg_orders,
       round(avg(c.total_spent), 2) AS avg_total_spent,
       round(avg(c.days_since_last_order), 1) AS avg_days_since_last_order,
       coalesce(sum(c.clv_predicted_12m), 0.00) AS clv_predicted_12m,
       r.description
  FROM mart.rfm_segment_rules r
  LEFT JOIN mart.customer_360 c ON c.segment = r.segment
 GROUP BY r.sort_order, r.segment, r.description
 ORDER BY r.sort_order;
COMMENT ON VIEW mart.segments IS 'Customers and revenue per RFM segment today (every segment listed, also when empty).';
COMMENT ON COLUMN mart.segments.customers_pct IS 'Share of all customers, percent.';
COMMENT ON COLUMN mart.segments.revenue IS 'Total spent (counted orders) by the segment''s customers, all time.';
COMMENT ON COLUMN mart.segments.revenue_pct IS 'Share of all revenue, percent.';
COMMENT ON COLUMN mart.segments.clv_predicted_12m IS 'Sum of the customers'' predicted 12-month value.';

CREATE OR REPLACE VIEW mart.churn AS
SELECT count(*) FILTER (WHERE c.orders_count > 0) AS customers_with_orders,
       count(*) FILTER (WHERE c.churn_risk = 'active') AS active,
       count(*) FILTER (WHERE c.churn_risk = 'at risk') AS at_risk,
       count(*) FILTER (WHERE c.churn_risk = 'churned') AS churned,
       round(count(*) FILTER (WHERE c.churn_risk = 'churned')::numeric
             / nullif(count(*) FILTER (WHERE c.orders_count > 0), 0), 4) AS churn_rate,
       round(count(*) FILTER (WHERE c.churn_risk = 'at risk')::numeric
             / nullif(count(*) FILTER (WHERE c.orders_count > 0), 0), 4) AS at_risk_rate,
       count(*) FILTER (WHERE c.orders_count = 0) AS prospects,
       count(*) AS customers
  FROM mart.customer_360 c;
COMMENT ON VIEW mart.churn IS 'Churn today: customers with a counted order by churn risk (see business_vault.churn_risk), and the rates.';
COMMENT ON COLUMN mart.churn.churn_rate IS 'churned / customers_with_orders (0..1).';
COMMENT ON COLUMN mart.churn.at_risk_rate IS 'at_risk / customers_with_orders (0..1).';
COMMENT ON COLUMN mart.churn.prospects IS 'Customers without a counted order (not in the rates).';
COMMENT ON COLUMN mart.churn.customers IS 'All customers.';
