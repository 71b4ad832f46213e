//! Kafka-protocol brokers for tests: the tansu broker process, and librdkafka's mock cluster kept
//! alive on a thread of its own and reachable over TCP on 127.0.0.1 by other processes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// The tansu binary: `DRIFTLINE_TANSU_BIN`, `~/.cache/driftline/tansu/bin/tansu`, or `tansu` on
/// `PATH`. `None` (after saying so) when there is none, unless `DRIFTLINE_REQUIRE_KAFKA=1`, when
/// it panics.
pub fn tansu_bin() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("DRIFTLINE_TANSU_BIN").map(PathBuf::from),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/driftline/tansu/bin/tansu")),
    ];
    let found = candidates.into_iter().flatten().find(|p| p.is_file()).or_else(|| {
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join("tansu")).find(|p| p.is_file()))
    });
    if found.is_none() {
        assert!(
            !crate::required("DRIFTLINE_REQUIRE_KAFKA"),
            "DRIFTLINE_REQUIRE_KAFKA=1 but no tansu broker binary was found; install it with \
             `cargo install tansu --locked --features dynostore --root ~/.cache/driftline/tansu`"
        );
        eprintln!("skipping: no tansu broker binary (set DRIFTLINE_TANSU_BIN)");
    }
    found
}

/// A tansu broker process (memory storage) on a free loopback port, killed when dropped.
pub struct Tansu {
    child: Child,
    bin: PathBuf,
    /// `127.0.0.1:PORT`.
    pub bootstrap: String,
}

impl Tansu {
    /// Starts the broker and waits (at most 30 s) until it listens.
    pub fn start(bin: &std::path::Path) -> Tansu {
        let port = crate::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args(["broker", "--storage-engine", "memory://tansu/", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let broker = Tansu { child, bin: bin.to_owned(), bootstrap: format!("127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        broker
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let url = format!("tcp://{}", self.bootstrap);
        let status = Command::new(&self.bin)
            .args(["topic", "create", "--broker", &url, "--partitions", &partitions.to_string(), topic])
            .env("RUST_LOG", "warn")
            .status()
            .expect("run tansu topic create");
        assert!(status.success(), "tansu topic create {topic} failed");
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// librdkafka's mock cluster, a real Kafka-protocol broker on 127.0.0.1 with a full consumer-group
/// coordinator, owned by a thread of its own (the cluster handle cannot move between threads)
/// and shut down when this value is dropped.
///
/// Facts about the mock that tests must allow for: it has no CreateTopics handler (topics are made
/// with [`MockBroker::start`]; auto-created ones get 4 partitions); it drops a dead member only at
/// the session timeout and then waits about another session timeout, so a takeover after a
/// SIGKILL takes about twice `session.timeout.ms`; it refuses offset commits during a rebalance.
pub struct MockBroker {
    /// The bootstrap address, `127.0.0.1:PORT`.
    pub bootstrap: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockBroker {
    /// Starts a one-broker mock cluster with these topics (name, partitions).
    pub fn start(topics: &[(&str, i32)]) -> MockBroker {
        let topics: Vec<(String, i32)> = topics.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mock-kafka".into())
            .spawn(move || {
                let cluster = MockCluster::new(1).expect("create the mock cluster");
                for (topic, partitions) in &topics {
                    cluster.create_topic(topic, *partitions, 1).expect("create a mock topic");
                }
                ready_tx.send(cluster.bootstrap_servers()).expect("hand over the bootstrap address");
                // Serves until told to stop or until the owner is gone.
                let _ = stop_rx.recv();
                drop(cluster);
            })
            .expect("start the mock cluster thread");
        let bootstrap = ready_rx.recv_timeout(Duration::from_secs(30)).expect("the mock cluster started");
        MockBroker { bootstrap, stop: Some(stop_tx), thread: Some(thread) }
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A producer for tests: sends keyed messages to chosen partitions, waiting when its queue is
/// full, and flushes (every message acknowledged) on [`TestProducer::flush`].
pub struct TestProducer {
    producer: BaseProducer,
    bootstrap: String,
}

impl TestProducer {
    /// A producer of `bootstrap` with `acks=all`, compressing its batches with lz4 (so that
    /// librdkafka's mock cluster, which keeps at most 5 MiB per partition, holds more).
    pub fn new(bootstrap: &str) -> TestProducer {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "20")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .create()
            .expect("create a producer");
        TestProducer { producer, bootstrap: bootstrap.to_owned() }
    }

    /// Sends one message (to `partition`, or to the partitioner's choice).
    pub fn send(&self, topic: &str, partition: Option<i32>, key: &str, payload: &[u8]) {
        loop {
            let mut record = BaseRecord::to(topic).key(key).payload(payload);
            if let Some(p) = partition {
                record = record.partition(p);
            }
            match self.producer.send(record) {
                Ok(()) => break,
                Err((rdkafka::error::KafkaError::MessageProduction(_), _)) => {
                    // Queue full: serve deliveries, then try again.
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("produce to {topic}: {e}"),
            }
        }
        self.producer.poll(Duration::ZERO);
    }

    /// The partition's low and high watermarks.
    pub fn watermarks(&self, topic: &str, partition: i32) -> (i64, i64) {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", "watermarks")
            .create()
            .expect("a consumer");
        c.fetch_watermarks(topic, partition, Duration::from_secs(10)).expect("watermarks")
    }

    /// Waits (at most two minutes) until every message sent is acknowledged.
    pub fn flush(&self) {
        self.producer.flush(Duration::from_secs(120)).expect("every message delivered");
    }
}
