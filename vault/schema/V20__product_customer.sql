-- dvault schema, migration 20: what each customer bought and viewed of each product,
-- so that the product summary is kept by difference.
--
-- A product's figures (units, revenue, orders, buyers, viewers, viewers who bought)
-- were recomputed from all its order lines and views whenever a batch reached it, and
-- a 1% delta reaches most products: at ten times the demo data that read most of the
-- bridge and the clickstream per batch (7.5 s of a 22 s refresh). Each figure is a sum
-- over customers, and the distinct counts are counts of customers with something, so
-- the loader now keeps the per-customer terms here: a batch recomputes the pairs it
-- touched from that customer's own orders and views (a customer's history, not the
-- vault's), and moves each product's figures by the difference
-- (src/load/business/product_keys.sql). A pair with neither a counted order nor a
-- view has no row.
CREATE TABLE business_vault.product_customer (
    hk_product  bytea NOT NULL,
    hk_customer bytea NOT NULL,
    -- counted orders (not cancelled or returned) of the customer with a line of the product
    orders      bigint NOT NULL,
    -- units and money of those lines
    units       bigint NOT NULL,
    revenue     numeric NOT NULL,
    -- product views (clickstream)
    views       bigint NOT NULL,
    PRIMARY KEY (hk_product, hk_customer)
);
COMMENT ON TABLE business_vault.product_customer IS
    'Per product and customer: counted orders with a line of the product, their units and money, and product views; the terms of business_vault.product_summary''s figures, kept by the loader for the pairs each batch touches.';

INSERT INTO business_vault.product_customer (hk_product, hk_customer, orders, units, revenue, views)
SELECT coalesce(b.hk_product, v.hk_product), coalesce(b.hk_customer, v.hk_customer),
       coalesce(b.orders, 0), coalesce(b.units, 0), coalesce(b.revenue, 0.00), coalesce(v.views, 0)
  FROM (SELECT l.hk_product, l.hk_customer, count(DISTINCT l.hk_order) AS orders,
               coalesce(sum(l.quantity), 0) AS units, coalesce(sum(l.line_amount), 0.00) AS revenue
          FROM business_vault.bridge_customer_order_product l
          JOIN business_vault.order_summary o ON o.hk_order = l.hk_order
         WHERE o.is_counted
         GROUP BY l.hk_product, l.hk_customer) b
  FULL JOIN (SELECT x.hk_product, x.hk_customer, count(*) AS views
               FROM raw_vault.link_product_view x
              GROUP BY x.hk_product, x.hk_customer) v
    ON (v.hk_product, v.hk_customer) = (b.hk_product, b.hk_customer);
