-- dvault schema, migration 7: the audit trail cannot be erased by the role that loads.
--
-- The loader role (ops.grant_loader, views/95_roles.sql) holds DELETE on
-- event_log.rejected, because `dvault rebuild` clears the loader's own rejections
-- before it replays the log (`DELETE FROM event_log.rejected WHERE stage = 'load'`),
-- and it holds every right on the ops tables, because it moves its checkpoints. With
-- those rights alone it could also delete what ingest and `POST /events` quarantined
-- (stage 'ingest': the only record that input was refused, and why) and move or remove
-- the checkpoint of any other consumer of the log. The triggers below narrow the
-- rights to what the loader needs:
--
-- * event_log.rejected: a row of stage 'ingest' cannot be updated or deleted, and the
--   table cannot be truncated; rows of stage 'load' can be deleted (a rebuild
--   recomputes them) but not updated.
-- * ops.checkpoints: only the loader's own consumers can be inserted, moved or
--   removed: 'vault_loader' (dvault load, rebuild, the daemon) and 'quality_gate' (the
--   daemon's quality gate, which runs as the loader role too); the table cannot be
--   truncated.
--
-- Both walls stand for every role except the owner of the table (or a member of it)
-- and superusers: the owner runs migrations and may do maintenance by hand, and a
-- superuser could drop the trigger anyway. A service role cannot disable or drop a
-- trigger (that needs ownership), nor switch triggers off with
-- session_replication_role (that needs a superuser). The refusals raise
-- insufficient_privilege (SQLSTATE 42501), like a missing GRANT would, rather than
-- silently touching no row (as row-level security would).

-- True when the current role owns `tbl` (or is a member of its owner) or is a
-- superuser: the roles these guards let through.
CREATE FUNCTION ops.is_table_owner(tbl oid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = tbl),
        false)
$$;
COMMENT ON FUNCTION ops.is_table_owner(oid) IS
    'Whether the current role owns the table (or is a member of its owner, or a superuser): the audit trail guards let only such roles through.';

CREATE FUNCTION event_log.guard_rejected() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF ops.is_table_owner(TG_RELID) THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'event_log.rejected is an audit trail: TRUNCATE is not allowed'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'A rebuild deletes only the rejections of stage ''load''.';
    END IF;
    IF TG_OP = 'DELETE' AND OLD.stage = 'load' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'event_log.rejected is an audit trail: % of a rejection of stage % is not allowed',
                    TG_OP, OLD.stage
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Only rejections of stage ''load'' may be deleted (dvault rebuild recomputes them).';
END
$$;
COMMENT ON FUNCTION event_log.guard_rejected() IS
    'Trigger: for roles other than the owner, rejections of stage load may be deleted, nothing else may be updated, deleted or truncated.';

CREATE TRIGGER rejected_audit_trail
    BEFORE UPDATE OR DELETE ON event_log.rejected
    FOR EACH ROW EXECUTE FUNCTION event_log.guard_rejected();
CREATE TRIGGER rejected_no_truncate
    BEFORE TRUNCATE ON event_log.rejected
    FOR EACH STATEMENT EXECUTE FUNCTION event_log.guard_rejected();

CREATE FUNCTION ops.guard_checkpoints() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    own constant text[] := ARRAY['vault_loader', 'quality_gate'];
BEGIN
    IF ops.is_table_owner(TG_RELID) THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'ops.checkpoints: TRUNCATE is not allowed; each consumer changes only its own checkpoint'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND NOT (OLD.consumer = ANY (own)) THEN
        RAISE EXCEPTION 'ops.checkpoints: % of the checkpoint of consumer % is not allowed', TG_OP, OLD.consumer
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'The loader role changes only the checkpoints vault_loader and quality_gate.';
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NOT (NEW.consumer = ANY (own)) THEN
        RAISE EXCEPTION 'ops.checkpoints: % of a checkpoint for consumer % is not allowed', TG_OP, NEW.consumer
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'The loader role changes only the checkpoints vault_loader and quality_gate.';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
COMMENT ON FUNCTION ops.guard_checkpoints() IS
    'Trigger: roles other than the owner may insert, move or remove only the checkpoints vault_loader and quality_gate, and never truncate.';

CREATE TRIGGER checkpoints_own_only
    BEFORE INSERT OR UPDATE OR DELETE ON ops.checkpoints
    FOR EACH ROW EXECUTE FUNCTION ops.guard_checkpoints();
CREATE TRIGGER checkpoints_no_truncate
    BEFORE TRUNCATE ON ops.checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ops.guard_checkpoints();
