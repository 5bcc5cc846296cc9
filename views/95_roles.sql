-- Least-privilege roles for the two services: the loader and the API server.
--
--     SELECT ops.grant_loader('dvault_loader');   -- ingest, load, daemon
--     SELECT ops.grant_api('dvault_api');         -- dvault serve
--     ALTER ROLE dvault_api PASSWORD '...';       -- then DATABASE_URL=postgres://dvault_api:...@host/db
--
-- run by the role that owns the schema (the one that runs `dvault migrate`; DDL,
-- migrations and views stay with it). Each function creates the login role if needed
-- (without a password: set one, or use another authentication method), refuses a
-- superuser, and is idempotent: running it again re-grants the same rights, and grants
-- on tables created later by the owner follow (default privileges).
--
-- Both roles may append to the event log but never change it: they hold no UPDATE,
-- DELETE or TRUNCATE on event_log.events (the append-only trigger is a second wall;
-- its maintenance switch `dvault.log_maintenance` does not help a role without the
-- privilege). The API role reads the business views only: no raw_vault (the contact
-- satellite holds personal data), no event payloads, no quarantined input, and it
-- writes nothing in the vault.

CREATE OR REPLACE FUNCTION ops.check_service_role(fn text, role_name text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(role_name, '') = '' THEN
        RAISE EXCEPTION '%: a role name is required', fn;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = role_name AND (rolsuper OR rolbypassrls)) THEN
        RAISE EXCEPTION '%: % is a superuser; a service role must not be one', fn, role_name;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role_name) THEN
        EXECUTE format('CREATE ROLE %I LOGIN', role_name);
        RETURN 'created';
    END IF;
    RETURN 'granted';
END
$$;
REVOKE ALL ON FUNCTION ops.check_service_role(text, text) FROM PUBLIC;
COMMENT ON FUNCTION ops.check_service_role(text, text) IS
    'Helper of ops.grant_loader and ops.grant_api: refuse a superuser, create the login role if missing.';

-- The loader: reads and appends to the log, writes the vault, the business vault and
-- ops (checkpoints, runs, quality results), empties the vault for `dvault rebuild`.
CREATE OR REPLACE FUNCTION ops.grant_loader(role_name text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    verb text := ops.check_service_role('ops.grant_loader', role_name);
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), role_name);
    EXECUTE format('GRANT USAGE ON SCHEMA event_log, raw_vault, business_vault, mart, ops TO %I', role_name);
    -- the log: read and append, nothing else
    EXECUTE format('REVOKE ALL ON event_log.events FROM %I', role_name);
    EXECUTE format('GRANT SELECT, INSERT ON event_log.events TO %I', role_name);
    -- quarantine: a rebuild clears the loader's own rejections
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON event_log.rejected TO %I', role_name);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA raw_vault, business_vault, ops TO %I', role_name);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA raw_vault, business_vault, ops GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLES TO %I', role_name);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA event_log, raw_vault, business_vault, ops TO %I', role_name);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA mart TO %I', role_name);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA mart GRANT SELECT ON TABLES TO %I', role_name);
    EXECUTE format('GRANT SELECT ON public.refinery_schema_history TO %I', role_name);
    RETURN format('%s loader %s on database %s: reads and appends the event log (no update, delete or truncate), writes the vault and ops',
                  verb, role_name, current_database());
END
$$;
REVOKE ALL ON FUNCTION ops.grant_loader(text) FROM PUBLIC;
COMMENT ON FUNCTION ops.grant_loader(text) IS
    'Create (if needed) a login role for ingest, load and the daemon: append-only on the event log, read-write on raw_vault, business_vault and ops. Run as the schema owner.';

-- The API server: the business views, the two history views, appends to the log
-- (POST /events), and the positions /ready and /metrics report.
CREATE OR REPLACE FUNCTION ops.grant_api(role_name text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    verb text := ops.check_service_role('ops.grant_api', role_name);
BEGIN
    -- start from nothing in the schemas it must not touch
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA raw_vault, event_log, ops FROM %I', role_name);
    EXECUTE format('REVOKE ALL ON SCHEMA raw_vault FROM %I', role_name);
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), role_name);
    EXECUTE format('GRANT USAGE ON SCHEMA mart TO %I', role_name);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA mart TO %I', role_name);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA mart GRANT SELECT ON TABLES TO %I', role_name);
    -- GET /customers/{id}/history
    EXECUTE format('GRANT USAGE ON SCHEMA business_vault TO %I', role_name);
    EXECUTE format('GRANT SELECT ON business_vault.sat_customer_profile_history, business_vault.sat_customer_contact_history TO %I', role_name);
    -- POST /events: append, and read back only the key columns ON CONFLICT needs;
    -- GET /ready: the loader's lag (how many events a row holds, not what they say)
    EXECUTE format('GRANT USAGE ON SCHEMA event_log TO %I', role_name);
    EXECUTE format('GRANT INSERT ON event_log.events, event_log.rejected TO %I', role_name);
    EXECUTE format('GRANT SELECT (record_source, event_id, xid, seq, recorded_at, bundle_size) ON event_log.events TO %I', role_name);
    EXECUTE format('GRANT SELECT (stage, input_digest, line) ON event_log.rejected TO %I', role_name);
    -- GET /ready and /metrics: schema version, loader checkpoint, latest quality gate
    EXECUTE format('GRANT USAGE ON SCHEMA ops TO %I', role_name);
    EXECUTE format('GRANT SELECT ON ops.checkpoints TO %I', role_name);
    IF to_regclass('ops.quality_results') IS NOT NULL THEN
        EXECUTE format('GRANT SELECT ON ops.quality_results TO %I', role_name);
    END IF;
    IF to_regclass('ops.load_runs') IS NOT NULL THEN
        EXECUTE format('GRANT SELECT ON ops.load_runs TO %I', role_name);
    END IF;
    EXECUTE format('GRANT SELECT ON public.refinery_schema_history TO %I', role_name);
    RETURN format('%s API role %s on database %s: reads mart, appends events; no raw_vault, no personal data',
                  verb, role_name, current_database());
END
$$;
REVOKE ALL ON FUNCTION ops.grant_api(text) FROM PUBLIC;
COMMENT ON FUNCTION ops.grant_api(text) IS
    'Create (if needed) a login role for dvault serve: reads mart and the history views, appends to the event log, reads nothing in raw_vault. Run as the schema owner.';
