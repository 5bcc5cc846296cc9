-- Time travel: the marts as they were at a business time ts. Each satellite gives
-- the version in force at ts (the latest with applied_dts <= ts), an order exists
-- once it was placed (ordered_at <= ts), with the status and lines it had then, and
-- the figures relative to ts count only those orders; RFM quintiles are taken over
-- the customers as they were at ts. At ts = now() they equal the current views.
--
-- The functions run with their owner's rights (SECURITY DEFINER, fixed search_path),
-- so a role that may read mart can call them without any right on raw_vault. They
-- return no personal data (contact details).
--
-- One customer as of ts (GET /customers/{id}?as_of=) has its own path:
-- mart.customer_360_as_of(ts, customer) computes the same row from that customer's
-- keys alone, each satellite version in force at ts one index probe (LATERAL ...
-- LIMIT 1), with a plan kept per connection; the population functions read every
-- order (business_vault.orders_at: as it stands in order_summary where nothing of it
-- changed after ts, else by index) and whole tables for the rest, which is what a
-- population needs. tests/integration/oracle.rs checks both
-- against each other and against an independent model for every customer. The RFM
-- boundaries of the population at ts, which even one customer's scores need, are read
-- from business_vault.rfm_cutpoints_as_of (business_vault.rfm_cuts_at): the loader
-- keeps them for the end of every past day (src/load/business/past_days.rs), and any
-- other ts is computed once and remembered there. One customer as of a date costs
-- about a millisecond.

-- The order lines and the product versions in force at ts, whatever the order: the
-- parts the population functions below join to the orders of then. Plain SQL (no SET,
-- not SECURITY DEFINER), so the planner inlines them into their callers' queries.
-- A line whose current version began at or before ts (the bridge's line_applied_dts)
-- had it at ts, with the measures the bridge holds; only the others are looked for
-- among the versions of then (a sort of those alone: sorting every version up to ts
-- was most of the sales of a past date at 10x the demo data).
CREATE OR REPLACE FUNCTION business_vault.lines_at(ts timestamptz)
RETURNS TABLE (hk_order bytea, hk_order_product bytea, hk_product bytea, line_no text,
               quantity integer, unit_price numeric, discount numeric)
LANGUAGE sql STABLE
AS $$
    SELECT b.hk_order, b.hk_order_product, b.hk_product, b.line_no, b.quantity, b.unit_price,
           b.discount
      FROM business_vault.bridge_customer_order_product b
     WHERE b.line_applied_dts <= ts
    UNION ALL
    SELECT b.hk_order, b.hk_order_product, b.hk_product, b.line_no, v.quantity, v.unit_price,
           v.discount
      FROM business_vault.bridge_customer_order_product b
      JOIN (SELECT DISTINCT ON (s.hk_order_product) s.hk_order_product, s.quantity, s.unit_price, s.discount
              FROM raw_vault.sat_order_line s
             WHERE s.applied_dts <= ts
               AND s.hk_order_product IN (SELECT x.hk_order_product
                                            FROM business_vault.bridge_customer_order_product x
                                           WHERE x.line_applied_dts > ts)
             ORDER BY s.hk_order_product, s.applied_dts DESC, s.event_seq DESC) v
        ON v.hk_order_product = b.hk_order_product
     WHERE b.line_applied_dts > ts
$$;
COMMENT ON FUNCTION business_vault.lines_at(timestamptz) IS
    'Every order line with the quantity, unit price and discount it had at business time ts (lines without a version by then are left out).';

CREATE OR REPLACE FUNCTION business_vault.products_at(ts timestamptz)
RETURNS TABLE (hk_product bytea, name text, category text)
LANGUAGE sql STABLE
AS $$
    SELECT DISTINCT ON (s.hk_product) s.hk_product, s.name, s.category
      FROM raw_vault.sat_product_details s
     WHERE s.applied_dts <= ts
     ORDER BY s.hk_product, s.applied_dts DESC, s.event_seq DESC
$$;
COMMENT ON FUNCTION business_vault.products_at(timestamptz) IS
    'The products with a details version in force at business time ts: their name and category then.';

-- An order's line count, units and amount at ts from its line versions, by index (the
-- bridge's key, then the satellite's): for the orders whose lines changed after ts.
CREATE OR REPLACE FUNCTION business_vault.order_lines_total_at(ts timestamptz, order_key bytea)
RETURNS TABLE (lines integer, units bigint, amount numeric)
LANGUAGE sql STABLE
AS $$
    SELECT count(*)::integer, coalesce(sum(v.quantity), 0)::bigint,
           coalesce(sum(business_vault.line_amount(v.quantity, v.unit_price, v.discount)), 0)::numeric(14,2)
      FROM business_vault.bridge_customer_order_product b
     CROSS JOIN LATERAL (
           SELECT s.quantity, s.unit_price, s.discount
             FROM raw_vault.sat_order_line s
            WHERE s.hk_order_product = b.hk_order_product AND s.applied_dts <= ts
            ORDER BY s.applied_dts DESC, s.event_seq DESC
            LIMIT 1) v
     WHERE b.hk_order = order_key
$$;
COMMENT ON FUNCTION business_vault.order_lines_total_at(timestamptz, bytea) IS
    'One order''s line count, units and amount at business time ts (its lines with a version by then), read by index.';

-- One order at ts by index: its details, status and lines of then (no row when it had no
-- details version by then); whether it was placed by then is the caller's test.
CREATE OR REPLACE FUNCTION business_vault.order_at(ts timestamptz, order_key bytea)
RETURNS TABLE (ordered_at timestamptz, order_date date, channel text, status text,
               status_known boolean, is_counted boolean, lines integer, units bigint,
               amount numeric)
LANGUAGE sql STABLE
AS $$
    SELECT d.ordered_at, (d.ordered_at AT TIME ZONE 'UTC')::date, d.channel,
           business_vault.order_status(st.status), st.status IS NOT NULL,
           business_vault.is_counted(st.status), l.lines, l.units, l.amount
      FROM (SELECT coalesce(s.ordered_at, s.applied_dts) AS ordered_at, s.channel
              FROM raw_vault.sat_order_details s
             WHERE s.hk_order = order_key AND s.applied_dts <= ts
             ORDER BY s.applied_dts DESC, s.event_seq DESC
             LIMIT 1) d
      LEFT JOIN LATERAL (
           SELECT s.status
             FROM raw_vault.sat_order_status s
            WHERE s.hk_order = order_key AND s.applied_dts <= ts
            ORDER BY s.applied_dts DESC, s.event_seq DESC
            LIMIT 1) st ON true
     CROSS JOIN LATERAL business_vault.order_lines_total_at(ts, order_key) l
$$;
COMMENT ON FUNCTION business_vault.order_at(timestamptz, bytea) IS
    'One order''s details, status and lines at business time ts, read by index (no row without a details version by then).';

-- The orders placed by ts with the details, status and lines they had then, by key:
-- what mart.orders_as_of(ts) shows and the population functions below count. Plain SQL
-- like lines_at, so a caller's query reads only what it uses (the population reads no
-- hub). Each part of an order whose current version began at or before ts
-- (details_since, status_since, lines_since) is the one in force at ts, as it stands in
-- business_vault.order_summary. So an order none of whose parts changed after ts is
-- taken as it stands; one whose status alone changed after ts (most of the others: an
-- order is shipped and delivered after it is placed) reads only its status of then by
-- index; the rest, few unless ts is recent, read all their versions of then. An order's
-- customer is its first link's, as in order_summary (the link of an order never
-- changes).
CREATE OR REPLACE FUNCTION business_vault.orders_at(ts timestamptz)
RETURNS TABLE (hk_order bytea, hk_customer bytea, ordered_at timestamptz, order_date date,
               channel text, status text, status_known boolean, is_counted boolean,
               lines integer, units bigint, amount numeric)
LANGUAGE sql STABLE
AS $$
    SELECT c.hk_order, c.hk_customer, c.ordered_at, c.order_date, c.channel, c.status,
           c.status_known, c.is_counted, c.lines, c.units, c.amount
      FROM business_vault.order_summary c
     WHERE c.details_since <= ts AND c.status_since <= ts AND c.lines_since <= ts
       AND c.ordered_at <= ts
    UNION ALL
    -- the status changed after ts, the details and lines did not
    SELECT c.hk_order, c.hk_customer, c.ordered_at, c.order_date, c.channel,
           business_vault.order_status(st.status), st.status IS NOT NULL,
           business_vault.is_counted(st.status), c.lines, c.units, c.amount
      FROM business_vault.order_summary c
      LEFT JOIN LATERAL (
           SELECT s.status
             FROM raw_vault.sat_order_status s
            WHERE s.hk_order = c.hk_order AND s.applied_dts <= ts
            ORDER BY s.applied_dts DESC, s.event_seq DESC
            LIMIT 1) st ON true
     WHERE c.details_since <= ts AND c.lines_since <= ts AND c.status_since > ts
       AND c.ordered_at <= ts
    UNION ALL
    -- the details or lines changed after ts: existing by then (a details version), and
    -- not an order whose details of then (the current ones) place it after ts
    SELECT c.hk_order, c.hk_customer, o.*
      FROM business_vault.order_summary c
     CROSS JOIN LATERAL business_vault.order_at(ts, c.hk_order) o
     WHERE NOT (c.details_since <= ts AND c.lines_since <= ts)
       AND c.details_from <= ts
       AND NOT (c.details_since <= ts AND c.ordered_at > ts)
       AND o.ordered_at <= ts
$$;
COMMENT ON FUNCTION business_vault.orders_at(timestamptz) IS
    'The orders placed by business time ts, by key, with the details, status and lines they had then: mart.orders_as_of(ts) without the order and customer ids.';

CREATE OR REPLACE FUNCTION mart.orders_as_of(ts timestamptz)
RETURNS TABLE (order_id text, customer_id text, ordered_at timestamptz, order_date date,
               channel text, status text, status_known boolean, is_counted boolean,
               lines integer, units bigint, amount numeric, hk_order bytea, hk_customer bytea)
LANGUAGE sql STABLE SECURITY DEFINER
ROWS 100000  -- the whole population: tell the planner so (1,000 otherwise), its
            -- callers then hash-join it rather than probe an index per row
SET search_path = pg_catalog, pg_temp
SET jit = off  -- compiling these plans costs seconds, running them well under one
AS $$
    SELECT ho.order_id, hc.customer_id, o.ordered_at, o.order_date, o.channel, o.status,
           o.status_known, o.is_counted, o.lines, o.units, o.amount, o.hk_order, o.hk_customer
      FROM business_vault.orders_at(ts) o
      JOIN raw_vault.hub_order ho ON ho.hk_order = o.hk_order
      JOIN raw_vault.hub_customer hc ON hc.hk_customer = o.hk_customer
$$;
COMMENT ON FUNCTION mart.orders_as_of(timestamptz) IS
    'mart.orders as it was at business time ts: orders placed by ts, with the status and lines they had then.';

CREATE OR REPLACE FUNCTION mart.order_lines_as_of(ts timestamptz)
RETURNS TABLE (order_id text, line_no text, product_id text, product_name text, category text,
               customer_id text, ordered_at timestamptz, order_date date, status text,
               is_counted boolean, quantity integer, unit_price numeric, discount numeric,
               line_amount numeric, hk_order bytea, hk_order_product bytea, hk_product bytea,
               hk_customer bytea)
LANGUAGE sql STABLE SECURITY DEFINER
ROWS 250000  -- (see mart.orders_as_of)
SET search_path = pg_catalog, pg_temp
SET jit = off  -- compiling these plans costs seconds, running them well under one
AS $$
    SELECT o.order_id, v.line_no, hp.product_id, pd.name, pd.category, o.customer_id,
           o.ordered_at, o.order_date, o.status, o.is_counted, v.quantity, v.unit_price,
           v.discount, business_vault.line_amount(v.quantity, v.unit_price, v.discount)::numeric(14,2),
           v.hk_order, v.hk_order_product, v.hk_product, o.hk_customer
      FROM mart.orders_as_of(ts) o
      JOIN business_vault.lines_at(ts) v ON v.hk_order = o.hk_order
      JOIN raw_vault.hub_product hp ON hp.hk_product = v.hk_product
      LEFT JOIN business_vault.products_at(ts) pd ON pd.hk_product = v.hk_product
$$;
COMMENT ON FUNCTION mart.order_lines_as_of(timestamptz) IS
    'mart.order_lines as it was at business time ts: lines of the orders placed by ts, with the quantities, prices, product names and categories of then.';

-- Every customer known at ts with the row mart.customer_360_as_of(ts) has for it: what
-- that function shows and business_vault.population_computed counts. Plain SQL, so a
-- caller's query reads only what it uses: the profiles and favourite categories are
-- left joins on their key, which the planner drops when the caller reads neither (the
-- population, which then reads the orders and lines of ts once instead of twice).
CREATE OR REPLACE FUNCTION business_vault.customers_at(ts timestamptz)
RETURNS TABLE (customer_id text, first_name text, last_name text, city text, country text,
               signup_date date, orders_count integer, orders_cancelled_or_returned integer,
               total_spent numeric, avg_order_value numeric, first_order_at timestamptz,
               last_order_at timestamptz, days_since_last_order integer,
               avg_days_between_orders numeric, favourite_category text,
               recency_score integer, frequency_score integer, monetary_score integer,
               rfm_cell text, segment text, clv_historic numeric, clv_predicted_12m numeric,
               churn_risk text, is_churned boolean, hk_customer bytea)
LANGUAGE sql STABLE
AS $$
    WITH o AS (
        SELECT * FROM business_vault.orders_at(ts)
    ), a AS (
        SELECT o.hk_customer,
               count(*) FILTER (WHERE o.is_counted)::integer AS orders_count,
               count(*) FILTER (WHERE NOT o.is_counted)::integer AS orders_cancelled_or_returned,
               coalesce(sum(o.amount) FILTER (WHERE o.is_counted), 0.00) AS total_spent,
               min(o.ordered_at) FILTER (WHERE o.is_counted) AS first_order_at,
               max(o.ordered_at) FILTER (WHERE o.is_counted) AS last_order_at,
               (min(o.ordered_at) FILTER (WHERE o.is_counted) AT TIME ZONE 'UTC')::date AS first_order_date,
               (max(o.ordered_at) FILTER (WHERE o.is_counted) AT TIME ZONE 'UTC')::date AS last_order_date
          FROM o
         GROUP BY o.hk_customer
    ), q AS (
        SELECT business_vault.quintile_cuts(coalesce(array_agg(a.last_order_date), '{}')) AS recency,
               business_vault.quintile_cuts(coalesce(array_agg(a.orders_count), '{}')) AS frequency,
               business_vault.quintile_cuts(coalesce(array_agg(a.total_spent::numeric), '{}')) AS monetary
          FROM a
         WHERE a.orders_count > 0
    ), known AS (
        -- the customers that existed at ts: a profile or contact version, an order or
        -- a product view by then (each part made distinct first: a sort of the product
        -- views' customers alone was the largest part of this at 10x the demo data)
        SELECT u.hk_customer
          FROM (SELECT DISTINCT s.hk_customer FROM raw_vault.sat_customer_profile s
                 WHERE s.applied_dts <= ts
                UNION ALL
                SELECT DISTINCT s.hk_customer FROM raw_vault.sat_customer_contact s
                 WHERE s.applied_dts <= ts
                UNION ALL
                SELECT a.hk_customer FROM a
                UNION ALL
                SELECT DISTINCT v.hk_customer FROM raw_vault.link_product_view v
                 WHERE v.viewed_at <= ts) u
         GROUP BY u.hk_customer
    )
    SELECT h.customer_id, pr.first_name, pr.last_name, pr.city, pr.country, pr.signup_date,
           coalesce(a.orders_count, 0), coalesce(a.orders_cancelled_or_returned, 0),
           coalesce(a.total_spent, 0.00), round(a.total_spent / nullif(a.orders_count, 0), 2),
           a.first_order_at, a.last_order_at, s.days_since_last_order, s.avg_days_between_orders,
           fav.category, s.recency_score, s.frequency_score, s.monetary_score, s.rfm_cell,
           s.segment, coalesce(a.total_spent, 0.00), s.clv_predicted_12m, s.churn_risk,
           coalesce(s.churn_risk = 'churned', false), h.hk_customer
      FROM known k
      JOIN raw_vault.hub_customer h ON h.hk_customer = k.hk_customer
      LEFT JOIN (SELECT DISTINCT ON (s.hk_customer) s.*
                   FROM raw_vault.sat_customer_profile s
                  WHERE s.applied_dts <= ts
                  ORDER BY s.hk_customer, s.applied_dts DESC, s.event_seq DESC) pr
        ON pr.hk_customer = k.hk_customer
      LEFT JOIN a ON a.hk_customer = k.hk_customer
      LEFT JOIN (SELECT DISTINCT ON (o.hk_customer) o.hk_customer, pd.category
                   FROM o
                   JOIN business_vault.lines_at(ts) v ON v.hk_order = o.hk_order
                   JOIN business_vault.products_at(ts) pd ON pd.hk_product = v.hk_product
                  WHERE o.is_counted AND pd.category IS NOT NULL
                  GROUP BY o.hk_customer, pd.category
                  ORDER BY o.hk_customer, sum(v.quantity) DESC NULLS LAST,
                           sum(business_vault.line_amount(v.quantity, v.unit_price, v.discount)) DESC NULLS LAST,
                           pd.category) fav
        ON fav.hk_customer = k.hk_customer
     CROSS JOIN q
     CROSS JOIN LATERAL business_vault.customer_scores(
           (ts AT TIME ZONE 'UTC')::date, a.first_order_date, a.last_order_date,
           a.orders_count, a.total_spent, q.recency, q.frequency, q.monetary) s
$$;
COMMENT ON FUNCTION business_vault.customers_at(timestamptz) IS
    'Every customer known at business time ts, with the row mart.customer_360_as_of(ts) has for it.';

CREATE OR REPLACE FUNCTION mart.customer_360_as_of(ts timestamptz)
RETURNS TABLE (customer_id text, first_name text, last_name text, city text, country text,
               signup_date date, orders_count integer, orders_cancelled_or_returned integer,
               total_spent numeric, avg_order_value numeric, first_order_at timestamptz,
               last_order_at timestamptz, days_since_last_order integer,
               avg_days_between_orders numeric, favourite_category text,
               recency_score integer, frequency_score integer, monetary_score integer,
               rfm_cell text, segment text, clv_historic numeric, clv_predicted_12m numeric,
               churn_risk text, is_churned boolean, hk_customer bytea)
LANGUAGE sql STABLE SECURITY DEFINER
ROWS 100000  -- (see mart.orders_as_of)
SET search_path = pg_catalog, pg_temp
SET jit = off  -- compiling these plans costs seconds, running them well under one
AS $$
    SELECT * FROM business_vault.customers_at(ts)
$$;
COMMENT ON FUNCTION mart.customer_360_as_of(timestamptz) IS
    'mart.customer_360 (without contact details) as it was at business time ts: profile in force then, orders placed by ts with their status then, RFM over the customers of then, recency, churn and CLV relative to the day of ts.';

-- One computation per remembered answer: when what (rfm_cuts_at, population_at) at ts
-- is not remembered yet, wait until no other transaction computes it and say so (true:
-- look again, it may be there now). Without it, every request for a new ts that
-- arrives while the first one computes (seconds on a large vault) computes it too, and
-- a burst of them fills the API's connection pool. The lock is the transaction's, so
-- it is released when the first one's answer is committed. Not in a read-only
-- transaction (a replica stores nothing: each request computes its own).
CREATE OR REPLACE FUNCTION business_vault.remember_once(what text, ts timestamptz)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('transaction_read_only')::boolean THEN
        RETURN false;
    END IF;
    -- (the epoch, not ts::text, which depends on the session's TimeZone)
    PERFORM pg_advisory_xact_lock(hashtext(what), hashtext(extract(epoch FROM ts)::text));
    RETURN true;
END
$$;
COMMENT ON FUNCTION business_vault.remember_once(text, timestamptz) IS
    'Serialise the computations of one remembered answer (what at ts): waits for the transaction computing it, if any; false (no wait) in a read-only transaction.';

-- The RFM quintile boundaries of the population at ts: remembered in
-- business_vault.rfm_cutpoints_as_of once computed (migration 13 says when the loader
-- forgets them). Stored only outside read-only transactions (a replica computes them
-- every time), and only if the loader's checkpoint is where it was when they were
-- computed: the checkpoint row is locked FOR SHARE, which waits for a batch in flight
-- (it holds the row FOR UPDATE from its start) and then sees the moved checkpoint.
CREATE OR REPLACE FUNCTION business_vault.rfm_cuts_at(ts timestamptz,
    OUT population integer, OUT recency date[], OUT frequency integer[], OUT monetary numeric[])
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    seen_xid xid8;
    seen_seq bigint;
BEGIN
    -- remembered? If not, wait for a request computing it (business_vault.remember_once)
    -- and look again
    FOR attempt IN 1..2 LOOP
        SELECT m.population, m.recency, m.frequency, m.monetary
          INTO population, recency, frequency, monetary
          FROM business_vault.rfm_cutpoints_as_of m
         WHERE m.as_of = ts;
        IF FOUND THEN
            RETURN;
        END IF;
        EXIT WHEN attempt = 2 OR NOT business_vault.remember_once('rfm_cuts_at', ts);
    END LOOP;
    -- one statement, one snapshot: the boundaries and the checkpoint they belong to
    SELECT count(*)::integer,
           business_vault.quintile_cuts(coalesce(array_agg(a.last_order_date), '{}')),
           business_vault.quintile_cuts(coalesce(array_agg(a.orders_count), '{}')),
           business_vault.quintile_cuts(coalesce(array_agg(a.total_spent), '{}')),
           (SELECT k.xid FROM ops.checkpoints k WHERE k.consumer = 'vault_loader'),
           (SELECT k.seq FROM ops.checkpoints k WHERE k.consumer = 'vault_loader')
      INTO population, recency, frequency, monetary, seen_xid, seen_seq
      FROM (SELECT max(o.order_date) AS last_order_date, count(*)::integer AS orders_count,
                   sum(o.amount) AS total_spent
              FROM business_vault.orders_at(ts) o
             WHERE o.is_counted
             GROUP BY o.hk_customer) a;
    IF current_setting('transaction_read_only')::boolean THEN
        RETURN;
    END IF;
    INSERT INTO business_vault.rfm_cutpoints_as_of AS m (as_of, population, recency, frequency, monetary)
    SELECT ts, population, recency, frequency, monetary
     WHERE EXISTS (SELECT FROM ops.checkpoints k
                    WHERE k.consumer = 'vault_loader' AND k.xid = seen_xid AND k.seq = seen_seq
                      FOR SHARE)
    ON CONFLICT (as_of) DO NOTHING;
    -- (the days the loader keeps are not counted: src/load/business/past_days.rs)
    DELETE FROM business_vault.rfm_cutpoints_as_of m
     WHERE m.as_of IN (SELECT x.as_of FROM business_vault.rfm_cutpoints_as_of x
                        WHERE NOT x.by_loader
                        ORDER BY x.computed_at DESC, x.as_of OFFSET 1000);
END
$$;
COMMENT ON FUNCTION business_vault.rfm_cuts_at(timestamptz) IS
    'business_vault.rfm_cutpoints as they were at business time ts (customers with a counted order then, and the quintile boundaries of their last order day, counted orders and total spent), remembered in business_vault.rfm_cutpoints_as_of.';

CREATE OR REPLACE FUNCTION business_vault.customer_orders_at(ts timestamptz, customer bytea)
RETURNS TABLE (order_id text, customer_id text, ordered_at timestamptz, order_date date,
               channel text, status text, status_known boolean, is_counted boolean,
               lines integer, units bigint, amount numeric, hk_order bytea, hk_customer bytea)
LANGUAGE sql STABLE
AS $$
    SELECT ho.order_id, hc.customer_id, o.*, c.hk_order, c.hk_customer
      -- the orders linked to the customer, each its own if its first link is to it
      FROM (SELECT DISTINCT x.hk_order FROM raw_vault.link_order_customer x
             WHERE x.hk_customer = customer) k
     CROSS JOIN LATERAL (
           SELECT loc.hk_order, loc.hk_customer
             FROM raw_vault.link_order_customer loc
            WHERE loc.hk_order = k.hk_order
            ORDER BY loc.load_dts, loc.hk_order_customer
            LIMIT 1) c
     CROSS JOIN LATERAL business_vault.order_at(ts, c.hk_order) o
      JOIN raw_vault.hub_order ho ON ho.hk_order = c.hk_order
      JOIN raw_vault.hub_customer hc ON hc.hk_customer = c.hk_customer
     WHERE o.ordered_at <= ts
       AND c.hk_customer = customer
$$;
COMMENT ON FUNCTION business_vault.customer_orders_at(timestamptz, bytea) IS
    'mart.orders_as_of(ts) of one customer, read by index. Inlined into mart.customer_360_as_of(ts, customer).';

CREATE OR REPLACE FUNCTION business_vault.customer_360_one_at(
    ts timestamptz, customer bytea,
    recency_cuts date[], frequency_cuts integer[], monetary_cuts numeric[])
RETURNS TABLE (customer_id text, first_name text, last_name text, city text, country text,
               signup_date date, orders_count integer, orders_cancelled_or_returned integer,
               total_spent numeric, avg_order_value numeric, first_order_at timestamptz,
               last_order_at timestamptz, days_since_last_order integer,
               avg_days_between_orders numeric, favourite_category text,
               recency_score integer, frequency_score integer, monetary_score integer,
               rfm_cell text, segment text, clv_historic numeric, clv_predicted_12m numeric,
               churn_risk text, is_churned boolean, hk_customer bytea)
LANGUAGE sql STABLE
AS $$
    WITH o AS (
        SELECT * FROM business_vault.customer_orders_at(ts, customer)
    ), a AS (
        SELECT o.hk_customer,
               count(*) FILTER (WHERE o.is_counted)::integer AS orders_count,
               count(*) FILTER (WHERE NOT o.is_counted)::integer AS orders_cancelled_or_returned,
               coalesce(sum(o.amount) FILTER (WHERE o.is_counted), 0.00) AS total_spent,
               min(o.ordered_at) FILTER (WHERE o.is_counted) AS first_order_at,
               max(o.ordered_at) FILTER (WHERE o.is_counted) AS last_order_at,
               (min(o.ordered_at) FILTER (WHERE o.is_counted) AT TIME ZONE 'UTC')::date AS first_order_date,
               (max(o.ordered_at) FILTER (WHERE o.is_counted) AT TIME ZONE 'UTC')::date AS last_order_date
          FROM o
         GROUP BY o.hk_customer
    ), fav AS (
        SELECT DISTINCT ON (o.hk_customer) o.hk_customer, pd.category
          FROM o
          JOIN business_vault.bridge_customer_order_product b ON b.hk_order = o.hk_order
         CROSS JOIN LATERAL (
               SELECT s.quantity, s.unit_price, s.discount
                 FROM raw_vault.sat_order_line s
                WHERE s.hk_order_product = b.hk_order_product AND s.applied_dts <= ts
                ORDER BY s.applied_dts DESC, s.event_seq DESC
                LIMIT 1) v
         CROSS JOIN LATERAL (
               SELECT s.category
                 FROM raw_vault.sat_product_details s
                WHERE s.hk_product = b.hk_product AND s.applied_dts <= ts
                ORDER BY s.applied_dts DESC, s.event_seq DESC
                LIMIT 1) pd
         WHERE o.is_counted AND pd.category IS NOT NULL
         GROUP BY o.hk_customer, pd.category
         ORDER BY o.hk_customer, sum(v.quantity) DESC NULLS LAST,
                  sum(business_vault.line_amount(v.quantity, v.unit_price, v.discount)) DESC NULLS LAST,
                  pd.category
    ), pr AS (
        SELECT DISTINCT ON (s.hk_customer) s.*
          FROM raw_vault.sat_customer_profile s
         WHERE s.applied_dts <= ts
           AND s.hk_customer = customer
         ORDER BY s.hk_customer, s.applied_dts DESC, s.event_seq DESC
    ), known AS (
        -- the customers that existed at ts: a profile or contact version, an order or
        -- a product view by then
        SELECT pr.hk_customer FROM pr
        UNION
        SELECT s.hk_customer FROM raw_vault.sat_customer_contact s
         WHERE s.applied_dts <= ts
           AND s.hk_customer = customer
        UNION
        SELECT o.hk_customer FROM o
        UNION
        SELECT v.hk_customer FROM raw_vault.link_product_view v
         WHERE v.viewed_at <= ts
           AND v.hk_customer = customer
    )
    SELECT h.customer_id, pr.first_name, pr.last_name, pr.city, pr.country, pr.signup_date,
           coalesce(a.orders_count, 0), coalesce(a.orders_cancelled_or_returned, 0),
           coalesce(a.total_spent, 0.00), round(a.total_spent / nullif(a.orders_count, 0), 2),
           a.first_order_at, a.last_order_at, s.days_since_last_order, s.avg_days_between_orders,
           fav.category, s.recency_score, s.frequency_score, s.monetary_score, s.rfm_cell,
           s.segment, coalesce(a.total_spent, 0.00), s.clv_predicted_12m, s.churn_risk,
           coalesce(s.churn_risk = 'churned', false), h.hk_customer
      FROM known k
      JOIN raw_vault.hub_customer h ON h.hk_customer = k.hk_customer
      LEFT JOIN pr ON pr.hk_customer = k.hk_customer
      LEFT JOIN a ON a.hk_customer = k.hk_customer
      LEFT JOIN fav ON fav.hk_customer = k.hk_customer
     CROSS JOIN LATERAL business_vault.customer_scores(
           (ts AT TIME ZONE 'UTC')::date, a.first_order_date, a.last_order_date,
           a.orders_count, a.total_spent, recency_cuts, frequency_cuts, monetary_cuts) s
     WHERE h.hk_customer = customer
$$;
COMMENT ON FUNCTION business_vault.customer_360_one_at(timestamptz, bytea, date[], integer[], numeric[]) IS
    'mart.customer_360_as_of(ts) of one customer, scored against the given RFM boundaries, read by index. Inlined into mart.customer_360_as_of(ts, customer).';

-- One customer: the row mart.customer_360_as_of(ts) has for it, by index. PL/pgSQL
-- keeps the statement's plan for the connection; the generic plan (for any ts and
-- customer) is the right one here, so it is used from the first call on instead of
-- planning every call (planning this statement costs more than running it).
CREATE OR REPLACE FUNCTION mart.customer_360_as_of(ts timestamptz, customer bytea)
RETURNS TABLE (customer_id text, first_name text, last_name text, city text, country text,
               signup_date date, orders_count integer, orders_cancelled_or_returned integer,
               total_spent numeric, avg_order_value numeric, first_order_at timestamptz,
               last_order_at timestamptz, days_since_last_order integer,
               avg_days_between_orders numeric, favourite_category text,
               recency_score integer, frequency_score integer, monetary_score integer,
               rfm_cell text, segment text, clv_historic numeric, clv_predicted_12m numeric,
               churn_risk text, is_churned boolean, hk_customer bytea)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF customer IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT c.*
      FROM business_vault.rfm_cuts_at(ts) q
     CROSS JOIN LATERAL business_vault.customer_360_one_at(ts, customer, q.recency, q.frequency, q.monetary) c;
END
$$;
COMMENT ON FUNCTION mart.customer_360_as_of(timestamptz, bytea) IS
    'mart.customer_360_as_of(ts) for one customer (its hk_customer; none for NULL), read by index: milliseconds once the RFM boundaries of ts are known (business_vault.rfm_cuts_at).';

-- The population at ts per segment, computed from every customer's row of then.
CREATE OR REPLACE FUNCTION business_vault.population_computed(ts timestamptz)
RETURNS TABLE (segment text, customers bigint, with_orders bigint, orders bigint,
               revenue numeric, with_days bigint, days_sum bigint,
               clv_predicted_12m numeric, active bigint, at_risk bigint, churned bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off  -- compiling this plan costs seconds, running it not much more
AS $$
    SELECT c.segment, count(*), count(*) FILTER (WHERE c.orders_count > 0),
           coalesce(sum(c.orders_count), 0), coalesce(sum(c.total_spent), 0.00),
           count(c.days_since_last_order), coalesce(sum(c.days_since_last_order), 0),
           coalesce(sum(c.clv_predicted_12m), 0.00),
           count(*) FILTER (WHERE c.churn_risk = 'active'),
           count(*) FILTER (WHERE c.churn_risk = 'at risk'),
           count(*) FILTER (WHERE c.churn_risk = 'churned')
      FROM business_vault.customers_at(ts) c
     GROUP BY c.segment
$$;
COMMENT ON FUNCTION business_vault.population_computed(timestamptz) IS
    'Per RFM segment, the customers of mart.customer_360_as_of(ts) (business_vault.customers_at): what business_vault.population_as_of keeps.';

-- The population at ts: remembered in business_vault.population_as_of once computed
-- (migration 15 says when the loader forgets it), on the terms of business_vault.rfm_cuts_at:
-- stored only outside read-only transactions, and only if the loader's checkpoint,
-- read before the figures were computed, is still there (locked FOR SHARE: a batch in
-- flight is waited for, and then its moved checkpoint is seen).
CREATE OR REPLACE FUNCTION business_vault.population_at(ts timestamptz)
RETURNS TABLE (segment text, customers bigint, with_orders bigint, orders bigint,
               revenue numeric, with_days bigint, days_sum bigint,
               clv_predicted_12m numeric, active bigint, at_risk bigint, churned bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    seen_xid xid8;
    seen_seq bigint;
BEGIN
    -- remembered? If not, wait for a request computing it (business_vault.remember_once)
    -- and look again
    FOR attempt IN 1..2 LOOP
        RETURN QUERY
        SELECT p.segment, p.customers, p.with_orders, p.orders, p.revenue, p.with_days,
               p.days_sum, p.clv_predicted_12m, p.active, p.at_risk, p.churned
          FROM business_vault.population_as_of p
         WHERE p.as_of = ts;
        IF FOUND THEN
            RETURN;
        END IF;
        EXIT WHEN attempt = 2 OR NOT business_vault.remember_once('population_at', ts);
    END LOOP;
    IF current_setting('transaction_read_only')::boolean THEN
        RETURN QUERY SELECT * FROM business_vault.population_computed(ts);
        RETURN;
    END IF;
    SELECT k.xid, k.seq INTO seen_xid, seen_seq
      FROM ops.checkpoints k WHERE k.consumer = 'vault_loader';
    RETURN QUERY
    WITH computed AS (
        SELECT * FROM business_vault.population_computed(ts)
    ), kept AS (
        INSERT INTO business_vault.population_as_of AS m
            (as_of, segment, customers, with_orders, orders, revenue, with_days, days_sum,
             clv_predicted_12m, active, at_risk, churned)
        SELECT ts, c.* FROM computed c
         WHERE EXISTS (SELECT FROM ops.checkpoints k
                        WHERE k.consumer = 'vault_loader'
                          AND k.xid IS NOT DISTINCT FROM seen_xid
                          AND k.seq IS NOT DISTINCT FROM seen_seq
                          FOR SHARE)
        ON CONFLICT ON CONSTRAINT population_as_of_pkey DO NOTHING
    )
    SELECT * FROM computed;
    -- (the days the loader keeps are not counted: src/load/business/past_days.rs)
    DELETE FROM business_vault.population_as_of m
     WHERE m.as_of IN (SELECT x.as_of FROM business_vault.population_as_of x
                        WHERE NOT x.by_loader
                        GROUP BY x.as_of ORDER BY max(x.computed_at) DESC, x.as_of OFFSET 1000);
END
$$;
COMMENT ON FUNCTION business_vault.population_at(timestamptz) IS
    'business_vault.population_computed(ts), remembered in business_vault.population_as_of.';

CREATE OR REPLACE FUNCTION mart.segments_as_of(ts timestamptz)
RETURNS TABLE (segment text, customers bigint, customers_pct numeric, revenue numeric,
               revenue_pct numeric, avg_orders numeric, avg_total_spent numeric,
               avg_days_since_last_order numeric, clv_predicted_12m numeric, description text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.segment,
           coalesce(p.customers, 0),
           round(100.0 * coalesce(p.customers, 0) / nullif(sum(coalesce(p.customers, 0)) OVER (), 0), 2),
           coalesce(p.revenue, 0.00),
           round(100.0 * p.revenue / nullif(sum(p.revenue) OVER (), 0), 2),
           round(p.orders::numeric / p.customers, 2),
           round(p.revenue / p.customers, 2),
           round(p.days_sum::numeric / nullif(p.with_days, 0), 1),
           coalesce(p.clv_predicted_12m, 0.00),
           r.description
      FROM mart.rfm_segment_rules r
      LEFT JOIN business_vault.population_at(ts) p ON p.segment = r.segment
     ORDER BY r.sort_order
$$;
COMMENT ON FUNCTION mart.segments_as_of(timestamptz) IS
    'mart.segments as it was at business time ts (computed once per ts, then remembered until a load changes that past).';

CREATE OR REPLACE FUNCTION mart.churn_as_of(ts timestamptz)
RETURNS TABLE (customers_with_orders bigint, active bigint, at_risk bigint, churned bigint,
               churn_rate numeric, at_risk_rate numeric, prospects bigint, customers bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.with_orders, t.active, t.at_risk, t.churned,
           round(t.churned::numeric / nullif(t.with_orders, 0), 4),
           round(t.at_risk::numeric / nullif(t.with_orders, 0), 4),
           t.customers - t.with_orders, t.customers
      FROM (SELECT coalesce(sum(p.with_orders), 0)::bigint AS with_orders,
                   coalesce(sum(p.active), 0)::bigint AS active,
                   coalesce(sum(p.at_risk), 0)::bigint AS at_risk,
                   coalesce(sum(p.churned), 0)::bigint AS churned,
                   coalesce(sum(p.customers), 0)::bigint AS customers
              FROM business_vault.population_at(ts) p) t
$$;
COMMENT ON FUNCTION mart.churn_as_of(timestamptz) IS
    'mart.churn as it was at business time ts (computed once per ts, then remembered until a load changes that past).';

-- Sales at ts, in one pass over the orders and lines of then: the revenue per day, ISO
-- week and month (business_vault.revenue_period at ts), per category (category_summary
-- at ts) and the 100 products with the most revenue. One row per figure, `part` saying
-- which ('revenue', 'category', 'product'); the columns a part has no use for are NULL.
-- Products known at ts: those with a details version in force then or sold by then,
-- and those never listed (category NULL) viewed or in an order line by then, or with
-- no business time at all.
CREATE OR REPLACE FUNCTION business_vault.sales_computed(ts timestamptz)
RETURNS TABLE (part text, grain text, period_start date, rank integer, product_id text,
               name text, category text, products bigint, orders bigint, customers bigint,
               units numeric, revenue numeric, orders_cancelled_or_returned bigint,
               revenue_lost numeric)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off  -- compiling this plan costs seconds, running it not much more
AS $$
    WITH o AS MATERIALIZED (
        SELECT o.hk_order, o.hk_customer, o.order_date, o.is_counted, o.units, o.amount
          FROM business_vault.orders_at(ts) o
    ), sold AS (
        SELECT v.hk_product,
               coalesce(sum(v.quantity) FILTER (WHERE o.is_counted), 0) AS units_sold,
               coalesce(sum(business_vault.line_amount(v.quantity, v.unit_price, v.discount)::numeric(14,2))
                            FILTER (WHERE o.is_counted), 0.00) AS revenue
          FROM o
          JOIN business_vault.lines_at(ts) v ON v.hk_order = o.hk_order
         GROUP BY v.hk_product
    ), p AS MATERIALIZED (
        -- every product the vault knew by ts: a details version or a sale by then; a
        -- product never listed (no details version at all), when viewed or in an
        -- order line by then, or with no business time at all (a hub row from a line
        -- of an order without header). At the end of time: every product of
        -- business_vault.product_summary. (Only never-listed products, rare, are
        -- probed for views and lines: 1.8 s at 10x the demo data for all of them.)
        SELECT h.product_id, d.name, d.category, coalesce(s.units_sold, 0) AS units_sold,
               coalesce(s.revenue, 0.00) AS revenue
          FROM raw_vault.hub_product h
          LEFT JOIN business_vault.products_at(ts) d ON d.hk_product = h.hk_product
          LEFT JOIN sold s ON s.hk_product = h.hk_product
         WHERE d.hk_product IS NOT NULL OR s.hk_product IS NOT NULL
            OR (NOT EXISTS (SELECT FROM raw_vault.sat_product_details x
                             WHERE x.hk_product = h.hk_product)
                AND (EXISTS (SELECT FROM raw_vault.link_product_view v
                              WHERE v.hk_product = h.hk_product AND v.viewed_at <= ts)
                     OR EXISTS (SELECT FROM raw_vault.link_order_product l
                                  JOIN raw_vault.sat_order_details o ON o.hk_order = l.hk_order
                                 WHERE l.hk_product = h.hk_product
                                   AND coalesce(o.ordered_at, o.applied_dts) <= ts)
                     OR NOT (EXISTS (SELECT FROM raw_vault.link_product_view v
                                      WHERE v.hk_product = h.hk_product)
                             OR EXISTS (SELECT FROM raw_vault.link_order_product l
                                          JOIN raw_vault.sat_order_details o
                                            ON o.hk_order = l.hk_order
                                         WHERE l.hk_product = h.hk_product))))
    )
    SELECT 'revenue', g.grain, date_trunc(g.grain, o.order_date::timestamp)::date, NULL::integer,
           NULL, NULL, NULL, NULL::bigint,
           count(*) FILTER (WHERE o.is_counted),
           count(DISTINCT o.hk_customer) FILTER (WHERE o.is_counted),
           coalesce(sum(o.units) FILTER (WHERE o.is_counted), 0),
           coalesce(sum(o.amount) FILTER (WHERE o.is_counted), 0.00),
           count(*) FILTER (WHERE NOT o.is_counted),
           coalesce(sum(o.amount) FILTER (WHERE NOT o.is_counted), 0.00)
      FROM o
     CROSS JOIN (VALUES ('day'), ('week'), ('month')) AS g(grain)
     GROUP BY g.grain, 3
    UNION ALL
    SELECT 'category', NULL, NULL, NULL, NULL, NULL, p.category, count(*), NULL, NULL,
           sum(p.units_sold), sum(p.revenue), NULL, NULL
      FROM p
     GROUP BY p.category
    UNION ALL
    SELECT 'product', NULL, NULL, t.rank, t.product_id, t.name, t.category, NULL, NULL, NULL,
           t.units_sold, t.revenue, NULL, NULL
      FROM (SELECT p.*, row_number() OVER (ORDER BY p.revenue DESC, p.product_id)::integer AS rank
              FROM p
             WHERE p.revenue > 0) t
     WHERE t.rank <= 100
$$;
COMMENT ON FUNCTION business_vault.sales_computed(timestamptz) IS
    'Revenue per period, per category and the top 100 products at business time ts (orders placed by ts, counted by their status then): what business_vault.sales_as_of and its tables keep.';

-- Make sure the sales at ts are remembered (business_vault.sales_as_of and the tables
-- hanging from it), on the terms of business_vault.population_at: true if they are (now
-- or already); false in a read-only transaction or when a batch moved the loader's
-- checkpoint while they were computed (then the caller computes its part itself).
CREATE OR REPLACE FUNCTION business_vault.sales_remembered(ts timestamptz)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    seen_xid xid8;
    seen_seq bigint;
    kept boolean;
BEGIN
    IF ts IS NULL THEN
        RAISE EXCEPTION 'the sales as of a business time need the time (ts is NULL)'
              USING ERRCODE = 'null_value_not_allowed';
    END IF;
    FOR attempt IN 1..2 LOOP
        IF EXISTS (SELECT FROM business_vault.sales_as_of m WHERE m.as_of = ts) THEN
            RETURN true;
        END IF;
        EXIT WHEN attempt = 2 OR NOT business_vault.remember_once('sales_remembered', ts);
    END LOOP;
    IF current_setting('transaction_read_only')::boolean THEN
        RETURN false;
    END IF;
    SELECT k.xid, k.seq INTO seen_xid, seen_seq
      FROM ops.checkpoints k WHERE k.consumer = 'vault_loader';
    WITH computed AS MATERIALIZED (
        SELECT * FROM business_vault.sales_computed(ts)
    ), marked AS (
        INSERT INTO business_vault.sales_as_of (as_of)
        SELECT ts
         WHERE EXISTS (SELECT FROM ops.checkpoints k
                        WHERE k.consumer = 'vault_loader'
                          AND k.xid IS NOT DISTINCT FROM seen_xid
                          AND k.seq IS NOT DISTINCT FROM seen_seq
                          FOR SHARE)
        ON CONFLICT (as_of) DO NOTHING
        RETURNING as_of
    ), revenue AS (
        INSERT INTO business_vault.revenue_as_of
            (as_of, grain, period_start, orders, customers, units, revenue,
             orders_cancelled_or_returned, revenue_lost)
        SELECT m.as_of, c.grain, c.period_start, c.orders, c.customers, c.units, c.revenue,
               c.orders_cancelled_or_returned, c.revenue_lost
          FROM computed c CROSS JOIN marked m
         WHERE c.part = 'revenue'
    ), categories AS (
        INSERT INTO business_vault.categories_as_of (as_of, category, products, units_sold, revenue)
        SELECT m.as_of, c.category, c.products, c.units, c.revenue
          FROM computed c CROSS JOIN marked m
         WHERE c.part = 'category'
    ), products AS (
        INSERT INTO business_vault.top_products_as_of
            (as_of, rank, product_id, name, category, units_sold, revenue)
        SELECT m.as_of, c.rank, c.product_id, c.name, c.category, c.units, c.revenue
          FROM computed c CROSS JOIN marked m
         WHERE c.part = 'product'
    )
    SELECT EXISTS (SELECT FROM marked) INTO kept;
    DELETE FROM business_vault.sales_as_of m
     WHERE m.as_of IN (SELECT x.as_of FROM business_vault.sales_as_of x
                        ORDER BY x.computed_at DESC, x.as_of OFFSET 1000);
    RETURN kept;
END
$$;
COMMENT ON FUNCTION business_vault.sales_remembered(timestamptz) IS
    'Remember business_vault.sales_computed(ts) in business_vault.sales_as_of and its tables; false when it cannot be (a read-only transaction, or a load committed meanwhile).';

-- Whether the sales at ts are kept by the loader (migration 28): ts is the end of a past
-- day whose sales it kept.
CREATE OR REPLACE FUNCTION business_vault.sales_kept_at(ts timestamptz)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM business_vault.rfm_cutpoints_as_of m
                    WHERE m.as_of = ts AND m.by_loader AND m.sales_kept)
$$;
COMMENT ON FUNCTION business_vault.sales_kept_at(timestamptz) IS
    'Whether business_vault.revenue_kept, categories_kept and top_products_kept answer for business time ts: the end of a past UTC day whose sales the loader kept.';

-- The three readers: the remembered figures, or (see above) their own computation.
-- (Each reads what the loader kept first, when ts is the end of a past day.) business_vault.sales_remembered is asked first, to remember the sales of
-- ts if it can; which of the two a reader returns is then decided inside its one statement
-- (one snapshot): remembered figures a batch or the eviction removed in between are
-- either all seen or computed again, never an empty answer.
CREATE OR REPLACE FUNCTION mart.revenue_as_of(ts timestamptz, period text)
RETURNS TABLE (period_start date, orders bigint, customers bigint, units numeric,
               revenue numeric, avg_order_value numeric, orders_cancelled_or_returned bigint,
               revenue_lost numeric)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF period IS NULL OR period NOT IN ('day', 'week', 'month') THEN
        RAISE EXCEPTION 'unknown period %: day, week or month', quote_nullable(period)
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT business_vault.sales_kept_at(ts) THEN
        PERFORM business_vault.sales_remembered(ts);
    END IF;
    RETURN QUERY
    WITH r AS (
        -- the end of a past day: the versions the loader kept that held then
        SELECT x.period_start AS starts, x.orders AS n, x.customers AS c, x.units AS u,
               x.revenue AS amount, x.orders_cancelled_or_returned AS lost, x.revenue_lost AS lost_amount
          FROM business_vault.revenue_kept x
         WHERE business_vault.sales_kept_at(ts)
           AND x.held @> (ts AT TIME ZONE 'UTC')::date AND x.grain = period
        UNION ALL
        SELECT x.period_start, x.orders, x.customers, x.units, x.revenue,
               x.orders_cancelled_or_returned, x.revenue_lost
          FROM business_vault.revenue_as_of x
         WHERE NOT business_vault.sales_kept_at(ts) AND x.as_of = ts AND x.grain = period
        UNION ALL
        SELECT x.period_start, x.orders, x.customers, x.units, x.revenue,
               x.orders_cancelled_or_returned, x.revenue_lost
          FROM business_vault.sales_computed(ts) x
         WHERE NOT business_vault.sales_kept_at(ts)
           AND NOT EXISTS (SELECT FROM business_vault.sales_as_of m WHERE m.as_of = ts)
           AND x.part = 'revenue' AND x.grain = period
    )
    SELECT s.d::date, coalesce(r.n, 0), coalesce(r.c, 0), coalesce(r.u, 0),
           coalesce(r.amount, 0.00), round(r.amount / nullif(r.n, 0), 2),
           coalesce(r.lost, 0), coalesce(r.lost_amount, 0.00)
      FROM (SELECT generate_series(min(y.starts)::timestamp, max(y.starts)::timestamp,
                                   ('1 ' || period)::interval) AS d
              FROM r y) s
      LEFT JOIN r ON r.starts = s.d::date
     ORDER BY s.d;
END
$$;
COMMENT ON FUNCTION mart.revenue_as_of(timestamptz, text) IS
    'mart.revenue_daily (period day), revenue_weekly (week) or revenue_monthly (month) as it was at business time ts: orders placed by ts, counted by their status then (computed once per ts, then remembered until a load changes that past).';

CREATE OR REPLACE FUNCTION mart.categories_as_of(ts timestamptz)
RETURNS TABLE (category text, products bigint, units_sold bigint, revenue numeric,
               revenue_pct numeric)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT business_vault.sales_kept_at(ts) THEN
        PERFORM business_vault.sales_remembered(ts);
    END IF;
    RETURN QUERY
    WITH c AS (
        SELECT x.category AS name, x.products AS n, x.units_sold AS u, x.revenue AS amount
          FROM business_vault.categories_kept x
         WHERE business_vault.sales_kept_at(ts) AND x.held @> (ts AT TIME ZONE 'UTC')::date
        UNION ALL
        SELECT x.category, x.products, x.units_sold, x.revenue
          FROM business_vault.categories_as_of x
         WHERE NOT business_vault.sales_kept_at(ts) AND x.as_of = ts
        UNION ALL
        SELECT x.category, x.products, x.units::bigint, x.revenue
          FROM business_vault.sales_computed(ts) x
         WHERE NOT business_vault.sales_kept_at(ts)
           AND NOT EXISTS (SELECT FROM business_vault.sales_as_of m WHERE m.as_of = ts)
           AND x.part = 'category'
    )
    SELECT c.name, c.n, c.u, c.amount, round(100.0 * c.amount / nullif(sum(c.amount) OVER (), 0), 2)
      FROM c
     ORDER BY c.amount DESC, c.name NULLS LAST;
END
$$;
COMMENT ON FUNCTION mart.categories_as_of(timestamptz) IS
    'mart.categories as it was at business time ts: per category of then, the products known by then and the sales of the orders placed by ts, counted by their status then (remembered like mart.revenue_as_of).';

CREATE OR REPLACE FUNCTION mart.top_products_as_of(ts timestamptz)
RETURNS TABLE (rank integer, product_id text, name text, category text, units_sold bigint,
               revenue numeric)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT business_vault.sales_kept_at(ts) THEN
        PERFORM business_vault.sales_remembered(ts);
    END IF;
    RETURN QUERY
    SELECT t.rank::integer, t.product_id, t.name, t.category, t.units_sold, t.revenue
      FROM business_vault.top_products_kept x
     CROSS JOIN LATERAL unnest(x.product_id, x.name, x.category, x.units_sold, x.revenue)
           WITH ORDINALITY AS t(product_id, name, category, units_sold, revenue, rank)
     WHERE business_vault.sales_kept_at(ts) AND x.held @> (ts AT TIME ZONE 'UTC')::date
    UNION ALL
    SELECT x.rank, x.product_id, x.name, x.category, x.units_sold, x.revenue
      FROM business_vault.top_products_as_of x
     WHERE NOT business_vault.sales_kept_at(ts) AND x.as_of = ts
    UNION ALL
    SELECT x.rank, x.product_id, x.name, x.category, x.units::bigint, x.revenue
      FROM business_vault.sales_computed(ts) x
     WHERE NOT business_vault.sales_kept_at(ts)
       AND NOT EXISTS (SELECT FROM business_vault.sales_as_of m WHERE m.as_of = ts)
       AND x.part = 'product'
     ORDER BY 1;
END
$$;
COMMENT ON FUNCTION mart.top_products_as_of(timestamptz) IS
    'The 100 products with the most revenue at business time ts (ties: product id), with their name and category then: mart.products by revenue, as it was (remembered like mart.revenue_as_of).';
