-- dvault schema, migration 3: the Customer 360 raw vault.
--
-- Conventions (see docs/mappings.md):
--   hubs        hk_<entity> (SHA-256 of the business key, 32 bytes), the business
--               key column(s), load_dts, record_source
--   links       hk_<link>, one hk_<entity> per hub, dependent child keys, load_dts,
--               record_source
--   satellites  hk_<parent>, applied_dts (business time), load_dts (arrival in the
--               log), event_seq (the event that wrote the row: lineage, and the
--               tie-breaker for several changes at one instant), hashdiff, payload
--               columns, record_source. Insert-only: a row is written only when its
--               hashdiff differs from the row before it in business time.
-- load_dts is the event's recorded_at, never now(): replaying the log gives a
-- byte-identical vault.

INSERT INTO ops.settings (name, value) VALUES ('hash_version', '1')
ON CONFLICT (name) DO NOTHING;

-- Hubs ------------------------------------------------------------------------

CREATE TABLE raw_vault.hub_customer (
    hk_customer   bytea PRIMARY KEY CHECK (octet_length(hk_customer) = 32),
    customer_id   text NOT NULL,
    load_dts      timestamptz NOT NULL,
    record_source text NOT NULL
);
COMMENT ON TABLE raw_vault.hub_customer IS 'Customers, one row per business key (customer_id).';

CREATE TABLE raw_vault.hub_product (
    hk_product    bytea PRIMARY KEY CHECK (octet_length(hk_product) = 32),
    product_id    text NOT NULL,
    load_dts      timestamptz NOT NULL,
    record_source text NOT NULL
);
COMMENT ON TABLE raw_vault.hub_product IS 'Products, one row per business key (product_id).';

CREATE TABLE raw_vault.hub_order (
    hk_order      bytea PRIMARY KEY CHECK (octet_length(hk_order) = 32),
    order_id      text NOT NULL,
    load_dts      timestamptz NOT NULL,
    record_source text NOT NULL
);
COMMENT ON TABLE raw_vault.hub_order IS 'Orders, one row per business key (order_id).';

-- Links -----------------------------------------------------------------------

CREATE TABLE raw_vault.link_order_customer (
    hk_order_customer bytea PRIMARY KEY CHECK (octet_length(hk_order_customer) = 32),
    hk_order          bytea NOT NULL,
    hk_customer       bytea NOT NULL,
    load_dts          timestamptz NOT NULL,
    record_source     text NOT NULL
);
CREATE INDEX link_order_customer_order_idx ON raw_vault.link_order_customer (hk_order);
CREATE INDEX link_order_customer_customer_idx ON raw_vault.link_order_customer (hk_customer);
COMMENT ON TABLE raw_vault.link_order_customer IS 'Which customer placed which order.';

CREATE TABLE raw_vault.link_order_product (
    hk_order_product bytea PRIMARY KEY CHECK (octet_length(hk_order_product) = 32),
    hk_order         bytea NOT NULL,
    hk_product       bytea NOT NULL,
    line_no          text NOT NULL,
    load_dts         timestamptz NOT NULL,
    record_source    text NOT NULL
);
CREATE INDEX link_order_product_order_idx ON raw_vault.link_order_product (hk_order);
CREATE INDEX link_order_product_product_idx ON raw_vault.link_order_product (hk_product);
COMMENT ON TABLE raw_vault.link_order_product IS 'Order lines: an order, a product and the line (dependent child key).';
COMMENT ON COLUMN raw_vault.link_order_product.line_no IS
    'Dependent child key: the line number within the order (or the source''s transaction id for flat transaction files).';

CREATE TABLE raw_vault.link_product_view (
    hk_product_view bytea PRIMARY KEY CHECK (octet_length(hk_product_view) = 32),
    hk_customer     bytea NOT NULL,
    hk_product      bytea NOT NULL,
    session_id      text NOT NULL,
    viewed_at       timestamptz NOT NULL,
    load_dts        timestamptz NOT NULL,
    record_source   text NOT NULL
);
CREATE INDEX link_product_view_customer_idx ON raw_vault.link_product_view (hk_customer);
CREATE INDEX link_product_view_product_idx ON raw_vault.link_product_view (hk_product);
COMMENT ON TABLE raw_vault.link_product_view IS
    'Non-historized link: one row per product view (clickstream); session and time are part of its key.';

-- Satellites ------------------------------------------------------------------

CREATE TABLE raw_vault.sat_customer_profile (
    hk_customer   bytea NOT NULL,
    applied_dts   timestamptz NOT NULL,
    event_seq     bigint NOT NULL,
    load_dts      timestamptz NOT NULL,
    hashdiff      bytea NOT NULL,
    first_name    text,
    last_name     text,
    city          text,
    country       text,
    signup_date   date,
    record_source text NOT NULL,
    PRIMARY KEY (hk_customer, applied_dts, event_seq)
);
COMMENT ON TABLE raw_vault.sat_customer_profile IS 'Customer profile history (name, location, signup).';

CREATE TABLE raw_vault.sat_customer_contact (
    hk_customer   bytea NOT NULL,
    applied_dts   timestamptz NOT NULL,
    event_seq     bigint NOT NULL,
    load_dts      timestamptz NOT NULL,
    hashdiff      bytea NOT NULL,
    email         text,
    phone         text,
    record_source text NOT NULL,
    PRIMARY KEY (hk_customer, applied_dts, event_seq)
);
COMMENT ON TABLE raw_vault.sat_customer_contact IS 'Customer contact history: personal data, kept apart from the profile.';

CREATE TABLE raw_vault.sat_product_details (
    hk_product    bytea NOT NULL,
    applied_dts   timestamptz NOT NULL,
    event_seq     bigint NOT NULL,
    load_dts      timestamptz NOT NULL,
    hashdiff      bytea NOT NULL,
    name          text,
    category      text,
    brand         text,
    price         numeric(12,2),
    record_source text NOT NULL,
    PRIMARY KEY (hk_product, applied_dts, event_seq)
);
COMMENT ON TABLE raw_vault.sat_product_details IS 'Product details and list price history.';

CREATE TABLE raw_vault.sat_order_details (
    hk_order      bytea NOT NULL,
    applied_dts   timestamptz NOT NULL,
    event_seq     bigint NOT NULL,
    load_dts      timestamptz NOT NULL,
    hashdiff      bytea NOT NULL,
    ordered_at    timestamptz,
    channel       text,
    record_source text NOT NULL,
    PRIMARY KEY (hk_order, applied_dts, event_seq)
);
COMMENT ON TABLE raw_vault.sat_order_details IS 'Order header: when and through which channel.';

CREATE TABLE raw_vault.sat_order_status (
    hk_order      bytea NOT NULL,
    applied_dts   timestamptz NOT NULL,
    event_seq     bigint NOT NULL,
    load_dts      timestamptz NOT NULL,
    hashdiff      bytea NOT NULL,
    status        text,
    record_source text NOT NULL,
    PRIMARY KEY (hk_order, applied_dts, event_seq)
);
COMMENT ON TABLE raw_vault.sat_order_status IS 'Order status history (placed, paid, shipped, delivered, cancelled, returned).';

CREATE TABLE raw_vault.sat_order_line (
    hk_order_product bytea NOT NULL,
    applied_dts      timestamptz NOT NULL,
    event_seq        bigint NOT NULL,
    load_dts         timestamptz NOT NULL,
    hashdiff         bytea NOT NULL,
    quantity         integer,
    unit_price       numeric(12,2),
    discount         numeric(12,2),
    record_source    text NOT NULL,
    PRIMARY KEY (hk_order_product, applied_dts, event_seq)
);
COMMENT ON TABLE raw_vault.sat_order_line IS 'Order line quantities and prices (on the order-product link).';
