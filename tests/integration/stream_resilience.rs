//! `dvault stream` through what happens to a running consumer, against a real broker
//! (tansu, see `broker.rs`): the broker killed and started again mid-stream, a
//! partition added while it runs, two processes of one group sharing the partitions
//! (one of them killed), and a broker that requires SASL PLAIN. Each ends with every
//! record produced in the log exactly once, at its place.
//!
//! Tansu 0.6.0's memory storage starts empty after a restart and it has no
//! CreatePartitions: a restarted broker gets its topic created again and the same
//! records produced again in the same requests (the same offsets and record-batch
//! boundaries a broker that kept its data would serve), and a partition is added by
//! creating the topic again with one more across such a restart. The stream is held
//! (SIGSTOP) while that happens, so that it meets the broker only once its data is
//! back, as it would a broker with durable storage.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rskafka::record::Record;
use tokio_postgres::Client;

use crate::broker::{Broker, record};
use crate::harness::TestDb;

/// `n` plain JSON clicks for partition `p`, numbered from `from`.
fn clicks(p: i32, from: i64, n: i64) -> Vec<Record> {
    (from..from + n)
        .map(|i| {
            let v = format!(r#"{{"customer_id":"C{p}-{i}","timestamp":"2026-10-05T04:53:59"}}"#);
            record(Some(v.as_bytes()), &[])
        })
        .collect()
}

/// A `dvault stream` process on topic `clicks`, group `tests`, until stopped; its log
/// (at info) in a file.
struct Streamer {
    child: Option<Child>,
    log: PathBuf,
}

impl Streamer {
    fn spawn(db: &TestDb, broker: &Broker, name: &str) -> Streamer {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("stream-logs");
        std::fs::create_dir_all(&dir).expect("log directory");
        let log = dir.join(format!("{}-{name}.log", db.name));
        let child = Command::new(env!("CARGO_BIN_EXE_dvault"))
            .args([
                "stream",
                "--topic",
                "clicks",
                "--group",
                "tests",
                "--type",
                "page_viewed",
                "--source",
                "web",
                "--time-field",
                "timestamp",
                "--batch-size",
                "100",
                "--refresh-secs",
                "1",
                "--retry-max-secs",
                "1",
                "--max-wait-ms",
                "100",
                // a fetch brings one record batch (the 500 records of one produce)
                "--fetch-bytes",
                "1024",
                "--log",
                "info",
            ])
            .env("DATABASE_URL", &db.url)
            .env("DVAULT_KAFKA_BROKERS", &broker.addr)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start dvault stream");
        Streamer {
            child: Some(child),
            log,
        }
    }

    fn pid(&self) -> String {
        self.child
            .as_ref()
            .map(|c| c.id().to_string())
            .expect("running")
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{signal}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log lines with `text`.
    fn lines(&self, text: &str) -> usize {
        self.log().lines().filter(|l| l.contains(text)).count()
    }

    /// Panic (showing the log) if the process has exited.
    fn assert_running(&mut self, when: &str) {
        let exited = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            panic!("{when}: dvault stream exited ({status}):\n{}", self.log());
        }
    }

    /// SIGKILL.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
        }
    }

    /// SIGTERM, and what it said on stdout.
    fn stop(mut self) -> (ExitStatus, String) {
        self.signal("TERM");
        let out = self
            .child
            .take()
            .expect("running")
            .wait_with_output()
            .expect("wait");
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // a stopped process does not die of SIGKILL until continued
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
        if std::thread::panicking() {
            eprintln!("dvault stream's log: {}", self.log.display());
        }
    }
}

async fn events(client: &Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM event_log.events", &[])
        .await
        .expect("count")
        .get(0)
}

/// Wait until the log holds `want` events, the streams running.
async fn wait_for_events(client: &Client, want: i64, streams: &mut [&mut Streamer], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = events(client).await;
        if n >= want {
            assert_eq!(n, want, "{what}: more events than records produced");
            return;
        }
        for s in streams.iter_mut() {
            s.assert_running(what);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {n} events of {want} after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until `s`'s log has `n` lines with `text`.
async fn wait_for_lines(s: &mut Streamer, text: &str, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.lines(text) < n {
        s.assert_running(what);
        assert!(
            Instant::now() < deadline,
            "{what}: {} lines with {text:?} after 30 s:\n{}",
            s.lines(text),
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every record of `clicks` (partition, count) in the log once, at its place, and the
/// stored offsets at the ends.
async fn exactly_once(client: &Client, partitions: &[(i32, i64)]) {
    let total: i64 = partitions.iter().map(|(_, n)| n).sum();
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT event_id), count(DISTINCT payload::text)
               FROM event_log.events",
            &[],
        )
        .await
        .expect("counts");
    let counts: (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(counts, (total, total, total), "events, ids, payloads");
    for &(p, n) in partitions {
        // the record at offset o of partition p is click number o of p
        let placed: i64 = client
            .query_one(
                "SELECT count(*) FROM event_log.events e
                   JOIN generate_series(0, $2::bigint - 1) o
                     ON e.event_id = format('clicks/%s/%s', $1::integer, o)
                    AND e.payload->>'customer_id' = format('C%s-%s', $1::integer, o)",
                &[&p, &n],
            )
            .await
            .expect("placed")
            .get(0);
        assert_eq!(placed, n, "partition {p}");
    }
    let stored: Vec<(i32, i64, i64)> = client
        .query(
            "SELECT partition, next_offset, high_watermark FROM ops.stream_offsets
              WHERE consumer_group = 'tests' AND topic = 'clicks' ORDER BY 1",
            &[],
        )
        .await
        .expect("offsets")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected: Vec<(i32, i64, i64)> = partitions.iter().map(|&(p, n)| (p, n, n)).collect();
    assert_eq!(stored, expected);
}

#[tokio::test]
async fn a_broker_killed_and_restarted_mid_stream_is_waited_out_with_nothing_lost_or_twice() {
    let (db, mut broker) = (TestDb::new().await, Broker::start().await);
    broker.create_topic("clicks", 2).await;
    let (before, after) = (5_000, 1_000);
    for p in 0..2 {
        broker.produce("clicks", p, clicks(p, 0, before)).await;
    }
    let client = db.client().await;
    let mut stream = Streamer::spawn(&db, &broker, "restart");
    let deadline = Instant::now() + Duration::from_secs(60);
    while events(&client).await < 1_000 {
        stream.assert_running("before the kill");
        assert!(Instant::now() < deadline, "no 1,000 events after 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    broker.kill();
    let at_kill = events(&client).await;
    eprintln!(
        "the broker killed with {at_kill} of {} events in the log",
        2 * before
    );
    // the stream waits the broker out, says so, and does not exit
    wait_for_lines(
        &mut stream,
        "cannot fetch: the broker does not answer",
        1,
        "broker down",
    )
    .await;
    stream.assert_running("broker down");
    // held while the broker comes back with its data (see the module's note)
    stream.signal("STOP");
    broker.restart().await;
    broker.create_topic("clicks", 2).await;
    for p in 0..2 {
        broker.produce("clicks", p, clicks(p, 0, before)).await;
        broker.produce("clicks", p, clicks(p, before, after)).await;
    }
    stream.signal("CONT");
    let total = 2 * (before + after);
    wait_for_events(&client, total, &mut [&mut stream], "after the restart").await;
    wait_for_lines(
        &mut stream,
        "fetching again: the broker answers",
        1,
        "back again",
    )
    .await;
    // nothing comes twice later either
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(events(&client).await, total);
    let (status, said) = stream.stop();
    assert!(status.success(), "{status}: {said}");
    exactly_once(&client, &[(0, before + after), (1, before + after)]).await;
}

#[tokio::test]
async fn a_partition_added_while_the_stream_runs_is_consumed_from_the_next_refresh() {
    let (db, mut broker) = (TestDb::new().await, Broker::start().await);
    broker.create_topic("clicks", 1).await;
    broker.produce("clicks", 0, clicks(0, 0, 1_000)).await;
    let client = db.client().await;
    let mut stream = Streamer::spawn(&db, &broker, "added");
    wait_for_events(&client, 1_000, &mut [&mut stream], "one partition").await;
    assert_eq!(stream.lines("a new partition"), 0);

    // tansu 0.6.0 has no CreatePartitions: the topic comes back with two partitions
    // across a restart, partition 0 as it was (see the module's note)
    stream.signal("STOP");
    broker.kill();
    broker.restart().await;
    broker.create_topic("clicks", 2).await;
    broker.produce("clicks", 0, clicks(0, 0, 1_000)).await;
    broker.produce("clicks", 0, clicks(0, 1_000, 200)).await;
    broker.produce("clicks", 1, clicks(1, 0, 700)).await;
    stream.signal("CONT");
    let resumed = Instant::now();
    wait_for_events(&client, 1_900, &mut [&mut stream], "two partitions").await;
    eprintln!("the new partition consumed {:?} after", resumed.elapsed());
    assert_eq!(stream.lines("a new partition partition=clicks/1"), 1);
    let (status, said) = stream.stop();
    assert!(status.success(), "{status}: {said}");
    assert!(
        said.contains("consumed 1,900 records from 2 partitions: 1,900 events appended"),
        "{said}"
    );
    exactly_once(&client, &[(0, 1_200), (1, 700)]).await;
}

#[tokio::test]
async fn two_streams_of_one_group_share_the_partitions_and_store_every_record_once() {
    let (db, broker) = (TestDb::new().await, Broker::start().await);
    broker.create_topic("clicks", 4).await;
    let (rounds, per_round) = (10, 100);
    let produce_round = |round: i64| {
        let broker = &broker;
        async move {
            for p in 0..4 {
                broker
                    .produce("clicks", p, clicks(p, round * per_round, per_round))
                    .await;
            }
        }
    };
    produce_round(0).await;
    let client = db.client().await;
    let mut a = Streamer::spawn(&db, &broker, "a");
    wait_for_lines(&mut a, "consuming partition=", 4, "a alone").await;
    let mut b = Streamer::spawn(&db, &broker, "b");
    // within a refresh or two a lets two go and b takes them
    wait_for_lines(&mut b, "consuming partition=", 2, "b joins").await;
    assert_eq!(a.lines("letting the partition go"), 2, "{}", a.log());
    for round in 1..rounds / 2 {
        produce_round(round).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_events(
        &client,
        4 * per_round * rounds / 2,
        &mut [&mut a, &mut b],
        "both",
    )
    .await;
    // b dies; a takes its partitions back at its next refresh
    b.kill();
    for round in rounds / 2..rounds {
        produce_round(round).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_events(&client, 4 * per_round * rounds, &mut [&mut a], "a again").await;
    assert_eq!(a.lines("consuming partition="), 6, "{}", a.log());
    let (status, said) = a.stop();
    assert!(status.success(), "{status}: {said}");
    exactly_once(
        &client,
        &[
            (0, rounds * per_round),
            (1, rounds * per_round),
            (2, rounds * per_round),
            (3, rounds * per_round),
        ],
    )
    .await;
}

#[tokio::test]
async fn sasl_plain_credentials_from_the_environment_are_offered_to_the_broker() {
    // tansu 0.6.0 (dynostore build) cannot accept a login (see
    // `Broker::start_authenticating`): what is shown is that dvault offers PLAIN with
    // the credentials of the environment, that the broker's refusal is reported and
    // waited out, and that nothing is consumed
    let (db, broker) = (TestDb::new().await, Broker::start_authenticating().await);
    let password = "s3cret-for-the-test";
    let stream = |sasl: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dvault"));
        cmd.args([
            "stream",
            "--topic",
            "clicks",
            "--retry-max-secs",
            "1",
            "--log",
            "debug",
        ])
        .env("DATABASE_URL", &db.url)
        .env("DVAULT_KAFKA_BROKERS", &broker.addr)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        if sasl {
            cmd.env("DVAULT_KAFKA_SASL_USER", "dvault")
                .env("DVAULT_KAFKA_SASL_PASSWORD", password);
        }
        cmd.spawn().expect("dvault stream")
    };
    let mut offered = stream(true);
    tokio::time::sleep(Duration::from_secs(7)).await;
    let running = offered.try_wait().expect("try_wait").is_none();
    let _ = offered.kill();
    let out = offered.wait_with_output().expect("output");
    let logged = String::from_utf8_lossy(&out.stderr);
    assert!(running, "exited: {logged}");
    assert!(
        logged.contains("Sasl handshake failed")
            && logged.contains("cannot reach the Kafka brokers: still trying"),
        "{logged}"
    );
    assert!(
        !logged.contains(password),
        "the password is logged:\n{logged}"
    );
    assert!(
        broker.logged().contains("NoSharedMechanism"),
        "{}",
        broker.logged()
    );

    // without credentials no handshake is tried: the broker refuses the requests
    let mut anonymous = stream(false);
    tokio::time::sleep(Duration::from_secs(7)).await;
    let _ = anonymous.kill();
    let out = anonymous.wait_with_output().expect("output");
    let logged = String::from_utf8_lossy(&out.stderr);
    assert!(
        logged.contains("cannot reach the Kafka brokers: still trying")
            && !logged.contains("Sasl handshake"),
        "{logged}"
    );
    assert_eq!(events(&db.client().await).await, 0);
}

#[tokio::test]
async fn tls_to_the_brokers_trusts_the_ca_of_tls_ca_and_no_other() {
    let (db, broker) = (TestDb::new().await, Broker::start_tls().await);
    broker.create_topic("clicks", 1).await;
    broker.produce("clicks", 0, clicks(0, 0, 10)).await;
    let dir = broker.tls.as_ref().map(|t| t.dir.clone()).expect("tls");
    let stream = |ca: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_dvault"))
            .args([
                "stream",
                "--topic",
                "clicks",
                "--group",
                "tests",
                "--type",
                "page_viewed",
                "--source",
                "web",
                "--time-field",
                "timestamp",
                "--retry-max-secs",
                "1",
                "--exit-at-end",
            ])
            .env("DATABASE_URL", &db.url)
            .env("DVAULT_KAFKA_BROKERS", &broker.addr)
            .env("DVAULT_KAFKA_TLS_CA", ca)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dvault stream")
    };

    // a CA that did not sign the broker's certificate: no connection (it says why,
    // and keeps trying, as for a broker out of reach)
    let other = dir.join("other");
    crate::broker::make_certificates(&other);
    let mut refused = stream(&other.join("ca.pem"));
    tokio::time::sleep(Duration::from_secs(8)).await;
    let still = refused.try_wait().expect("try_wait").is_none();
    let _ = refused.kill();
    let out = refused.wait_with_output().expect("output");
    let logged = String::from_utf8_lossy(&out.stderr);
    assert!(still, "exited: {logged}");
    assert!(
        logged.contains("cannot reach the Kafka brokers: still trying")
            && logged.contains("invalid peer certificate"),
        "{logged}"
    );
    assert_eq!(events(&db.client().await).await, 0);

    // the broker's CA
    let out = stream(&dir.join("ca.pem"))
        .wait_with_output()
        .expect("output");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: {said}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("consumed 10 records from 1 partitions: 10 events appended"),
        "{said}"
    );
    exactly_once(&db.client().await, &[(0, 10)]).await;
}
