//! The one pass (src/load/one_pass.rs, `dvault ingest --load`): a first load fed by
//! the ingest running beside it. Each test checks the vault it leaves against a
//! rebuild from the log (the batch-by-batch path's answer), and that whatever makes
//! the pass give up — a writer beside it, a batch the ingest cannot hand over
//! exactly, a kill — leaves nothing of it, so that the load from the log that
//! follows loads every event once.

use std::path::{Path, PathBuf};
use std::process::Command;

use tokio_postgres::Client;

use dvault::events::feed::Feed;
use dvault::events::ingest::{IngestOptions, ingest_file_streams};
use dvault::events::{self, Checkpoint, NewEvent};
use dvault::load::one_pass::OnePass;
use dvault::load::{self, Loader};
use dvault::mapping::Mappings;

use crate::harness::{TestDb, index_catalog, load_all_with, terminate_when_running, wait_visible};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tpch")
}

const IN_ORDER: [&str; 6] = [
    "nation", "supplier", "part", "customer", "orders", "lineitem",
];

/// A database with the TPC-H example's schema, nothing ingested.
async fn tpch(db: &TestDb) -> Client {
    let client = db.client().await;
    for file in ["schema.sql", "views.sql"] {
        let sql = std::fs::read_to_string(example().join(file)).expect("example SQL");
        client.batch_execute(&sql).await.expect(file);
    }
    client
}

async fn loader(client: &Client) -> Loader {
    let mappings = Mappings::from_dir(&example().join("mappings")).expect("mappings");
    let mut loader = Loader::new(client, mappings).await.expect("loader");
    loader.batch_size = 40;
    loader
}

/// Options for the sample's `table`: a file of 20 rows or more, and at least as
/// many as the log holds, takes the bulk ingest (in `IN_ORDER`: nation and part),
/// the others go batch by batch.
fn options(table: &str, feed: Option<&Feed>) -> IngestOptions {
    IngestOptions {
        event_type: Some(format!("tpch_{table}")),
        source: Some("tpch".into()),
        batch_size: 30,
        bulk_min_rows: Some(20),
        feed: feed.cloned(),
        ..IngestOptions::default()
    }
}

fn sample(table: &str) -> PathBuf {
    example().join(format!("sample/{table}.csv"))
}

/// md5 of each tpch_vault table's rows, every column.
async fn checksums(client: &Client) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in crate::harness::table_names(client, "tpch_vault").await {
        let sum: Option<String> = client
            .query_one(
                &format!(
                    "SELECT md5(string_agg(t::text, E'\\n' ORDER BY t::text)) FROM tpch_vault.{t} t"
                ),
                &[],
            )
            .await
            .expect("checksum")
            .get(0);
        out.push((t, sum.unwrap_or_else(|| "empty".into())));
    }
    out
}

/// The vault after a rebuild from the log (which it leaves as it found it).
async fn rebuilt(client: &mut Client, loader: &Loader) -> Vec<(String, String)> {
    load::rebuild(client, loader).await.expect("rebuild");
    checksums(client).await
}

/// Start a one pass on `client`; the ingest side is the caller's.
async fn start(
    client: Client,
    loader: &Loader,
) -> (
    Feed,
    tokio::task::JoinHandle<(Client, Result<OnePass, load::LoadError>)>,
) {
    let mut client = client;
    Loader::lock(&client, true).await.expect("loader lock");
    let plan = loader
        .one_pass_plan(&mut client)
        .await
        .expect("plan")
        .expect("an empty vault and nothing waiting: a one pass");
    let (feed, rx) = Feed::channel(1);
    let loader = loader.clone();
    let pass = tokio::spawn(async move {
        let loaded = loader.run_one_pass(&mut client, rx, plan).await;
        (client, loaded)
    });
    (feed, pass)
}

#[tokio::test]
async fn a_first_ingest_loads_in_one_pass_and_equals_a_rebuild_from_the_log() {
    let db = TestDb::new().await;
    let client = tpch(&db).await;
    let loader = loader(&client).await;
    let indexes = index_catalog(&client, "tpch_vault", None).await;
    let (feed, pass) = start(client, &loader).await;
    let mut writers = vec![db.client().await, db.client().await];
    let mut bulk = 0;
    for table in IN_ORDER {
        let s = ingest_file_streams(&mut writers, &sample(table), &options(table, Some(&feed)))
            .await
            .expect("ingest");
        bulk += usize::from(s.bulk);
    }
    assert!(
        (1..IN_ORDER.len()).contains(&bulk),
        "both ingest paths handed their events over ({bulk} files in bulk)"
    );
    drop(feed);
    let (mut client, loaded) = pass.await.expect("the pass");
    let summary = match loaded.expect("the pass ran") {
        OnePass::Loaded(s) => s,
        OnePass::GaveUp(why) => panic!("the pass gave up: {why}"),
    };
    assert_eq!(summary.events, 345, "every event, once");
    assert_eq!(summary.bulk.len(), 15, "every table on the bulk path");
    let at = events::load_checkpoint(&client, load::CONSUMER)
        .await
        .expect("checkpoint");
    let last: i64 = client
        .query_one("SELECT max(seq) FROM event_log.events", &[])
        .await
        .expect("last")
        .get(0);
    assert_eq!(at.seq, last, "the checkpoint at the log's end");
    assert_eq!(
        index_catalog(&client, "tpch_vault", None).await,
        indexes,
        "every index back, valid"
    );

    let one_pass = checksums(&client).await;
    assert!(one_pass.iter().all(|(_, sum)| sum != "empty"));
    assert_eq!(
        rebuilt(&mut client, &loader).await,
        one_pass,
        "the one pass wrote what a load from the log writes, byte for byte"
    );
}

#[tokio::test]
async fn no_one_pass_while_events_wait_into_a_full_vault_or_without_the_bulk_path() {
    let db = TestDb::new().await;
    let mut client = tpch(&db).await;
    let loader = loader(&client).await;
    let mut no_bulk = loader.clone();
    no_bulk.bulk_min_events = None;
    assert!(
        no_bulk
            .one_pass_plan(&mut client)
            .await
            .expect("plan")
            .is_none(),
        "--no-bulk: no one pass"
    );
    ingest_file_streams(
        std::slice::from_mut(&mut client),
        &sample("nation"),
        &options("nation", None),
    )
    .await
    .expect("ingest");
    assert!(
        loader
            .one_pass_plan(&mut client)
            .await
            .expect("plan")
            .is_none(),
        "events wait in the log: they go first, from the log"
    );
    for table in &IN_ORDER[1..] {
        ingest_file_streams(
            std::slice::from_mut(&mut client),
            &sample(table),
            &options(table, None),
        )
        .await
        .expect("ingest");
    }
    wait_visible(&client, 345).await;
    load_all_with(&mut client, &loader).await;
    assert!(
        loader
            .one_pass_plan(&mut client)
            .await
            .expect("plan")
            .is_none(),
        "every vault table holds rows: nothing to write without indexes"
    );
}

#[tokio::test]
async fn a_writer_beside_the_one_pass_makes_it_give_up_and_every_event_loads_from_the_log() {
    let db = TestDb::new().await;
    let client = tpch(&db).await;
    let loader = loader(&client).await;
    let (feed, pass) = start(client, &loader).await;
    let mut writer = vec![db.client().await];
    for table in ["nation", "orders"] {
        ingest_file_streams(&mut writer, &sample(table), &options(table, Some(&feed)))
            .await
            .expect("ingest");
    }
    // another producer appends between two files of the ingest
    let other = db.client().await;
    events::append(
        &other,
        &[NewEvent {
            event_id: "n-99".into(),
            event_type: "tpch_nation".into(),
            source: "elsewhere".into(),
            occurred_at: chrono::Utc::now(),
            payload: r#"{"n_nationkey": "99", "n_name": "ATLANTIS", "n_regionkey": "0", "n_comment": "x"}"#.into(),
        }],
    )
    .await
    .expect("append");
    ingest_file_streams(
        &mut writer,
        &sample("lineitem"),
        &options("lineitem", Some(&feed)),
    )
    .await
    .expect("ingest");
    drop(feed);
    let (mut client, loaded) = pass.await.expect("the pass");
    match loaded.expect("the pass ran") {
        OnePass::GaveUp(why) => assert!(why.contains("other writers"), "{why}"),
        OnePass::Loaded(_) => panic!("committed past another writer's event"),
    }
    for (table, sum) in checksums(&client).await {
        assert_eq!(sum, "empty", "{table}: nothing of the pass");
    }
    assert_eq!(
        events::load_checkpoint(&client, load::CONSUMER)
            .await
            .expect("checkpoint"),
        Checkpoint::START
    );
    wait_visible(&client, 1).await;
    let summary = load_all_with(&mut client, &loader).await;
    let logged: i64 = client
        .query_one("SELECT count(*) FROM event_log.events", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        summary.events as i64, logged,
        "every event of the log, the other's too"
    );
    let nations: i64 = client
        .query_one("SELECT count(*) FROM tpch_vault.hub_nation", &[])
        .await
        .expect("nations")
        .get(0);
    assert_eq!(nations, 26);
    let loaded = checksums(&client).await;
    assert_eq!(rebuilt(&mut client, &loader).await, loaded);
}

#[tokio::test]
async fn a_batch_the_ingest_cannot_hand_over_exactly_gives_up_the_one_pass() {
    let db = TestDb::new().await;
    let client = tpch(&db).await;
    let loader = loader(&client).await;
    let (feed, pass) = start(client, &loader).await;
    // a small file whose row repeats within one batch: its COPY meets the
    // duplicate, and the ON CONFLICT way does not say which rows it stored
    let dir = crate::ingest::tempdir::Dir::new();
    let text = std::fs::read_to_string(sample("nation")).expect("sample");
    let repeated = text.lines().nth(1).expect("a row");
    let file = dir.path().join("nation.csv");
    std::fs::write(&file, format!("{text}{repeated}\n")).expect("write");
    let mut writer = vec![db.client().await];
    let batch_by_batch = IngestOptions {
        bulk_min_rows: None,
        ..options("nation", Some(&feed))
    };
    let s = ingest_file_streams(&mut writer, &file, &batch_by_batch)
        .await
        .expect("ingest");
    assert_eq!((s.inserted, s.duplicates), (25, 1));
    assert!(feed.given_up());
    drop(feed);
    let (mut client, loaded) = pass.await.expect("the pass");
    match loaded.expect("the pass ran") {
        OnePass::GaveUp(why) => assert!(why.contains("ON CONFLICT"), "{why}"),
        OnePass::Loaded(_) => panic!("the pass should have given up"),
    }
    wait_visible(&client, 25).await;
    assert_eq!(load_all_with(&mut client, &loader).await.events, 25);
}

#[tokio::test]
async fn a_one_pass_killed_while_it_builds_the_indexes_leaves_the_vault_empty_and_the_log_whole() {
    let db = TestDb::new().await;
    let client = tpch(&db).await;
    let loader = loader(&client).await;
    // an index that takes a while to build (25 nations x 0.2 s), so the kill lands in it
    client
        .batch_execute(
            "CREATE FUNCTION tpch_vault.slow(k bytea) RETURNS bytea
                 LANGUAGE plpgsql IMMUTABLE AS $$
             BEGIN
                 IF current_setting('dvault_test.slow', true) = 'on' THEN
                     PERFORM pg_sleep(0.2);
                 END IF;
                 RETURN k;
             END $$;
             CREATE INDEX hub_nation_slow_idx ON tpch_vault.hub_nation (tpch_vault.slow(hk_nation));
             SET dvault_test.slow = 'on'",
        )
        .await
        .expect("slow index");
    let indexes = index_catalog(&client, "tpch_vault", None).await;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let killer =
        terminate_when_running(db.client().await, pid, "CREATE INDEX hub_nation_slow_idx%");
    let (feed, pass) = start(client, &loader).await;
    let mut writers = vec![db.client().await];
    for table in IN_ORDER {
        ingest_file_streams(&mut writers, &sample(table), &options(table, Some(&feed)))
            .await
            .expect("the ingest does not depend on the load");
    }
    drop(feed);
    let (_, loaded) = pass.await.expect("the pass");
    assert!(
        killer.await.expect("killer"),
        "the index build was never seen"
    );
    assert!(loaded.is_err(), "the pass was killed");

    let mut client = db.client().await;
    assert_eq!(index_catalog(&client, "tpch_vault", None).await, indexes);
    for (table, sum) in checksums(&client).await {
        assert_eq!(sum, "empty", "{table} rolled back");
    }
    wait_visible(&client, 345).await;
    let summary = load_all_with(&mut client, &loader).await;
    assert_eq!(
        summary.events, 345,
        "the log holds every event, loaded once"
    );
    let loaded = checksums(&client).await;
    assert_eq!(rebuilt(&mut client, &loader).await, loaded);
}

/// `dvault ingest --load` with a `{name}` type: one command from files to vault.
#[tokio::test]
async fn ingest_with_load_from_the_command_line() {
    let db = TestDb::new().await;
    let mut client = tpch(&db).await;
    let files: Vec<String> = IN_ORDER
        .iter()
        .map(|t| sample(t).display().to_string())
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_dvault"))
        .args([
            "ingest",
            "--load",
            "--type",
            "tpch_{name}",
            "--source",
            "tpch",
        ])
        .args(["--bulk-min-rows", "50", "--batch-size", "30"])
        .args(&files)
        .env("DATABASE_URL", &db.url)
        .env("DVAULT_MAPPINGS", example().join("mappings"))
        .output()
        .expect("run dvault");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("345 events loaded in one pass"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("loaded 345 events"), "{stdout}");
    let types: Vec<String> = client
        .query(
            "SELECT DISTINCT event_type FROM event_log.events ORDER BY 1",
            &[],
        )
        .await
        .expect("types")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        types,
        [
            "tpch_customer",
            "tpch_lineitem",
            "tpch_nation",
            "tpch_orders",
            "tpch_part",
            "tpch_supplier"
        ]
    );
    let loaded = checksums(&client).await;
    let loader = loader(&client).await;
    assert_eq!(rebuilt(&mut client, &loader).await, loaded);
}
