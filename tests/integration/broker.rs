//! A real Kafka-protocol broker for the stream tests: `tansu` (an Apache Kafka
//! compatible broker in Rust, `cargo install --locked tansu --features dynostore`;
//! `.ci/run` installs it when missing), one per test, on a free port of 127.0.0.1 with
//! its in-memory storage engine. Killed when the test ends (its `Drop`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;

/// The tansu binary: `$TANSU`, else `tansu` on PATH, else cargo's bin directory.
fn tansu() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    });
    if let Some(path) = on_path {
        return path;
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default();
    let path = home.join("bin").join("tansu");
    assert!(
        path.is_file(),
        "the stream tests need the tansu broker: `cargo install --locked tansu --features dynostore` \
         (or set TANSU to its binary)"
    );
    path
}

/// A free port of 127.0.0.1 (the kernel's choice; a race with another process taking
/// it before the broker does is retried by [`Broker::start`]).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub struct Broker {
    child: Child,
    pub addr: String,
    log: PathBuf,
}

impl Broker {
    /// Start a broker and wait until it answers a metadata request.
    pub async fn start() -> Broker {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tansu");
        std::fs::create_dir_all(&dir).expect("broker log directory");
        for attempt in 0..3 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let log = dir.join(format!("tansu-{port}.log"));
            let url = format!("tcp://{addr}");
            let child = Command::new(tansu())
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                    "--storage-engine",
                    "memory://tansu/",
                ])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).expect("broker log"))
                .stderr(std::fs::File::create(log.with_extension("err")).expect("broker log"))
                .spawn()
                .expect("start tansu");
            let mut broker = Broker { child, addr, log };
            if broker.wait_ready(Duration::from_secs(20)).await {
                return broker;
            }
            eprintln!(
                "tansu on port {port} did not come up (attempt {attempt}); see {}",
                broker.log.display()
            );
            broker.stop();
        }
        panic!("tansu did not start: see the logs under {}", dir.display());
    }

    async fn wait_ready(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!("tansu exited: {status}");
                return false;
            }
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                let ready = tokio::time::timeout(Duration::from_secs(5), async {
                    let client = ClientBuilder::new(vec![self.addr.clone()]).build().await?;
                    client.list_topics().await
                })
                .await;
                if matches!(ready, Ok(Ok(_))) {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub async fn client(&self) -> Client {
        ClientBuilder::new(vec![self.addr.clone()])
            .build()
            .await
            .expect("connect to the broker")
    }

    /// Create `topic` with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let client = self.client().await;
        client
            .controller_client()
            .expect("controller")
            .create_topic(topic, partitions, 1, 5_000)
            .await
            .expect("create topic");
    }

    /// Produce `records` to a partition, in requests of at most 500; their offsets.
    pub async fn produce(&self, topic: &str, partition: i32, records: Vec<Record>) -> Vec<i64> {
        let client = self.client().await;
        let pc = client
            .partition_client(topic, partition, UnknownTopicHandling::Retry)
            .await
            .expect("partition client");
        let mut offsets = Vec::with_capacity(records.len());
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let chunk: Vec<Record> = records.by_ref().take(500).collect();
            offsets.extend(
                pc.produce(chunk, Compression::NoCompression)
                    .await
                    .expect("produce"),
            );
        }
        offsets
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("the broker's log: {}", self.log.display());
        }
    }
}

/// A record with `value` and `headers`.
pub fn record(value: Option<&[u8]>, headers: &[(&str, &str)]) -> Record {
    Record {
        key: None,
        value: value.map(<[u8]>::to_vec),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect::<BTreeMap<_, _>>(),
        timestamp: Utc::now(),
    }
}
