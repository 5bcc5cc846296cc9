-- dvault schema, migration 21: what each customer bought per product category, so that
-- favourite categories are kept by difference.
--
-- A customer's favourite category (docs/analysts.md) ranks the current categories of
-- the products in their counted orders by units, then money. A batch re-derived it for
-- every customer it touched from all their orders, lines and each line's product
-- details: at ten times the demo data most of a 3.3 s statement in an 11.7 s refresh.
-- The ranking needs only per-category totals, so the loader now keeps them here: a
-- batch moves them by the touched orders' counted lines after it minus before it, and
-- by the buyers' lines of a product whose category changed
-- (src/load/business/customer_categories.sql). Only products with a category count;
-- a category with no counted line of the customer has no row.
CREATE TABLE business_vault.customer_category (
    hk_customer   bytea NOT NULL,
    category      text NOT NULL,
    -- counted lines (lines of orders not cancelled or returned) of products in the category
    lines         bigint NOT NULL,
    -- their units and money; unknown quantities and amounts add nothing, and the
    -- *_known counts say how many lines stated one (none: the total is unknown)
    units         bigint NOT NULL,
    units_known   bigint NOT NULL,
    revenue       numeric NOT NULL,
    revenue_known bigint NOT NULL,
    PRIMARY KEY (hk_customer, category)
);
COMMENT ON TABLE business_vault.customer_category IS
    'Per customer and current product category: counted order lines, units and money; the terms of the favourite category, kept by the loader for the customers and products each batch touches.';

-- the vault as it stands (a product's category as its summary holds it: its current one)
INSERT INTO business_vault.customer_category
    (hk_customer, category, lines, units, units_known, revenue, revenue_known)
SELECT o.hk_customer, p.category, count(*), coalesce(sum(b.quantity), 0), count(b.quantity),
       coalesce(sum(b.line_amount), 0.00), count(b.line_amount)
  FROM business_vault.order_summary o
  JOIN business_vault.bridge_customer_order_product b ON b.hk_order = o.hk_order
  JOIN business_vault.product_summary p ON p.hk_product = b.hk_product
 WHERE o.is_counted AND p.category IS NOT NULL
 GROUP BY o.hk_customer, p.category;

CREATE FUNCTION business_vault.known_total(total numeric, known bigint) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN known > 0 THEN total END;
COMMENT ON FUNCTION business_vault.known_total(numeric, bigint) IS
    'A total of business_vault.customer_category as SQL''s sum() gives it: NULL when no line stated a value.';
