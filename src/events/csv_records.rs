//! RFC 4180 records from a byte stream, for CSV ingest.
//!
//! Strict where the `csv` crate guesses: a record that breaks the quoting rules is
//! refused, not silently rewritten, and a quote that is never closed does not swallow
//! the rest of the file. Lenient where it is safe: `\n`, `\r\n` and a lone `\r` all end
//! a line (and are counted as one, so rejections name the right line), a UTF-8 BOM is
//! skipped, blank lines are no records, a `"` inside an unquoted field is kept as is.
//!
//! A malformed record that spans several physical lines is refused for its first line
//! only, and reading goes on from the second: the rows a stray quote pulled into it are
//! read again on their own.

use std::io::{self, BufRead};

const BOM: &[u8] = b"\xef\xbb\xbf";

/// One record: its fields and the bytes it was read from.
#[derive(Debug, Default)]
pub struct Record {
    /// Physical line the record starts on (1-based).
    pub line: u64,
    data: Vec<u8>,
    ends: Vec<usize>,
    raw: Vec<u8>,
}

impl Record {
    pub fn fields(&self) -> Vec<&[u8]> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let f = &self.data[start..end];
                start = end;
                f
            })
            .collect()
    }

    /// The record as it stands in the file, without its line ending.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }
}

/// A record that breaks the quoting rules: the line it starts on, what is wrong, and
/// the bytes refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    pub line: u64,
    pub reason: String,
    pub raw: Vec<u8>,
}

/// What reading a record found besides its fields: where it ended (`state`, at the
/// end of the input or not, and the line break that ended it), where a quoted field
/// opened, the first line break inside a quoted field (start and end in `raw`), and
/// a broken quoting rule.
struct Scan {
    state: State,
    quote_column: usize,
    first_break: Option<(usize, usize)>,
    stray_quote: Option<usize>,
    at_eof: bool,
    terminator: &'static [u8],
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    AfterQuote,
}

/// Reads [`Record`]s one at a time.
pub struct Records<R> {
    input: R,
    /// Bytes given back after a malformed multi-line record, read before `input`.
    pending: Vec<u8>,
    pending_pos: usize,
    /// The physical line being read (1-based).
    line: u64,
    /// Bytes taken from `input`.
    consumed: u64,
    started: bool,
    expected: Option<usize>,
}

impl<R: BufRead> Records<R> {
    pub fn new(input: R) -> Self {
        Records {
            input,
            pending: Vec::new(),
            pending_pos: 0,
            line: 1,
            consumed: 0,
            started: false,
            expected: None,
        }
    }

    /// The number of fields a row should have (the header's): a multi-line record with
    /// another number is taken for a quoting mistake (see the module docs).
    pub fn expect_fields(&mut self, n: usize) {
        self.expected = Some(n);
    }

    /// Bytes of the input read so far.
    pub fn position(&self) -> u64 {
        self.consumed
    }

    fn next_byte(&mut self) -> io::Result<Option<u8>> {
        if let Some(&b) = self.pending.get(self.pending_pos) {
            self.pending_pos += 1;
            return Ok(Some(b));
        }
        let b = self.input.fill_buf()?.first().copied();
        if b.is_some() {
            self.input.consume(1);
            self.consumed += 1;
        }
        Ok(b)
    }

    fn peek_byte(&mut self) -> io::Result<Option<u8>> {
        if let Some(&b) = self.pending.get(self.pending_pos) {
            return Ok(Some(b));
        }
        Ok(self.input.fill_buf()?.first().copied())
    }

    /// After a `\r`: take the `\n` of a `\r\n`. Returns the bytes of the line ending.
    fn line_end(&mut self, b: u8) -> io::Result<&'static [u8]> {
        self.line += 1;
        if b == b'\r' && self.peek_byte()? == Some(b'\n') {
            self.next_byte()?;
            return Ok(b"\r\n");
        }
        Ok(if b == b'\r' { b"\r" } else { b"\n" })
    }

    /// The next record (blank lines skipped), a malformed one, or `None` at the end.
    pub fn next_record(&mut self, rec: &mut Record) -> io::Result<Option<Result<(), Malformed>>> {
        if !self.started {
            self.started = true;
            if self.input.fill_buf()?.starts_with(BOM) {
                self.input.consume(BOM.len());
                self.consumed += BOM.len() as u64;
            }
        }
        loop {
            match self.read_one(rec)? {
                None => return Ok(None),
                Some(Ok(())) if rec.raw.is_empty() => continue,
                Some(r) => return Ok(Some(r)),
            }
        }
    }

    /// Copy the run of ordinary bytes (no comma, quote or line break) at the read
    /// position into `rec`, straight from the input's buffer; false when there is none
    /// there (a special byte next, bytes read again pending, or the end).
    fn take_run(&mut self, rec: &mut Record) -> io::Result<bool> {
        if self.pending_pos < self.pending.len() {
            return Ok(false);
        }
        let buf = self.input.fill_buf()?;
        let n = buf
            .iter()
            .position(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
            .unwrap_or(buf.len());
        if n == 0 {
            return Ok(false);
        }
        rec.data.extend_from_slice(&buf[..n]);
        rec.raw.extend_from_slice(&buf[..n]);
        self.input.consume(n);
        self.consumed += n as u64;
        Ok(true)
    }

    fn read_one(&mut self, rec: &mut Record) -> io::Result<Option<Result<(), Malformed>>> {
        rec.line = self.line;
        rec.data.clear();
        rec.ends.clear();
        rec.raw.clear();
        let mut scan = Scan {
            state: State::FieldStart,
            quote_column: 0,
            first_break: None,
            stray_quote: None,
            at_eof: false,
            terminator: b"",
        };
        loop {
            // fast path: a run of ordinary bytes inside a field, straight from the buffer
            if matches!(scan.state, State::Unquoted | State::Quoted) && self.take_run(rec)? {
                continue;
            }
            let Some(b) = self.next_byte()? else {
                scan.at_eof = true;
                break;
            };
            match (scan.state, b) {
                (State::Quoted, b'"') => scan.state = State::AfterQuote,
                (State::Quoted, b'\n' | b'\r') => {
                    let start = rec.raw.len();
                    let ending = self.line_end(b)?;
                    rec.raw.extend_from_slice(ending);
                    rec.data.extend_from_slice(ending);
                    scan.first_break.get_or_insert((start, rec.raw.len()));
                    continue;
                }
                (State::Quoted, _) => rec.data.push(b),
                (State::AfterQuote, b'"') => {
                    rec.data.push(b'"');
                    scan.state = State::Quoted;
                }
                (State::FieldStart, b'"') => {
                    scan.quote_column = rec.ends.len() + 1;
                    scan.state = State::Quoted;
                }
                (_, b',') => {
                    rec.ends.push(rec.data.len());
                    scan.state = State::FieldStart;
                }
                (_, b'\n' | b'\r') => {
                    scan.terminator = self.line_end(b)?;
                    break;
                }
                (State::AfterQuote, _) => {
                    scan.stray_quote.get_or_insert(rec.ends.len() + 1);
                    rec.data.push(b);
                    scan.state = State::Unquoted;
                }
                (State::FieldStart | State::Unquoted, _) => {
                    rec.data.push(b);
                    scan.state = State::Unquoted;
                }
            }
            rec.raw.push(b);
        }
        if scan.at_eof && rec.raw.is_empty() && scan.first_break.is_none() {
            return Ok(None);
        }
        rec.ends.push(rec.data.len());
        Ok(Some(self.verdict(rec, &scan)))
    }

    /// A record read whole: good, or refused with why. A record that a quoted line
    /// break made run on is refused on its first line only, and the lines after it
    /// are read again.
    fn verdict(&mut self, rec: &mut Record, scan: &Scan) -> Result<(), Malformed> {
        let Scan {
            state,
            quote_column,
            first_break,
            stray_quote,
            at_eof,
            terminator,
        } = *scan;
        let problem = if state == State::Quoted && at_eof {
            Some(format!(
                "column {quote_column}: the quoted field opened on this line is never closed (a missing quote?)"
            ))
        } else if let Some(column) = stray_quote {
            Some(format!(
                "column {column}: a quote inside a quoted field must be doubled (\"\")"
            ))
        } else {
            match (first_break, self.expected) {
                (Some(_), Some(n)) if n != rec.ends.len() => Some(format!(
                    "a quoted field opened on this line runs to line {} and leaves the row with {} column(s), expected {n} (a missing or extra quote?)",
                    self.line - u64::from(!at_eof),
                    rec.ends.len()
                )),
                _ => None,
            }
        };
        let Some(reason) = problem else {
            return Ok(());
        };
        let raw = match first_break {
            // refuse the first line only; read the others again
            Some((start, end)) => {
                let mut rest = rec.raw.split_off(end);
                rest.extend_from_slice(terminator);
                rec.raw.truncate(start);
                rest.extend_from_slice(&self.pending[self.pending_pos..]);
                self.pending = rest;
                self.pending_pos = 0;
                self.line = rec.line + 1;
                std::mem::take(&mut rec.raw)
            }
            None => std::mem::take(&mut rec.raw),
        };
        Err(Malformed {
            line: rec.line,
            reason,
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record of `input` as (line, fields) or (line, reason, raw).
    fn read(input: &[u8], expected: Option<usize>) -> Vec<Result<(u64, Vec<String>), Malformed>> {
        let mut r = Records::new(input);
        if let Some(n) = expected {
            r.expect_fields(n);
        }
        let mut rec = Record::default();
        let mut out = Vec::new();
        while let Some(item) = r.next_record(&mut rec).expect("in-memory read") {
            out.push(item.map(|()| {
                (
                    rec.line,
                    rec.fields()
                        .iter()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect(),
                )
            }));
        }
        out
    }

    fn ok(line: u64, fields: &[&str]) -> Result<(u64, Vec<String>), Malformed> {
        Ok((line, fields.iter().map(|f| f.to_string()).collect()))
    }

    #[test]
    fn every_line_ending_counts_once() {
        let got = read(b"\xef\xbb\xbfa,b\rc,d\r\ne,f\ng,h\r\r\n\"i\ri\",j", None);
        assert_eq!(
            got,
            [
                ok(1, &["a", "b"]),
                ok(2, &["c", "d"]),
                ok(3, &["e", "f"]),
                ok(4, &["g", "h"]),
                ok(6, &["i\ri", "j"]),
            ]
        );
    }

    #[test]
    fn quoting_by_the_rules() {
        let got = read(
            b"\"a \"\"b\"\", c\",\"\",x\n5\" screen,\"multi\r\nline\",y\n,,\n",
            Some(3),
        );
        assert_eq!(
            got,
            [
                ok(1, &["a \"b\", c", "", "x"]),
                ok(2, &["5\" screen", "multi\r\nline", "y"]),
                ok(4, &["", "", ""]),
            ]
        );
    }

    #[test]
    fn a_stray_quote_in_a_quoted_field_refuses_that_line() {
        let got = read(b"\"Ann \"Annie\" Smith\",x\nc,d\n", Some(2));
        let Err(m) = &got[0] else {
            panic!("accepted: {got:?}")
        };
        assert_eq!(m.line, 1);
        assert!(
            m.reason
                .contains("column 1: a quote inside a quoted field must be doubled")
        );
        assert_eq!(m.raw, b"\"Ann \"Annie\" Smith\",x");
        assert_eq!(got[1], ok(2, &["c", "d"]));
    }

    #[test]
    fn an_unclosed_quote_does_not_swallow_the_rest() {
        let got = read(b"a,b\n\"Ann,x\nc,d\r\ne,f", Some(2));
        assert_eq!(got[0], ok(1, &["a", "b"]));
        let Err(m) = &got[1] else {
            panic!("accepted: {got:?}")
        };
        assert_eq!((m.line, m.raw.as_slice()), (2, &b"\"Ann,x"[..]));
        assert!(m.reason.contains("never closed"), "{}", m.reason);
        assert_eq!(got[2..], [ok(3, &["c", "d"]), ok(4, &["e", "f"])]);

        // closed much later by another stray quote: the rows between are kept
        let got = read(b"1,\"Ann\n2,Bob\n3,\"Cy\"\n", Some(2));
        let Err(m) = &got[0] else {
            panic!("accepted: {got:?}")
        };
        assert_eq!(m.line, 1);
        assert!(m.reason.contains("must be doubled"), "{}", m.reason);
        assert_eq!(got[1..], [ok(2, &["2", "Bob"]), ok(3, &["3", "Cy"])]);

        // closed by the quote of a later line, leaving the wrong number of columns
        let got = read(b"1,\"Ann,x\n2,Bob,y\n3,Cy\"\n4,Dan,z\n", Some(3));
        let Err(m) = &got[0] else {
            panic!("accepted: {got:?}")
        };
        assert_eq!((m.line, m.raw.as_slice()), (1, &b"1,\"Ann,x"[..]));
        assert!(m.reason.contains("runs to line 3"), "{}", m.reason);
        assert!(m.reason.contains("2 column(s), expected 3"), "{}", m.reason);
        assert_eq!(
            got[1..],
            [
                ok(2, &["2", "Bob", "y"]),
                ok(3, &["3", "Cy\""]),
                ok(4, &["4", "Dan", "z"])
            ]
        );

        // the last line, unclosed and without a newline
        let got = read(b"1,\"Ann", Some(2));
        let Err(m) = &got[0] else {
            panic!("accepted: {got:?}")
        };
        assert_eq!((m.line, m.raw.as_slice()), (1, &b"1,\"Ann"[..]));
    }
}
