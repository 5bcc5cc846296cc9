-- AutomateDV's `hash: SHA` on PostgreSQL, written out in SQL: every hash key of the
-- TPC-H vault must equal it. Prints the number of rows that differ (must be 0).
SELECT 'hub_customer' AS tbl, count(*) FILTER (WHERE hk_customer <> sha256(convert_to(upper(trim(c_custkey)), 'UTF8'))) AS mismatches, count(*) AS checked FROM tpch_vault.hub_customer
UNION ALL
SELECT 'hub_order', count(*) FILTER (WHERE hk_order <> sha256(convert_to(upper(trim(o_orderkey)), 'UTF8'))), count(*) FROM tpch_vault.hub_order
UNION ALL
SELECT 'link_lineitem',
       count(*) FILTER (WHERE l.hk_lineitem <> sha256(convert_to(concat_ws('||',
           coalesce(nullif(upper(trim(o.o_orderkey)), ''), '^^'),
           coalesce(nullif(upper(trim(p.p_partkey)), ''), '^^'),
           coalesce(nullif(upper(trim(s.s_suppkey)), ''), '^^'),
           coalesce(nullif(upper(trim(l.l_linenumber)), ''), '^^')), 'UTF8'))),
       count(*)
  FROM tpch_vault.link_lineitem l
  JOIN tpch_vault.hub_order o USING (hk_order)
  JOIN tpch_vault.hub_part p USING (hk_part)
  JOIN tpch_vault.hub_supplier s USING (hk_supplier);
