-- The Customer 360: one row per customer, read from the PIT (current row, joined to
-- the satellites through their ghost records), the customer order summary and the
-- RFM boundaries the loader keeps current. A single customer costs a few index
-- lookups; nothing scans the population at query time.

CREATE OR REPLACE VIEW mart.customer_360 AS
SELECT h.customer_id,
       p.first_name, p.last_name, p.city, p.country, p.signup_date,
       c.email, c.phone,
       coalesce(m.orders_count, 0) AS orders_count,
       coalesce(m.orders_cancelled + m.orders_returned, 0) AS orders_cancelled_or_returned,
       coalesce(m.total_spent, 0.00) AS total_spent,
       round(m.total_spent / nullif(m.orders_count, 0), 2) AS avg_order_value,
       m.first_order_at, m.last_order_at,
       s.days_since_last_order, s.avg_days_between_orders,
       m.favourite_category,
       s.recency_score, s.frequency_score, s.monetary_score, s.rfm_cell, s.segment,
       coalesce(m.total_spent, 0.00) AS clv_historic,
       s.clv_predicted_12m,
       s.churn_risk,
       coalesce(s.churn_risk = 'churned', false) AS is_churned,
       h.hk_customer
  FROM raw_vault.hub_customer h
  JOIN business_vault.pit_customer pit
    ON pit.hk_customer = h.hk_customer AND pit.snapshot_date = 'infinity'
  -- The PIT's satellite keys (ghost keys included) point at exactly one row of the
  -- ghost-extended satellites. Each is read as a lateral primary-key lookup: the
  -- planner then walks customers in key order and a page stops after its rows.
 CROSS JOIN LATERAL (
       SELECT g.first_name, g.last_name, g.city, g.country, g.signup_date
         FROM business_vault.sat_customer_profile_with_ghost g
        WHERE g.hk_customer = pit.sat_customer_profile_hk
          AND g.applied_dts = pit.sat_customer_profile_applied_dts
          AND g.event_seq = pit.sat_customer_profile_event_seq
        LIMIT 1) p
 CROSS JOIN LATERAL (
       SELECT g.email, g.phone
         FROM business_vault.sat_customer_contact_with_ghost g
        WHERE g.hk_customer = pit.sat_customer_contact_hk
          AND g.applied_dts = pit.sat_customer_contact_applied_dts
          AND g.event_seq = pit.sat_customer_contact_event_seq
        LIMIT 1) c
  LEFT JOIN business_vault.customer_order_summary m ON m.hk_customer = h.hk_customer
  LEFT JOIN business_vault.rfm_cutpoints q ON true
 CROSS JOIN LATERAL business_vault.customer_scores(
       (now() AT TIME ZONE 'UTC')::date, m.first_order_date, m.last_order_date,
       m.orders_count, m.total_spent, q.recency, q.frequency, q.monetary) s;
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
