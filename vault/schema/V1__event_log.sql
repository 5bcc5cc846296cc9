-- dvault schema, migration 1: the schemas and the append-only event log.
--
-- The event log is the single source of truth. Everything downstream (raw_vault,
-- business_vault, mart) can be rebuilt from it, so it is never updated or deleted.

CREATE SCHEMA IF NOT EXISTS event_log;
COMMENT ON SCHEMA event_log IS 'Append-only event log (the source of truth) and quarantined input.';
CREATE SCHEMA IF NOT EXISTS raw_vault;
COMMENT ON SCHEMA raw_vault IS 'Data Vault 2.0 hubs, links and satellites, written only by the loader.';
CREATE SCHEMA IF NOT EXISTS business_vault;
COMMENT ON SCHEMA business_vault IS 'Point-in-time and bridge tables derived by the loader.';
CREATE SCHEMA IF NOT EXISTS mart;
COMMENT ON SCHEMA mart IS 'Analyst-facing business views (Customer 360).';
CREATE SCHEMA IF NOT EXISTS ops;
COMMENT ON SCHEMA ops IS 'Loader checkpoints, ingested files, load runs and quality results.';

CREATE TABLE event_log.events (
    -- Order of insertion. Handed out at insert time, so a transaction that commits late
    -- can make a lower seq visible after a higher one: readers order by (xid, seq).
    seq           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Top-level transaction id of the writer. Readers only take rows whose xid is below
    -- the oldest transaction still running, so nothing can appear behind their checkpoint.
    xid           xid8 NOT NULL DEFAULT pg_current_xact_id(),
    -- CloudEvents `id`: given by the producer, or derived from source + content.
    -- "C" collation: byte order, the cheapest to index, and what ids need.
    event_id      text COLLATE "C" NOT NULL,
    event_type    text COLLATE "C" NOT NULL,
    record_source text COLLATE "C" NOT NULL,
    occurred_at   timestamptz NOT NULL,
    -- Arrival time: the writing transaction's start, so one ingest batch shares one value.
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    -- The event's `data`, kept as the producer wrote it. `json`, not `jsonb`: it is
    -- stored verbatim, is about twice as fast to ingest and to read back, and the
    -- loader parses it in Rust anyway.
    payload       json NOT NULL,
    CONSTRAINT events_event_id_not_empty CHECK (event_id <> ''),
    CONSTRAINT events_event_type_not_empty CHECK (event_type <> ''),
    CONSTRAINT events_record_source_not_empty CHECK (record_source <> '')
);
-- Idempotency: CloudEvents says source + id identify an event.
CREATE UNIQUE INDEX events_source_id_key ON event_log.events (record_source, event_id);
-- The reader's scan: (xid, seq) > checkpoint, in that order.
CREATE INDEX events_xid_seq_idx ON event_log.events (xid, seq);

COMMENT ON TABLE event_log.events IS
    'Append-only event log. One row per event; UPDATE, DELETE and TRUNCATE are refused.';
COMMENT ON COLUMN event_log.events.seq IS 'Insertion order; not commit order (see xid).';
COMMENT ON COLUMN event_log.events.xid IS 'Writer''s transaction id; readers consume in (xid, seq) order below the oldest running transaction.';
COMMENT ON COLUMN event_log.events.event_id IS 'CloudEvents id; unique per record_source.';
COMMENT ON COLUMN event_log.events.record_source IS 'CloudEvents source: the system the event came from.';
COMMENT ON COLUMN event_log.events.occurred_at IS 'Business time: when it happened in the source system.';
COMMENT ON COLUMN event_log.events.recorded_at IS 'Log time: when the log received it. Becomes load_dts in the vault.';
COMMENT ON COLUMN event_log.events.payload IS 'The CloudEvents data object, verbatim.';

-- The log refuses changes. An owner doing explicit maintenance can opt out for one
-- transaction with: SET LOCAL dvault.log_maintenance = 'on';
CREATE FUNCTION event_log.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('dvault.log_maintenance', true), '') = 'on' THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION 'event_log.% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Events are facts; append a correcting event instead.';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON event_log.events
    FOR EACH ROW EXECUTE FUNCTION event_log.refuse_change();
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON event_log.events
    FOR EACH STATEMENT EXECUTE FUNCTION event_log.refuse_change();

-- Tell followers (dvault daemon --follow) that something was appended. One
-- notification per statement, and PostgreSQL folds duplicates within a transaction.
CREATE FUNCTION event_log.notify_append() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dvault_events', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER events_notify
    AFTER INSERT ON event_log.events
    FOR EACH STATEMENT EXECUTE FUNCTION event_log.notify_append();

-- Input that could not become an event (ingest), or an event that could not be
-- projected (load). Nothing good is lost; nothing bad is dropped silently.
CREATE TABLE event_log.rejected (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rejected_at  timestamptz NOT NULL DEFAULT now(),
    stage        text NOT NULL CHECK (stage IN ('ingest', 'load')),
    -- ingest: the input file (or 'api') and its 1-based line; load: NULL.
    file         text,
    line         bigint,
    -- digest of the ingested input, so re-ingesting it does not repeat its rejections
    input_digest bytea,
    -- load: the event that could not be projected
    event_seq    bigint,
    event_type   text,
    reason       text NOT NULL,
    raw          text
);
CREATE UNIQUE INDEX rejected_ingest_line_key ON event_log.rejected (input_digest, line)
    WHERE stage = 'ingest';
CREATE UNIQUE INDEX rejected_load_event_key ON event_log.rejected (event_seq)
    WHERE stage = 'load';
COMMENT ON TABLE event_log.rejected IS
    'Quarantined input with the reason it was refused: bad rows at ingest, events the loader could not project.';
COMMENT ON COLUMN event_log.rejected.raw IS 'The offending input as text (invalid bytes replaced by U+FFFD, NUL shown as \0).';
