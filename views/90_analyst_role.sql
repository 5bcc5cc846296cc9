-- The read-only analyst role.
--
--     SELECT ops.grant_analyst('alice');
--
-- run by the role that owns the schema (the one that runs `dvault migrate`): creates
-- the login role if needed, lets it read mart and business_vault (the views, the PIT,
-- bridge and derived tables, the as-of functions), and nothing else: no right on
-- event_log (the payloads hold personal data), raw_vault (contact satellite) or ops.
-- Contact details show as NULL to it (business_vault.pii_visible()). Views re-created
-- by later migrations keep the grant (default privileges of the granting role).
CREATE OR REPLACE FUNCTION ops.grant_analyst(role_name text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    db text := current_database();
    verb text := 'granted';
BEGIN
    IF coalesce(role_name, '') = '' THEN
        RAISE EXCEPTION 'ops.grant_analyst: a role name is required';
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = role_name AND (rolsuper OR rolbypassrls)) THEN
        RAISE EXCEPTION 'ops.grant_analyst: % is a superuser; an analyst must not be one', role_name;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role_name) THEN
        EXECUTE format('CREATE ROLE %I LOGIN', role_name);
        verb := 'created';
    END IF;
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA event_log, raw_vault, ops FROM %I', role_name);
    EXECUTE format('REVOKE ALL ON SCHEMA event_log, raw_vault, ops FROM %I', role_name);
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', db, role_name);
    EXECUTE format('GRANT USAGE ON SCHEMA mart, business_vault TO %I', role_name);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA mart, business_vault TO %I', role_name);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA mart, business_vault GRANT SELECT ON TABLES TO %I', role_name);
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET default_transaction_read_only = on', role_name, db);
    RETURN format('%s read-only analyst %s on database %s: reads mart and business_vault, no personal data',
                  verb, role_name, db);
END
$$;
REVOKE ALL ON FUNCTION ops.grant_analyst(text) FROM PUBLIC;
COMMENT ON FUNCTION ops.grant_analyst(text) IS
    'Create (if needed) a login role that reads mart and business_vault only: nothing in event_log, raw_vault or ops, contact details masked. Run as the schema owner.';
