-- TPC-H as a Data Vault: the raw vault of the dvault TPC-H example, in its own
-- schema `tpch_vault` (the mappings in mappings/ name it with `schema = "tpch_vault"`).
-- Same conventions as the built-in model (docs/mappings.md): hash keys are SHA-256
-- of the business key (AutomateDV `hash: SHA`), 32 bytes; satellites are insert-only
-- with (hash key, applied_dts, event_seq) as primary key.
--
-- Hubs: customer, order, part, supplier, nation. Links: customer-order, the line
-- item (order, part, supplier, with the line number as dependent child key),
-- customer-nation and supplier-nation. Satellites: one per entity, and the line
-- item's measures on its link. Region and partsupp are not loaded.
--
-- Indexes: each table's unique key and nothing else. The loader needs those (it
-- probes hub and link keys and reads a satellite's latest versions by them); a
-- secondary index on a link's foreign hash key (say `link_lineitem (hk_order)`, the
-- line items of one order) serves lookups of one entity, which the views here do not
-- make, and costs every load: at SF1 the two such indexes this file used to create
-- took 4.5 s of a 53 s first load to build, and on later days each new row writes a
-- random leaf page of each (bench/README.md). Add them where analysts need them:
--   CREATE INDEX ON tpch_vault.link_lineitem (hk_order);
--   CREATE INDEX ON tpch_vault.link_customer_order (hk_customer);
-- A first load builds them after its rows, as it does the keys (docs/operations.md).
--
-- Idempotent: run it again and nothing changes.

CREATE SCHEMA IF NOT EXISTS tpch_vault;

-- Hubs ------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS tpch_vault.hub_customer (
    hk_customer   bytea PRIMARY KEY CHECK (octet_length(hk_customer) = 32),
    c_custkey     text NOT NULL,
    load_dts      timestamptz NOT NULL,
    record_source text NOT NULL
);

CREATE TABLE IF NOT EXISTS tpch_vault.hub_order (
    hk_order      bytea PRIMARY KEY CHECK (octet_length(hk_order) = 32),
    o_orderkey    text NOT NULL,
    load_dts      timestamptz NOT NULL,
    record_source text NOT NULL
);

CREATE TABLE IF NOT EXISTS tpch_vault.hub_part (
    hk_part       bytea PRIMARY KEY CHECK (octet_length(hk_part) = 32),
    p_partkey     text NOT NULL,
    load_dts      timestamptz NOT NULL,
    record_source text NOT NULL
);

CREATE TABLE IF NOT EXISTS tpch_vault.hub_supplier (
    hk_supplier   bytea PRIMARY KEY CHECK (octet_length(hk_supplier) = 32),
    s_suppkey     text NOT NULL,
    load_dts      timestamptz NOT NULL,
    record_source text NOT NULL
);

CREATE TABLE IF NOT EXISTS tpch_vault.hub_nation (
    hk_nation     bytea PRIMARY KEY CHECK (octet_length(hk_nation) = 32),
    n_nationkey   text NOT NULL,
    load_dts      timestamptz NOT NULL,
    record_source text NOT NULL
);

-- Links -----------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS tpch_vault.link_customer_order (
    hk_customer_order bytea PRIMARY KEY CHECK (octet_length(hk_customer_order) = 32),
    hk_customer       bytea NOT NULL,
    hk_order          bytea NOT NULL,
    load_dts          timestamptz NOT NULL,
    record_source     text NOT NULL
);

CREATE TABLE IF NOT EXISTS tpch_vault.link_lineitem (
    hk_lineitem   bytea PRIMARY KEY CHECK (octet_length(hk_lineitem) = 32),
    hk_order      bytea NOT NULL,
    hk_part       bytea NOT NULL,
    hk_supplier   bytea NOT NULL,
    l_linenumber  text NOT NULL,
    load_dts      timestamptz NOT NULL,
    record_source text NOT NULL
);

CREATE TABLE IF NOT EXISTS tpch_vault.link_customer_nation (
    hk_customer_nation bytea PRIMARY KEY CHECK (octet_length(hk_customer_nation) = 32),
    hk_customer        bytea NOT NULL,
    hk_nation          bytea NOT NULL,
    load_dts           timestamptz NOT NULL,
    record_source      text NOT NULL
);

CREATE TABLE IF NOT EXISTS tpch_vault.link_supplier_nation (
    hk_supplier_nation bytea PRIMARY KEY CHECK (octet_length(hk_supplier_nation) = 32),
    hk_supplier        bytea NOT NULL,
    hk_nation          bytea NOT NULL,
    load_dts           timestamptz NOT NULL,
    record_source      text NOT NULL
);

-- Satellites ------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS tpch_vault.sat_customer (
    hk_customer   bytea NOT NULL,
    applied_dts   timestamptz NOT NULL,
    event_seq     bigint NOT NULL,
    load_dts      timestamptz NOT NULL,
    hashdiff      bytea NOT NULL,
    c_name        text,
    c_address     text,
    c_phone       text,
    c_acctbal     numeric(15,2),
    c_mktsegment  text,
    c_comment     text,
    record_source text NOT NULL,
    PRIMARY KEY (hk_customer, applied_dts, event_seq)
);

CREATE TABLE IF NOT EXISTS tpch_vault.sat_order (
    hk_order        bytea NOT NULL,
    applied_dts     timestamptz NOT NULL,
    event_seq       bigint NOT NULL,
    load_dts        timestamptz NOT NULL,
    hashdiff        bytea NOT NULL,
    o_orderstatus   text,
    o_totalprice    numeric(15,2),
    o_orderdate     date,
    o_orderpriority text,
    o_clerk         text,
    o_shippriority  integer,
    o_comment       text,
    record_source   text NOT NULL,
    PRIMARY KEY (hk_order, applied_dts, event_seq)
);

CREATE TABLE IF NOT EXISTS tpch_vault.sat_lineitem (
    hk_lineitem     bytea NOT NULL,
    applied_dts     timestamptz NOT NULL,
    event_seq       bigint NOT NULL,
    load_dts        timestamptz NOT NULL,
    hashdiff        bytea NOT NULL,
    l_quantity      numeric(15,2),
    l_extendedprice numeric(15,2),
    l_discount      numeric(15,2),
    l_tax           numeric(15,2),
    l_returnflag    text,
    l_linestatus    text,
    l_shipdate      date,
    l_commitdate    date,
    l_receiptdate   date,
    l_shipinstruct  text,
    l_shipmode      text,
    l_comment       text,
    record_source   text NOT NULL,
    PRIMARY KEY (hk_lineitem, applied_dts, event_seq)
);

CREATE TABLE IF NOT EXISTS tpch_vault.sat_part (
    hk_part       bytea NOT NULL,
    applied_dts   timestamptz NOT NULL,
    event_seq     bigint NOT NULL,
    load_dts      timestamptz NOT NULL,
    hashdiff      bytea NOT NULL,
    p_name        text,
    p_mfgr        text,
    p_brand       text,
    p_type        text,
    p_size        integer,
    p_container   text,
    p_retailprice numeric(15,2),
    p_comment     text,
    record_source text NOT NULL,
    PRIMARY KEY (hk_part, applied_dts, event_seq)
);

CREATE TABLE IF NOT EXISTS tpch_vault.sat_supplier (
    hk_supplier   bytea NOT NULL,
    applied_dts   timestamptz NOT NULL,
    event_seq     bigint NOT NULL,
    load_dts      timestamptz NOT NULL,
    hashdiff      bytea NOT NULL,
    s_name        text,
    s_address     text,
    s_phone       text,
    s_acctbal     numeric(15,2),
    s_comment     text,
    record_source text NOT NULL,
    PRIMARY KEY (hk_supplier, applied_dts, event_seq)
);

CREATE TABLE IF NOT EXISTS tpch_vault.sat_nation (
    hk_nation     bytea NOT NULL,
    applied_dts   timestamptz NOT NULL,
    event_seq     bigint NOT NULL,
    load_dts      timestamptz NOT NULL,
    hashdiff      bytea NOT NULL,
    n_name        text,
    n_regionkey   integer,
    n_comment     text,
    record_source text NOT NULL,
    PRIMARY KEY (hk_nation, applied_dts, event_seq)
);
