-- dvault schema, migration 19: bundles, many events of one flat file in one log row.
--
-- A warehouse feed is a file of millions of rows. One log row per row costs a heap
-- tuple, three index entries, a JSON validation and their WAL each, and an ingest
-- that rivals a raw COPY is out of reach that way. `dvault ingest --bundle` stores a
-- CSV file's rows in bundles of up to 10,000 events: one log row each, its events as
-- lines of text in `bundle` (compressed and stored out of line by TOAST). Every
-- event of a bundle keeps its own place in the log: the ingest reserves one `seq`
-- per event, the bundle row takes the first, and each line carries its own, so the
-- loader reads a bundle as the events it holds, in the order and at the places they
-- would have had one row each. Readers count a row as `coalesce(bundle_size, 1)`
-- events. See docs/events.md, "Bundles".
-- The checks hold for every row written from now on; NOT VALID spares a scan of the
-- whole log under its lock (every existing row has NULL in both columns).
ALTER TABLE event_log.events
    ADD COLUMN bundle text,
    ADD COLUMN bundle_size integer,
    ADD CONSTRAINT events_bundle_complete CHECK ((bundle IS NULL) = (bundle_size IS NULL)) NOT VALID,
    ADD CONSTRAINT events_bundle_size_positive CHECK (bundle_size > 0) NOT VALID;

COMMENT ON COLUMN event_log.events.bundle IS
    'NULL for one event. Else the events of a bundle, one line each: seq, business time (microseconds since 1970, UTC) and payload, separated by tabs.';
COMMENT ON COLUMN event_log.events.bundle_size IS
    'NULL for one event, else how many events the bundle holds (lines of `bundle`).';

-- lz4 where the server was built with it: several times faster than pglz, on text
-- that compresses about as well. A server without it keeps the default.
DO $$
BEGIN
    ALTER TABLE event_log.events ALTER COLUMN bundle SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 is not available: bundles are compressed with the default method';
END
$$;

-- A role that may read the log's positions (the API role: GET /ready counts the events
-- waiting for the loader) may read how many events a row holds, or its lag query fails.
DO $$
DECLARE r name;
BEGIN
    FOR r IN SELECT DISTINCT grantee::name FROM information_schema.column_privileges
              WHERE table_schema = 'event_log' AND table_name = 'events'
                AND column_name = 'seq' AND privilege_type = 'SELECT'
                AND grantee <> 'PUBLIC'
    LOOP
        EXECUTE format('GRANT SELECT (bundle_size) ON event_log.events TO %I', r);
    END LOOP;
END
$$;
