//! End-to-end tests: generate small data sets and read them back the way dvault
//! would. `contract` judges single lines; the other modules check whole files.

mod contract;
mod dirty;
mod history;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde_json::Value;

use super::{
    CUSTOMERS_FILE, EVENTS_FILE, GenFile, GenOptions, GenSummary, MANIFEST_FILE, PRODUCTS_FILE,
    TRANSACTIONS_FILE, generate,
};
use contract::good_events;

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("dvault-gen-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn options(out: &Path, dirty: f64) -> GenOptions {
    GenOptions {
        seed: 7,
        customers: 300,
        products: 60,
        orders: 1500,
        days: 150,
        end: NaiveDate::from_ymd_opt(2024, 12, 31).expect("valid date"),
        dirty,
        out: out.to_path_buf(),
    }
}

fn run(opts: &GenOptions) -> GenSummary {
    generate(opts).expect("generate")
}

fn file_counts<'a>(summary: &'a GenSummary, name: &str) -> &'a GenFile {
    summary
        .files
        .iter()
        .find(|f| f.path.file_name().is_some_and(|n| n == name))
        .unwrap_or_else(|| panic!("{name} not in the summary"))
}

fn read_lines(path: &Path) -> Vec<Vec<u8>> {
    let bytes = fs::read(path).expect("read file");
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn same_options_give_the_same_bytes() {
    let (a, b, c) = (
        TempDir::new("det-a"),
        TempDir::new("det-b"),
        TempDir::new("det-c"),
    );
    run(&options(&a.0, 0.05));
    run(&options(&b.0, 0.05));
    for name in [
        EVENTS_FILE,
        CUSTOMERS_FILE,
        PRODUCTS_FILE,
        TRANSACTIONS_FILE,
        MANIFEST_FILE,
    ] {
        let left = fs::read(a.0.join(name)).expect("read");
        let right = fs::read(b.0.join(name)).expect("read");
        assert!(left == right, "{name} differs between two runs");
    }
    run(&GenOptions {
        seed: 8,
        ..options(&c.0, 0.05)
    });
    let other = fs::read(c.0.join(EVENTS_FILE)).expect("read");
    assert!(other != fs::read(a.0.join(EVENTS_FILE)).expect("read"));
}

#[test]
fn the_manifest_matches_the_files() {
    let dir = TempDir::new("manifest");
    let summary = run(&options(&dir.0, 0.1));
    let manifest: Value =
        serde_json::from_slice(&fs::read(dir.0.join(MANIFEST_FILE)).expect("manifest"))
            .expect("JSON");
    let listed = manifest["files"].as_array().expect("files");
    assert_eq!(listed.len(), 4);
    for (entry, file) in listed.iter().zip(&summary.files) {
        let name = entry["path"].as_str().expect("path");
        assert_eq!(file.path, dir.0.join(name));
        for (key, value) in [
            ("good", file.good),
            ("bad_at_ingest", file.bad_at_ingest),
            ("bad_at_load", file.bad_at_load),
        ] {
            assert_eq!(entry[key].as_u64(), Some(value), "{name} {key}");
        }
        let header = u64::from(name.ends_with(".csv"));
        let lines = read_lines(&file.path).len() as u64 - header;
        assert_eq!(
            lines,
            file.good + file.bad_at_ingest + file.bad_at_load,
            "{name}"
        );
    }
}

#[test]
fn bad_options_are_refused() {
    let dir = TempDir::new("refused");
    let base = options(&dir.0, 0.0);
    for opts in [
        GenOptions {
            days: 0,
            ..base.clone()
        },
        GenOptions {
            dirty: 1.5,
            ..base.clone()
        },
        GenOptions {
            dirty: f64::NAN,
            ..base.clone()
        },
        GenOptions {
            customers: 0,
            ..base.clone()
        },
        GenOptions {
            days: u32::MAX,
            ..base.clone()
        },
    ] {
        let err = generate(&opts).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }
    assert!(!dir.0.exists(), "nothing written for bad options");
}

#[test]
fn tiny_worlds_work() {
    let dir = TempDir::new("tiny");
    let summary = run(&GenOptions {
        customers: 1,
        products: 1,
        orders: 3,
        days: 1,
        ..options(&dir.0, 0.0)
    });
    assert!(file_counts(&summary, EVENTS_FILE).good >= 5);
    good_events(&dir.0.join(EVENTS_FILE));
    let empty = TempDir::new("empty");
    let summary = run(&GenOptions {
        customers: 0,
        products: 0,
        orders: 0,
        ..options(&empty.0, 0.5)
    });
    assert!(summary.files.iter().all(|f| f.good + f.bad_at_ingest == 0));
}
