//! Reading a file for `dvault ingest`: a blocking thread parses CSV rows or NDJSON
//! lines into events and rejections and hands them on in batches ([`Batcher`]), in
//! file order, while the async side writes the batch before.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{IngestError, IngestOptions, Rejection, printable};
use crate::events::csv_records::{Record, Records};
use crate::events::csv_rows::{Header, RowSpec};
use crate::events::limits::TimeRange;
use crate::events::snapshot::{self, Filter};
use crate::events::{NewEvent, bundle, cloudevents};

/// What a reader makes of one row or line.
#[derive(Debug)]
pub enum Item {
    Event(NewEvent),
    /// A CSV row for a bundle (`--bundle`).
    Row(bundle::Row),
}

/// One parsed slice of the file.
pub(crate) struct Batch {
    pub(crate) events: Vec<NewEvent>,
    /// A bundle's rows, when the file is stored in bundles (then `events` is empty).
    pub(crate) rows: Vec<bundle::Row>,
    /// The line of each event or row, for a quarantine by the database (see [`write_batch`]).
    pub(crate) lines: Vec<u64>,
    pub(crate) rejects: Vec<Rejection>,
    /// Bytes of the file read so far.
    pub(crate) position: u64,
}

pub(crate) enum Parsed {
    Batch(Batch),
    /// The file cannot be read at all (I/O error, unusable header).
    Fatal(IngestError),
}

/// What the reader thread hands back when the file is read: with a snapshot filter,
/// what it found.
pub(super) type Reader = tokio::task::JoinHandle<Option<snapshot::Taken>>;

/// Open the file and parse it on a blocking thread, handing batches to the channel;
/// with `snapshot` (bundled CSV rows only), only the rows it finds new.
pub(super) fn start_reader(
    path: &Path,
    spec: &Option<RowSpec>,
    opts: &IngestOptions,
    limit: BatchLimit,
    snapshot: Option<Filter>,
) -> Result<(mpsc::Receiver<Parsed>, Reader), IngestError> {
    let file = File::open(path).map_err(|source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let (tx, rx) = mpsc::channel::<Parsed>(2);
    let path = path.to_path_buf();
    let spec = spec.clone();
    let range = opts.time_range;
    let received_at = opts.time.unwrap_or_else(Utc::now);
    let bundled = limit.bundled;
    let reader = tokio::task::spawn_blocking(move || match spec {
        Some(spec) => feed(
            file,
            Batcher::new(limit, &tx, snapshot),
            |input, emit| match bundled {
                true => read_csv(
                    input,
                    &spec,
                    |header, fields| header.row(fields, received_at, &range).map(Item::Row),
                    emit,
                ),
                false => read_csv(
                    input,
                    &spec,
                    |header, fields| {
                        (header.event(fields, &spec, received_at, &range)).map(Item::Event)
                    },
                    emit,
                ),
            },
            |message| IngestError::File { path, message },
        ),
        None => feed(
            file,
            Batcher::new(limit, &tx, None),
            |input, emit| {
                read_ndjson(input, received_at, &range, |line, item, at| {
                    emit(line, item.map(Item::Event), at)
                })
            },
            |source| IngestError::Io { path, source },
        ),
    });
    Ok((rx, reader))
}

/// When the reader hands a batch on: at `rows` rows (events and rejections) or once
/// its payloads hold `bytes`, whichever comes first; and whether a batch is a bundle
/// (of [`bundle::Row`]s, not events).
#[derive(Debug, Clone, Copy)]
pub(super) struct BatchLimit {
    pub(super) rows: usize,
    pub(super) bytes: usize,
    pub(super) bundled: bool,
}

impl BatchLimit {
    pub(super) fn rows(rows: usize) -> BatchLimit {
        BatchLimit {
            rows: rows.max(1),
            bytes: usize::MAX,
            bundled: false,
        }
    }

    /// A bundle: closed at its rows or its bytes, whichever comes first.
    pub(super) fn bundle(rows: usize) -> BatchLimit {
        BatchLimit {
            rows: rows.max(1),
            bytes: bundle::MAX_BYTES,
            bundled: true,
        }
    }
}

impl Batch {
    fn with_capacity(limit: BatchLimit, size: usize, position: u64) -> Batch {
        let (events, rows) = match limit.bundled {
            true => (0, size),
            false => (size, 0),
        };
        Batch {
            events: Vec::with_capacity(events),
            rows: Vec::with_capacity(rows),
            lines: Vec::with_capacity(size),
            rejects: Vec::new(),
            position,
        }
    }

    /// Events or bundle rows in the batch.
    pub(crate) fn len(&self) -> usize {
        self.events.len() + self.rows.len()
    }
}

/// Collects parsed rows and hands full batches to the writer.
struct Batcher<'a> {
    batch: Batch,
    /// Payload bytes in `batch`.
    bytes: usize,
    limit: BatchLimit,
    tx: &'a mpsc::Sender<Parsed>,
    /// Keeps back the rows of a bundled snapshot that its last file held.
    snapshot: Option<Filter>,
}

impl<'a> Batcher<'a> {
    fn new(limit: BatchLimit, tx: &'a mpsc::Sender<Parsed>, snapshot: Option<Filter>) -> Self {
        let size = limit.rows.min(100_000);
        Batcher {
            batch: Batch::with_capacity(limit, size, 0),
            bytes: 0,
            limit,
            tx,
            snapshot,
        }
    }

    /// Returns false when the writer has gone away (it failed): stop reading.
    fn push(&mut self, line: u64, item: Result<Item, Rejection>, position: u64) -> bool {
        match item {
            Ok(Item::Event(e)) => {
                self.bytes += e.payload.len();
                self.batch.events.push(e);
                self.batch.lines.push(line);
            }
            Ok(Item::Row(r)) if self.snapshot.as_mut().is_some_and(|s| !s.is_new(&r)) => {}
            Ok(Item::Row(r)) => {
                self.bytes += r.fields.len();
                self.batch.rows.push(r);
                self.batch.lines.push(line);
            }
            Err(r) => self.batch.rejects.push(r),
        }
        self.batch.position = position;
        if self.batch.len() + self.batch.rejects.len() >= self.limit.rows
            || self.bytes >= self.limit.bytes
        {
            return self.flush();
        }
        true
    }

    fn flush(&mut self) -> bool {
        let position = self.batch.position;
        let size = self.limit.rows.min(100_000);
        self.bytes = 0;
        let full = std::mem::replace(
            &mut self.batch,
            Batch::with_capacity(self.limit, size, position),
        );
        if full.len() == 0 && full.rejects.is_empty() {
            return true;
        }
        self.tx.blocking_send(Parsed::Batch(full)).is_ok()
    }
}

/// Every row of a CSV file, in order, as what `make` makes of its fields (an event, a
/// bundle's row) or a rejection, handed to `emit` with its line and the bytes read so
/// far; `emit` returns false to stop. `Err` is a problem with the whole file (empty,
/// unusable header, unreadable).
pub fn read_csv<T>(
    input: impl BufRead,
    spec: &RowSpec,
    make: impl Fn(&Header, &[&[u8]]) -> Result<T, String>,
    mut emit: impl FnMut(u64, Result<T, Rejection>, u64) -> bool,
) -> Result<(), String> {
    let mut records = Records::new(input);
    let mut record = Record::default();
    let header = match records.next_record(&mut record) {
        Ok(Some(Ok(()))) => Header::parse(&record.fields(), spec)
            .map_err(|message| format!("line {}: {message}", record.line))?,
        Ok(Some(Err(m))) => return Err(format!("line {}: the header: {}", m.line, m.reason)),
        Ok(None) => return Err("the file is empty: a CSV file needs a header row".into()),
        Err(e) => return Err(format!("cannot read the header: {e}")),
    };
    records.expect_fields(header.len());
    loop {
        let item = match records.next_record(&mut record) {
            Ok(Some(Ok(()))) => make(&header, &record.fields()).map_err(|reason| Rejection {
                line: record.line,
                reason,
                raw: printable(record.raw()),
            }),
            Ok(Some(Err(m))) => Err(Rejection {
                line: m.line,
                reason: m.reason,
                raw: printable(&m.raw),
            }),
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("line {}: cannot read: {e}", record.line)),
        };
        let line = match &item {
            Ok(_) => record.line,
            Err(r) => r.line,
        };
        if !emit(line, item, records.position()) {
            return Ok(());
        }
    }
}

/// One file's items, read by `read` (CSV or NDJSON: [`read_csv`], [`read_ndjson`]),
/// handed on by `batcher` in file order; a problem with the whole file ends them, as
/// `fatal` tells it. Stops when the writer has gone away. Returns what the batcher's
/// snapshot filter found.
fn feed<E>(
    file: File,
    mut batcher: Batcher<'_>,
    read: impl FnOnce(BufReader<File>, &mut Emit<'_>) -> Result<(), E>,
    fatal: impl FnOnce(E) -> IngestError,
) -> Option<snapshot::Taken> {
    let tx = batcher.tx;
    let mut open = true;
    let input = BufReader::with_capacity(1 << 20, file);
    let read = read(input, &mut |line, item, position| {
        open = batcher.push(line, item, position);
        open
    });
    match read {
        Err(e) => {
            let _ = tx.blocking_send(Parsed::Fatal(fatal(e)));
        }
        Ok(()) if open => {
            batcher.flush();
        }
        Ok(()) => {}
    }
    batcher.snapshot.map(Filter::finish)
}

/// What a reader hands each item to: its line, the event or why not, the bytes read so
/// far; false stops the reading.
type Emit<'a> = dyn FnMut(u64, Result<Item, Rejection>, u64) -> bool + 'a;

/// Every line of an NDJSON file, in order, as an event or a rejection, handed to
/// `emit` with its line and the bytes read so far; `emit` returns false to stop.
/// Lines end with `\n`, `\r\n` or a lone `\r` (raw CRs cannot be inside a JSON
/// string); blank lines are skipped.
pub fn read_ndjson(
    mut input: impl BufRead,
    received_at: DateTime<Utc>,
    range: &TimeRange,
    mut emit: impl FnMut(u64, Result<NewEvent, Rejection>, u64) -> bool,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let mut line_no = 0u64;
    let mut position = 0u64;
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf)? {
            0 => return Ok(()),
            n => position += n as u64,
        }
        let mut chunk = buf.as_slice();
        if line_no == 0 {
            chunk = chunk.strip_prefix(b"\xef\xbb\xbf").unwrap_or(chunk);
        }
        let ended = chunk.ends_with(b"\n") || chunk.ends_with(b"\r");
        chunk = chunk.strip_suffix(b"\n").unwrap_or(chunk);
        chunk = chunk.strip_suffix(b"\r").unwrap_or(chunk);
        let mut lines = chunk.split(|&b| b == b'\r').peekable();
        while let Some(line) = lines.next() {
            line_no += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let truncated = !ended && lines.peek().is_none();
            let item = match std::str::from_utf8(line) {
                Err(e) => Err(format!(
                    "invalid UTF-8 (bad byte at offset {})",
                    e.valid_up_to()
                )),
                Ok(text) => cloudevents::parse_within(text, received_at, range).map_err(|reason| {
                    if truncated {
                        format!("{reason} (the last line has no newline: truncated file?)")
                    } else {
                        reason
                    }
                }),
            }
            .map_err(|reason| Rejection {
                line: line_no,
                reason,
                raw: printable(line),
            });
            if !emit(line_no, item, position) {
                return Ok(());
            }
        }
    }
}

/// SHA-256 of the ingest options and the file's bytes, and how many lines it has
/// (about its rows: quoted fields may hold line breaks).
pub(super) fn file_digest(path: &Path, options: &str) -> io::Result<([u8; 32], u64)> {
    let mut h = Sha256::new();
    h.update(options.as_bytes());
    h.update([0]);
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    Ok((h.finalize().into(), lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_closes_at_its_rows_or_its_bytes() {
        let (tx, mut rx) = mpsc::channel::<Parsed>(16);
        let mut batcher = Batcher::new(
            BatchLimit {
                rows: 3,
                bytes: 10,
                bundled: false,
            },
            &tx,
            None,
        );
        let event = |payload: &str| {
            Ok(Item::Event(NewEvent {
                event_id: payload.into(),
                event_type: "t".into(),
                source: "s".into(),
                occurred_at: Utc::now(),
                payload: payload.into(),
            }))
        };
        for (line, p) in ["{\"a\"}", "{\"b\"}", "{\"c\"}", "{}", "{}", "{}"]
            .into_iter()
            .enumerate()
        {
            assert!(batcher.push(line as u64 + 2, event(p), 0));
        }
        assert!(batcher.flush());
        drop(tx);
        let mut sizes = Vec::new();
        while let Ok(Parsed::Batch(b)) = rx.try_recv() {
            sizes.push(b.events.len());
        }
        // 5 + 5 bytes reach 10: a batch of 2; then three rows of 2 bytes: the rows
        // close it; the last one is flushed alone
        assert_eq!(sizes, vec![2, 3, 1]);
    }
}
