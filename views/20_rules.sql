-- Customer scoring rules: RFM segments, churn risk, predicted lifetime value. Pure
-- functions, used alike by mart.customer_360 (reference date: today) and
-- mart.customer_360_as_of(ts) (reference date: the day of ts). docs/analysts.md
-- explains them; mart.rfm_segment_rules shows the segment table in the database.

-- RFM segment from the recency score R and FM = round((F + M) / 2), half up.
--
--   segment             R      FM
--   Champions           5      4-5
--   Loyal               3-4    4-5
--   Potential Loyalist  4-5    2-3
--   New                 5      1
--   Promising           4      1
--   Need Attention      3      3
--   About to Sleep      3      1-2
--   Can't Lose Them     1-2    5
--   At Risk             1-2    3-4
--   Hibernating         1-2    1-2   (but not R 1 and FM 1)
--   Lost                1      1
--   Prospect            no counted order yet (no scores)
CREATE OR REPLACE FUNCTION business_vault.rfm_segment(r integer, f integer, m integer)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN r IS NULL OR f IS NULL OR m IS NULL THEN 'Prospect'
    WHEN r = 5 AND (f + m + 1) / 2 >= 4 THEN 'Champions'
    WHEN r IN (3, 4) AND (f + m + 1) / 2 >= 4 THEN 'Loyal'
    WHEN r >= 4 AND (f + m + 1) / 2 IN (2, 3) THEN 'Potential Loyalist'
    WHEN r = 5 THEN 'New'
    WHEN r = 4 THEN 'Promising'
    WHEN r = 3 AND (f + m + 1) / 2 = 3 THEN 'Need Attention'
    WHEN r = 3 THEN 'About to Sleep'
    WHEN (f + m + 1) / 2 = 5 THEN 'Can''t Lose Them'
    WHEN (f + m + 1) / 2 >= 3 THEN 'At Risk'
    WHEN r = 1 AND (f + m + 1) / 2 = 1 THEN 'Lost'
    ELSE 'Hibernating'
END;
COMMENT ON FUNCTION business_vault.rfm_segment(integer, integer, integer) IS
    'RFM segment of recency, frequency and monetary scores (1-5): see mart.rfm_segment_rules.';

CREATE OR REPLACE VIEW mart.rfm_segment_rules (sort_order, segment, recency_scores, fm_scores, description) AS
VALUES
    (1,  'Champions',          '5',   '4-5', 'Bought recently, buy often and spend the most'),
    (2,  'Loyal',              '3-4', '4-5', 'Buy often and spend well, not quite the most recently'),
    (3,  'Potential Loyalist', '4-5', '2-3', 'Recent customers with average frequency and spend'),
    (4,  'New',                '5',   '1',   'Bought very recently, once or for little'),
    (5,  'Promising',          '4',   '1',   'Bought recently, once or for little'),
    (6,  'Need Attention',     '3',   '3',   'Average recency, frequency and spend'),
    (7,  'About to Sleep',     '3',   '1-2', 'Average recency, low frequency and spend'),
    (8,  'Can''t Lose Them',   '1-2', '5',   'Used to buy the most, have not come back for long'),
    (9,  'At Risk',            '1-2', '3-4', 'Used to buy often and well, have not come back for long'),
    (10, 'Hibernating',        '1-2', '1-2', 'Low recency, frequency and spend (except R 1 with FM 1)'),
    (11, 'Lost',               '1',   '1',   'Lowest recency, frequency and spend'),
    (12, 'Prospect',           NULL,  NULL,  'No counted order yet');
COMMENT ON VIEW mart.rfm_segment_rules IS
    'The RFM segment rule table: the segment of a customer with recency score R and FM = round((frequency + monetary) / 2, half up). First matching row wins in sort_order.';
COMMENT ON COLUMN mart.rfm_segment_rules.recency_scores IS 'Recency scores (1-5, 5 = most recent) the rule covers.';
COMMENT ON COLUMN mart.rfm_segment_rules.fm_scores IS 'FM scores the rule covers: FM = round((F + M) / 2), half up.';

-- Churn risk from the days since the last counted order and the customer's own
-- average gap between counted orders (avg_days_between_orders, 1 decimal; NULL with a
-- single order):
--   churned  days > max(90, 3 × gap)
--   at risk  days > min(60, max(14, 1.5 × gap)); days > 60 with a single order
--   active   otherwise
-- The single-order case is its own branch: GREATEST and LEAST skip NULL arguments, so
-- with a NULL gap `greatest(14, 1.5 × gap)` is 14, not NULL, and a COALESCE around it
-- never reached its 60 (one-order customers were 'at risk' after 14 days; issue 15).
-- `greatest(90, 3 × gap)` is 90 with a NULL gap, which is the documented rule.
CREATE OR REPLACE FUNCTION business_vault.churn_risk(days_since_last_order integer, avg_days_between_orders numeric)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN days_since_last_order IS NULL THEN NULL
    WHEN days_since_last_order > greatest(90, 3 * avg_days_between_orders) THEN 'churned'
    WHEN avg_days_between_orders IS NULL THEN
        CASE WHEN days_since_last_order > 60 THEN 'at risk' ELSE 'active' END
    WHEN days_since_last_order > least(60, greatest(14, 1.5 * avg_days_between_orders)) THEN 'at risk'
    ELSE 'active'
END;
COMMENT ON FUNCTION business_vault.churn_risk(integer, numeric) IS
    'churned: no counted order for more than max(90 days, 3 average gaps); at risk: more than min(60, max(14, 1.5 gaps)) days (60 with one order); else active.';

-- Predicted value of the next 12 months: the customer's historic spend rate over the
-- time since the first counted order (at least 90 days, so that a new customer's
-- first basket is not extrapolated wildly), times a retention factor of 1 (active),
-- 0.5 (at risk) or 0 (churned).
CREATE OR REPLACE FUNCTION business_vault.clv_predicted_12m(total_spent numeric, days_since_first_order integer, churn_risk text)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN churn_risk IS NULL THEN 0.00
    ELSE round(total_spent * 365 / greatest(days_since_first_order, 90)
               * CASE churn_risk WHEN 'active' THEN 1 WHEN 'at risk' THEN 0.5 ELSE 0 END, 2)
END;
COMMENT ON FUNCTION business_vault.clv_predicted_12m(numeric, integer, text) IS
    'total_spent × 365 / max(days since first counted order, 90) × retention (active 1, at risk 0.5, churned 0), 2 decimals.';

-- Everything mart.customer_360 derives from a customer's order figures, the RFM
-- boundaries and the reference date, in one place for the current and as-of views.
-- A standard SQL body (parsed once, here): inlined into a view, it needs no right on
-- this schema from the role querying the view.
-- Each step is fenced (OFFSET 0) so that the next one receives plain columns: the
-- planner inlines a SQL function that uses a parameter more than once (rfm_segment,
-- churn_risk, clv_predicted_12m) only when its argument is cheap, and otherwise calls
-- it through the SQL function executor for every row, which made these scores most of
-- the cost of a page of mart.customer_360.
CREATE OR REPLACE FUNCTION business_vault.customer_scores(
    reference_date date, first_order_date date, last_order_date date,
    orders_count integer, total_spent numeric,
    recency_cuts date[], frequency_cuts integer[], monetary_cuts numeric[])
RETURNS TABLE (days_since_last_order integer, avg_days_between_orders numeric,
               recency_score integer, frequency_score integer, monetary_score integer,
               rfm_cell text, segment text, clv_predicted_12m numeric, churn_risk text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT d.days, d.gap, s.r, s.f, s.m, s.r::text || s.f::text || s.m::text,
           business_vault.rfm_segment(s.r, s.f, s.m),
           business_vault.clv_predicted_12m(total_spent, reference_date - first_order_date, c.risk),
           c.risk
      FROM (SELECT CASE WHEN orders_count > 0 THEN reference_date - last_order_date END AS days,
                   CASE WHEN orders_count > 1
                        THEN round((last_order_date - first_order_date)::numeric / (orders_count - 1), 1)
                   END AS gap
            OFFSET 0) d
     CROSS JOIN LATERAL (
           SELECT business_vault.quintile_score(CASE WHEN orders_count > 0 THEN last_order_date END, recency_cuts) AS r,
                  business_vault.quintile_score(CASE WHEN orders_count > 0 THEN orders_count END, frequency_cuts) AS f,
                  business_vault.quintile_score(CASE WHEN orders_count > 0 THEN total_spent END, monetary_cuts) AS m
            OFFSET 0) s
     CROSS JOIN LATERAL (SELECT business_vault.churn_risk(d.days, d.gap) AS risk OFFSET 0) c;
END;
COMMENT ON FUNCTION business_vault.customer_scores(date, date, date, integer, numeric, date[], integer[], numeric[]) IS
    'Recency, average gap, RFM scores, cell and segment, churn risk and predicted 12-month value of a customer at a reference date.';
