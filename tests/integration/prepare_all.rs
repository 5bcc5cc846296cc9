//! Every SQL statement written as a literal in the crate's source is prepared against
//! a freshly migrated database: a renamed column or table in rarely-run SQL (rebuild,
//! analyze, quality checks, the business vault refresh) fails here, not in
//! production. There is no compile-time checked SQL in this crate, so this is the net.
//!
//! The statements are found by reading `src/**/*.rs`: every string literal (plain or
//! raw) that begins with a statement keyword and holds no `format!` placeholder, each
//! statement of a literal that holds several, and every statement of the business
//! vault refresh (`src/load/business/*.sql`). Statements assembled with `format!` or
//! `concat!` (the API's listings, the loader's per-table writes and its read of the
//! log) are not seen here; the HTTP and loader tests run each of their shapes.

use std::fs;
use std::path::{Path, PathBuf};

use crate::harness::TestDb;

/// A statement and where it was found.
#[derive(Debug)]
struct Statement {
    at: String,
    sql: String,
}

/// Literals that read like statements and are not, by their text and why.
const NOT_STATEMENTS: &[(&str, &str)] = &[(
    "SELECT secret FROM t: relation does not exist",
    "an internal error's text in a unit test of src/api/error.rs",
)];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The string literals of Rust source `text`, each with its line and whether it is
/// the first argument of `concat!` (a fragment): plain ones with
/// their escapes resolved as far as SQL needs (`\n`, `\t`, `\"`, `\\`, and a
/// backslash at a line's end, which joins it to the next), raw ones as written.
/// Comments and character literals are skipped.
fn literals(text: &str) -> Vec<(usize, bool, String)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < b.len() {
        match b[i] {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    line += usize::from(b[i] == b'\n');
                    i += 1;
                }
                i += 2;
            }
            // a character literal ('"', '\''), not a lifetime ('a)
            b'\'' if b.get(i + 2) == Some(&b'\'') => i += 3,
            b'\'' if b.get(i + 1) == Some(&b'\\') => {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let start = j + 1;
                let close = format!("\"{}", "#".repeat(hashes));
                let end = text[start..].find(&close).map_or(b.len(), |k| start + k);
                let fragment = text[..i].trim_end().ends_with("concat!(");
                out.push((line, fragment, text[start..end].to_string()));
                line += text[start..end].matches('\n').count();
                i = end + close.len();
            }
            b'"' => {
                let at = line;
                let fragment = text[..i].trim_end().ends_with("concat!(");
                let mut s = String::new();
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        match b.get(i + 1) {
                            Some(b'n') => s.push('\n'),
                            Some(b't') => s.push('\t'),
                            Some(b'\n') => {
                                // a continued line: its leading blanks go too
                                line += 1;
                                i += 2;
                                while i < b.len() && b[i].is_ascii_whitespace() {
                                    line += usize::from(b[i] == b'\n');
                                    i += 1;
                                }
                                continue;
                            }
                            Some(&c) => s.push(c as char),
                            None => {}
                        }
                        i += 2;
                    } else {
                        line += usize::from(b[i] == b'\n');
                        let ch = text[i..].chars().next().unwrap_or(' ');
                        s.push(ch);
                        i += ch.len_utf8();
                    }
                }
                out.push((at, fragment, s));
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// The statements of `sql`: split at each `;` outside quotes ('...' and "...").
fn split_statements(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quote = None;
    let mut start = 0;
    for (i, c) in sql.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ';') => {
                out.push(sql[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(sql[start..].trim());
    out
}

/// A Rust literal that is a whole statement: one with a `format!` placeholder is
/// assembled at run time.
fn is_literal_statement(s: &str) -> bool {
    is_statement(s) && !s.contains('{')
}

/// Does `s` read as one SQL statement (and not as prose)?
fn is_statement(s: &str) -> bool {
    let t = s.trim_start();
    let first: String = t
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    let keyword = matches!(
        first.as_str(),
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "WITH"
    );
    // the keyword must be followed by SQL, not by prose ("Select a ...")
    keyword
        && t[first.len()..].starts_with(|c: char| c.is_whitespace())
        && t.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && t.split_whitespace().count() > 2
}

fn statements() -> Vec<Statement> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut out = Vec::new();
    let mut refresh: Vec<PathBuf> = fs::read_dir(root.join("src/load/business"))
        .expect("read src/load/business")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        // the key tables and settings (no statement to prepare): the test runs them
        .filter(|p| !p.ends_with("key_tables.sql"))
        .collect();
    refresh.sort();
    assert!(refresh.len() > 5, "the refresh's files: {refresh:?}");
    for path in refresh {
        let before = out.len();
        let text = fs::read_to_string(&path).expect("read a refresh file");
        let name = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        // without its comments (a comment may hold a ';' or a quote)
        let code: String = text
            .lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        for sql in split_statements(&code) {
            if is_statement(sql) {
                out.push(Statement {
                    at: name.clone(),
                    sql: sql.to_string(),
                });
            }
        }
        assert!(out.len() > before, "no statement found in {name}");
    }
    for path in files {
        let text = fs::read_to_string(&path).expect("read a source file");
        let name = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        for (line, fragment, s) in literals(&text) {
            let at = format!("{name}:{line}");
            if fragment || NOT_STATEMENTS.iter().any(|(text, _)| *text == s) {
                continue;
            }
            // a literal of several statements is prepared one by one
            for sql in split_statements(&s) {
                if is_literal_statement(sql) {
                    out.push(Statement {
                        at: at.clone(),
                        sql: sql.to_string(),
                    });
                }
            }
        }
    }
    out
}

#[test]
fn the_scanner_finds_plain_raw_and_continued_literals() {
    let text = "const A: &str = \"SELECT a\\n  FROM t\";\n// \"SELECT commented\"\n\
                let b = r#\"UPDATE \"x\" SET y = 1\"#;\nlet c = '\"';\n\
                let d = \"DELETE FROM t \\\n     WHERE k = $1\";\nlet e = format!(\"SELECT {x} FROM t\");\n\
                const F: &str = concat!(\"SELECT a FROM \", name!());";
    let found: Vec<(usize, bool, String)> = literals(text)
        .into_iter()
        .filter(|(_, _, s)| is_literal_statement(s))
        .collect();
    assert_eq!(
        found,
        [
            (1, false, "SELECT a\n  FROM t".to_string()),
            (3, false, "UPDATE \"x\" SET y = 1".to_string()),
            (5, false, "DELETE FROM t WHERE k = $1".to_string()),
            (8, true, "SELECT a FROM ".to_string()),
        ]
    );
}

#[test]
fn several_statements_split_at_semicolons_outside_quotes() {
    assert_eq!(
        split_statements("UPDATE t SET e = e || '; '; DELETE FROM \"a;b\"; "),
        ["UPDATE t SET e = e || '; '", "DELETE FROM \"a;b\"", ""]
    );
}

#[tokio::test]
async fn every_literal_statement_of_the_crate_prepares_against_the_schema() {
    let db = TestDb::new().await;
    let client = db.client().await;
    // the business vault refresh's key tables (its statements name them)
    client
        .batch_execute(dvault::load::business::KEY_TABLES)
        .await
        .expect("the key tables");
    let all = statements();
    assert!(
        all.len() > 135,
        "the scanner found only {} statements",
        all.len()
    );
    let mut failures = Vec::new();
    for s in &all {
        if let Err(e) = client.prepare(&s.sql).await {
            failures.push(format!(
                "{}: {}\n    {}",
                s.at,
                dvault::db::Shown(&e),
                first_line(&s.sql)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} statements do not prepare:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

fn first_line(sql: &str) -> &str {
    sql.lines().next().unwrap_or("")
}
