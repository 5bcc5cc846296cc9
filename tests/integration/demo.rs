//! `dvault demo` (library side): the load it does is recorded like `dvault load`'s,
//! it ends like one (the RFM boundaries of every past day kept), and the queries its
//! tour suggests run on what it loaded.

use dvault::config::Config;
use dvault::demo::{DemoOptions, SAMPLE_QUERIES, prepare};

use crate::harness::TestDb;
use crate::ingest::tempdir;

#[tokio::test]
async fn the_demo_load_is_a_recorded_run_and_its_tour_queries_run() {
    let db = TestDb::new().await;
    let dir = tempdir::Dir::new();
    let config = Config {
        database_url: Some(db.url.clone()),
        home: dir.path().to_path_buf(),
    };
    let opts = DemoOptions {
        data_dir: dir.path().join("data"),
        customers: 200,
        products: 80,
        orders: 600,
    };
    let demo = prepare(&config, &opts).await.expect("demo");
    assert!(demo.tour.contains("mart.customer_360"), "{}", demo.tour);

    let client = db.client().await;
    let runs = client
        .query(
            "SELECT trigger, kind, status, events_read FROM ops.load_runs ORDER BY id",
            &[],
        )
        .await
        .expect("runs");
    let logged: i64 = client
        .query_one("SELECT count(*) FROM event_log.events", &[])
        .await
        .expect("log")
        .get(0);
    assert_eq!(runs.len(), 1, "one load run");
    let run = &runs[0];
    assert_eq!(
        (
            run.get::<_, String>(0),
            run.get::<_, String>(1),
            run.get::<_, String>(2)
        ),
        ("manual".into(), "load".into(), "succeeded".into())
    );
    assert_eq!(run.get::<_, Option<i64>>(3), Some(logged));

    // the run's end kept the RFM boundaries and the population figures of every day
    // from the earliest order's to yesterday
    let kept = client
        .query_one(
            "SELECT count(*) FILTER (WHERE m.by_loader),
                    (SELECT count(DISTINCT p.as_of) FROM business_vault.population_as_of p
                      WHERE p.by_loader),
                    (now() AT TIME ZONE 'UTC')::date
                      - (SELECT (min(o.ordered_at) AT TIME ZONE 'UTC')::date
                           FROM business_vault.order_summary o)
               FROM business_vault.rfm_cutpoints_as_of m",
            &[],
        )
        .await
        .expect("kept days");
    let (cuts, population, expected): (i64, i64, i32) = (kept.get(0), kept.get(1), kept.get(2));
    assert!(
        expected > 300,
        "the demo's orders span a year: {expected} days"
    );
    assert_eq!(
        (cuts, population),
        (i64::from(expected), i64::from(expected))
    );
    // and their sales: a day mid-year and the last two, against the orders and products
    // of then (every day is marked kept)
    let differing = crate::views::sales_differing(
        "as_of > now() - interval '2 days'
         OR (as_of AT TIME ZONE 'UTC')::date = (now() AT TIME ZONE 'UTC')::date - 180",
    );
    let differing = client.query(&differing, &[]).await.expect("kept sales");
    assert_eq!(differing.len(), 0, "kept sales that differ");

    for q in SAMPLE_QUERIES {
        let rows = client
            .query(*q, &[])
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        assert!(!rows.is_empty(), "{q} answers something");
    }
}
