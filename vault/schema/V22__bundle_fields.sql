-- dvault schema, migration 22: bundles written in the fields format.
--
-- `dvault ingest --bundle` now stores a bundle as a first line with the file's column
-- names (`#fields`, then each name) and one line per row with its seq, business time
-- and fields, instead of a JSON payload per line: the field names, quotes and escapes
-- of every row cost the log's compression, the server's reads and the loader's parse
-- (at TPC-H SF1: 3.3 GB of bundle text before compression became 1.1 GB, the log 0.75
-- GB became 0.53 GB, the ingest 30% shorter). Bundles of the JSON format stay readable;
-- nothing is rewritten. Only the column's description changes.

COMMENT ON COLUMN event_log.events.bundle IS
    'NULL for one event. Else the events of a bundle. Fields format (written since V22): a first line "#fields<TAB>name<TAB>name...", then one line per event: seq, business time (microseconds since 1970, UTC) and its fields, separated by tabs (a backslash, tab, LF or CR in a field escaped as \\, \t, \n, \r; an empty field is null). JSON format (before V22): one line per event: seq, business time and the JSON payload, separated by tabs.';
