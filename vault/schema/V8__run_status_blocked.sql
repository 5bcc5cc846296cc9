-- dvault schema, migration 8: a load run can end 'blocked'.
--
-- The loader reads the log only below its horizon: the oldest transaction of this
-- database still open (see src/events/horizon.rs). A run that loaded everything it
-- could, while committed events after the checkpoint still wait behind such a
-- transaction, ends 'blocked' (not 'succeeded'); its error names the transaction it
-- waits for: "waiting for transaction 1234 in database dw (pid 678, open for 29 s): ...".
-- The events load once that transaction ends, by the next run.
ALTER TABLE ops.load_runs DROP CONSTRAINT load_runs_status_check;
ALTER TABLE ops.load_runs ADD CONSTRAINT load_runs_status_check
    CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled', 'interrupted', 'blocked'));

COMMENT ON COLUMN ops.load_runs.status IS
    'running, succeeded, failed (error or quality gate), cancelled (SIGTERM/SIGINT), interrupted (runner died) or blocked (loaded what it could; committed events wait behind an open transaction of this database, named in error).';
