-- Business views over the TPC-H vault: current versions, and TPC-H Q1 (pricing
-- summary) and a revenue-per-nation report read from the vault instead of the
-- source tables. Idempotent.

CREATE SCHEMA IF NOT EXISTS tpch_mart;

CREATE OR REPLACE VIEW tpch_mart.lineitem AS
SELECT DISTINCT ON (s.hk_lineitem)
       l.hk_lineitem, l.hk_order, l.hk_part, l.hk_supplier, l.l_linenumber,
       s.l_quantity, s.l_extendedprice, s.l_discount, s.l_tax, s.l_returnflag,
       s.l_linestatus, s.l_shipdate, s.l_commitdate, s.l_receiptdate, s.l_shipinstruct,
       s.l_shipmode
  FROM tpch_vault.sat_lineitem s
  JOIN tpch_vault.link_lineitem l USING (hk_lineitem)
 ORDER BY s.hk_lineitem, s.applied_dts DESC, s.event_seq DESC;

CREATE OR REPLACE VIEW tpch_mart.orders AS
SELECT DISTINCT ON (s.hk_order)
       h.o_orderkey, s.hk_order, co.hk_customer, s.o_orderstatus, s.o_totalprice,
       s.o_orderdate, s.o_orderpriority
  FROM tpch_vault.sat_order s
  JOIN tpch_vault.hub_order h USING (hk_order)
  LEFT JOIN tpch_vault.link_customer_order co USING (hk_order)
 ORDER BY s.hk_order, s.applied_dts DESC, s.event_seq DESC;

-- TPC-H Q1, pricing summary report, on the current line items.
CREATE OR REPLACE VIEW tpch_mart.pricing_summary AS
SELECT l_returnflag, l_linestatus,
       sum(l_quantity) AS sum_qty,
       sum(l_extendedprice) AS sum_base_price,
       sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
       sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge,
       avg(l_quantity) AS avg_qty,
       avg(l_extendedprice) AS avg_price,
       avg(l_discount) AS avg_disc,
       count(*) AS count_order
  FROM tpch_mart.lineitem
 WHERE l_shipdate <= date '1998-12-01' - interval '90 days'
 GROUP BY l_returnflag, l_linestatus
 ORDER BY l_returnflag, l_linestatus;

-- Order revenue per customer nation (current order versions).
CREATE OR REPLACE VIEW tpch_mart.revenue_by_nation AS
SELECT n.n_name AS nation, count(*) AS orders, sum(o.o_totalprice) AS revenue
  FROM tpch_mart.orders o
  JOIN tpch_vault.link_customer_nation cn USING (hk_customer)
  JOIN LATERAL (SELECT sn.n_name FROM tpch_vault.sat_nation sn
                 WHERE sn.hk_nation = cn.hk_nation
                 ORDER BY sn.applied_dts DESC, sn.event_seq DESC LIMIT 1) n ON true
 GROUP BY n.n_name
 ORDER BY revenue DESC;
