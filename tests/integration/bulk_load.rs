//! The bulk path (src/load/bulk.rs): a first load into empty tables drops their
//! indexes, writes heap only and builds the indexes at the end, in one transaction.
//! Each test compares it with the batch-by-batch path on the same log, and checks
//! the catalog (every index and comment back, valid) after success and after a kill.

use std::path::{Path, PathBuf};

use tokio_postgres::Client;

use dvault::events::ingest::{IngestOptions, ingest_file};
use dvault::events::{self, Checkpoint, NewEvent};
use dvault::load::{self, Loader};
use dvault::mapping::Mappings;

use crate::harness::{
    TestDb, index_catalog, load_all_with, table_names, terminate_when_running, vault_checksums,
    wait_visible,
};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tpch")
}

/// A database with the TPC-H example's schema and its sample files ingested in
/// `order` (all of them, or none).
async fn tpch(db: &TestDb, order: &[&str]) -> Client {
    let mut client = db.client().await;
    for file in ["schema.sql", "views.sql"] {
        let sql = std::fs::read_to_string(example().join(file)).expect("example SQL");
        client.batch_execute(&sql).await.expect(file);
    }
    for table in order {
        let opts = IngestOptions {
            event_type: Some(format!("tpch_{table}")),
            source: Some("tpch".into()),
            ..IngestOptions::default()
        };
        ingest_file(
            &mut client,
            &example().join(format!("sample/{table}.csv")),
            &opts,
        )
        .await
        .expect("ingest");
    }
    if !order.is_empty() {
        wait_visible(&client, 345).await;
    }
    client
}

const IN_ORDER: [&str; 6] = [
    "nation", "supplier", "part", "customer", "orders", "lineitem",
];

async fn loader(client: &Client, bulk_min_events: Option<i64>) -> Loader {
    let mappings = Mappings::from_dir(&example().join("mappings")).expect("mappings");
    let mut loader = Loader::new(client, mappings).await.expect("loader");
    loader.batch_size = 40;
    loader.bulk_min_events = bulk_min_events;
    loader
}

/// md5 of each tpch_vault table's rows.
async fn checksums(client: &Client) -> Vec<(String, String)> {
    let tables = table_names(client, "tpch_vault").await;
    let mut out = Vec::new();
    for t in tables {
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

/// Every index of tpch_vault: name, definition, valid, constraint, comments.
async fn catalog(client: &Client) -> Vec<String> {
    index_catalog(client, "tpch_vault", None).await
}

#[tokio::test]
async fn a_first_load_takes_the_bulk_path_and_equals_the_batch_by_batch_load() {
    let db = TestDb::new().await;
    let mut client = tpch(&db, &IN_ORDER).await;
    client
        .batch_execute(
            "CREATE INDEX link_lineitem_order_idx ON tpch_vault.link_lineitem (hk_order);
             COMMENT ON INDEX tpch_vault.link_lineitem_order_idx IS 'line items of an order';
             COMMENT ON CONSTRAINT sat_order_pkey ON tpch_vault.sat_order IS 'one version per time'",
        )
        .await
        .expect("comments");
    let before = catalog(&client).await;
    assert!(before.len() >= 16, "{before:#?}");

    let bulk = loader(&client, Some(1)).await;
    let summary = load_all_with(&mut client, &bulk).await;
    assert_eq!(summary.events, 345);
    assert_eq!(
        summary.bulk.len(),
        15,
        "every table was empty: {:?}",
        summary.bulk
    );
    assert_eq!(
        catalog(&client).await,
        before,
        "every index back, valid, with its comments"
    );
    // written frozen: every page all-visible, with no VACUUM
    assert_eq!(
        not_all_visible(&client).await,
        Vec::<String>::new(),
        "tables with pages not all-visible after the bulk path"
    );
    let bulk_sums = checksums(&client).await;

    // the same log, batch by batch
    let normal = loader(&client, None).await;
    let again = load::rebuild(&mut client, &normal).await.expect("rebuild");
    assert!(again.bulk.is_empty());
    assert_eq!(checksums(&client).await, bulk_sums);
    assert_eq!(catalog(&client).await, before);
    assert_eq!(
        not_all_visible(&client).await.len(),
        15,
        "rows written batch by batch wait for VACUUM to mark their pages"
    );
}

/// The tpch_vault tables with rows some of whose pages are not marked all-visible
/// (`relallvisible`, which `ANALYZE` reads from the visibility map).
async fn not_all_visible(client: &Client) -> Vec<String> {
    client.batch_execute("ANALYZE").await.expect("analyze");
    client
        .query(
            "SELECT c.relname::text FROM pg_class c
              WHERE c.relnamespace = 'tpch_vault'::regnamespace AND c.relkind = 'r'
                AND c.relpages > 0 AND c.relallvisible < c.relpages
              ORDER BY 1",
            &[],
        )
        .await
        .expect("visibility")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The bulk path with at most `keys` hub and link keys remembered, then the same
/// log batch by batch: both vaults must be the same. Returns the bulk run's summary.
async fn bulk_with_key_memory(client: &mut Client, keys: usize) -> load::LoadSummary {
    let mut bulk = loader(client, Some(1)).await;
    bulk.key_memory = keys;
    let summary = load_all_with(client, &bulk).await;
    assert_eq!(summary.events, 345);
    assert_eq!(summary.bulk.len(), 15, "{:?}", summary.bulk);
    let bulk_sums = checksums(client).await;
    let normal = loader(client, None).await;
    load::rebuild(client, &normal).await.expect("rebuild");
    assert_eq!(checksums(client).await, bulk_sums);
    summary
}

#[tokio::test]
async fn a_full_key_memory_forgets_tables_whose_keys_never_repeat() {
    // the run writes 798 hub and link keys; with room for 780, the last batch
    // (25 line items) forgets the largest table none of whose keys repeated: the
    // line item link, whose every key is new (as at TPC-H scale). Its unique index,
    // built at the end, finds no key twice
    let db = TestDb::new().await;
    let mut client = tpch(&db, &IN_ORDER).await;
    let before = catalog(&client).await;
    let summary = bulk_with_key_memory(&mut client, 780).await;
    assert_eq!(summary.forgotten, ["link_lineitem"]);
    assert!(!summary.started_over);
    assert_eq!(catalog(&client).await, before);
}

#[tokio::test]
async fn a_forgotten_table_whose_keys_repeat_later_starts_the_bulk_run_over() {
    // 120 nations, then the first 40 again renamed: with room for 50 keys the
    // nation hub (the only table written, no key repeated yet) is forgotten in the
    // second batch; the fourth batch's keys then come twice, the hub's unique index
    // refuses them, and the run starts over remembering every table
    let db = TestDb::new().await;
    let mut client = tpch(&db, &[]).await;
    let nation = |i: usize, key: usize, name: &str| NewEvent {
        event_id: format!("n{i}"),
        event_type: "tpch_nation".into(),
        source: "test".into(),
        occurred_at: chrono::Utc::now(),
        payload: format!(
            r#"{{"n_nationkey": {key}, "n_name": "{name}", "n_regionkey": 1, "n_comment": ""}}"#
        ),
    };
    let mut nations: Vec<NewEvent> = (0..120).map(|k| nation(k, 1000 + k, "first")).collect();
    nations.extend((0..40).map(|k| nation(120 + k, 1000 + k, "renamed")));
    events::append(&client, &nations).await.expect("append");
    wait_visible(&client, 160).await;
    let before = catalog(&client).await;

    let mut bulk = loader(&client, Some(1)).await;
    bulk.key_memory = 50;
    let summary = load_all_with(&mut client, &bulk).await;
    assert_eq!(summary.events, 160);
    assert!(summary.started_over);
    assert!(summary.forgotten.is_empty(), "{:?}", summary.forgotten);
    assert_eq!(catalog(&client).await, before);
    let counts: (i64, i64) = client
        .query_one(
            "SELECT (SELECT count(*) FROM tpch_vault.hub_nation),
                    (SELECT count(*) FROM tpch_vault.sat_nation)",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .expect("counts");
    assert_eq!(counts, (120, 160), "each nation once, 40 renamed");
    let bulk_sums = checksums(&client).await;
    let normal = loader(&client, None).await;
    load::rebuild(&mut client, &normal).await.expect("rebuild");
    assert_eq!(checksums(&client).await, bulk_sums);
}

#[tokio::test]
async fn a_small_load_or_a_full_vault_does_not_take_the_bulk_path() {
    let db = TestDb::new().await;
    let mut client = tpch(&db, &IN_ORDER).await;
    // 345 events wait: fewer than the default threshold
    let default = loader(&client, Some(load::bulk::MIN_EVENTS)).await;
    const { assert!(load::bulk::MIN_EVENTS > 345) };
    let summary = load_all_with(&mut client, &default).await;
    assert_eq!(summary.events, 345);
    assert!(summary.bulk.is_empty());

    // above the threshold, but no table is empty any more
    let eager = loader(&client, Some(1)).await;
    let more: Vec<NewEvent> = (0..5)
        .map(|i| NewEvent {
            event_id: format!("n{i}"),
            event_type: "tpch_nation".into(),
            source: "test".into(),
            occurred_at: chrono::Utc::now(),
            payload: format!(
                r#"{{"n_nationkey": {}, "n_name": "N{i}", "n_regionkey": 1, "n_comment": ""}}"#,
                100 + i
            ),
        })
        .collect();
    events::append(&client, &more).await.expect("append");
    wait_visible(&client, 350).await;
    let summary = load_all_with(&mut client, &eager).await;
    assert_eq!(summary.events, 5);
    assert!(summary.bulk.is_empty(), "{:?}", summary.bulk);
}

#[tokio::test]
async fn a_table_the_run_must_look_into_gets_its_indexes_at_once() {
    // line items before parts: the parts' hub keys exist before their details
    // arrive, so the part satellite must be read for predecessors; and a customer
    // changed in a later batch
    let db = TestDb::new().await;
    let mut client = tpch(
        &db,
        &[
            "nation", "supplier", "lineitem", "orders", "customer", "part",
        ],
    )
    .await;
    let changed = NewEvent {
        event_id: "c1-moved".into(),
        event_type: "tpch_customer".into(),
        source: "test".into(),
        occurred_at: chrono::Utc::now(),
        payload: r#"{"c_custkey": 1, "c_name": "Customer#000000001", "c_address": "elsewhere",
                     "c_nationkey": 15, "c_phone": "25-989-741-2988", "c_acctbal": 711.56,
                     "c_mktsegment": "BUILDING", "c_comment": "moved"}"#
            .into(),
    };
    events::append(&client, &[changed]).await.expect("append");
    wait_visible(&client, 346).await;
    let before = catalog(&client).await;

    let bulk = loader(&client, Some(1)).await;
    let summary = load_all_with(&mut client, &bulk).await;
    assert_eq!(summary.events, 346);
    assert!(!summary.bulk.is_empty());
    assert_eq!(catalog(&client).await, before);
    let versions: i64 = client
        .query_one(
            "SELECT count(*) FROM tpch_vault.sat_customer s
               JOIN tpch_vault.hub_customer h USING (hk_customer) WHERE h.c_custkey = '1'",
            &[],
        )
        .await
        .expect("versions")
        .get(0);
    assert_eq!(versions, 2, "the change found its predecessor");
    let bulk_sums = checksums(&client).await;

    let normal = loader(&client, None).await;
    load::rebuild(&mut client, &normal).await.expect("rebuild");
    assert_eq!(checksums(&client).await, bulk_sums);
}

#[tokio::test]
async fn a_refused_batch_ends_the_bulk_path_and_only_its_culprit_is_quarantined() {
    let db = TestDb::new().await;
    let mut client = tpch(&db, &IN_ORDER).await;
    client
        .batch_execute(
            "CREATE FUNCTION tpch_vault.sabotage() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.o_orderkey = '7' THEN
                     RAISE EXCEPTION 'sabotage: order 7' USING ERRCODE = 'check_violation';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER sabotage BEFORE INSERT ON tpch_vault.hub_order
                 FOR EACH ROW EXECUTE FUNCTION tpch_vault.sabotage();",
        )
        .await
        .expect("sabotage");
    let before = catalog(&client).await;
    let bulk = loader(&client, Some(1)).await;
    let summary = load_all_with(&mut client, &bulk).await;
    assert_eq!(summary.events, 345);
    assert!(
        summary.bulk.is_empty(),
        "the bulk run was rolled back and the run went batch by batch: {:?}",
        summary.bulk
    );
    assert_eq!(catalog(&client).await, before);
    // order 7's event and its line items (they would create the order's hub key)
    let rejected: Vec<String> = client
        .query(
            "SELECT r.event_type || ':' || (e.payload->>'o_orderkey')::text || (e.payload->>'l_orderkey')::text
               FROM event_log.rejected r JOIN event_log.events e ON e.seq = r.event_seq
              WHERE r.stage = 'load' AND r.reason LIKE '%sabotage: order 7 (SQLSTATE 23514)%'",
            &[],
        )
        .await
        .expect("rejected")
        .iter()
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
        .collect();
    let total: i64 = client
        .query_one(
            "SELECT count(*) FROM event_log.rejected WHERE stage = 'load'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert!(!rejected.is_empty());
    assert_eq!(total as usize, rejected.len(), "only order 7 was refused");
    let bulk_sums = checksums(&client).await;
    let normal = loader(&client, None).await;
    load::rebuild(&mut client, &normal).await.expect("rebuild");
    assert_eq!(checksums(&client).await, bulk_sums);
}

#[tokio::test]
async fn a_load_killed_while_it_builds_the_indexes_leaves_them_all_in_place() {
    let db = TestDb::new().await;
    let mut client = tpch(&db, &IN_ORDER).await;
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
             CREATE INDEX hub_nation_slow_idx ON tpch_vault.hub_nation (tpch_vault.slow(hk_nation));",
        )
        .await
        .expect("slow index");
    let before = catalog(&client).await;

    let bulk = loader(&client, Some(1)).await;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    client
        .batch_execute("SET dvault_test.slow = 'on'")
        .await
        .expect("slow on");
    let killer =
        terminate_when_running(db.client().await, pid, "CREATE INDEX hub_nation_slow_idx%");
    let result = bulk.run(&mut client).await;
    assert!(
        killer.await.expect("killer"),
        "the index build was never seen"
    );
    assert!(result.is_err(), "the run was killed");

    let client = db.client().await;
    assert_eq!(
        catalog(&client).await,
        before,
        "every index in place, valid"
    );
    for (table, sum) in checksums(&client).await {
        assert_eq!(sum, "empty", "{table} rolled back");
    }
    let at = events::load_checkpoint(&client, load::CONSUMER)
        .await
        .expect("checkpoint");
    assert_eq!(at, Checkpoint::START);

    // and the next run does it all
    let mut client = client;
    let summary = load_all_with(&mut client, &bulk).await;
    assert_eq!(summary.events, 345);
    assert!(!summary.bulk.is_empty());
    assert_eq!(catalog(&client).await, before);
}

#[tokio::test]
async fn an_index_that_cannot_be_built_ends_the_bulk_path_and_the_culprits_are_quarantined() {
    // a user's unique index on a satellite column: the duplicates only show when the
    // index is built at the end of the bulk run
    let db = TestDb::new().await;
    let mut client = tpch(&db, &IN_ORDER).await;
    client
        .batch_execute(
            "CREATE UNIQUE INDEX sat_nation_region_key ON tpch_vault.sat_nation (n_regionkey);
             COMMENT ON INDEX tpch_vault.sat_nation_region_key IS 'one nation per region'",
        )
        .await
        .expect("user index");
    let before = catalog(&client).await;
    let bulk = loader(&client, Some(1)).await;
    let summary = load_all_with(&mut client, &bulk).await;
    assert_eq!(summary.events, 345);
    assert!(summary.bulk.is_empty(), "{:?}", summary.bulk);
    assert_eq!(catalog(&client).await, before);
    // 25 nations in 5 regions: the first of each region loads, the 20 others are refused
    let refused: i64 = client
        .query_one(
            "SELECT count(*) FROM event_log.rejected
              WHERE stage = 'load' AND event_type = 'tpch_nation' AND reason LIKE '%SQLSTATE 23505%'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(refused, 20);
    let nations: i64 = client
        .query_one("SELECT count(*) FROM tpch_vault.sat_nation", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(nations, 5);
    // and the next run is not stuck on them
    assert_eq!(bulk.run(&mut client).await.expect("load").events, 0);
}

#[tokio::test]
async fn a_role_that_does_not_own_the_tables_loads_batch_by_batch() {
    // dropping an index needs ownership: a loader role with write grants only (as
    // docs/security.md sets one up) must not take the bulk path and fail on it
    let db = TestDb::new().await;
    let mut client = tpch(&db, &IN_ORDER).await;
    let role = format!("dvault_bulk_{}", rand::random::<u32>());
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} NOLOGIN;
             GRANT USAGE ON SCHEMA event_log, ops, tpch_vault TO {role};
             GRANT SELECT, INSERT, DELETE ON ALL TABLES IN SCHEMA event_log TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ops, tpch_vault TO {role};
             GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA ops TO {role};"
        ))
        .await
        .expect("role");
    let before = catalog(&client).await;
    let bulk = loader(&client, Some(1)).await;
    client
        .batch_execute(&format!("SET ROLE {role}"))
        .await
        .expect("set role");
    let summary = load_all_with(&mut client, &bulk).await;
    client.batch_execute("RESET ROLE").await.expect("reset");
    assert_eq!(summary.events, 345);
    assert!(summary.bulk.is_empty(), "{:?}", summary.bulk);
    assert_eq!(catalog(&client).await, before);
    let sums = checksums(&client).await;
    assert!(sums.iter().all(|(_, sum)| sum != "empty"), "{sums:?}");
    client
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .expect("drop the role");
}

/// The Customer 360 model on the bulk path: the business vault is not refreshed per
/// batch but built once from the whole raw vault at the run's end. It must be the
/// business vault the batches build, row for row (the raw vault too).
#[tokio::test]
async fn a_first_customer_360_load_on_the_bulk_path_builds_the_business_vault_of_the_batches() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let today = chrono::Utc::now().date_naive();
    let log = crate::oracle::generated_world(today - chrono::Duration::days(1));
    events::append(&client, &log).await.expect("append");
    let builtin = || Mappings::builtin().expect("mappings");

    let mut batches = Loader::new(&client, builtin()).await.expect("loader");
    batches.batch_size = 1_500;
    batches.bulk_min_events = None;
    let summary = load_all_with(&mut client, &batches).await;
    assert_eq!((summary.events, summary.rejected), (log.len() as u64, 0));
    assert!(summary.bulk.is_empty());
    let incremental = vault_checksums(&client).await;
    assert!(
        incremental.values().all(|sum| sum != "empty"),
        "every table has rows: {incremental:#?}"
    );

    let indexes = index_catalog(&client, "business_vault", None).await;

    let mut bulk = Loader::new(&client, builtin()).await.expect("loader");
    bulk.bulk_min_events = Some(1);
    let rebuilt = load::rebuild(&mut client, &bulk).await.expect("rebuild");
    assert_eq!(rebuilt.events, log.len() as u64);
    assert_eq!(rebuilt.bulk.len(), 12, "{:?}", rebuilt.bulk);
    assert_eq!(vault_checksums(&client).await, incremental);
    // the build filled some tables without their indexes, or with their keys only, and
    // built the rest again: every index is back as it was, comments included
    assert_eq!(
        index_catalog(&client, "business_vault", None).await,
        indexes
    );

    // with history in the business vault, the next run refreshes per batch: it does
    // not take the bulk path, even where a raw vault table is empty
    client
        .batch_execute("TRUNCATE raw_vault.link_product_view")
        .await
        .expect("empty one table");
    let mut again = log[log.len() - 1].clone();
    again.event_id.push_str("-again");
    events::append(&client, &[again]).await.expect("append");
    let next = load_all_with(&mut client, &bulk).await;
    assert_eq!((next.events, next.bulk.len()), (1, 0));
}

/// A reader of the business vault while a first load runs on the bulk path: the build
/// does not wait for it to drop the indexes of the tables it fills (that wait could
/// close a deadlock with a reader waiting for the raw vault, losing the whole run); it
/// fills them with their indexes, and the vault is the same.
#[tokio::test]
async fn a_reader_of_the_business_vault_does_not_stop_a_first_load() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let today = chrono::Utc::now().date_naive();
    let log = crate::oracle::generated_world(today - chrono::Duration::days(1));
    events::append(&client, &log).await.expect("append");
    let before = index_catalog(&client, "business_vault", None).await;
    // a reader holds the order summary (ACCESS SHARE) until it commits
    let reader = db.client().await;
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM business_vault.order_summary")
        .await
        .expect("a reader");
    let mut bulk = Loader::new(&client, Mappings::builtin().expect("mappings"))
        .await
        .expect("loader");
    bulk.bulk_min_events = Some(1);
    let loaded = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        load_all_with(&mut client, &bulk),
    )
    .await
    .expect("the load waited for the reader");
    assert_eq!((loaded.events, loaded.rejected), (log.len() as u64, 0));
    assert_eq!(loaded.bulk.len(), 12, "{:?}", loaded.bulk);
    reader.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(index_catalog(&client, "business_vault", None).await, before);
    let orders: i64 = client
        .query_one("SELECT count(*) FROM business_vault.order_summary", &[])
        .await
        .expect("count")
        .get(0);
    assert!(orders > 0);
}

/// Dropping a table's secondary indexes for a bulk write (`db::indexes::drop_secondary`)
/// keeps its keys, the primary key and a unique index, which lookups and `ON CONFLICT`
/// need meanwhile, and builds the others back as they were, comments included.
#[tokio::test]
async fn dropping_secondary_indexes_keeps_the_keys_and_builds_the_rest_back() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE public.t (k bytea PRIMARY KEY, code text UNIQUE, name text, n integer);
             CREATE INDEX t_name_idx ON public.t (lower(name) text_pattern_ops);
             CREATE INDEX t_n_idx ON public.t (n DESC, name);
             COMMENT ON INDEX public.t_n_idx IS 'for the sort by n'",
        )
        .await
        .expect("table");
    let before = index_catalog(&client, "public", Some("t")).await;
    assert_eq!(before.len(), 4, "{before:#?}");
    let tx = client.transaction().await.expect("tx");
    let dropped = dvault::db::indexes::drop_secondary(&tx, "public.t")
        .await
        .expect("drop");
    let names: Vec<&str> = dropped.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["t_name_idx", "t_n_idx"]);
    let kept: Vec<String> = tx
        .query(
            "SELECT indexrelid::regclass::text FROM pg_index
              WHERE indrelid = 'public.t'::regclass ORDER BY 1",
            &[],
        )
        .await
        .expect("indexes")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kept, ["t_code_key", "t_pkey"]);
    // the keys still serve ON CONFLICT while the rest is away
    tx.batch_execute(
        "INSERT INTO public.t VALUES ('\\x01', 'a', 'Ann', 1);
         INSERT INTO public.t VALUES ('\\x01', 'b', 'Bo', 2) ON CONFLICT (k) DO UPDATE SET n = 3",
    )
    .await
    .expect("write through the key");
    for index in &dropped {
        assert!(
            dvault::db::indexes::build_missing(&tx, index)
                .await
                .expect("build")
        );
    }
    tx.commit().await.expect("commit");
    assert_eq!(index_catalog(&client, "public", Some("t")).await, before);
}

#[tokio::test]
async fn a_first_load_beside_a_file_ingest_follows_it_in_one_bulk_run() {
    let db = TestDb::new().await;
    let mut client = tpch(&db, &[]).await;
    // `dvault ingest` of the six files: one session holds the ingest lock throughout
    let mut ingest = db.client().await;
    events::ingest::hold_ingest_lock(&ingest, true)
        .await
        .expect("lock");
    let file = |table: &str| example().join(format!("sample/{table}.csv"));
    let opts = |table: &str| IngestOptions {
        event_type: Some(format!("tpch_{table}")),
        source: Some("tpch".into()),
        ..IngestOptions::default()
    };
    ingest_file(&mut ingest, &file("nation"), &opts("nation"))
        .await
        .expect("ingest");
    wait_visible(&client, 25).await;

    // 25 events wait, far fewer than the threshold: the ingest makes it a first load
    let follower = loader(&client, Some(load::bulk::MIN_EVENTS))
        .await
        .with_read_ahead(&db.url);
    let load = tokio::spawn(async move {
        let summary = follower.run(&mut client).await.expect("load");
        (summary, client)
    });
    for table in &IN_ORDER[1..] {
        // long enough for the run to catch up and wait for the next file
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            !load.is_finished(),
            "the run ended while {table} was still to come"
        );
        ingest_file(&mut ingest, &file(table), &opts(table))
            .await
            .expect("ingest");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !load.is_finished(),
        "the run ended with the ingest still running"
    );
    events::ingest::hold_ingest_lock(&ingest, false)
        .await
        .expect("unlock");
    let (summary, mut client) = load.await.expect("the load's task");
    assert_eq!(summary.events, 345, "every file in the one run");
    assert_eq!(summary.bulk.len(), 15, "{:?}", summary.bulk);
    let followed = checksums(&client).await;

    // the same log, batch by batch
    let normal = loader(&client, None).await;
    let again = load::rebuild(&mut client, &normal).await.expect("rebuild");
    assert_eq!(again.events, 345);
    assert_eq!(checksums(&client).await, followed);
}
