-- dvault schema, migration 5: run history and quality gate results.
--
-- Written by `dvault daemon` (nightly and follow runs), `dvault load` / `rebuild`
-- (manual runs) and `dvault check`; read by `dvault runs`, `dvault status` and the
-- daemon's metrics. See docs/operations.md.

-- One row per load run. A run that loads and checks (the nightly cycle) is one row.
-- Runs are inserted as 'running' when they start and updated when they end; a follow
-- run (near real time, woken by appends) that found nothing to load leaves no row.
--
-- A 'running' row exists only while its runner holds the loader's advisory lock: a
-- loader that takes the lock and finds one marks it 'interrupted' (its runner died or
-- lost its connection; the batches it committed stay loaded, the one in hand was
-- rolled back by the database).
CREATE TABLE ops.load_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- what started it: the daemon's cron schedule, the daemon following the log, or a
    -- person or script running `dvault load` / `dvault rebuild`
    trigger      text NOT NULL CHECK (trigger IN ('schedule', 'follow', 'manual')),
    -- a load from the checkpoint, or a rebuild (vault emptied, whole log replayed)
    kind         text NOT NULL DEFAULT 'load' CHECK (kind IN ('load', 'rebuild')),
    status       text NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    -- who ran it: host and process id of the dvault process
    runner       text NOT NULL,
    -- the loader's checkpoint before and after the run: the events it read are those
    -- in (from, to] in (xid, seq) order
    from_xid     xid8,
    from_seq     bigint,
    to_xid       xid8,
    to_seq       bigint,
    events_read  bigint,
    -- rows inserted per vault table, e.g. {"hub_customer": 10, "sat_customer_profile": 12}
    rows_written jsonb NOT NULL DEFAULT '{}',
    -- events quarantined in event_log.rejected by this run
    rejected     bigint,
    -- the quality gate's verdict (nightly runs); NULL when the run did not check
    quality      text CHECK (quality IN ('passed', 'failed')),
    -- why it failed, was cancelled or interrupted (the whole cause chain)
    error        text,
    CONSTRAINT load_runs_finished_when_not_running
        CHECK ((status = 'running') = (finished_at IS NULL))
);
CREATE INDEX load_runs_started_at_idx ON ops.load_runs (started_at DESC);
CREATE INDEX load_runs_running_idx ON ops.load_runs (id) WHERE status = 'running';

COMMENT ON TABLE ops.load_runs IS
    'Load run history: trigger, start and end, events read, rows written per table, rejections, status, quality verdict, error.';
COMMENT ON COLUMN ops.load_runs.trigger IS 'schedule (nightly cycle), follow (near real time) or manual (dvault load / rebuild).';
COMMENT ON COLUMN ops.load_runs.status IS 'running, succeeded, failed (error or quality gate), cancelled (SIGTERM/SIGINT) or interrupted (runner died).';
COMMENT ON COLUMN ops.load_runs.rows_written IS 'Rows inserted per vault table, as a JSON object.';
COMMENT ON COLUMN ops.load_runs.quality IS 'Verdict of the quality gate run inside this run; NULL when it ran none.';

-- One row per check per gate. A gate (the nightly cycle's, or `dvault check`'s) runs
-- every check once, in one transaction: its rows share checked_at. The event checks
-- (completeness, uniqueness, validity) look at the events loaded since the previous
-- gate (the 'quality_gate' consumer in ops.checkpoints, advanced by each gate); the
-- vault checks (referential integrity, freshness) look at everything.
CREATE TABLE ops.quality_results (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- the run whose gate this was; NULL for `dvault check`
    run_id       bigint REFERENCES ops.load_runs (id) ON DELETE CASCADE,
    checked_at   timestamptz NOT NULL DEFAULT now(),
    check_name   text NOT NULL CHECK (check_name IN
                 ('completeness', 'uniqueness', 'validity', 'referential_integrity', 'freshness')),
    passed       boolean NOT NULL,
    -- ratio (0..1) for completeness, uniqueness and validity (the worst subject);
    -- orphan count for referential_integrity; hours for freshness. NULL: nothing to measure
    measured     double precision,
    threshold    double precision NOT NULL,
    -- the subject with the worst measure, e.g. 'customer_registered.email'
    worst        text,
    -- how many items were examined and how many of them failed
    examined     bigint NOT NULL DEFAULT 0,
    failing      bigint NOT NULL DEFAULT 0,
    -- events in the gate's scope
    scope_events bigint NOT NULL DEFAULT 0,
    detail       text NOT NULL DEFAULT '',
    -- per subject: {"customer_registered.email": {"ratio": 0.8, "examined": 10, "failing": 2}, ...}
    breakdown    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX quality_results_checked_at_idx ON ops.quality_results (checked_at DESC);
CREATE INDEX quality_results_run_idx ON ops.quality_results (run_id) WHERE run_id IS NOT NULL;

COMMENT ON TABLE ops.quality_results IS
    'Quality gate results, one row per check per gate; the rows of one gate share checked_at.';
COMMENT ON COLUMN ops.quality_results.measured IS
    'Worst ratio (completeness, uniqueness, validity), orphan count (referential_integrity) or age in hours (freshness).';
