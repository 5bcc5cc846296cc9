-- dvault schema, migration 4: the business vault, and the indexes the business views
-- need on the raw vault.
--
-- Every table here is derived from the raw vault and maintained by the loader in the
-- same transaction as the batch that changed its inputs (src/load/business.rs), for
-- the keys that batch touched only. `dvault rebuild` empties them with the vault and
-- replays the log, which gives the same rows as the incremental loads did.
--
-- Conventions (see docs/analysts.md):
--   * "current" means the latest version in business time (applied_dts, then
--     event_seq), whatever its load order;
--   * an order is *counted* (revenue, order counts, RFM, CLV) unless its status is
--     cancelled or returned; an order without any status row (flat transaction
--     files) has status 'placed';
--   * a line's amount is quantity × unit_price − discount (discount is a money amount
--     off the line, as the generator and the order_placed contract emit it);
--   * days are UTC days.

-- Business keys: analysts look customers, orders and products up by their id --------

CREATE INDEX hub_customer_customer_id_idx ON raw_vault.hub_customer (customer_id);
CREATE INDEX hub_product_product_id_idx ON raw_vault.hub_product (product_id);
CREATE INDEX hub_order_order_id_idx ON raw_vault.hub_order (order_id);

-- PIT: point-in-time table of the customer's satellites ------------------------------

-- One row per customer per UTC day on which one of its satellites got a version
-- (change-based daily snapshots), plus one current row per customer dated
-- 'infinity'. The state on any day D is the row with the greatest snapshot_date <= D
-- (business_vault.pit_customer_on(D) returns exactly that, one row per customer;
-- business_vault.pit_customer_daily expands it to one row per customer per day).
-- Each satellite's columns hold the primary key (hk, applied_dts, event_seq) and the
-- load_dts of the version in force at the end of that day; when there is none yet,
-- the ghost record's key (32 zero bytes, '-infinity', 0), so the PIT joins every
-- satellite with an inner equi-join through business_vault.<sat>_with_ghost.
CREATE TABLE business_vault.pit_customer (
    hk_customer                      bytea NOT NULL,
    snapshot_date                    date NOT NULL,
    is_current                       boolean GENERATED ALWAYS AS (snapshot_date = 'infinity') STORED,
    sat_customer_profile_hk          bytea NOT NULL,
    sat_customer_profile_applied_dts timestamptz NOT NULL,
    sat_customer_profile_event_seq   bigint NOT NULL,
    sat_customer_profile_load_dts    timestamptz NOT NULL,
    sat_customer_contact_hk          bytea NOT NULL,
    sat_customer_contact_applied_dts timestamptz NOT NULL,
    sat_customer_contact_event_seq   bigint NOT NULL,
    sat_customer_contact_load_dts    timestamptz NOT NULL,
    PRIMARY KEY (hk_customer, snapshot_date)
);
COMMENT ON TABLE business_vault.pit_customer IS
    'Point-in-time table of the customer satellites: one row per customer per UTC day on which a satellite changed, plus the current row (snapshot_date = infinity). Ghost keys where a satellite had no row yet.';
COMMENT ON COLUMN business_vault.pit_customer.snapshot_date IS
    'UTC day whose end the row describes; ''infinity'' for the current row. Days without a change have no row: the state on day D is the row with the greatest snapshot_date <= D.';
COMMENT ON COLUMN business_vault.pit_customer.is_current IS 'True for the current row (snapshot_date = infinity).';
COMMENT ON COLUMN business_vault.pit_customer.sat_customer_profile_hk IS
    'Key of the sat_customer_profile version in force, or the ghost key (32 zero bytes) when there was none.';
COMMENT ON COLUMN business_vault.pit_customer.sat_customer_contact_hk IS
    'Key of the sat_customer_contact version in force, or the ghost key (32 zero bytes) when there was none.';

-- Bridge: customer - order - product, one row per order line ------------------------

-- The path hub_customer - link_order_customer - hub_order - link_order_product -
-- hub_product resolved once, with the line's current measures, so order analytics
-- need no multi-hop link joins. An order linked to more than one customer (bad
-- input) is attributed to its first link (load_dts, then key).
CREATE TABLE business_vault.bridge_customer_order_product (
    hk_order          bytea NOT NULL,
    hk_order_product  bytea NOT NULL,
    hk_order_customer bytea NOT NULL,
    hk_customer       bytea NOT NULL,
    hk_product        bytea NOT NULL,
    line_no           text NOT NULL,
    quantity          integer,
    unit_price        numeric(12,2),
    discount          numeric(12,2),
    line_amount       numeric(14,2),
    load_dts          timestamptz NOT NULL,
    -- by order first: the loader refreshes and the views read whole orders; a
    -- customer's lines are reached through order_summary (indexed by customer)
    PRIMARY KEY (hk_order, hk_order_product)
);
-- the buyers of a product: whose favourite category a category change can move
CREATE INDEX bridge_customer_order_product_product_idx
    ON business_vault.bridge_customer_order_product (hk_product);
COMMENT ON TABLE business_vault.bridge_customer_order_product IS
    'Bridge over customer - order - product: one row per order line with its keys and current measures.';
COMMENT ON COLUMN business_vault.bridge_customer_order_product.line_no IS 'Dependent child key of the line (link_order_product.line_no).';
COMMENT ON COLUMN business_vault.bridge_customer_order_product.discount IS 'Money amount off the line (not a rate); NULL when the source gave none.';
COMMENT ON COLUMN business_vault.bridge_customer_order_product.line_amount IS 'quantity × unit_price − coalesce(discount, 0), from the current line version.';
COMMENT ON COLUMN business_vault.bridge_customer_order_product.load_dts IS 'The later load_dts of the two links of the path.';

-- Derived: one row per order, current state ------------------------------------------

CREATE TABLE business_vault.order_summary (
    hk_order     bytea PRIMARY KEY,
    hk_customer  bytea NOT NULL,
    ordered_at   timestamptz NOT NULL,
    order_date   date NOT NULL,
    channel      text,
    status       text NOT NULL,
    status_known boolean NOT NULL,
    is_counted   boolean NOT NULL,
    lines        integer NOT NULL,
    units        bigint NOT NULL,
    amount       numeric(14,2) NOT NULL
);
CREATE INDEX order_summary_customer_idx ON business_vault.order_summary (hk_customer);
COMMENT ON TABLE business_vault.order_summary IS
    'One row per order that has a customer link and a header: header, current status, line count, units and amount.';
COMMENT ON COLUMN business_vault.order_summary.ordered_at IS 'sat_order_details.ordered_at; the business time of the details event when the source gave none.';
COMMENT ON COLUMN business_vault.order_summary.order_date IS 'UTC day of ordered_at.';
COMMENT ON COLUMN business_vault.order_summary.status IS 'Current status; ''placed'' when the order has no status row (flat transaction files).';
COMMENT ON COLUMN business_vault.order_summary.status_known IS 'False when status is the ''placed'' default, not a status row.';
COMMENT ON COLUMN business_vault.order_summary.is_counted IS 'True unless the status is cancelled or returned: only counted orders make revenue.';
COMMENT ON COLUMN business_vault.order_summary.amount IS 'Sum of the line amounts (after discounts), whatever the status.';

-- Derived: one row per customer with at least one order ---------------------------

CREATE TABLE business_vault.customer_order_summary (
    hk_customer        bytea PRIMARY KEY,
    orders_placed      integer NOT NULL,
    orders_count       integer NOT NULL,
    orders_cancelled   integer NOT NULL,
    orders_returned    integer NOT NULL,
    units              bigint NOT NULL,
    total_spent        numeric(14,2) NOT NULL,
    first_order_at     timestamptz,
    last_order_at      timestamptz,
    first_order_date   date,
    last_order_date    date,
    favourite_category text
);
COMMENT ON TABLE business_vault.customer_order_summary IS
    'One row per customer with an order: counts and money over counted orders (not cancelled or returned), favourite category.';
COMMENT ON COLUMN business_vault.customer_order_summary.orders_placed IS 'Every order, whatever its status.';
COMMENT ON COLUMN business_vault.customer_order_summary.orders_count IS 'Counted orders (status not cancelled or returned).';
COMMENT ON COLUMN business_vault.customer_order_summary.total_spent IS 'Sum of counted orders'' amounts.';
COMMENT ON COLUMN business_vault.customer_order_summary.first_order_at IS 'First counted order.';
COMMENT ON COLUMN business_vault.customer_order_summary.last_order_at IS 'Last counted order.';
COMMENT ON COLUMN business_vault.customer_order_summary.favourite_category IS
    'Current category of the products with the most units in counted orders (ties: more money, then name).';

-- Derived: the RFM quintile boundaries of the whole customer population -------------

-- Scores are computed at query time from these boundaries (business_vault.quintile_score),
-- so a batch rewrites one row, not one per customer, and a single customer's scores
-- need no scan of the population.
CREATE TABLE business_vault.rfm_cutpoints (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    population integer NOT NULL,
    recency    date[] NOT NULL,
    frequency  integer[] NOT NULL,
    monetary   numeric[] NOT NULL
);
COMMENT ON TABLE business_vault.rfm_cutpoints IS
    'Quintile boundaries of last order day (recency), counted orders (frequency) and total spent (monetary) over customers with a counted order. Score k+1 needs a value >= element k.';
COMMENT ON COLUMN business_vault.rfm_cutpoints.population IS 'Customers with at least one counted order.';

-- Business rules the derived tables are computed with ------------------------------
-- (stored results depend on them: change them only in a new migration, then rebuild)

CREATE FUNCTION business_vault.ghost_key() RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN decode(repeat('00', 32), 'hex');
COMMENT ON FUNCTION business_vault.ghost_key() IS
    'The ghost record''s key (32 zero bytes): a PIT row points at it when a satellite had no row yet.';

CREATE FUNCTION business_vault.order_status(status text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN coalesce(status, 'placed');
COMMENT ON FUNCTION business_vault.order_status(text) IS
    'An order''s status, ''placed'' when it has no status row (flat transaction files carry none).';

CREATE FUNCTION business_vault.is_counted(status text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN coalesce(status, 'placed') NOT IN ('cancelled', 'returned');
COMMENT ON FUNCTION business_vault.is_counted(text) IS
    'Whether an order with this status counts in revenue, order counts, RFM and CLV: all but cancelled and returned.';

CREATE FUNCTION business_vault.line_amount(quantity integer, unit_price numeric, discount numeric)
    RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN round(quantity * unit_price - coalesce(discount, 0), 2);
COMMENT ON FUNCTION business_vault.line_amount(integer, numeric, numeric) IS
    'A line''s amount: quantity × unit_price − discount (a money amount off the line), 2 decimals.';

-- RFM quintiles. A score is 1 + floor(5 × b / n), where b is how many of the n scored
-- customers have a strictly smaller value: ties share a score (the lower one), so the
-- result never depends on row order. quintile_cuts gives, for k = 1..4, the smallest
-- value whose score is above k (NULL when no value reaches it); quintile_score counts
-- the boundaries a value reaches.
CREATE FUNCTION business_vault.quintile_cuts(v anyarray) RETURNS anyarray
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY[min(r.x) FILTER (WHERE 5 * r.below >= 1 * r.n),
                 min(r.x) FILTER (WHERE 5 * r.below >= 2 * r.n),
                 min(r.x) FILTER (WHERE 5 * r.below >= 3 * r.n),
                 min(r.x) FILTER (WHERE 5 * r.below >= 4 * r.n)]
      FROM (SELECT u.x, rank() OVER (ORDER BY u.x) - 1 AS below, count(*) OVER () AS n
              FROM unnest(v) AS u(x)
             WHERE u.x IS NOT NULL) r
$$;
COMMENT ON FUNCTION business_vault.quintile_cuts(anyarray) IS
    'Quintile boundaries of a population: element k is the smallest value scoring above k (see quintile_score).';

CREATE FUNCTION business_vault.quintile_score(x anyelement, cuts anyarray) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN x IS NOT NULL THEN
        1 + coalesce((x >= cuts[1])::integer, 0) + coalesce((x >= cuts[2])::integer, 0)
          + coalesce((x >= cuts[3])::integer, 0) + coalesce((x >= cuts[4])::integer, 0)
    END
$$;
COMMENT ON FUNCTION business_vault.quintile_score(anyelement, anyarray) IS
    'Quintile score 1..5 of x given quintile_cuts of its population: 1 + the number of boundaries x reaches.';
