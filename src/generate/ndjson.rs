//! `events.ndjson`: CloudEvents written one per line, and the small JSON writer
//! behind them (the generator builds each line by hand, in a fixed member order).

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::calendar::Ts;
use super::dirt::BrokenEvents;
use super::format::Rfc3339;
use super::{EVENTS_FILE, GenFile, GenOptions, create_file};

/// Append `s` as a JSON string.
fn push_json_string(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0..0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 0xf)]);
            }
            _ => buf.push(b),
        }
    }
    buf.push(b'"');
}

/// Writes one JSON object's members, in call order, into a byte buffer.
pub(super) struct JsonObject<'a> {
    buf: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> JsonObject<'a> {
    pub(super) fn open(buf: &'a mut Vec<u8>) -> JsonObject<'a> {
        buf.push(b'{');
        JsonObject { buf, empty: true }
    }

    /// Writes `"key":` and hands back the buffer for the value.
    pub(super) fn member(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.buf.push(b',');
        }
        self.empty = false;
        push_json_string(self.buf, key);
        self.buf.push(b':');
        self.buf
    }

    /// A string member, escaped.
    pub(super) fn str(&mut self, key: &str, value: &str) {
        push_json_string(self.member(key), value);
    }

    /// A string member whose value is generated ASCII (an id, a timestamp) that
    /// needs no escaping.
    pub(super) fn token(&mut self, key: &str, value: impl fmt::Display) -> io::Result<()> {
        write!(self.member(key), "\"{value}\"")
    }

    /// A number member.
    pub(super) fn number(&mut self, key: &str, value: impl fmt::Display) -> io::Result<()> {
        write!(self.member(key), "{value}")
    }

    pub(super) fn close(self) {
        self.buf.push(b'}');
    }
}

/// Opens a line: `{`, the CloudEvents envelope and `"data":`, the value still to
/// come. An attribute that is `None` is left out (only broken lines do that); the
/// id is `{prefix}-{number}`.
pub(super) fn open_event(
    line: &mut Vec<u8>,
    specversion: Option<&str>,
    ty: Option<&str>,
    source: &str,
    (prefix, number): (&str, u64),
    time: Ts,
) -> io::Result<()> {
    line.push(b'{');
    if let Some(specversion) = specversion {
        write!(line, r#""specversion":"{specversion}","#)?;
    }
    if let Some(ty) = ty {
        write!(line, r#""type":"{ty}","#)?;
    }
    write!(
        line,
        r#""source":"{source}","id":"{prefix}-{number}","time":"{}","data":"#,
        Rfc3339(time)
    )
}

/// `events.ndjson` while it is written: good events as the simulation emits them,
/// broken lines in between as they fall due.
pub(super) struct EventsWriter {
    file: BufWriter<File>,
    /// The line being built (reused).
    line: Vec<u8>,
    counts: GenFile,
    /// Business time of the last good event, also used for broken lines.
    last_time: Ts,
    broken: BrokenEvents,
}

impl EventsWriter {
    pub(super) fn create(path: &Path, opts: &GenOptions) -> io::Result<EventsWriter> {
        Ok(EventsWriter {
            file: create_file(path)?,
            line: Vec::with_capacity(1024),
            counts: GenFile::named(EVENTS_FILE),
            last_time: 0,
            broken: BrokenEvents::new(opts),
        })
    }

    /// Start a good event: the envelope is written, the returned object is `data`.
    /// Close it, then [`EventsWriter::commit`].
    pub(super) fn event(&mut self, ty: &str, source: &str, time: Ts) -> io::Result<JsonObject<'_>> {
        self.line.clear();
        let id = ("gen", self.counts.good + 1);
        open_event(&mut self.line, Some("1.0"), Some(ty), source, id, time)?;
        self.last_time = time;
        Ok(JsonObject::open(&mut self.line))
    }

    /// Write the event started with [`EventsWriter::event`], then any broken lines
    /// due.
    pub(super) fn commit(&mut self) -> io::Result<()> {
        self.line.extend_from_slice(b"}\n");
        self.file.write_all(&self.line)?;
        self.counts.good += 1;
        while self.broken.due(self.counts.broken(), self.counts.good) {
            self.write_broken()?;
        }
        Ok(())
    }

    fn write_broken(&mut self) -> io::Result<()> {
        let number = self.counts.broken() + 1;
        self.line.clear();
        let kind = self.broken.write(&mut self.line, number, self.last_time)?;
        self.line.push(b'\n');
        self.file.write_all(&self.line)?;
        if kind.rejected_at_load() {
            self.counts.bad_at_load += 1;
        } else {
            self.counts.bad_at_ingest += 1;
        }
        Ok(())
    }

    /// From now on broken lines may refer to the customer `index` (0-based).
    pub(super) fn customer_exists(&mut self, index: usize) {
        self.broken.customer_exists(index);
    }

    /// From now on broken lines may refer to the product `index` (0-based).
    pub(super) fn product_exists(&mut self, index: usize) {
        self.broken.product_exists(index);
    }

    pub(super) fn finish(mut self) -> io::Result<GenFile> {
        self.file.flush()?;
        Ok(self.counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let mut json = Vec::new();
        push_json_string(&mut json, "a\"b\\c\n\u{1}é");
        assert_eq!(json, "\"a\\\"b\\\\c\\n\\u0001é\"".as_bytes());
    }
}
