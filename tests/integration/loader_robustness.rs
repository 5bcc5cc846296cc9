//! The loader under random batch splits and under a connection lost mid-batch.

use std::time::Duration;

use chrono::{DateTime, Duration as Days, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::json;

use dvault::events::{self, NewEvent};
use dvault::load::Loader;
use dvault::mapping::Mappings;

use crate::harness::{TestDb, load_all_with, vault_checksums};

/// One generated event: which customer, what kind, business day, values.
#[derive(Debug, Clone)]
struct Step {
    customer: u8,
    kind: u8,
    day: i64,
    city: u8,
    email: u8,
}

fn step() -> impl Strategy<Value = Step> {
    (0u8..3, 0u8..4, 0i64..20, 0u8..3, 0u8..2).prop_map(|(customer, kind, day, city, email)| Step {
        customer,
        kind,
        day,
        city,
        email,
    })
}

fn to_event(i: usize, s: &Step) -> NewEvent {
    let time: DateTime<Utc> = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date")
        + Days::days(s.day);
    let id = format!("C{}", s.customer);
    let city = ["Rome", "Oslo", "Lima"][s.city as usize];
    let email = format!("c{}-{}@example.com", s.customer, s.email);
    let status = ["placed", "paid", "shipped"][s.city as usize];
    let (ty, data) = match s.kind {
        0 => (
            "customer_registered",
            json!({"customer_id": id, "first_name": "Ann", "city": city, "email": email, "signup_date": "2024-01-01"}),
        ),
        1 => ("customer_updated", json!({"customer_id": id, "city": city})),
        2 => (
            "customer_updated",
            json!({"customer_id": id, "email": email}),
        ),
        _ => (
            "order_placed",
            json!({"order_id": format!("O{i}"), "customer_id": id, "ordered_at": time.to_rfc3339(),
                   "status": status,
                   "lines": [{"line_no": 1, "product_id": format!("P{}", s.email), "quantity": 1 + s.city as i64, "unit_price": 5, "discount": 0}]}),
        ),
    };
    NewEvent {
        event_id: format!("e{i}"),
        event_type: ty.into(),
        source: "prop".into(),
        occurred_at: time,
        payload: data.to_string(),
    }
}

async fn split_load_equals_rebuild(steps: Vec<Step>, chunks: Vec<usize>, batch: i64) {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let mut loader = Loader::new(&client, Mappings::builtin().expect("mappings"))
        .await
        .expect("loader");
    loader.batch_size = batch;
    let events: Vec<NewEvent> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| to_event(i, s))
        .collect();
    // append in chunks, loading (in small batches) after each
    let mut rest = &events[..];
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        events::append(&client, &rest[..n]).await.expect("append");
        rest = &rest[n..];
        load_all_with(&mut client, &loader).await;
    }
    let incremental = vault_checksums(&client).await;
    loader.batch_size = 10_000;
    dvault::load::rebuild(&mut client, &loader)
        .await
        .expect("rebuild");
    load_all_with(&mut client, &loader).await;
    assert_eq!(incremental, vault_checksums(&client).await);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 50, ..ProptestConfig::default() })]

    /// Whatever the order of business times and however the log is split into
    /// appends and batches, the vault equals one rebuild of the whole log.
    #[test]
    fn any_batch_split_gives_the_vault_of_one_rebuild(
        steps in prop::collection::vec(step(), 1..40),
        chunks in prop::collection::vec(1usize..8, 1..5),
        batch in 1i64..6,
    ) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(split_load_equals_rebuild(steps, chunks, batch));
    }
}

/// A batch whose connection dies inside its transaction leaves nothing behind and
/// does not move the checkpoint; the next load ends where an uninterrupted one would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_batch_loses_and_duplicates_nothing() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let steps: Vec<Step> = (0..60)
        .map(|i| Step {
            customer: (i % 3) as u8,
            kind: (i % 4) as u8,
            day: (i * 7 % 20) as i64,
            city: (i % 3) as u8,
            email: (i % 2) as u8,
        })
        .collect();
    let events: Vec<NewEvent> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| to_event(i, s))
        .collect();
    events::append(&client, &events[..30])
        .await
        .expect("append");
    let loader = Loader::new(&client, Mappings::builtin().expect("mappings"))
        .await
        .expect("loader");
    load_all_with(&mut client, &loader).await;
    events::append(&client, &events[30..])
        .await
        .expect("append");
    let before = vault_checksums(&client).await;
    let checkpoint_before = events::load_checkpoint(&client, dvault::load::CONSUMER)
        .await
        .expect("checkpoint");

    // Sabotage: the batch stalls inside its transaction, after hubs and links are
    // written, when it reaches the order status satellite.
    client
        .batch_execute(
            "CREATE FUNCTION public.stall() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$;
             CREATE TRIGGER stall AFTER INSERT ON raw_vault.sat_order_status
               FOR EACH STATEMENT EXECUTE FUNCTION public.stall();",
        )
        .await
        .expect("sabotage");
    let mut victim = db.client().await;
    let victim_pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let victim_loader = loader.clone();
    // Retry while the load finds nothing yet: it cannot read past write
    // transactions that other tests hold open on the same server.
    let load = tokio::spawn(async move {
        loop {
            match victim_loader.run(&mut victim).await {
                Ok(s) if s.events == 0 => tokio::time::sleep(Duration::from_millis(20)).await,
                other => return other,
            }
        }
    });
    // wait until it sleeps inside the trigger, then kill its connection
    let mut waited = 0;
    loop {
        let sleeping: bool = client
            .query_one(
                "SELECT coalesce(bool_or(wait_event = 'PgSleep'), false) FROM pg_stat_activity WHERE pid = $1",
                &[&victim_pid],
            )
            .await
            .expect("activity")
            .get(0);
        if sleeping {
            break;
        }
        waited += 1;
        assert!(waited < 3000, "the load never reached the sabotaged table");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    client
        .execute("SELECT pg_terminate_backend($1)", &[&victim_pid])
        .await
        .expect("terminate");
    let failed = load.await.expect("join");
    assert!(failed.is_err(), "the killed load must report an error");

    assert_eq!(
        vault_checksums(&client).await,
        before,
        "nothing of the batch stayed"
    );
    assert_eq!(
        events::load_checkpoint(&client, dvault::load::CONSUMER)
            .await
            .expect("checkpoint"),
        checkpoint_before
    );

    client
        .batch_execute("DROP TRIGGER stall ON raw_vault.sat_order_status")
        .await
        .expect("repair");
    load_all_with(&mut client, &loader).await;
    let resumed = vault_checksums(&client).await;
    dvault::load::rebuild(&mut client, &loader)
        .await
        .expect("rebuild");
    load_all_with(&mut client, &loader).await;
    assert_eq!(resumed, vault_checksums(&client).await);
}

/// Reading ahead on a second connection (the CLI's way) gives the same vault as
/// one batch at a time, with events appended while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_ahead_loads_equal_sequential_loads() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let steps: Vec<Step> = (0..200)
        .map(|i| Step {
            customer: (i % 3) as u8,
            kind: (i % 4) as u8,
            day: (i * 13 % 20) as i64,
            city: (i % 3) as u8,
            email: (i % 2) as u8,
        })
        .collect();
    let events: Vec<NewEvent> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| to_event(i, s))
        .collect();
    events::append(&client, &events[..150])
        .await
        .expect("append");
    let mut loader = Loader::new(&client, Mappings::builtin().expect("mappings"))
        .await
        .expect("loader")
        .with_read_ahead(&db.url);
    loader.batch_size = 7;
    let appender = db.client().await;
    let late = events[150..].to_vec();
    let (loaded, appended) = tokio::join!(loader.run(&mut client), async {
        events::append(&appender, &late).await
    });
    loaded.expect("read-ahead load");
    appended.expect("append");
    load_all_with(&mut client, &loader).await;
    let pipelined = vault_checksums(&client).await;
    let sequential = Loader::new(&client, Mappings::builtin().expect("mappings"))
        .await
        .expect("loader");
    dvault::load::rebuild(&mut client, &sequential)
        .await
        .expect("rebuild");
    load_all_with(&mut client, &sequential).await;
    assert_eq!(pipelined, vault_checksums(&client).await);
}
