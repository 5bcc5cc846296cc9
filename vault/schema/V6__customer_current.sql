-- dvault schema, migration 6: the current Customer 360, one row per customer, kept by
-- the loader.
--
-- mart.customer_360 used to assemble every row at query time from the hub, the PIT's
-- current row, the two customer satellites and the customer order summary: five
-- index lookups per customer, which made a page of 100 customers cost more in the
-- database than the API could afford. This table holds the result of that assembly,
-- everything in it that depends only on the vault: the current profile values, the
-- key of the current contact version and the customer's order figures. What depends
-- on the day (recency, churn risk, predicted CLV) or on the whole population (the RFM
-- quintile boundaries in business_vault.rfm_cutpoints) is still computed by the view
-- when it is queried, so none of it is ever stale.
--
-- Like the rest of the business vault it is derived: the loader rewrites, in each
-- batch's transaction (src/load/business.rs), the rows of the customers whose PIT or
-- order figures the batch may have moved (customers it staged, customers of the orders
-- it touched before and after the batch, buyers of the products it touched), and only
-- the rows whose values changed; `dvault rebuild` empties it with the vault.
--
-- Contact details (email, phone) are personal data and are not copied here: analysts
-- may read business_vault, not raw_vault.sat_customer_contact. The row keeps the key of
-- the current contact version, and mart.customer_360 looks the values up (one primary-
-- key probe) for the roles that may see them (business_vault.pii_visible()).

CREATE TABLE business_vault.customer_360_current (
    hk_customer         bytea PRIMARY KEY,
    customer_id         text NOT NULL,
    -- current sat_customer_profile version (NULL when the customer has none)
    first_name          text,
    last_name           text,
    city                text,
    country             text,
    signup_date         date,
    -- key of the current sat_customer_contact version (NULL when the customer has none)
    contact_applied_dts timestamptz,
    contact_event_seq   bigint,
    -- business_vault.customer_order_summary (NULL when the customer has no order)
    orders_count        integer,
    orders_cancelled    integer,
    orders_returned     integer,
    total_spent         numeric(14,2),
    first_order_at      timestamptz,
    last_order_at       timestamptz,
    first_order_date    date,
    last_order_date     date,
    favourite_category  text
);
-- GET /customers and analysts list customers by id: the default sort and its keyset
-- cursor are a range scan of this index that stops after the page.
CREATE INDEX customer_360_current_customer_id_idx
    ON business_vault.customer_360_current (customer_id);
COMMENT ON TABLE business_vault.customer_360_current IS
    'The current Customer 360 without what depends on today or on the population: one row per customer (hub row with a PIT current row), current profile, key of the current contact version, order figures. Kept by the loader; mart.customer_360 adds contact details, RFM scores, recency, churn risk and predicted CLV at query time.';
COMMENT ON COLUMN business_vault.customer_360_current.customer_id IS 'Business key (raw_vault.hub_customer.customer_id).';
COMMENT ON COLUMN business_vault.customer_360_current.first_name IS 'From the current sat_customer_profile version (the PIT''s current row); NULL without one.';
COMMENT ON COLUMN business_vault.customer_360_current.contact_applied_dts IS
    'applied_dts of the current raw_vault.sat_customer_contact version (with hk_customer and contact_event_seq its primary key); NULL without one. The contact values themselves are personal data and stay in the satellite.';
COMMENT ON COLUMN business_vault.customer_360_current.contact_event_seq IS 'event_seq of the current sat_customer_contact version; NULL without one.';
COMMENT ON COLUMN business_vault.customer_360_current.orders_count IS
    'Counted orders (status not cancelled or returned). This and the other order columns come from business_vault.customer_order_summary: NULL when the customer has no order.';
COMMENT ON COLUMN business_vault.customer_360_current.total_spent IS 'Sum of counted orders'' amounts.';
COMMENT ON COLUMN business_vault.customer_360_current.first_order_at IS 'First counted order.';
COMMENT ON COLUMN business_vault.customer_360_current.last_order_at IS 'Last counted order.';
COMMENT ON COLUMN business_vault.customer_360_current.favourite_category IS
    'Current category of the products with the most units in counted orders (ties: more money, then name).';

-- A database migrated with data in it: fill the table from the business vault as it
-- stands (the statement the loader runs per touched customer, for all of them).
INSERT INTO business_vault.customer_360_current
    (hk_customer, customer_id, first_name, last_name, city, country, signup_date,
     contact_applied_dts, contact_event_seq, orders_count, orders_cancelled, orders_returned,
     total_spent, first_order_at, last_order_at, first_order_date, last_order_date,
     favourite_category)
SELECT h.hk_customer, h.customer_id, pr.first_name, pr.last_name, pr.city, pr.country,
       pr.signup_date, co.applied_dts, co.event_seq, m.orders_count, m.orders_cancelled,
       m.orders_returned, m.total_spent, m.first_order_at, m.last_order_at, m.first_order_date,
       m.last_order_date, m.favourite_category
  FROM raw_vault.hub_customer h
  JOIN business_vault.pit_customer pit
    ON pit.hk_customer = h.hk_customer AND pit.snapshot_date = 'infinity'
  LEFT JOIN raw_vault.sat_customer_profile pr
    ON (pr.hk_customer, pr.applied_dts, pr.event_seq)
     = (pit.sat_customer_profile_hk, pit.sat_customer_profile_applied_dts, pit.sat_customer_profile_event_seq)
  LEFT JOIN raw_vault.sat_customer_contact co
    ON (co.hk_customer, co.applied_dts, co.event_seq)
     = (pit.sat_customer_contact_hk, pit.sat_customer_contact_applied_dts, pit.sat_customer_contact_event_seq)
  LEFT JOIN business_vault.customer_order_summary m ON m.hk_customer = h.hk_customer;
