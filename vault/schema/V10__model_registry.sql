-- dvault schema, migration 10: the active model lives in the warehouse.
--
-- A user's mapping files (added on top of the mappings built into dvault) are
-- registered in the database by `dvault migrate --mappings DIR` or
-- `dvault model apply DIR`; `load`, `rebuild`, `daemon` and `check` then use them
-- without flags, and a loader given other mappings refuses to run (with the diff)
-- instead of quarantining the events it does not know. See docs/mappings.md.

-- The registered mapping files, by file name. Empty: the built-in model only.
CREATE TABLE ops.model_files (
    name          text PRIMARY KEY,
    body          text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ops.model_files IS
    'The user mapping files of the active model (on top of the built-in mappings), by file name.';

-- Every registration, newest last: what was registered, when and how.
CREATE TABLE ops.model_registrations (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registered_at timestamptz NOT NULL DEFAULT now(),
    files         text[] NOT NULL,
    digest        text NOT NULL,
    how           text NOT NULL
);
COMMENT ON TABLE ops.model_registrations IS
    'History of the model registrations: file names, a SHA-256 of names and texts, and the command that registered them.';

-- Events of a type no mapping knows are held back here, not quarantined: the loader
-- moves past them and loads them once a mapping for their type is registered (or
-- forgets them when the user skips the type: `dvault model skip TYPE`).
CREATE TABLE ops.held_events (
    event_seq  bigint PRIMARY KEY,
    event_type text NOT NULL,
    held_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX held_events_type ON ops.held_events (event_type);
COMMENT ON TABLE ops.held_events IS
    'Events whose type no registered mapping knows, held back by the loader until one does (see dvault status).';

-- Event types the user chose not to load: neither held back nor quarantined.
CREATE TABLE ops.skipped_event_types (
    event_type text PRIMARY KEY,
    skipped_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ops.skipped_event_types IS
    'Event types the loader passes over on purpose (dvault model skip TYPE).';

-- The user's DDL beside the mappings (DIR/V<n>__<what>.sql), applied in version order
-- by `dvault migrate --mappings DIR`; an applied file may not change afterwards.
CREATE TABLE ops.model_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ops.model_migrations IS
    'User migrations (DDL beside the mapping files) applied by dvault migrate: version, name, SHA-256 of the text.';
