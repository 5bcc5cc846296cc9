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
ALTER TABLE event_log.events
    ADD COLUMN bundle text,
    ADD COLUMN bundle_size integer,
    ADD CONSTRAINT events_bundle_complete CHECK ((bundle IS NULL) = (bundle_size IS NULL)),
    ADD CONSTRAINT events_bundle_size_positive CHECK (bundle_size > 0);

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
