//! A real Kafka-protocol broker for the stream tests: `tansu` (an Apache Kafka
//! compatible broker in Rust, `cargo install --locked tansu --features dynostore`;
//! `.ci/run` installs it when missing), one per test, on a free port of 127.0.0.1 with
//! its in-memory storage engine. Killed when the test ends (its `Drop`), or by the
//! test ([`Broker::kill`]) and started again on the same port ([`Broker::restart`]):
//! the memory storage starts empty then (tansu 0.6.0 keeps nothing across a restart
//! without the `postgres` or S3 storage), so a test that restarts it produces again
//! what a broker keeping its data would still hold.

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
    child: Option<Child>,
    /// Where clients reach it (and what it advertises).
    pub addr: String,
    log: PathBuf,
    /// `--authentication` given: clients must log in with SASL. No client of the
    /// harness can: see [`Broker::start_authenticating`].
    authenticating: bool,
    /// Behind TLS (see [`Broker::start_tls`]).
    pub tls: Option<Tls>,
}

/// A broker behind TLS: its certificates and the proxy that terminates TLS.
pub struct Tls {
    /// `ca.pem` (the CA that signed `server.pem` for 127.0.0.1), `server.key`.
    pub dir: PathBuf,
    /// Where tansu itself listens, plain.
    plain: String,
    proxy: Option<Child>,
}

impl Broker {
    /// Start a broker and wait until it answers a metadata request.
    pub async fn start() -> Broker {
        Broker::start_with(false).await
    }

    /// Start a broker that requires SASL (tansu's `--authentication`), ready once it
    /// accepts connections. Tansu 0.6.0 built with `dynostore` offers SCRAM only (its
    /// SASL library lacks PLAIN: a PLAIN handshake ends with `NoSharedMechanism`), and
    /// a SCRAM user can only be made by a client already logged in, or stored before
    /// the start (not in memory storage): nothing can log in to this broker.
    pub async fn start_authenticating() -> Broker {
        Broker::start_with(true).await
    }

    async fn start_with(authenticating: bool) -> Broker {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tansu");
        std::fs::create_dir_all(&dir).expect("broker log directory");
        for attempt in 0..3 {
            let port = free_port();
            let mut broker = Broker {
                child: None,
                addr: format!("127.0.0.1:{port}"),
                log: dir.join(format!("tansu-{port}.log")),
                authenticating,
                tls: None,
            };
            if broker.launch().await {
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

    /// Start a broker that clients reach over TLS only. Tansu 0.6.0 takes `--cert` and
    /// `--key` but does not use them (its listener stays plain), so socat terminates
    /// TLS in front of it, with a certificate for 127.0.0.1 from a CA made for the test
    /// (openssl), and tansu advertises socat's address.
    pub async fn start_tls() -> Broker {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tansu");
        std::fs::create_dir_all(&dir).expect("broker log directory");
        for attempt in 0..3 {
            let (port, plain) = (free_port(), free_port());
            let certs = dir.join(format!("tls-{port}"));
            make_certificates(&certs);
            let mut broker = Broker {
                child: None,
                addr: format!("127.0.0.1:{port}"),
                log: dir.join(format!("tansu-{port}.log")),
                authenticating: false,
                tls: Some(Tls {
                    dir: certs,
                    plain: format!("127.0.0.1:{plain}"),
                    proxy: None,
                }),
            };
            if broker.launch().await {
                return broker;
            }
            eprintln!(
                "tansu behind TLS on port {port} did not come up (attempt {attempt}); see {}",
                broker.log.display()
            );
            broker.stop();
        }
        panic!("tansu did not start: see the logs under {}", dir.display());
    }

    /// Start the process (and the TLS proxy) on `self.addr` and wait until it answers.
    async fn launch(&mut self) -> bool {
        let advertised = format!("tcp://{}", self.addr);
        let listen = match &self.tls {
            Some(tls) => format!("tcp://{}", tls.plain),
            None => advertised.clone(),
        };
        let mut args = vec![
            "broker",
            "--listener-url",
            &listen,
            "--advertised-listener-url",
            &advertised,
            "--storage-engine",
            "memory://tansu/",
        ];
        if self.authenticating {
            args.push("--authentication");
        }
        let append = |path: PathBuf| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("broker log")
        };
        let child = Command::new(tansu())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(append(self.log.clone()))
            .stderr(append(self.log.with_extension("err")))
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        if let Some(tls) = &mut self.tls {
            let port = self.addr.rsplit(':').next().unwrap_or_default();
            let (cert, key) = (tls.dir.join("server.pem"), tls.dir.join("server.key"));
            let listen = format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
                cert.display(),
                key.display()
            );
            let proxy = Command::new("socat")
                .args([listen, format!("TCP:{}", tls.plain)])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(append(self.log.with_extension("socat")))
                .spawn()
                .expect("start socat (the TLS proxy)");
            tls.proxy = Some(proxy);
        }
        self.wait_ready(Duration::from_secs(20)).await
    }

    /// SIGKILL the broker (a crash: no goodbye to its clients).
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Start the broker again on the same port (empty: see the module's note), after
    /// [`Broker::kill`].
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart after kill");
        // the port may be held for a moment after the kill
        for _ in 0..3 {
            if self.launch().await {
                return;
            }
            self.stop();
        }
        panic!(
            "tansu did not start again on {}: see {}",
            self.addr,
            self.log.display()
        );
    }

    async fn wait_ready(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let exited = self.child.as_mut().map(|c| c.try_wait());
            if let Some(Ok(Some(status))) = exited {
                eprintln!("tansu exited: {status}");
                return false;
            }
            let open = std::net::TcpStream::connect(&self.addr).is_ok();
            if open && self.authenticating {
                return true;
            }
            if open {
                let ready = tokio::time::timeout(Duration::from_secs(5), async {
                    let client = self.builder().build().await?;
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

    fn builder(&self) -> ClientBuilder {
        let builder = ClientBuilder::new(vec![self.addr.clone()]);
        match &self.tls {
            Some(tls) => builder.tls_config(
                dvault::stream::kafka::tls_config(&tls.dir.join("ca.pem")).expect("the test CA"),
            ),
            None => builder,
        }
    }

    /// What the broker logged (stdout and stderr).
    pub fn logged(&self) -> String {
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        read(self.log.clone()) + &read(self.log.with_extension("err"))
    }

    pub async fn client(&self) -> Client {
        self.builder().build().await.expect("connect to the broker")
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
        if let Some(mut proxy) = self.tls.as_mut().and_then(|t| t.proxy.take()) {
            let _ = proxy.kill();
            let _ = proxy.wait();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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

/// In `dir`: `ca.pem` and `ca.key`, a CA, and `server.pem` and `server.key`, a
/// certificate it signed for 127.0.0.1 (P-256 keys: quick to make).
pub fn make_certificates(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).expect("certificate directory");
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("extensions");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
        [
            &["req"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    ];
    for (i, step) in steps.iter().enumerate() {
        let subject = if i == 0 {
            "/CN=dvault test CA"
        } else {
            "/CN=127.0.0.1"
        };
        let mut args = step.clone();
        if i < 2 {
            args.extend(["-subj", subject]);
        }
        args.extend(["-days", "2"]);
        let out = Command::new("openssl")
            .args(&args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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
