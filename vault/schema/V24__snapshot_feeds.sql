-- dvault schema, migration 24: snapshot feeds (`dvault ingest --bundle --snapshot`).
-- Per event type and source, a digest of every row of the feed's last file: the next
-- file stores only rows that are not one of them (src/events/snapshot.rs). Replaced in
-- the transaction that records the file in ops.ingested_files.
CREATE TABLE ops.snapshot_feeds (
    event_type  text NOT NULL,
    source      text NOT NULL,
    file        text NOT NULL,
    rows        bigint NOT NULL,
    -- the rows' digests (16 bytes each: SHA-256 of the column names and the row's
    -- fields, cut to 16 bytes), sorted, end to end
    row_digests bytea NOT NULL CHECK (octet_length(row_digests) = 16 * rows),
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_type, source)
);
-- digests do not compress: store them out of line without trying
ALTER TABLE ops.snapshot_feeds ALTER COLUMN row_digests SET STORAGE EXTERNAL;
COMMENT ON TABLE ops.snapshot_feeds IS 'The row digests of each snapshot feed''s last file: the next one stores only rows not among them.';
