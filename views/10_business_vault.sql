-- Business vault views: satellite history and current state, ghost records, PIT
-- helpers. Applied by `dvault migrate` after the migrations, in file-name order, in
-- one transaction: every statement is CREATE OR REPLACE. A change to a view's columns
-- (other than adding columns at the end) needs an explicit DROP here first.
--
-- Time conventions (docs/analysts.md): business time is applied_dts. A version is in
-- force from valid_from (inclusive) to valid_to (exclusive); the open version has
-- valid_to = 'infinity', so "in force at ts" is always
--     valid_from <= ts AND ts < valid_to
-- without COALESCE. A row whose hashdiff repeats the one before it in business time
-- (it happens after late arrivals) is not a new version: it is folded into it.

-- Personal data ---------------------------------------------------------------------

-- Contact data (email, phone) shows only to roles that may read the personal-data
-- satellite itself; everybody else (e.g. the analyst role) sees NULL.
CREATE OR REPLACE FUNCTION business_vault.pii_visible() RETURNS boolean
    LANGUAGE sql STABLE
    RETURN has_table_privilege(current_user, 'raw_vault.sat_customer_contact'::regclass, 'SELECT');
COMMENT ON FUNCTION business_vault.pii_visible() IS
    'True when the current role may read raw_vault.sat_customer_contact; views show email and phone only then.';

-- sat_customer_profile ------------------------------------------------------------------

CREATE OR REPLACE VIEW business_vault.sat_customer_profile_history AS
SELECT v.customer_id,
       v.first_name,
       v.last_name,
       v.city,
       v.country,
       v.signup_date,
       v.applied_dts AS valid_from,
       coalesce(lead(v.applied_dts) OVER w, 'infinity') AS valid_to,
       lead(v.applied_dts) OVER w IS NULL AS is_current,
       v.hk_customer, v.event_seq, v.load_dts, v.hashdiff, v.record_source
  FROM (SELECT h.customer_id, s.*,
               lag(s.hashdiff) OVER (PARTITION BY s.hk_customer, h.customer_id
                                     ORDER BY s.applied_dts, s.event_seq) AS previous_hashdiff
          FROM raw_vault.sat_customer_profile s
          JOIN raw_vault.hub_customer h ON h.hk_customer = s.hk_customer) v
 WHERE v.previous_hashdiff IS DISTINCT FROM v.hashdiff
WINDOW w AS (PARTITION BY v.hk_customer, v.customer_id ORDER BY v.applied_dts, v.event_seq);
-- (the business keys are in the PARTITION BY, although the hash key alone decides the
-- partitions, so that a filter on them is pushed down to the index scans)
COMMENT ON VIEW business_vault.sat_customer_profile_history IS
    'Customer profile history: one row per version in business time, repeats folded. In force at ts: valid_from <= ts AND ts < valid_to.';
COMMENT ON COLUMN business_vault.sat_customer_profile_history.valid_from IS 'Business time (applied_dts) the version took effect.';
COMMENT ON COLUMN business_vault.sat_customer_profile_history.valid_to IS 'Business time the next version took effect; ''infinity'' for the current one.';
COMMENT ON COLUMN business_vault.sat_customer_profile_history.is_current IS 'True for the latest version in business time.';
COMMENT ON COLUMN business_vault.sat_customer_profile_history.event_seq IS 'The event that wrote the version: its seq in event_log.events (the row''s own, or one of the lines of a bundle).';
COMMENT ON COLUMN business_vault.sat_customer_profile_history.load_dts IS 'When that event arrived in the log.';

CREATE OR REPLACE VIEW business_vault.sat_customer_profile_current AS
SELECT customer_id, first_name, last_name, city, country, signup_date, valid_from, hk_customer, event_seq, load_dts, hashdiff, record_source
  FROM business_vault.sat_customer_profile_history
 WHERE is_current;
COMMENT ON VIEW business_vault.sat_customer_profile_current IS
    'Customer profile, current state: the latest version in business time, one row per key.';
COMMENT ON COLUMN business_vault.sat_customer_profile_current.valid_from IS 'Business time since which these values hold.';

-- sat_customer_contact ------------------------------------------------------------------

CREATE OR REPLACE VIEW business_vault.sat_customer_contact_history AS
SELECT v.customer_id,
       CASE WHEN business_vault.pii_visible() THEN v.email END AS email,
       CASE WHEN business_vault.pii_visible() THEN v.phone END AS phone,
       v.applied_dts AS valid_from,
       coalesce(lead(v.applied_dts) OVER w, 'infinity') AS valid_to,
       lead(v.applied_dts) OVER w IS NULL AS is_current,
       v.hk_customer, v.event_seq, v.load_dts, v.record_source
  FROM (SELECT h.customer_id, s.*,
               lag(s.hashdiff) OVER (PARTITION BY s.hk_customer, h.customer_id
                                     ORDER BY s.applied_dts, s.event_seq) AS previous_hashdiff
          FROM raw_vault.sat_customer_contact s
          JOIN raw_vault.hub_customer h ON h.hk_customer = s.hk_customer) v
 WHERE v.previous_hashdiff IS DISTINCT FROM v.hashdiff
WINDOW w AS (PARTITION BY v.hk_customer, v.customer_id ORDER BY v.applied_dts, v.event_seq);
-- (the business keys are in the PARTITION BY, although the hash key alone decides the
-- partitions, so that a filter on them is pushed down to the index scans)
COMMENT ON VIEW business_vault.sat_customer_contact_history IS
    'Customer contact (personal data) history: one row per version in business time, repeats folded. In force at ts: valid_from <= ts AND ts < valid_to.';
COMMENT ON COLUMN business_vault.sat_customer_contact_history.valid_from IS 'Business time (applied_dts) the version took effect.';
COMMENT ON COLUMN business_vault.sat_customer_contact_history.valid_to IS 'Business time the next version took effect; ''infinity'' for the current one.';
COMMENT ON COLUMN business_vault.sat_customer_contact_history.is_current IS 'True for the latest version in business time.';
COMMENT ON COLUMN business_vault.sat_customer_contact_history.event_seq IS 'The event that wrote the version: its seq in event_log.events (the row''s own, or one of the lines of a bundle).';
COMMENT ON COLUMN business_vault.sat_customer_contact_history.load_dts IS 'When that event arrived in the log.';

CREATE OR REPLACE VIEW business_vault.sat_customer_contact_current AS
SELECT customer_id, email, phone, valid_from, hk_customer, event_seq, load_dts, record_source
  FROM business_vault.sat_customer_contact_history
 WHERE is_current;
COMMENT ON VIEW business_vault.sat_customer_contact_current IS
    'Customer contact (personal data), current state: the latest version in business time, one row per key.';
COMMENT ON COLUMN business_vault.sat_customer_contact_current.valid_from IS 'Business time since which these values hold.';

-- sat_product_details ------------------------------------------------------------------

CREATE OR REPLACE VIEW business_vault.sat_product_details_history AS
SELECT v.product_id,
       v.name,
       v.category,
       v.brand,
       v.price,
       v.applied_dts AS valid_from,
       coalesce(lead(v.applied_dts) OVER w, 'infinity') AS valid_to,
       lead(v.applied_dts) OVER w IS NULL AS is_current,
       v.hk_product, v.event_seq, v.load_dts, v.hashdiff, v.record_source
  FROM (SELECT h.product_id, s.*,
               lag(s.hashdiff) OVER (PARTITION BY s.hk_product, h.product_id
                                     ORDER BY s.applied_dts, s.event_seq) AS previous_hashdiff
          FROM raw_vault.sat_product_details s
          JOIN raw_vault.hub_product h ON h.hk_product = s.hk_product) v
 WHERE v.previous_hashdiff IS DISTINCT FROM v.hashdiff
WINDOW w AS (PARTITION BY v.hk_product, v.product_id ORDER BY v.applied_dts, v.event_seq);
-- (the business keys are in the PARTITION BY, although the hash key alone decides the
-- partitions, so that a filter on them is pushed down to the index scans)
COMMENT ON VIEW business_vault.sat_product_details_history IS
    'Product details and list price history: one row per version in business time, repeats folded. In force at ts: valid_from <= ts AND ts < valid_to.';
COMMENT ON COLUMN business_vault.sat_product_details_history.valid_from IS 'Business time (applied_dts) the version took effect.';
COMMENT ON COLUMN business_vault.sat_product_details_history.valid_to IS 'Business time the next version took effect; ''infinity'' for the current one.';
COMMENT ON COLUMN business_vault.sat_product_details_history.is_current IS 'True for the latest version in business time.';
COMMENT ON COLUMN business_vault.sat_product_details_history.event_seq IS 'The event that wrote the version: its seq in event_log.events (the row''s own, or one of the lines of a bundle).';
COMMENT ON COLUMN business_vault.sat_product_details_history.load_dts IS 'When that event arrived in the log.';

CREATE OR REPLACE VIEW business_vault.sat_product_details_current AS
SELECT product_id, name, category, brand, price, valid_from, hk_product, event_seq, load_dts, hashdiff, record_source
  FROM business_vault.sat_product_details_history
 WHERE is_current;
COMMENT ON VIEW business_vault.sat_product_details_current IS
    'Product details and list price, current state: the latest version in business time, one row per key.';
COMMENT ON COLUMN business_vault.sat_product_details_current.valid_from IS 'Business time since which these values hold.';

-- sat_order_details ------------------------------------------------------------------

CREATE OR REPLACE VIEW business_vault.sat_order_details_history AS
SELECT v.order_id,
       v.ordered_at,
       v.channel,
       v.applied_dts AS valid_from,
       coalesce(lead(v.applied_dts) OVER w, 'infinity') AS valid_to,
       lead(v.applied_dts) OVER w IS NULL AS is_current,
       v.hk_order, v.event_seq, v.load_dts, v.hashdiff, v.record_source
  FROM (SELECT h.order_id, s.*,
               lag(s.hashdiff) OVER (PARTITION BY s.hk_order, h.order_id
                                     ORDER BY s.applied_dts, s.event_seq) AS previous_hashdiff
          FROM raw_vault.sat_order_details s
          JOIN raw_vault.hub_order h ON h.hk_order = s.hk_order) v
 WHERE v.previous_hashdiff IS DISTINCT FROM v.hashdiff
WINDOW w AS (PARTITION BY v.hk_order, v.order_id ORDER BY v.applied_dts, v.event_seq);
-- (the business keys are in the PARTITION BY, although the hash key alone decides the
-- partitions, so that a filter on them is pushed down to the index scans)
COMMENT ON VIEW business_vault.sat_order_details_history IS
    'Order header history: one row per version in business time, repeats folded. In force at ts: valid_from <= ts AND ts < valid_to.';
COMMENT ON COLUMN business_vault.sat_order_details_history.valid_from IS 'Business time (applied_dts) the version took effect.';
COMMENT ON COLUMN business_vault.sat_order_details_history.valid_to IS 'Business time the next version took effect; ''infinity'' for the current one.';
COMMENT ON COLUMN business_vault.sat_order_details_history.is_current IS 'True for the latest version in business time.';
COMMENT ON COLUMN business_vault.sat_order_details_history.event_seq IS 'The event that wrote the version: its seq in event_log.events (the row''s own, or one of the lines of a bundle).';
COMMENT ON COLUMN business_vault.sat_order_details_history.load_dts IS 'When that event arrived in the log.';

CREATE OR REPLACE VIEW business_vault.sat_order_details_current AS
SELECT order_id, ordered_at, channel, valid_from, hk_order, event_seq, load_dts, hashdiff, record_source
  FROM business_vault.sat_order_details_history
 WHERE is_current;
COMMENT ON VIEW business_vault.sat_order_details_current IS
    'Order header, current state: the latest version in business time, one row per key.';
COMMENT ON COLUMN business_vault.sat_order_details_current.valid_from IS 'Business time since which these values hold.';

-- sat_order_status ------------------------------------------------------------------

CREATE OR REPLACE VIEW business_vault.sat_order_status_history AS
SELECT v.order_id,
       v.status,
       v.applied_dts AS valid_from,
       coalesce(lead(v.applied_dts) OVER w, 'infinity') AS valid_to,
       lead(v.applied_dts) OVER w IS NULL AS is_current,
       v.hk_order, v.event_seq, v.load_dts, v.hashdiff, v.record_source
  FROM (SELECT h.order_id, s.*,
               lag(s.hashdiff) OVER (PARTITION BY s.hk_order, h.order_id
                                     ORDER BY s.applied_dts, s.event_seq) AS previous_hashdiff
          FROM raw_vault.sat_order_status s
          JOIN raw_vault.hub_order h ON h.hk_order = s.hk_order) v
 WHERE v.previous_hashdiff IS DISTINCT FROM v.hashdiff
WINDOW w AS (PARTITION BY v.hk_order, v.order_id ORDER BY v.applied_dts, v.event_seq);
-- (the business keys are in the PARTITION BY, although the hash key alone decides the
-- partitions, so that a filter on them is pushed down to the index scans)
COMMENT ON VIEW business_vault.sat_order_status_history IS
    'Order status history: one row per version in business time, repeats folded. In force at ts: valid_from <= ts AND ts < valid_to.';
COMMENT ON COLUMN business_vault.sat_order_status_history.valid_from IS 'Business time (applied_dts) the version took effect.';
COMMENT ON COLUMN business_vault.sat_order_status_history.valid_to IS 'Business time the next version took effect; ''infinity'' for the current one.';
COMMENT ON COLUMN business_vault.sat_order_status_history.is_current IS 'True for the latest version in business time.';
COMMENT ON COLUMN business_vault.sat_order_status_history.event_seq IS 'The event that wrote the version: its seq in event_log.events (the row''s own, or one of the lines of a bundle).';
COMMENT ON COLUMN business_vault.sat_order_status_history.load_dts IS 'When that event arrived in the log.';

CREATE OR REPLACE VIEW business_vault.sat_order_status_current AS
SELECT order_id, status, valid_from, hk_order, event_seq, load_dts, hashdiff, record_source
  FROM business_vault.sat_order_status_history
 WHERE is_current;
COMMENT ON VIEW business_vault.sat_order_status_current IS
    'Order status, current state: the latest version in business time, one row per key.';
COMMENT ON COLUMN business_vault.sat_order_status_current.valid_from IS 'Business time since which these values hold.';

-- sat_order_line ------------------------------------------------------------------

CREATE OR REPLACE VIEW business_vault.sat_order_line_history AS
SELECT v.order_id,
       v.line_no,
       v.product_id,
       v.quantity,
       v.unit_price,
       v.discount,
       v.applied_dts AS valid_from,
       coalesce(lead(v.applied_dts) OVER w, 'infinity') AS valid_to,
       lead(v.applied_dts) OVER w IS NULL AS is_current,
       v.hk_order_product, v.event_seq, v.load_dts, v.hashdiff, v.record_source
  FROM (SELECT ho.order_id, l.line_no, hp.product_id, s.*,
               lag(s.hashdiff) OVER (PARTITION BY s.hk_order_product, ho.order_id, l.line_no, hp.product_id
                                     ORDER BY s.applied_dts, s.event_seq) AS previous_hashdiff
          FROM raw_vault.sat_order_line s
          JOIN raw_vault.link_order_product l ON l.hk_order_product = s.hk_order_product
          JOIN raw_vault.hub_order ho ON ho.hk_order = l.hk_order
          JOIN raw_vault.hub_product hp ON hp.hk_product = l.hk_product) v
 WHERE v.previous_hashdiff IS DISTINCT FROM v.hashdiff
WINDOW w AS (PARTITION BY v.hk_order_product, v.order_id, v.line_no, v.product_id ORDER BY v.applied_dts, v.event_seq);
-- (the business keys are in the PARTITION BY, although the hash key alone decides the
-- partitions, so that a filter on them is pushed down to the index scans)
COMMENT ON VIEW business_vault.sat_order_line_history IS
    'Order line quantities and prices history: one row per version in business time, repeats folded. In force at ts: valid_from <= ts AND ts < valid_to.';
COMMENT ON COLUMN business_vault.sat_order_line_history.valid_from IS 'Business time (applied_dts) the version took effect.';
COMMENT ON COLUMN business_vault.sat_order_line_history.valid_to IS 'Business time the next version took effect; ''infinity'' for the current one.';
COMMENT ON COLUMN business_vault.sat_order_line_history.is_current IS 'True for the latest version in business time.';
COMMENT ON COLUMN business_vault.sat_order_line_history.event_seq IS 'The event that wrote the version: its seq in event_log.events (the row''s own, or one of the lines of a bundle).';
COMMENT ON COLUMN business_vault.sat_order_line_history.load_dts IS 'When that event arrived in the log.';

CREATE OR REPLACE VIEW business_vault.sat_order_line_current AS
SELECT order_id, line_no, product_id, quantity, unit_price, discount, valid_from, hk_order_product, event_seq, load_dts, hashdiff, record_source
  FROM business_vault.sat_order_line_history
 WHERE is_current;
COMMENT ON VIEW business_vault.sat_order_line_current IS
    'Order line quantities and prices, current state: the latest version in business time, one row per key.';
COMMENT ON COLUMN business_vault.sat_order_line_current.valid_from IS 'Business time since which these values hold.';

-- sat_customer_profile with its ghost record ------------------------------------------

-- The satellite plus one ghost row (key 32 zero bytes, applied_dts '-infinity',
-- event_seq 0, every payload column NULL), so that every business_vault.pit_customer
-- row finds its version with an inner equi-join on (hk, applied_dts, event_seq), even
-- where the customer had no row yet. The ghost lives here, not in the raw
-- satellite, which stays exactly what the loader wrote.
CREATE OR REPLACE VIEW business_vault.sat_customer_profile_with_ghost AS
SELECT s.hk_customer, s.applied_dts, s.event_seq, s.load_dts,
       s.first_name,
       s.last_name,
       s.city,
       s.country,
       s.signup_date,
       s.record_source
  FROM raw_vault.sat_customer_profile s
UNION ALL
SELECT business_vault.ghost_key(), '-infinity'::timestamptz, 0::bigint, '-infinity'::timestamptz,
       NULL::text, NULL::text, NULL::text, NULL::text, NULL::date, 'GHOST';
COMMENT ON VIEW business_vault.sat_customer_profile_with_ghost IS
    'raw_vault.sat_customer_profile plus the ghost record: what business_vault.pit_customer columns sat_customer_profile_* join to.';

-- sat_customer_contact with its ghost record ------------------------------------------

-- The satellite plus one ghost row (key 32 zero bytes, applied_dts '-infinity',
-- event_seq 0, every payload column NULL), so that every business_vault.pit_customer
-- row finds its version with an inner equi-join on (hk, applied_dts, event_seq), even
-- where the customer had no row yet. The ghost lives here, not in the raw
-- satellite, which stays exactly what the loader wrote.
CREATE OR REPLACE VIEW business_vault.sat_customer_contact_with_ghost AS
SELECT s.hk_customer, s.applied_dts, s.event_seq, s.load_dts,
       CASE WHEN business_vault.pii_visible() THEN s.email END AS email,
       CASE WHEN business_vault.pii_visible() THEN s.phone END AS phone,
       s.record_source
  FROM raw_vault.sat_customer_contact s
UNION ALL
SELECT business_vault.ghost_key(), '-infinity'::timestamptz, 0::bigint, '-infinity'::timestamptz,
       NULL::text, NULL::text, 'GHOST';
COMMENT ON VIEW business_vault.sat_customer_contact_with_ghost IS
    'raw_vault.sat_customer_contact plus the ghost record: what business_vault.pit_customer columns sat_customer_contact_* join to.';

-- PIT helpers ------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION business_vault.pit_customer_on(day date)
RETURNS TABLE (hk_customer bytea, snapshot_date date, changed_on date,
               sat_customer_profile_hk bytea, sat_customer_profile_applied_dts timestamptz,
               sat_customer_profile_event_seq bigint, sat_customer_profile_load_dts timestamptz,
               sat_customer_contact_hk bytea, sat_customer_contact_applied_dts timestamptz,
               sat_customer_contact_event_seq bigint, sat_customer_contact_load_dts timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT ON (p.hk_customer)
           p.hk_customer, day, p.snapshot_date,
           p.sat_customer_profile_hk, p.sat_customer_profile_applied_dts,
           p.sat_customer_profile_event_seq, p.sat_customer_profile_load_dts,
           p.sat_customer_contact_hk, p.sat_customer_contact_applied_dts,
           p.sat_customer_contact_event_seq, p.sat_customer_contact_load_dts
      FROM business_vault.pit_customer p
     WHERE p.snapshot_date <= day
     ORDER BY p.hk_customer, p.snapshot_date DESC
$$;
COMMENT ON FUNCTION business_vault.pit_customer_on(date) IS
    'The PIT for one UTC day: one row per customer known by the end of that day, with the satellite versions in force then (changed_on: the PIT row it comes from). ''infinity'' gives the current rows.';

CREATE OR REPLACE VIEW business_vault.pit_customer_daily AS
SELECT p.hk_customer, d.day::date AS snapshot_date, p.snapshot_date AS changed_on,
       p.sat_customer_profile_hk, p.sat_customer_profile_applied_dts,
       p.sat_customer_profile_event_seq, p.sat_customer_profile_load_dts,
       p.sat_customer_contact_hk, p.sat_customer_contact_applied_dts,
       p.sat_customer_contact_event_seq, p.sat_customer_contact_load_dts
  FROM (SELECT q.*, lead(q.snapshot_date) OVER (PARTITION BY q.hk_customer ORDER BY q.snapshot_date) AS next_change
          FROM business_vault.pit_customer q
         WHERE q.snapshot_date < 'infinity') p
 CROSS JOIN LATERAL generate_series(p.snapshot_date,
                                    coalesce(p.next_change - 1, (now() AT TIME ZONE 'UTC')::date),
                                    interval '1 day') AS d(day);
COMMENT ON VIEW business_vault.pit_customer_daily IS
    'The change-based PIT expanded to one row per customer per UTC day, from the first change to today. Filter it by customer; for one day over all customers use pit_customer_on(day).';
COMMENT ON COLUMN business_vault.pit_customer_daily.changed_on IS 'The stored PIT row (the last change on or before snapshot_date) this day repeats.';
