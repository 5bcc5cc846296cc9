-- The business vault refresh, 4/9: RFM boundaries, PIT and the current Customer 360
-- rows of the touched keys. Keyed.
-- (embedded by src/load/business.rs: see its comment for the order and the planner
-- settings around each file)

-- A customer whose every order moved to another customer (bad input corrected).
DELETE FROM business_vault.customer_order_summary c
 WHERE c.hk_customer IN (
       SELECT t.hk_customer FROM pg_temp.bv_customers t
        WHERE NOT EXISTS (SELECT FROM business_vault.order_summary o
                           WHERE o.hk_customer = t.hk_customer));

-- RFM quintile boundaries: the one figure that needs the whole population, kept as
-- one row (a sort of the customers with orders), only when a customer changed. The
-- boundaries before the batch decide below which stored scores may have moved.
INSERT INTO pg_temp.bv_old_cuts (recency, frequency, monetary)
SELECT r.recency, r.frequency, r.monetary FROM business_vault.rfm_cutpoints r;
INSERT INTO business_vault.rfm_cutpoints AS r (singleton, population, recency, frequency, monetary)
SELECT true, count(*),
       business_vault.quintile_cuts(coalesce(array_agg(c.last_order_date), '{}')),
       business_vault.quintile_cuts(coalesce(array_agg(c.orders_count), '{}')),
       business_vault.quintile_cuts(coalesce(array_agg(c.total_spent::numeric), '{}'))
  FROM business_vault.customer_order_summary c
 WHERE c.orders_count > 0
HAVING EXISTS (SELECT FROM pg_temp.bv_customers)
ON CONFLICT (singleton) DO UPDATE SET
    population = excluded.population, recency = excluded.recency,
    frequency = excluded.frequency, monetary = excluded.monetary
WHERE (r.population, r.recency, r.frequency, r.monetary)
      IS DISTINCT FROM (excluded.population, excluded.recency, excluded.frequency, excluded.monetary);

-- PIT: for each touched customer, every snapshot from the first day the batch touched
-- (the days before it cannot change), and the current row.
INSERT INTO business_vault.pit_customer AS p
    (hk_customer, snapshot_date,
     sat_customer_profile_hk, sat_customer_profile_applied_dts,
     sat_customer_profile_event_seq, sat_customer_profile_load_dts,
     sat_customer_contact_hk, sat_customer_contact_applied_dts,
     sat_customer_contact_event_seq, sat_customer_contact_load_dts)
SELECT t.hk_customer, d.snapshot_date,
       coalesce(pr.hk_customer, business_vault.ghost_key()), coalesce(pr.applied_dts, '-infinity'),
       coalesce(pr.event_seq, 0), coalesce(pr.load_dts, '-infinity'),
       coalesce(co.hk_customer, business_vault.ghost_key()), coalesce(co.applied_dts, '-infinity'),
       coalesce(co.event_seq, 0), coalesce(co.load_dts, '-infinity')
  FROM (SELECT b.hk_customer,
               coalesce((min(b.since) AT TIME ZONE 'UTC')::date, 'infinity') AS since_date
          FROM pg_temp.bv_pit b
         GROUP BY b.hk_customer) t
 CROSS JOIN LATERAL (
       SELECT (s.applied_dts AT TIME ZONE 'UTC')::date FROM raw_vault.sat_customer_profile s
        WHERE s.hk_customer = t.hk_customer
          AND s.applied_dts >= t.since_date::timestamp AT TIME ZONE 'UTC'
       UNION
       SELECT (s.applied_dts AT TIME ZONE 'UTC')::date FROM raw_vault.sat_customer_contact s
        WHERE s.hk_customer = t.hk_customer
          AND s.applied_dts >= t.since_date::timestamp AT TIME ZONE 'UTC'
       UNION
       SELECT 'infinity'::date) AS d(snapshot_date)
  LEFT JOIN LATERAL (
       SELECT s.hk_customer, s.applied_dts, s.event_seq, s.load_dts
         FROM raw_vault.sat_customer_profile s
        WHERE s.hk_customer = t.hk_customer
          AND s.applied_dts < (d.snapshot_date + 1)::timestamp AT TIME ZONE 'UTC'
        ORDER BY s.applied_dts DESC, s.event_seq DESC LIMIT 1) pr ON true
  LEFT JOIN LATERAL (
       SELECT s.hk_customer, s.applied_dts, s.event_seq, s.load_dts
         FROM raw_vault.sat_customer_contact s
        WHERE s.hk_customer = t.hk_customer
          AND s.applied_dts < (d.snapshot_date + 1)::timestamp AT TIME ZONE 'UTC'
        ORDER BY s.applied_dts DESC, s.event_seq DESC LIMIT 1) co ON true
ON CONFLICT (hk_customer, snapshot_date) DO UPDATE SET
    sat_customer_profile_hk = excluded.sat_customer_profile_hk,
    sat_customer_profile_applied_dts = excluded.sat_customer_profile_applied_dts,
    sat_customer_profile_event_seq = excluded.sat_customer_profile_event_seq,
    sat_customer_profile_load_dts = excluded.sat_customer_profile_load_dts,
    sat_customer_contact_hk = excluded.sat_customer_contact_hk,
    sat_customer_contact_applied_dts = excluded.sat_customer_contact_applied_dts,
    sat_customer_contact_event_seq = excluded.sat_customer_contact_event_seq,
    sat_customer_contact_load_dts = excluded.sat_customer_contact_load_dts
WHERE (p.sat_customer_profile_hk, p.sat_customer_profile_applied_dts,
       p.sat_customer_profile_event_seq, p.sat_customer_profile_load_dts,
       p.sat_customer_contact_hk, p.sat_customer_contact_applied_dts,
       p.sat_customer_contact_event_seq, p.sat_customer_contact_load_dts)
      IS DISTINCT FROM
      (excluded.sat_customer_profile_hk, excluded.sat_customer_profile_applied_dts,
       excluded.sat_customer_profile_event_seq, excluded.sat_customer_profile_load_dts,
       excluded.sat_customer_contact_hk, excluded.sat_customer_contact_applied_dts,
       excluded.sat_customer_contact_event_seq, excluded.sat_customer_contact_load_dts);

-- Customer 360, current (after the PIT and the customer summary it reads): the
-- customers whose PIT the batch staged and those whose order figures may have moved.
-- With the figures, the scores against the boundaries of this batch and today (as
-- business_vault.score_customers writes them for the others below).
INSERT INTO business_vault.customer_360_current AS c
    (hk_customer, customer_id, first_name, last_name, city, country, signup_date,
     contact_applied_dts, contact_event_seq, orders_count, orders_cancelled, orders_returned,
     total_spent, first_order_at, last_order_at, first_order_date, last_order_date,
     favourite_category, avg_days_between_orders, recency_score, frequency_score,
     monetary_score, segment, at_risk_on, churned_on, clv_predicted_12m)
SELECT t.hk_customer, h.customer_id, pr.first_name, pr.last_name, pr.city, pr.country,
       pr.signup_date, co.applied_dts, co.event_seq, m.orders_count, m.orders_cancelled,
       m.orders_returned, m.total_spent, m.first_order_at, m.last_order_at, m.first_order_date,
       m.last_order_date, m.favourite_category, sc.avg_days_between_orders, sc.recency_score,
       sc.frequency_score, sc.monetary_score, sc.segment,
       business_vault.at_risk_on(CASE WHEN m.orders_count > 0 THEN m.last_order_date END,
                                 sc.avg_days_between_orders),
       business_vault.churned_on(CASE WHEN m.orders_count > 0 THEN m.last_order_date END,
                                 sc.avg_days_between_orders),
       sc.clv_predicted_12m
  FROM (SELECT b.hk_customer FROM pg_temp.bv_pit b
        UNION
        SELECT b.hk_customer FROM pg_temp.bv_customers b) t
 CROSS JOIN LATERAL (
       SELECT x.customer_id FROM raw_vault.hub_customer x
        WHERE x.hk_customer = t.hk_customer OFFSET 0) h
 CROSS JOIN LATERAL (
       SELECT x.sat_customer_profile_hk, x.sat_customer_profile_applied_dts,
              x.sat_customer_profile_event_seq, x.sat_customer_contact_hk,
              x.sat_customer_contact_applied_dts, x.sat_customer_contact_event_seq
         FROM business_vault.pit_customer x
        WHERE x.hk_customer = t.hk_customer AND x.snapshot_date = 'infinity' OFFSET 0) pit
  LEFT JOIN LATERAL (
       SELECT x.first_name, x.last_name, x.city, x.country, x.signup_date
         FROM raw_vault.sat_customer_profile x
        WHERE x.hk_customer = pit.sat_customer_profile_hk
          AND x.applied_dts = pit.sat_customer_profile_applied_dts
          AND x.event_seq = pit.sat_customer_profile_event_seq OFFSET 0) pr ON true
  LEFT JOIN LATERAL (
       SELECT x.applied_dts, x.event_seq
         FROM raw_vault.sat_customer_contact x
        WHERE x.hk_customer = pit.sat_customer_contact_hk
          AND x.applied_dts = pit.sat_customer_contact_applied_dts
          AND x.event_seq = pit.sat_customer_contact_event_seq OFFSET 0) co ON true
  LEFT JOIN LATERAL (
       SELECT x.orders_count, x.orders_cancelled, x.orders_returned, x.total_spent,
              x.first_order_at, x.last_order_at, x.first_order_date, x.last_order_date,
              x.favourite_category
         FROM business_vault.customer_order_summary x
        WHERE x.hk_customer = t.hk_customer OFFSET 0) m ON true
  LEFT JOIN business_vault.rfm_cutpoints q ON true
 CROSS JOIN LATERAL business_vault.customer_scores(
       (now() AT TIME ZONE 'UTC')::date, m.first_order_date, m.last_order_date, m.orders_count,
       m.total_spent, q.recency, q.frequency, q.monetary) sc
ON CONFLICT (hk_customer) DO UPDATE SET
    customer_id = excluded.customer_id, first_name = excluded.first_name,
    last_name = excluded.last_name, city = excluded.city, country = excluded.country,
    signup_date = excluded.signup_date, contact_applied_dts = excluded.contact_applied_dts,
    contact_event_seq = excluded.contact_event_seq, orders_count = excluded.orders_count,
    orders_cancelled = excluded.orders_cancelled, orders_returned = excluded.orders_returned,
    total_spent = excluded.total_spent, first_order_at = excluded.first_order_at,
    last_order_at = excluded.last_order_at, first_order_date = excluded.first_order_date,
    last_order_date = excluded.last_order_date, favourite_category = excluded.favourite_category,
    avg_days_between_orders = excluded.avg_days_between_orders,
    recency_score = excluded.recency_score, frequency_score = excluded.frequency_score,
    monetary_score = excluded.monetary_score, segment = excluded.segment,
    at_risk_on = excluded.at_risk_on, churned_on = excluded.churned_on,
    clv_predicted_12m = excluded.clv_predicted_12m
WHERE (c.customer_id, c.first_name, c.last_name, c.city, c.country, c.signup_date,
       c.contact_applied_dts, c.contact_event_seq, c.orders_count, c.orders_cancelled,
       c.orders_returned, c.total_spent, c.first_order_at, c.last_order_at, c.favourite_category,
       c.avg_days_between_orders, c.recency_score, c.frequency_score, c.monetary_score,
       c.segment, c.at_risk_on, c.churned_on, c.clv_predicted_12m)
      IS DISTINCT FROM
      (excluded.customer_id, excluded.first_name, excluded.last_name, excluded.city,
       excluded.country, excluded.signup_date, excluded.contact_applied_dts,
       excluded.contact_event_seq, excluded.orders_count, excluded.orders_cancelled,
       excluded.orders_returned, excluded.total_spent, excluded.first_order_at,
       excluded.last_order_at, excluded.favourite_category, excluded.avg_days_between_orders,
       excluded.recency_score, excluded.frequency_score, excluded.monetary_score,
       excluded.segment, excluded.at_risk_on, excluded.churned_on, excluded.clv_predicted_12m);
