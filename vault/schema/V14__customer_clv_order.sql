-- dvault schema, migration 14: customers in predicted-CLV order, by index.
--
-- GET /customers?sort=-clv_predicted_12m and /segments/{name}/customers with that sort
-- computed every candidate's predicted CLV before sorting (mart.customer_360 shows the
-- stored value only on the day it is stored for, a CASE no index serves): 28 requests
-- a second at ten times the demo data. The lists now page their keys from
-- mart.customer_list_keys (views/40_customer_360.sql), which reads the stored value in
-- the order of these indexes on the day it is stored for.
CREATE INDEX customer_360_current_clv_idx
    ON business_vault.customer_360_current ((coalesce(clv_predicted_12m, 0)), customer_id);
CREATE INDEX customer_360_current_segment_clv_idx
    ON business_vault.customer_360_current (segment, (coalesce(clv_predicted_12m, 0)), customer_id);
