-- dvault schema, migration 17: revenue per product category, kept by the loader.
--
-- The dashboard's "top categories" and GET /analytics/categories add up the product
-- summary per current category: 12 ms at ten times the demo data (50,000 products),
-- per request. The loader rewrites these few rows instead, in each batch that moved a
-- product figure (src/load/business/population.sql): one pass over the products.
CREATE TABLE business_vault.category_summary (
    category   text,
    products   bigint NOT NULL,
    units_sold bigint NOT NULL,
    revenue    numeric NOT NULL,
    CONSTRAINT category_summary_category_key UNIQUE NULLS NOT DISTINCT (category)
);
COMMENT ON TABLE business_vault.category_summary IS
    'Per current product category (NULL: products without one): products, units sold and revenue of counted orders, the sums of business_vault.product_summary. Rewritten by the loader in each batch that moved a product figure.';

INSERT INTO business_vault.category_summary (category, products, units_sold, revenue)
SELECT p.category, count(*), sum(p.units_sold), sum(p.revenue)
  FROM business_vault.product_summary p
 GROUP BY p.category;
