//! End to end against a real Kafka-protocol broker process (tansu, memory storage) and the real
//! `driftline ingest` process: SIGKILLs while draining, a Postgres restart, two consumers in one
//! group. The store must hold every event exactly once and every malformed message exactly once
//! in `dead_letters`.
//!
//! The broker binary comes from `DRIFTLINE_TANSU_BIN`, `~/.cache/driftline/tansu/bin/tansu` or
//! `PATH`. Without one the tests are skipped, unless `DRIFTLINE_REQUIRE_KAFKA=1`, when they fail.

use std::path::Path;
use std::time::{Duration, Instant};

use driftline_testkit::kafka::tansu_bin;
use driftline_testkit::{IngestProcess, Tansu, TestDatabase};
use rand::Rng;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use sqlx::{Connection, PgConnection};

const EVENTS: u32 = 200_000;
/// Every this many events, one malformed message is produced as well.
const MALFORMED_EVERY: u32 = 997;
const T0: i64 = 1_700_000_000_000;
/// The killed processes read every partition themselves rather than through the consumer group:
/// tansu 0.6 does not hand a dead group leader's partitions to the survivors (observed: the
/// restarted consumer is assigned nothing, indefinitely), and a group-managed restart would
/// test the broker's coordinator instead of driftline.
const SELF_ASSIGNED: &[&str] = &["--partitions", "all"];

/// The scenarios run one at a time: each drives a broker, Postgres and several processes, and
/// the kills are timed by progress, which two cores shared three ways would distort.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every message of a one-partition topic, as (`driftline-source` header, key, payload,
/// `driftline-reason` header), read until `expected` have arrived and nothing more comes for a
/// second (bounded).
fn read_dead_letter_topic(bootstrap: &str, topic: &str, expected: usize) -> Vec<(String, Vec<u8>, Vec<u8>, String)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    use rdkafka::{Message, Offset, TopicPartitionList};
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "e2e-dead-letter-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    reader.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline && (out.len() < expected || quiet_since.elapsed() < Duration::from_secs(1)) {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let header = |name: &str| {
                    let h = m.headers().expect("a forwarded dead letter has headers");
                    let value = h.iter().find(|h| h.key == name).and_then(|h| h.value).expect(name);
                    String::from_utf8(value.to_vec()).unwrap()
                };
                out.push((
                    header(driftline_ingest::SOURCE_HEADER),
                    m.key().unwrap_or_default().to_vec(),
                    m.payload().unwrap_or_default().to_vec(),
                    header(driftline_ingest::REASON_HEADER),
                ));
                quiet_since = Instant::now();
            }
            Some(Err(e)) => eprintln!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// The stored dead letters as (source, key, raw, reason), sorted.
async fn stored_dead_letters(url: &str) -> Vec<(String, Vec<u8>, Vec<u8>, String)> {
    let mut c = PgConnection::connect(url).await.unwrap();
    sqlx::query_as("SELECT source, coalesce(source_key, ''::bytea), raw, reason FROM dead_letters ORDER BY 1, 2, 3, 4")
        .fetch_all(&mut c)
        .await
        .unwrap()
}

fn event(i: u32) -> String {
    format!(
        r#"{{"v":1,"type":"prediction","uuid":"00000000-0000-4000-8000-{i:012}","model_crn":"m","model_build_crn":"b","model_deployment_crn":"d","start_timestamp_ms":{},"end_timestamp_ms":{},"metrics":{{"input":{{"x":{i}}},"prediction":0.5}}}}"#,
        T0 + i64::from(i) * 1_000,
        T0 + i64::from(i) * 1_000 + 4
    )
}

/// Produces the valid events and the malformed ones; returns the number of malformed ones.
fn produce(bootstrap: &str, topic: &str) -> u64 {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("acks", "all")
        .create()
        .unwrap();
    let mut malformed = 0;
    let send = |key: String, payload: String| loop {
        match producer.send(BaseRecord::to(topic).key(&key).payload(&payload)) {
            Ok(()) => break,
            Err((e, _)) => {
                // Queue full: serve deliveries, then try again.
                assert!(matches!(e, rdkafka::error::KafkaError::MessageProduction(_)), "{e}");
                producer.poll(Duration::from_millis(10));
            }
        }
    };
    for i in 0..EVENTS {
        send(format!("e{i}"), event(i));
        if i % MALFORMED_EVERY == 0 {
            malformed += 1;
            send(format!("bad{i}"), format!("{{\"v\":1,\"type\":\"prediction\",\"broken\":{i}"));
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120)).expect("all messages delivered");
    malformed
}

/// A `driftline ingest` process of group `e2e`, with `extra` flags (such as `--partitions all`).
fn ingest(bootstrap: &str, topic: &str, database_url: &str, extra: &[&str]) -> IngestProcess {
    let args: Vec<String> = ["--kafka-brokers", bootstrap, "--topic", topic, "--group", "e2e"]
        .iter()
        .chain(extra)
        .chain(&["--database-url", database_url, "--batch-size", "2000", "--linger-ms", "100"])
        .map(|s| (*s).to_owned())
        .collect();
    IngestProcess::start(Path::new(env!("CARGO_BIN_EXE_driftline")), &args, None)
}

/// Events stored by a process, from its metrics.
fn stored_by(process: &IngestProcess) -> u64 {
    process.metric("driftline_events_stored_total{source=\"kafka\"} ").unwrap_or(0.0) as u64
}

struct Totals {
    predictions: i64,
    distinct_uuids: i64,
    dead_letters: i64,
    distinct_dead_letters: i64,
}

async fn totals(url: &str) -> Option<Totals> {
    let mut c = PgConnection::connect(url).await.ok()?;
    let row: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM predictions), (SELECT count(DISTINCT uuid) FROM predictions), \
         (SELECT count(*) FROM dead_letters), (SELECT count(DISTINCT source) FROM dead_letters)",
    )
    .fetch_one(&mut c)
    .await
    .ok()?;
    Some(Totals { predictions: row.0, distinct_uuids: row.1, dead_letters: row.2, distinct_dead_letters: row.3 })
}

/// Waits (bounded) until the store holds everything, or the time is up.
async fn wait_for_all(url: &str, malformed: u64, limit: Duration) -> Totals {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(t) = totals(url).await {
            if (t.predictions >= i64::from(EVENTS) && t.dead_letters >= malformed as i64) || Instant::now() > deadline {
                return t;
            }
        } else {
            assert!(Instant::now() < deadline, "the store stayed unreachable");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_exactly_once(t: &Totals, malformed: u64) {
    assert_eq!(t.predictions, i64::from(EVENTS), "predictions");
    assert_eq!(t.distinct_uuids, i64::from(EVENTS), "distinct UUIDs");
    assert_eq!(t.dead_letters, malformed as i64, "dead letters");
    assert_eq!(t.distinct_dead_letters, malformed as i64, "distinct dead-letter positions");
}

/// Waits until the store holds more predictions than `before` (bounded).
async fn wait_for_progress(url: &str, before: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while totals(url).await.map_or(before, |t| t.predictions) <= before {
        assert!(Instant::now() < deadline, "ingest made no progress within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_draining_loses_and_repeats_nothing() {
    let _serial = SERIAL.lock().await;
    let Some(bin) = tansu_bin() else { return };
    let Some(db) = TestDatabase::create().await else { return };
    let broker = Tansu::start(&bin);
    broker.create_topic("e2e.kill", 6);
    broker.create_topic("e2e.kill.dead", 1);
    let malformed = produce(&broker.bootstrap, "e2e.kill");
    let flags = [SELF_ASSIGNED, &["--dead-letter-topic", "e2e.kill.dead"]].concat();
    let mut rng = rand::rng();
    for kill in 0..3 {
        let ingest = ingest(&broker.bootstrap, "e2e.kill", &db.url, &flags);
        let before = totals(&db.url).await.map_or(0, |t| t.predictions);
        wait_for_progress(&db.url, before).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..600))).await;
        let at = totals(&db.url).await.map_or(0, |t| t.predictions);
        eprintln!("SIGKILL {} with {at} predictions stored", kill + 1);
        ingest.kill();
    }
    let ingest = ingest(&broker.bootstrap, "e2e.kill", &db.url, &flags);
    let t = wait_for_all(&db.url, malformed, Duration::from_secs(180)).await;
    // Nothing more arrives after everything is in.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(ingest.stop());
    assert_eq!(totals(&db.url).await.unwrap().predictions, t.predictions);
    assert_exactly_once(&t, malformed);

    // The dead-letter topic has every stored dead letter at least once (a kill between
    // forwarding and storing forwards a batch's dead letters again), and nothing else: without
    // repeats, by source, it is exactly the dead_letters table.
    let stored = stored_dead_letters(&db.url).await;
    let mut forwarded = read_dead_letter_topic(&broker.bootstrap, "e2e.kill.dead", stored.len());
    forwarded.sort();
    eprintln!("{} dead letters forwarded for {} stored", forwarded.len(), stored.len());
    forwarded.dedup();
    assert_eq!(forwarded, stored);
}

/// A consumer positioned inside a partition's last record batch reads the rest of it. tansu 0.6
/// answers a fetch from inside a record batch with the batches after it, and from inside the
/// last one with nothing at all, so no later message shows the gap: found when a SIGKILL left
/// a stored position there and the restarted consumer waited for ever, silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_inside_the_last_record_batch_is_read_to_the_end() {
    const TOPIC: &str = "e2e.tail";
    const PRODUCED: u32 = 1_000;
    const STORED_AT: u32 = 600;
    let _serial = SERIAL.lock().await;
    let Some(bin) = tansu_bin() else { return };
    let Some(db) = TestDatabase::create().await else { return };
    let broker = Tansu::start(&bin);
    broker.create_topic(TOPIC, 1);
    // One produce request, so one record batch: everything lingers until the flush.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("linger.ms", "5000")
        .set("batch.num.messages", "100000")
        .set("acks", "all")
        .create()
        .unwrap();
    for i in 0..PRODUCED {
        producer.send(BaseRecord::to(TOPIC).key(&format!("e{i}")).payload(&event(i))).unwrap();
    }
    producer.flush(Duration::from_secs(30)).expect("all messages delivered");
    // A position stored inside that batch, as a killed consumer leaves one.
    drop(driftline_store::postgres::PostgresStore::connect(&db.url).await.expect("the store migrates"));
    let mut c = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("INSERT INTO ingest_offsets VALUES ('e2e', $1, 0, $2, 0)")
        .bind(TOPIC)
        .bind(i64::from(STORED_AT))
        .execute(&mut c)
        .await
        .unwrap();

    let ingest = ingest(&broker.bootstrap, TOPIC, &db.url, SELF_ASSIGNED);
    let expected = i64::from(PRODUCED - STORED_AT);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut stored = 0;
    while stored < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stored = totals(&db.url).await.map_or(0, |t| t.predictions);
    }
    assert!(ingest.stop());
    let uuids: Vec<(String,)> =
        sqlx::query_as("SELECT uuid::text FROM predictions ORDER BY 1").fetch_all(&mut c).await.unwrap();
    let want: Vec<(String,)> = (STORED_AT..PRODUCED).map(|i| (format!("00000000-0000-4000-8000-{i:012}"),)).collect();
    assert_eq!(uuids.len(), want.len(), "the events after the stored position, each once");
    assert_eq!(uuids, want);
    let (next,): (i64,) = sqlx::query_as("SELECT next_offset FROM ingest_offsets WHERE topic = $1")
        .bind(TOPIC)
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(next, i64::from(PRODUCED), "the stored position is at the partition's end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_while_draining_loses_and_repeats_nothing() {
    let _serial = SERIAL.lock().await;
    let Some(bin) = tansu_bin() else { return };
    let Some(db) = TestDatabase::throwaway().await else { return };
    let broker = Tansu::start(&bin);
    broker.create_topic("e2e.pg", 6);
    let malformed = produce(&broker.bootstrap, "e2e.pg");
    let ingest = ingest(&broker.bootstrap, "e2e.pg", &db.url, SELF_ASSIGNED);
    wait_for_progress(&db.url, 0).await;
    eprintln!("restarting Postgres with {} predictions stored", totals(&db.url).await.unwrap().predictions);
    db.restart_server(Duration::from_secs(3));
    let t = wait_for_all(&db.url, malformed, Duration::from_secs(180)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(ingest.stop());
    assert_eq!(totals(&db.url).await.unwrap().predictions, t.predictions);
    assert_exactly_once(&t, malformed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_processes_share_six_partitions_exactly_once() {
    let _serial = SERIAL.lock().await;
    let Some(bin) = tansu_bin() else { return };
    let Some(db) = TestDatabase::create().await else { return };
    let broker = Tansu::start(&bin);
    broker.create_topic("e2e.two", 6);
    let one = ingest(&broker.bootstrap, "e2e.two", &db.url, &[]);
    let two = ingest(&broker.bootstrap, "e2e.two", &db.url, &[]);
    // Both join the group before the backlog arrives.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let malformed = produce(&broker.bootstrap, "e2e.two");
    let t = wait_for_all(&db.url, malformed, Duration::from_secs(180)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (a, b) = (stored_by(&one), stored_by(&two));
    assert!(one.stop() && two.stop(), "both stop cleanly");
    assert_exactly_once(&t, malformed);
    assert!(a > 0 && b > 0, "both processes stored events: {a} and {b}");
    assert_eq!(a + b, u64::from(EVENTS), "events stored by the two processes");
}
