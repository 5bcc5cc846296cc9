//! Test harness: each test gets its own database, cloned from a migrated template.
//!
//! The server is `DATABASE_URL` when set, else a private server (the same code as
//! `dvault` uses) under the cargo target directory, started once and shared by all
//! test processes. A test's database is dropped when the test passes and kept (its
//! name printed) when it fails.

use std::sync::atomic::{AtomicU32, Ordering};

use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use dvault::db;

static SERVER: OnceCell<String> = OnceCell::const_new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The server's admin URL (database `postgres`).
async fn server() -> &'static str {
    SERVER
        .get_or_init(|| async {
            match std::env::var("DATABASE_URL") {
                Ok(url) if !url.is_empty() => with_dbname(&url, "postgres"),
                _ => {
                    let home = private_home();
                    let shown = home.display().to_string();
                    let was_running = db::local::is_running(&home);
                    let server =
                        tokio::task::spawn_blocking(move || db::local::ensure_running(&home))
                            .await
                            .expect("join")
                            .expect("start the private test server");
                    let keep = std::env::var_os("DVAULT_TEST_KEEP_SERVER").is_some();
                    // written to the process's stderr, past the test harness's output
                    // capture: the user should know what runs and for how long
                    let fate = if was_running || keep {
                        format!(
                            "which keeps running after them; stop it with \
                             `DVAULT_HOME={shown} cargo run -- local stop`"
                        )
                    } else {
                        // SAFETY: registers a plain extern "C" function, once
                        unsafe { libc::atexit(stop_private_server) };
                        "which they stop when they end (DVAULT_TEST_KEEP_SERVER=1 keeps it \
                         running, for faster runs after this one)"
                            .to_string()
                    };
                    use std::io::Write as _;
                    let _ = writeln!(
                        std::io::stderr(),
                        "\nnote: the tests run on a private PostgreSQL ({}), {fate}\n",
                        server.url("postgres")
                    );
                    server.url("postgres")
                }
            }
        })
        .await
}

/// Where the tests' private server lives (under the cargo target directory).
fn private_home() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dvault")
}

/// At the test process's exit: stop the private server it started.
extern "C" fn stop_private_server() {
    if let Err(e) = db::local::stop(&private_home()) {
        eprintln!("note: could not stop the tests' private PostgreSQL: {e}");
    }
}

/// `url` pointing at database `name` (URL or key=value form).
pub fn with_dbname(url: &str, name: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = match url.find('?') {
            Some(i) => (&url[..i], &url[i..]),
            None => (url, ""),
        };
        let scheme_end = base.find("://").map_or(0, |i| i + 3);
        let host_end = base[scheme_end..]
            .find('/')
            .map_or(base.len(), |i| scheme_end + i);
        format!("{}/{name}{query}", &base[..host_end])
    } else {
        let kept: Vec<&str> = url
            .split_whitespace()
            .filter(|kv| !kv.starts_with("dbname="))
            .collect();
        format!("{} dbname={name}", kept.join(" "))
    }
}

/// Name of the template for this version of the schema and views.
fn template_name() -> String {
    let mut h = Sha256::new();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files: Vec<_> = std::fs::read_dir(format!("{root}/vault/schema"))
        .expect("vault/schema")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        h.update(std::fs::read(&f).expect("read migration"));
    }
    for (name, sql) in db::VIEWS {
        h.update(name.as_bytes());
        h.update(sql.as_bytes());
    }
    format!("dvault_tpl_{}", &hex::encode(h.finalize())[..12])
}

async fn ensure_template(admin: &Client) -> String {
    let name = template_name();
    admin
        .execute("SELECT pg_advisory_lock(7362510)", &[])
        .await
        .expect("lock");
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("query")
        .is_some();
    if !exists {
        let building = format!("{name}_building");
        for sql in [
            format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
            format!(
                "CREATE DATABASE {building} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8'"
            ),
        ] {
            admin.batch_execute(&sql).await.expect("create template");
        }
        {
            let mut client = db::connect(&with_dbname(server().await, &building))
                .await
                .expect("connect to template");
            db::migrate(&mut client).await.expect("migrate template");
        }
        rename_when_free(admin, &building, &name).await;
    }
    admin
        .execute("SELECT pg_advisory_unlock(7362510)", &[])
        .await
        .expect("unlock");
    name
}

/// Retry `sql` while the source database still has a closing session on it.
async fn retry_in_use(admin: &Client, sql: &str) {
    for attempt in 0.. {
        match admin.batch_execute(sql).await {
            Ok(()) => return,
            Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) && attempt < 100 => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{sql}: {e}"),
        }
    }
}

async fn rename_when_free(admin: &Client, from: &str, to: &str) {
    retry_in_use(admin, &format!("ALTER DATABASE {from} RENAME TO {to}")).await;
}

/// A fresh, migrated database for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let admin_url = server().await.to_string();
        let admin = db::connect(&admin_url)
            .await
            .expect("connect to the test server");
        let template = ensure_template(&admin).await;
        let name = format!(
            "dvault_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        retry_in_use(
            &admin,
            &format!("CREATE DATABASE {name} TEMPLATE {template}"),
        )
        .await;
        TestDb {
            url: with_dbname(&admin_url, &name),
            name,
            admin_url,
        }
    }

    pub async fn client(&self) -> Client {
        db::connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    pub fn pool(&self, size: usize) -> Pool {
        let config = db::pg_config(&self.url, "dvault-test").expect("a database URL");
        let manager = deadpool_postgres::Manager::from_config(
            config,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager).max_size(size).build().expect("pool")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "test failed: kept its database {} for inspection",
                self.name
            );
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let admin = db::connect(&admin_url).await.expect("connect");
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// Read after `after` until at least `n` events come back; fails the test after 30 s.
///
/// The reader only sees events of transactions older than every writing
/// transaction of this database still running (and reads on past one of another
/// database that ended as it read): a read comes back short only while a
/// transaction of this test's database is open, which some tests hold on purpose.
pub async fn read_at_least(
    client: &impl tokio_postgres::GenericClient,
    after: dvault::events::Checkpoint,
    n: usize,
) -> Vec<dvault::events::StoredEvent> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let events = dvault::events::read_after(client, after, 10_000)
            .await
            .expect("read");
        if events.len() >= n {
            return events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} events read after 30 s",
            events.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Every index of the tables of `schema` (or of its table `table`), one line each:
/// name, definition, valid, constraint, comments; for comparing the catalog before
/// and after a bulk path dropped and rebuilt indexes.
pub async fn index_catalog(client: &Client, schema: &str, table: Option<&str>) -> Vec<String> {
    client
        .query(
            "SELECT format('%s | %s | valid=%s | %s | %s | %s', i.indexrelid::regclass,
                           pg_get_indexdef(i.indexrelid), i.indisvalid, c.conname,
                           obj_description(i.indexrelid, 'pg_class'),
                           obj_description(c.oid, 'pg_constraint'))
               FROM pg_index i
               JOIN pg_class t ON t.oid = i.indrelid
               JOIN pg_namespace n ON n.oid = t.relnamespace
               LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
              WHERE n.nspname = $1 AND ($2::text IS NULL OR t.relname = $2)
              ORDER BY 1",
            &[&schema, &table],
        )
        .await
        .expect("catalog")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Watch the backend `pid` (of the watcher's database) and terminate it as soon as
/// it runs a statement `LIKE query` (a crash test's kill, landing inside that
/// statement); true if it did, false if the statement was not seen within 60 s.
pub fn terminate_when_running(
    watcher: Client,
    pid: i32,
    query: &'static str,
) -> tokio::task::JoinHandle<bool> {
    tokio::spawn(async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let running: bool = watcher
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                                     WHERE pid = $1 AND datname = current_database()
                                       AND query LIKE $2)",
                    &[&pid, &query],
                )
                .await
                .expect("watch")
                .get(0);
            if running {
                watcher
                    .query_one("SELECT pg_terminate_backend($1)", &[&pid])
                    .await
                    .expect("kill");
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
}

/// Wait until `n` events of the log are visible to the loader (or fail after 60 s):
/// see [`read_at_least`] for why they may not be at once.
pub async fn wait_visible(client: &Client, n: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        // the loader's horizon: transactions of other databases on a shared server
        // (another engineer's long load) do not hold it back
        let horizon = dvault::events::horizon::horizon(client)
            .await
            .expect("horizon");
        let visible: i64 = client
            .query_one(
                "SELECT count(*) FROM event_log.events WHERE xid < $1",
                &[&horizon],
            )
            .await
            .expect("count visible events")
            .get(0);
        if visible >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {visible} of {n} events visible to the loader after 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Load until every committed event is loaded (see [`read_at_least`] for why a
/// single pass can stop short while other tests write).
pub async fn load_all(client: &mut Client) -> dvault::load::LoadSummary {
    let loader = dvault::load::Loader::new(
        client,
        dvault::mapping::Mappings::builtin().expect("mappings"),
    )
    .await
    .expect("loader");
    load_all_with(client, &loader).await
}

/// The built-in model's loader with `batch_size` events per batch.
pub async fn builtin_loader(client: &Client, batch_size: i64) -> dvault::load::Loader {
    let mut loader = dvault::load::Loader::new(
        client,
        dvault::mapping::Mappings::builtin().expect("mappings"),
    )
    .await
    .expect("loader");
    loader.batch_size = batch_size;
    loader
}

pub async fn load_all_with(
    client: &mut Client,
    loader: &dvault::load::Loader,
) -> dvault::load::LoadSummary {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut total = dvault::load::LoadSummary::default();
    loop {
        let s = loader.run(client).await.expect("load");
        total.events += s.events;
        total.rejected += s.rejected;
        total.held += s.held;
        total.bulk.extend(s.bulk);
        total.forgotten.extend(s.forgotten);
        total.started_over |= s.started_over;
        for (t, n) in s.rows {
            *total.rows.entry(t).or_default() += n;
        }
        let pending: i64 = client
            .query_one(
                "SELECT count(*) FROM event_log.events e
                  WHERE (e.xid, e.seq) > coalesce(
                    (SELECT (c.xid, c.seq) FROM ops.checkpoints c WHERE c.consumer = $1),
                    ('0'::xid8, 0::bigint))",
                &[&dvault::load::CONSUMER],
            )
            .await
            .expect("pending")
            .get(0);
        if pending == 0 {
            return total;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pending} events still not loaded after 30 s ({} loaded)",
            total.events
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The tables of `schema`, by name.
pub async fn table_names(client: &Client, schema: &str) -> Vec<String> {
    client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1",
            &[&schema],
        )
        .await
        .expect("tables")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// An md5 of every vault table's rows, by table: the raw vault (by table name) and the
/// business vault tables the loader maintains (`dvault::load::business::TABLES`, by
/// qualified name), so that "incremental equals rebuild" covers both.
pub async fn vault_checksums(client: &Client) -> std::collections::BTreeMap<String, String> {
    let mut tables: Vec<(String, String)> = table_names(client, "raw_vault")
        .await
        .into_iter()
        .map(|name| (name.clone(), format!("raw_vault.{name}")))
        .collect();
    tables.extend(
        dvault::load::business::TABLES
            .iter()
            .map(|t| (t.to_string(), t.to_string())),
    );
    let mut out = std::collections::BTreeMap::new();
    for (key, t) in tables {
        let sum: Option<String> = client
            .query_one(
                &format!("SELECT md5(string_agg(t::text, E'\\n' ORDER BY t::text)) FROM {t} t"),
                &[],
            )
            .await
            .expect("checksum")
            .get(0);
        out.insert(key, sum.unwrap_or_else(|| "empty".into()));
    }
    out
}
