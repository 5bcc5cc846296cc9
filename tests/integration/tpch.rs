//! The TPC-H example (examples/tpch) on a small sample of `tpchgen-cli` output: a
//! second model in its own schema, loaded by the same binary without a line of code
//! of its own, with hash keys equal to AutomateDV's formula.

use std::path::{Path, PathBuf};

use dvault::events::ingest::{IngestOptions, ingest_file};
use dvault::load::{Loader, rebuild};
use dvault::mapping::Mappings;

use crate::harness::{TestDb, load_all_with};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tpch")
}

const TABLES: [&str; 6] = [
    "nation", "supplier", "part", "customer", "orders", "lineitem",
];

/// Data rows of a sample file (its lines less the header).
fn rows_of(table: &str) -> i64 {
    let text = std::fs::read_to_string(example().join(format!("sample/{table}.csv")))
        .expect("sample file");
    text.lines().count() as i64 - 1
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

#[tokio::test]
async fn the_tpch_example_loads_into_its_own_schema_with_automatedv_hash_keys() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    for file in ["schema.sql", "views.sql"] {
        let sql = std::fs::read_to_string(example().join(file)).expect("example SQL");
        client.batch_execute(&sql).await.expect(file);
    }
    for table in TABLES {
        let opts = IngestOptions {
            event_type: Some(format!("tpch_{table}")),
            source: Some("tpch".into()),
            batch_size: 7,
            ..IngestOptions::default()
        };
        let path = example().join(format!("sample/{table}.csv"));
        let report = ingest_file(&mut client, &path, &opts)
            .await
            .expect("ingest");
        assert_eq!(report.inserted as i64, rows_of(table), "{table}");
        assert_eq!(report.rejected, 0, "{table}");
    }

    let mappings = Mappings::from_dir(&example().join("mappings")).expect("mappings");
    assert_eq!(mappings.schema, "tpch_vault");
    let loader = Loader::new(&client, mappings)
        .await
        .expect("the mappings fit examples/tpch/schema.sql");
    let summary = load_all_with(&mut client, &loader).await;
    assert_eq!(summary.rejected, 0);

    // one row per source row in each satellite; hubs and links as the keys say
    for (table, sat) in [
        ("nation", "sat_nation"),
        ("supplier", "sat_supplier"),
        ("part", "sat_part"),
        ("customer", "sat_customer"),
        ("orders", "sat_order"),
        ("lineitem", "sat_lineitem"),
    ] {
        let n = count(&client, &format!("SELECT count(*) FROM tpch_vault.{sat}")).await;
        assert_eq!(n, rows_of(table), "{sat}");
    }
    assert_eq!(
        count(&client, "SELECT count(*) FROM tpch_vault.link_lineitem").await,
        rows_of("lineitem")
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM tpch_vault.link_customer_order"
        )
        .await,
        rows_of("orders")
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM tpch_vault.hub_nation").await,
        25
    );
    // the built-in model's tables and business vault are untouched
    assert_eq!(
        count(&client, "SELECT count(*) FROM raw_vault.hub_customer").await,
        0
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM business_vault.pit_customer").await,
        0
    );

    // every hash key equals AutomateDV's formula computed by PostgreSQL
    let check = std::fs::read_to_string(example().join("hash_check.sql")).expect("check");
    let rows = client.query(&check, &[]).await.expect("hash check");
    assert_eq!(rows.len(), 3);
    for r in rows {
        let (table, mismatches, checked): (String, i64, i64) = (r.get(0), r.get(1), r.get(2));
        assert_eq!(mismatches, 0, "{table}");
        assert!(checked > 0, "{table}");
    }

    // Q1 from the vault counts every line shipped by its cut-off date
    let q1 = count(
        &client,
        "SELECT sum(count_order)::bigint FROM tpch_mart.pricing_summary",
    )
    .await;
    let shipped = count(
        &client,
        "SELECT count(*) FROM tpch_vault.sat_lineitem WHERE l_shipdate <= date '1998-09-02'",
    )
    .await;
    assert_eq!(q1, shipped);
    assert!(q1 > 0);

    // rebuild of the example's schema replays to the same vault
    let before = client
        .query_one(
            "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM tpch_vault.sat_lineitem t",
            &[],
        )
        .await
        .expect("checksum")
        .get::<_, String>(0);
    rebuild(&mut client, &loader).await.expect("rebuild");
    load_all_with(&mut client, &loader).await;
    let after = client
        .query_one(
            "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM tpch_vault.sat_lineitem t",
            &[],
        )
        .await
        .expect("checksum")
        .get::<_, String>(0);
    assert_eq!(before, after);
}

/// How many times the loader's session began a scan of tpch_vault's `index` (its
/// statistics flushed first: they are the session's own).
async fn index_scans(client: &tokio_postgres::Client, index: &str) -> i64 {
    client
        .execute("SELECT pg_stat_force_next_flush()", &[])
        .await
        .expect("flush");
    client
        .query_one(
            "SELECT idx_scan FROM pg_stat_user_indexes
              WHERE schemaname = 'tpch_vault' AND indexrelname = $1",
            &[&index],
        )
        .await
        .expect("index statistics")
        .get(0)
}

/// The sample loaded batch by batch, then one day after another: each day a file of
/// one table's rows, ingested and loaded in a session that probes by index only, so
/// that each probe is counted.
struct Days {
    client: tokio_postgres::Client,
    loader: Loader,
    _db: TestDb,
}

impl Days {
    async fn after_the_sample() -> Days {
        let db = TestDb::new().await;
        let mut client = db.client().await;
        for file in ["schema.sql", "views.sql"] {
            let sql = std::fs::read_to_string(example().join(file)).expect("example SQL");
            client.batch_execute(&sql).await.expect(file);
        }
        for table in TABLES {
            let path = example().join(format!("sample/{table}.csv"));
            ingest_file(&mut client, &path, &Self::options(table))
                .await
                .expect("ingest");
        }
        let mappings = Mappings::from_dir(&example().join("mappings")).expect("mappings");
        let mut loader = Loader::new(&client, mappings).await.expect("loader");
        loader.bulk_min_events = None;
        load_all_with(&mut client, &loader).await;
        client
            .batch_execute("SET enable_seqscan = off")
            .await
            .expect("set");
        Days {
            client,
            loader,
            _db: db,
        }
    }

    fn options(table: &str) -> IngestOptions {
        IngestOptions {
            event_type: Some(format!("tpch_{table}")),
            source: Some("tpch".into()),
            ..IngestOptions::default()
        }
    }

    /// Ingest and load a day's `rows` of `table` (CSV under `header`): the scans of
    /// `index` the load began (a run makes a few of its own, the same every day),
    /// and what it wrote.
    async fn day(
        &mut self,
        table: &str,
        header: &str,
        rows: &[String],
        index: &str,
    ) -> (i64, dvault::load::LoadSummary) {
        let file = std::env::temp_dir().join(format!("dvault-day-{}.csv", rand::random::<u64>()));
        std::fs::write(&file, format!("{header}\n{}\n", rows.join("\n"))).expect("day file");
        ingest_file(&mut self.client, &file, &Self::options(table))
            .await
            .expect("ingest a day");
        std::fs::remove_file(&file).expect("day file removed");
        // the scans of the run that loads the day (its events go in together, or not
        // yet: a run that finds them still behind an older open transaction on a busy
        // server loads nothing and makes its own scans, which are not counted)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let before = index_scans(&self.client, index).await;
            let summary = self.loader.run(&mut self.client).await.expect("load");
            if summary.events > 0 {
                let scans = index_scans(&self.client, index).await - before;
                let rest = load_all_with(&mut self.client, &self.loader).await;
                assert_eq!(rest.events, 0, "the day's events were loaded in one run");
                return (scans, summary);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the day was not loaded in 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// A day-2 line item of a new order is new without a look into the line item link:
/// no link row can name an order key that its hub did not hold. Only the new line of
/// an order already loaded is probed for.
#[tokio::test]
async fn the_line_items_of_a_new_order_are_not_probed_for() {
    let mut days = Days::after_the_sample().await;
    // line items of the sample's first part and supplier
    let sample = std::fs::read_to_string(example().join("sample/lineitem.csv")).expect("sample");
    let mut lines = sample.lines();
    let header = lines.next().expect("header");
    // order key, part, supplier, line number, the rest
    let first: Vec<&str> = lines.next().expect("a line item").splitn(5, ',').collect();
    let rows = |lines: &[(i32, i32)]| -> Vec<String> {
        lines
            .iter()
            .map(|(order, line)| format!("{order},{},{},{line},{}", first[1], first[2], first[4]))
            .collect()
    };
    // day 2: a new line of order 1
    let (one_old, summary) = days
        .day("lineitem", header, &rows(&[(1, 8)]), "link_lineitem_pkey")
        .await;
    assert_eq!(summary.rows.get("link_lineitem"), Some(&1));
    assert_eq!(summary.rows.get("hub_order"), Some(&0));
    // day 3: the same for order 2, and three lines of order 99999, which is new
    let day3 = rows(&[(99999, 1), (99999, 2), (2, 9), (99999, 3)]);
    let (one_old_three_new, summary) = days
        .day("lineitem", header, &day3, "link_lineitem_pkey")
        .await;
    assert_eq!(summary.events, 4);
    assert_eq!(summary.rows.get("link_lineitem"), Some(&4));
    assert_eq!(summary.rows.get("hub_order"), Some(&1));
    assert_eq!(
        one_old_three_new, one_old,
        "the lines of the new order were not looked up"
    );
}

/// An update of a known customer is not probed for in the customer hub: its
/// satellite's version, read anyway, shows the key is there. Only a new customer's
/// key is probed for.
#[tokio::test]
async fn a_key_with_a_satellite_version_is_not_probed_for_in_its_hub() {
    let mut days = Days::after_the_sample().await;
    let header = "c_custkey,c_name,c_address,c_nationkey,c_phone,c_acctbal,c_mktsegment,c_comment";
    let rows = |keys: &[i32], day: i32| -> Vec<String> {
        keys.iter()
            .map(|k| {
                format!("{k},Customer#{k:09},Street {day},15,25-989-741-2988,{day}.00,BUILDING,day {day}")
            })
            .collect()
    };
    // day 2: one new customer
    let (one_new, summary) = days
        .day("customer", header, &rows(&[90001], 2), "hub_customer_pkey")
        .await;
    assert_eq!(summary.rows.get("hub_customer"), Some(&1));
    // day 3: another new one, and five known customers changed
    let day3 = rows(&[1, 2, 90002, 3, 4, 5], 3);
    let (one_new_five_known, summary) = days
        .day("customer", header, &day3, "hub_customer_pkey")
        .await;
    assert_eq!(summary.events, 6);
    assert_eq!(summary.rows.get("hub_customer"), Some(&1));
    assert_eq!(summary.rows.get("sat_customer"), Some(&6));
    assert_eq!(
        one_new_five_known, one_new,
        "the known customers were not probed for"
    );
}
