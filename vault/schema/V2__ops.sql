-- dvault schema, migration 2: operational tables.

-- Files already ingested, by digest of their content and ingest options: ingesting
-- the same file again is recognised before a single row is parsed.
CREATE TABLE ops.ingested_files (
    digest      bytea PRIMARY KEY,
    path        text NOT NULL,
    format      text NOT NULL,
    events      bigint NOT NULL,
    duplicates  bigint NOT NULL,
    rejected    bigint NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ops.ingested_files IS 'Input files ingested completely, keyed by a digest of content and options.';

-- Where each consumer of the log stands: the (xid, seq) of the last event it has
-- processed. Written in the same transaction as the consumer's own writes.
CREATE TABLE ops.checkpoints (
    consumer   text PRIMARY KEY,
    xid        xid8 NOT NULL,
    seq        bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ops.checkpoints IS 'Per consumer, the (xid, seq) of the last event of the log it has processed.';

-- The hashing rule the vault was built with; the loader refuses to mix versions.
CREATE TABLE ops.settings (
    name  text PRIMARY KEY,
    value text NOT NULL
);
COMMENT ON TABLE ops.settings IS 'Facts about how this vault was built, e.g. hash_version.';
