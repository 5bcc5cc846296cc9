-- User migration 1 of the c360 mapping set: tables for the satellites the built-in
-- model has no column for. Applied and recorded (ops.model_migrations) by
-- `dvault migrate --mappings examples/c360/mappings`; never edited once applied.

CREATE TABLE raw_vault.sat_customer_segment (
    hk_customer      bytea NOT NULL,
    applied_dts      timestamptz NOT NULL,
    event_seq        bigint NOT NULL,
    load_dts         timestamptz NOT NULL,
    hashdiff         bytea NOT NULL,
    state            text,
    customer_segment text,
    record_source    text NOT NULL,
    PRIMARY KEY (hk_customer, applied_dts, event_seq)
);
COMMENT ON TABLE raw_vault.sat_customer_segment IS 'The old platform''s customer state and segment.';

CREATE TABLE raw_vault.sat_product_sourcing (
    hk_product    bytea NOT NULL,
    applied_dts   timestamptz NOT NULL,
    event_seq     bigint NOT NULL,
    load_dts      timestamptz NOT NULL,
    hashdiff      bytea NOT NULL,
    cost          numeric(12,2),
    supplier      text,
    record_source text NOT NULL,
    PRIMARY KEY (hk_product, applied_dts, event_seq)
);
COMMENT ON TABLE raw_vault.sat_product_sourcing IS 'The old platform''s product cost and supplier.';

CREATE TABLE raw_vault.sat_order_payment (
    hk_order       bytea NOT NULL,
    applied_dts    timestamptz NOT NULL,
    event_seq      bigint NOT NULL,
    load_dts       timestamptz NOT NULL,
    hashdiff       bytea NOT NULL,
    payment_method text,
    total_amount   numeric(12,2),
    record_source  text NOT NULL,
    PRIMARY KEY (hk_order, applied_dts, event_seq)
);
COMMENT ON TABLE raw_vault.sat_order_payment IS 'The old platform''s payment method and order total.';
