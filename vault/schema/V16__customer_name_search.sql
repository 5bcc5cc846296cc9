-- dvault schema, migration 16: customers found by the beginning of a name.
--
-- GET /customers?search=ann%20te (and the dashboard's search box) matches each word as
-- a prefix of the lower-cased first or last name (`lower(first_name) LIKE 'ann%'`):
-- these indexes serve such a prefix (text_pattern_ops: whatever the collation).
CREATE INDEX customer_360_current_first_name_idx
    ON business_vault.customer_360_current (lower(first_name) text_pattern_ops);
CREATE INDEX customer_360_current_last_name_idx
    ON business_vault.customer_360_current (lower(last_name) text_pattern_ops);
