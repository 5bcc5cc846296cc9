//! The README's and docs/'s commands run as written (issue 17). Every ```sh block of
//! README.md and docs/*.md is one of three kinds, said by an HTML comment on the line
//! before its fence:
//!
//! - no marker: run here, by bash, from a directory holding `dvault gen`'s sample files
//!   (`events.ndjson`, `customers.csv`, ...), with `dvault` on PATH and DATABASE_URL a
//!   fresh database (loaded with the sample data, except for the README's, whose blocks
//!   load it themselves). Such a block may only call the commands of [`SAFE`]: one that
//!   calls anything else fails the test until it is classified;
//! - `<!-- doc-test: skip: REASON -->`: not runnable here (systemd, docker, installs, a
//!   deployment's host names, long builds);
//! - `<!-- doc-test: elsewhere: TEST -->`: run as written by another test.
//!
//! Every `dvault` invocation of a block not run here is parsed by dvault's real command
//! line ([`Cli`]), so a removed subcommand or a renamed flag fails even in a block that
//! cannot run; the plain read-only ones (`dvault status`, `runs`, `rejected`, `check`)
//! also run, on a database loaded with the sample data. The invocations are found by
//! bash itself, reading the block with an empty PATH: every command is a no-op that
//! only records its name, except `dvault` (and `cargo run -- ARGS`, `docker compose
//! exec SERVICE dvault ARGS`), whose arguments are recorded. (A block run here needs no
//! such parse: running it is the check, with the values its commands really compute.)
//!
//! Running a block as written, three things are arranged: a `dvault serve` or `dvault
//! daemon` (not `--once`) goes to the background until the block's end or the next one
//! of its kind, and the block goes on once it listens; the documented ports (8080,
//! 9187) become free ones, so that tests run side by side; `curl` fails on an HTTP
//! error, so an example that answers 4xx fails. A block that talks to port 8080 without
//! starting a server talks to one the test starts (keys: read `$READ_TOKEN`, write
//! `$TOKEN`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use sha2::{Digest, Sha256};

use dvault::cli::Cli;

use crate::harness::TestDb;

/// What a block without a marker may call besides `dvault` and bash's builtins.
const SAFE: [&str; 8] = [
    "curl",
    "jq",
    "openssl",
    "sha256sum",
    "cut",
    "sort",
    "head",
    "tail",
];

/// `dvault` subcommands a block without a marker may not call: the demo (minutes, and
/// a server), the private server, Kafka.
const NOT_HERE: [&str; 3] = ["demo", "local", "stream"];

/// Subcommands that only read, run (with no arguments) wherever a block not run here
/// has them.
const READ_ONLY: [&str; 4] = ["status", "runs", "rejected", "check"];

const TOKEN: &str = "doc-test-write-token";
const READ_TOKEN: &str = "doc-test-read-token";
const OTHER_TOKEN: &str = "doc-test-other-token";

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Run,
    Skip(String),
    Elsewhere(String),
}

#[derive(Debug, Clone)]
struct Block {
    /// `docs/api.md:7`: the file and the line of the fence.
    at: String,
    file: String,
    kind: Kind,
    script: String,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The ```sh blocks of README.md and docs/*.md, in file order.
fn blocks() -> Vec<Block> {
    let mut files = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read");
        let file = path
            .strip_prefix(repo())
            .expect("in the repo")
            .display()
            .to_string();
        out.extend(blocks_of(&file, &text));
    }
    out
}

fn blocks_of(file: &str, text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let fence = lines[i].trim_start();
        let lang = fence.strip_prefix("```").map(str::trim);
        if !matches!(lang, Some("sh" | "bash" | "shell")) {
            // another block's body is not looked into
            if lang.is_some() {
                i += 1;
                while i < lines.len() && !lines[i].trim_start().starts_with("```") {
                    i += 1;
                }
            }
            i += 1;
            continue;
        }
        let marker = lines[..i]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim())
            .unwrap_or("");
        let kind = if let Some(m) = marker
            .strip_prefix("<!-- doc-test:")
            .and_then(|m| m.strip_suffix("-->"))
        {
            let m = m.trim();
            if let Some(reason) = m.strip_prefix("skip:") {
                Kind::Skip(reason.trim().to_string())
            } else if let Some(by) = m.strip_prefix("elsewhere:") {
                Kind::Elsewhere(by.trim().to_string())
            } else {
                panic!("{file}:{}: unknown doc-test marker {marker}", i + 1);
            }
        } else {
            Kind::Run
        };
        let start = i;
        let mut script = String::new();
        i += 1;
        while i < lines.len() && !lines[i].trim_start().starts_with("```") {
            script.push_str(lines[i]);
            script.push('\n');
            i += 1;
        }
        out.push(Block {
            at: format!("{file}:{}", start + 1),
            file: file.to_string(),
            kind,
            script,
        });
        i += 1;
    }
    out
}

/// What bash met reading a block with every command a no-op.
#[derive(Debug, Default)]
struct Dry {
    /// The commands it would have run (not bash's builtins, not `dvault`).
    commands: BTreeSet<String>,
    /// Each `dvault` invocation's arguments.
    dvault: Vec<Vec<String>>,
}

const DRY_PRELUDE: &str = r##"
PATH=/nonexistent
dvault() { printf '%s\0' "$@" > "$DOC_RECORD/dvault.$BASHPID.$((++DOC_N))"; }
command_not_found_handle() {
    printf '%s\n' "$1" >> "$DOC_RECORD/commands"
    if [ "$1" = cargo ] && [ "$2" = run ]; then
        shift 2
        while [ $# -gt 0 ] && [ "$1" != -- ]; do shift; done
        if [ $# -gt 0 ]; then shift; dvault "$@"; fi
    elif [ "$1 $2 $3 $5" = "docker compose exec dvault" ]; then
        shift 5
        dvault "$@"
    fi
    return 0
}
# What an empty PATH does not stop is not run either (extdebug: a DEBUG trap that
# fails skips the command): a command named by its path, a new PATH, a redirection to
# an absolute path, exec, eval, source. Each is recorded as a command, so that a block
# to run that has one fails to classify.
doc_guard() {
    case "${FUNCNAME[1]:-}" in dvault | command_not_found_handle) return 0 ;; esac
    local what=""
    case "${BASH_COMMAND%%[[:space:]]*}" in
    */* | exec | eval | source | . | builtin | enable) what=${BASH_COMMAND%%[[:space:]]*} ;;
    esac
    case "$BASH_COMMAND" in
    *PATH=*) what="PATH=" ;;
    *">/"* | *"> /"*) what="redirection" ;;
    esac
    [ -n "$what" ] || return 0
    printf '%s\n' "$what" >> "$DOC_RECORD/commands"
    return 1
}
shopt -s extdebug
trap doc_guard DEBUG
"##;

fn dry_run(block: &Block, scratch: &Path) -> Dry {
    let record = scratch.join(format!("dry-{}", block.at.replace(['/', ':', '.'], "-")));
    let _ = std::fs::remove_dir_all(&record);
    std::fs::create_dir_all(&record).expect("mkdir");
    let script = format!("{DRY_PRELUDE}\n{}\nwait\n", block.script);
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(&record)
        .env_clear()
        .env("DOC_RECORD", &record)
        .env("HOME", &record)
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    // a syntax error leaves the rest unread: the block is broken as written
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("syntax error"),
        "{}: bash cannot read the block: {stderr}",
        block.at
    );
    let mut dry = Dry::default();
    for entry in std::fs::read_dir(&record).expect("read record") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(&path).expect("read");
        if name == "commands" {
            dry.commands.extend(text.lines().map(str::to_string));
        } else if name.starts_with("dvault.") {
            let mut args: Vec<String> = text.split('\0').map(str::to_string).collect();
            args.pop(); // after the last NUL
            dry.dvault.push(args);
        }
    }
    dry
}

/// A scratch directory, removed when the test passes.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let p = std::env::temp_dir().join(format!("dvault-doc-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&p).expect("mkdir");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[test]
fn every_block_is_classified_and_every_dvault_command_in_it_parses() {
    let scratch = Scratch::new();
    let blocks = blocks();
    assert!(
        blocks.len() >= 20,
        "found only {} sh blocks: is the extraction broken?",
        blocks.len()
    );
    let mut parsed = 0;
    let mut failures = Vec::new();
    for block in &blocks {
        let dry = dry_run(block, &scratch.0);
        if block.kind == Kind::Run {
            let unsafe_commands: Vec<&String> = dry
                .commands
                .iter()
                .filter(|c| !SAFE.contains(&c.as_str()))
                .collect();
            if !unsafe_commands.is_empty() {
                failures.push(format!(
                    "{}: runs {unsafe_commands:?}, which this test does not run: mark the \
                     block `<!-- doc-test: skip: WHY -->` (or make the command safe here)",
                    block.at
                ));
            }
            for args in &dry.dvault {
                if let Some(sub) = args.iter().find(|a| NOT_HERE.contains(&a.as_str())) {
                    failures.push(format!(
                        "{}: `dvault {sub}` cannot run here: mark the block \
                         `<!-- doc-test: skip: WHY -->`",
                        block.at
                    ));
                }
            }
            continue;
        }
        for args in &dry.dvault {
            parsed += 1;
            let argv = std::iter::once("dvault".to_string()).chain(args.iter().cloned());
            if let Err(e) = Cli::try_parse_from(argv) {
                failures.push(format!(
                    "{}: `dvault {}` does not parse: {}",
                    block.at,
                    args.join(" "),
                    e.render()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        parsed >= 15,
        "only {parsed} dvault invocations found: is the dry run broken?"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn digest(token: &str) -> String {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    hex::encode(digest)
}

fn dvault_bin() -> &'static str {
    env!("CARGO_BIN_EXE_dvault")
}

/// A process killed when dropped.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the test's server exited: {status}");
        }
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn dvault(dir: &Path, url: &str, args: &[&str]) -> Output {
    let out = Command::new(dvault_bin())
        .args(args)
        .current_dir(dir)
        .env("DATABASE_URL", url)
        .env_remove("DVAULT_MAPPINGS")
        .output()
        .expect("dvault");
    assert!(
        out.status.success(),
        "dvault {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const RUN_PRELUDE: &str = r#"
set -euo pipefail
# the servers the block started, by kind (serve, daemon): a second one of a kind
# replaces the first, as a reader would stop one before starting the other
declare -A doc_pid=()
doc_stop() {
    local p=${doc_pid[$1]:-}
    [ -n "$p" ] || return 0
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    unset 'doc_pid[$1]'
}
doc_stop_all() { doc_stop serve; doc_stop daemon; }
trap doc_stop_all EXIT
# until something listens on port $2 (when given) while process $1 lives
doc_ready() {
    local i
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$1" 2>/dev/null; then
            echo "doc-test: the server exited" >&2
            return 1
        fi
        if [ -z "$2" ]; then
            [ "$i" -lt 20 ] || return 0
        elif (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "doc-test: nothing listens on port $2 after 30 s" >&2
    return 1
}
dvault() {
    local kind="" port=""
    case " $* " in
    *" --once "*) ;;
    *" serve "*) kind=serve port=$DOC_PORT ;;
    *" daemon "*)
        kind=daemon
        case " $* " in *" --metrics-listen "*) port=$DOC_METRICS_PORT ;; esac
        ;;
    esac
    if [ -z "$kind" ]; then
        command dvault "$@"
        return
    fi
    doc_stop "$kind"
    command dvault "$@" &
    doc_pid[$kind]=$!
    doc_ready "$!" "$port"
}
curl() { command curl --fail-with-body --no-progress-meter "$@"; }
"#;

#[tokio::test]
async fn the_docs_runnable_blocks_run_as_written() {
    let scratch = Scratch::new();
    let data = scratch.0.join("data");
    let gen_args = [
        "gen",
        "--out",
        "data",
        "--customers",
        "300",
        "--products",
        "60",
        "--orders",
        "600",
    ];
    let status = Command::new(dvault_bin())
        .args(gen_args)
        .current_dir(&scratch.0)
        .output()
        .expect("dvault gen");
    assert!(status.status.success(), "dvault gen: {status:?}");

    let bin_dir = Path::new(dvault_bin()).parent().expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let blocks = blocks();
    let files: Vec<String> = blocks
        .iter()
        .filter(|b| b.kind == Kind::Run)
        .map(|b| b.file.clone())
        .fold(Vec::new(), |mut v, f| {
            if !v.contains(&f) {
                v.push(f);
            }
            v
        });
    let mut ran = 0;
    for file in &files {
        let db = TestDb::new().await;
        if file != "README.md" {
            // the README's blocks load the sample data themselves
            dvault(&data, &db.url, &["ingest", "events.ndjson"]);
            dvault(&data, &db.url, &["load"]);
        }
        // the server a block talks to when it starts none (the docs' "with dvault
        // serve on port 8080")
        let ambient_port = free_port();
        let mut ambient = Background(
            Command::new(dvault_bin())
                .args(["serve", "--listen", &format!("127.0.0.1:{ambient_port}")])
                .env("DATABASE_URL", &db.url)
                .env(
                    "DVAULT_API_KEYS",
                    format!("read:{},write:{}", digest(READ_TOKEN), digest(TOKEN)),
                )
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("dvault serve"),
        );
        wait_listening(ambient_port, &mut ambient.0);

        for block in blocks
            .iter()
            .filter(|b| &b.file == file && b.kind == Kind::Run)
        {
            // a block that starts its own API server gets its own port
            let serves = dry_run(block, &scratch.0)
                .dvault
                .iter()
                .any(|args| args.iter().any(|a| a == "serve"));
            let port = if serves { free_port() } else { ambient_port };
            let metrics_port = free_port();
            let script = block
                .script
                .replace(":8080", &format!(":{port}"))
                .replace(":9187", &format!(":{metrics_port}"));
            let run = Command::new("bash")
                .args(["-c", &format!("{RUN_PRELUDE}\n{script}")])
                .current_dir(&data)
                .env("PATH", &path)
                .env("DATABASE_URL", &db.url)
                .env("DVAULT_HOME", scratch.0.join(".dvault"))
                .env("DVAULT_LISTEN", format!("127.0.0.1:{port}"))
                .env("DOC_PORT", port.to_string())
                .env("DOC_METRICS_PORT", metrics_port.to_string())
                .env("TOKEN", TOKEN)
                .env("READ_TOKEN", READ_TOKEN)
                .env("OTHER_DIGEST", digest(OTHER_TOKEN))
                .env_remove("DVAULT_MAPPINGS")
                .env_remove("DVAULT_API_KEYS")
                .stdin(Stdio::null())
                .output()
                .expect("bash");
            assert!(
                run.status.success(),
                "{} failed ({}):\n{}\n--- stdout\n{}\n--- stderr\n{}",
                block.at,
                run.status,
                block.script,
                String::from_utf8_lossy(&run.stdout),
                String::from_utf8_lossy(&run.stderr)
            );
            ran += 1;
        }
        drop(ambient);
    }
    assert!(ran >= 6, "only {ran} blocks ran: are the markers right?");

    // the cheap, read-only commands of the blocks not run here (`docker compose exec
    // daemon dvault runs`, ...) run too, on the sample data: more than a parse
    let db = TestDb::new().await;
    dvault(&data, &db.url, &["ingest", "events.ndjson"]);
    dvault(&data, &db.url, &["load"]);
    let mut read_only = 0;
    for block in blocks.iter().filter(|b| b.kind != Kind::Run) {
        for args in dry_run(block, &scratch.0).dvault {
            if args.len() == 1 && READ_ONLY.contains(&args[0].as_str()) {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                dvault(&data, &db.url, &args);
                read_only += 1;
            }
        }
    }
    assert!(read_only >= 3, "only {read_only} read-only commands ran");
}
