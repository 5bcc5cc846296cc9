-- dvault schema, migration 23: since when an order is as it is now.
--
-- An order as of a business time ts (mart.orders_as_of, and every population figure of
-- a past date) has the details, status and lines in force at ts. For most orders they
-- are the ones it has now: their current versions all began at or before ts. Each order
-- now says from when each part holds, so the as-of functions take those orders as they
-- stand in business_vault.order_summary, and read versions by index only for the orders
-- that changed after ts. Before, every as-of population sorted every version up to ts
-- of the details, statuses and lines, and hashed the lines against the whole bridge
-- (3 of the 4 s of the population at 10x the demo data).

ALTER TABLE business_vault.bridge_customer_order_product ADD COLUMN line_applied_dts timestamptz;
COMMENT ON COLUMN business_vault.bridge_customer_order_product.line_applied_dts IS
    'Business time (applied_dts) of the line version the measures are from; NULL when the line has no version.';

UPDATE business_vault.bridge_customer_order_product b
   SET line_applied_dts = v.applied_dts
  FROM (SELECT DISTINCT ON (s.hk_order_product) s.hk_order_product, s.applied_dts
          FROM raw_vault.sat_order_line s
         ORDER BY s.hk_order_product, s.applied_dts DESC, s.event_seq DESC) v
 WHERE v.hk_order_product = b.hk_order_product;

-- The rule, one place for the migration and the loader's build and refresh: given an
-- order's lines, how many of them have a version, and the latest business time of
-- their current versions.
CREATE FUNCTION business_vault.lines_since(lines bigint, versioned bigint, latest timestamptz)
    RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN coalesce(lines, 0) = 0 THEN '-infinity'::timestamptz
                WHEN versioned < lines THEN 'infinity'::timestamptz
                ELSE latest END;
COMMENT ON FUNCTION business_vault.lines_since(bigint, bigint, timestamptz) IS
    'From when an order''s lines are its current ones: -infinity without lines, infinity when one has no version, else the latest business time of their current versions.';

ALTER TABLE business_vault.order_summary
    ADD COLUMN details_from timestamptz,
    ADD COLUMN details_since timestamptz,
    ADD COLUMN status_since timestamptz,
    ADD COLUMN lines_since timestamptz;

UPDATE business_vault.order_summary o
   SET details_from = d.first_applied_dts, details_since = d.applied_dts
  FROM (SELECT DISTINCT ON (s.hk_order) s.hk_order, s.applied_dts,
               min(s.applied_dts) OVER (PARTITION BY s.hk_order) AS first_applied_dts
          FROM raw_vault.sat_order_details s
         ORDER BY s.hk_order, s.applied_dts DESC, s.event_seq DESC) d
 WHERE d.hk_order = o.hk_order;
UPDATE business_vault.order_summary o
   SET status_since = coalesce(
           (SELECT s.applied_dts FROM raw_vault.sat_order_status s
             WHERE s.hk_order = o.hk_order
             ORDER BY s.applied_dts DESC, s.event_seq DESC LIMIT 1),
           '-infinity');

UPDATE business_vault.order_summary o
   SET lines_since = business_vault.lines_since(l.lines, l.versioned, l.latest)
  FROM (SELECT b.hk_order, count(*) AS lines, count(b.line_applied_dts) AS versioned,
               max(b.line_applied_dts) AS latest
          FROM business_vault.bridge_customer_order_product b
         GROUP BY b.hk_order) l
 WHERE l.hk_order = o.hk_order;
UPDATE business_vault.order_summary SET lines_since = '-infinity' WHERE lines_since IS NULL;

ALTER TABLE business_vault.order_summary
    ALTER COLUMN details_from SET NOT NULL,
    ALTER COLUMN details_since SET NOT NULL,
    ALTER COLUMN status_since SET NOT NULL,
    ALTER COLUMN lines_since SET NOT NULL;
COMMENT ON COLUMN business_vault.order_summary.details_from IS
    'Business time of the order''s first details version: before it the order did not exist (as of such a time it is in no answer).';
COMMENT ON COLUMN business_vault.order_summary.details_since IS
    'Business time (applied_dts) of the details version ordered_at and channel are from: from then on they are the ones here.';
COMMENT ON COLUMN business_vault.order_summary.status_since IS
    'Business time of the status version the status is from (-infinity without one): from then on it is the one here.';
COMMENT ON COLUMN business_vault.order_summary.lines_since IS
    'From this business time on, the order''s lines, units and amount are the ones here: the latest business time of its lines'' current versions (-infinity without lines, infinity when a line has no version).';
