//! The Kafka consumer against librdkafka's in-process mock cluster: batching, dead letters,
//! resuming from the offsets stored in the store, and two consumers sharing a group.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftline_ingest::{Ingest, IngestMetrics, KafkaConfig, Partitions};
use driftline_store::sqlite::SqliteStore;
use driftline_store::{Counts, Store};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

const TOPIC: &str = "driftline.events";
const PARTITIONS: i32 = 3;
const T0: i64 = 1_700_000_000_000;

fn event(i: u32) -> String {
    format!(
        r#"{{"v":1,"type":"prediction","uuid":"00000000-0000-4000-8000-{i:012}","model_crn":"m","model_build_crn":"b","model_deployment_crn":"d","start_timestamp_ms":{},"end_timestamp_ms":{},"metrics":{{"prediction":0.5}}}}"#,
        T0 + i64::from(i),
        T0 + i64::from(i) + 3
    )
}

/// Produces events `from..to`; every 100th is malformed. Returns how many were malformed.
fn produce(bootstrap: &str, from: u32, to: u32) -> u64 {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let mut malformed = 0;
    for i in from..to {
        let payload = if i % 100 == 99 {
            malformed += 1;
            format!("{{\"not an event\": {i}")
        } else {
            event(i)
        };
        let key = format!("k{i}");
        let record = BaseRecord::to(TOPIC).partition((i % PARTITIONS as u32) as i32).key(&key).payload(&payload);
        producer.send(record).unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    malformed
}

fn config(bootstrap: &str) -> KafkaConfig {
    let mut c = KafkaConfig::new(bootstrap);
    c.batch_size = 400;
    c.linger = Duration::from_millis(50);
    c.group = "test-group".into();
    c
}

/// Waits (at most 60 s) until the store holds `events` predictions plus dead letters.
async fn wait_for(store: &dyn Store, events: u64) -> Counts {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = store.counts().await.unwrap();
        if counts.predictions + counts.dead_letters >= events || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn start(bootstrap: &str, store: &Arc<dyn Store>, metrics: &Arc<IngestMetrics>) -> Ingest {
    start_with(config(bootstrap), store, metrics)
}

fn start_with(config: KafkaConfig, store: &Arc<dyn Store>, metrics: &Arc<IngestMetrics>) -> Ingest {
    Ingest::start(config, store.clone(), tokio::runtime::Handle::current(), metrics.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumes_everything_once_and_resumes_from_stored_offsets() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("k.sqlite")).await.unwrap());
    let metrics = Arc::new(IngestMetrics::default());

    let malformed = produce(&bootstrap, 0, 3_000);
    let ingest = start(&bootstrap, &store, &metrics);
    let counts = wait_for(&*store, 3_000).await;
    ingest.stop().unwrap();
    assert_eq!((counts.predictions, counts.dead_letters), (3_000 - malformed, malformed));

    // Every partition's next offset is stored: 1,000 messages each.
    let positions = store.source_positions("test-group", TOPIC).await.unwrap();
    assert_eq!(positions.into_iter().collect::<Vec<_>>(), vec![(0, 1_000), (1, 1_000), (2, 1_000)]);

    // Dead letters say where they came from and keep the key and the bytes.
    let letters = store.dead_letters(100).await.unwrap();
    let letter = letters.iter().find(|l| l.key.as_deref() == Some(b"k99".as_slice())).expect("message 99");
    assert_eq!(letter.source, "kafka:driftline.events/0@33");
    assert_eq!(letter.raw, b"{\"not an event\": 99".to_vec());
    assert!(letter.reason.contains("not valid JSON"), "{}", letter.reason);

    // Batches were bounded by the batch size; the metrics saw every message.
    let text = metrics.render();
    assert!(text.contains("driftline_events_consumed_total{source=\"kafka\"} 3000"), "{text}");
    let batches: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("driftline_batches_total{source=\"kafka\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(batches >= 3_000 / 400, "{batches} batches");

    // More messages, and a new consumer in the same group: it starts at the stored offsets, so
    // nothing is read twice (dead letters have no dedup: a re-read would show here).
    let more_malformed = produce(&bootstrap, 3_000, 4_500);
    let ingest = start(&bootstrap, &store, &metrics);
    let counts = wait_for(&*store, 4_500).await;
    // Give a wrongly re-reading consumer time to show itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts_later = store.counts().await.unwrap();
    ingest.stop().unwrap();
    assert_eq!(counts, counts_later);
    assert_eq!(
        (counts.predictions, counts.dead_letters),
        (4_500 - malformed - more_malformed, malformed + more_malformed)
    );
}

/// Stops and restarts a consumer four times while it drains 6,000 messages, then checks that
/// the store holds each exactly once.
async fn stop_and_restart_mid_stream(partitions: Partitions) {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("k.sqlite")).await.unwrap());
    let metrics = Arc::new(IngestMetrics::default());
    let malformed = produce(&bootstrap, 0, 6_000);
    let config = KafkaConfig { partitions, ..config(&bootstrap) };

    for _ in 0..4 {
        let ingest = start_with(config.clone(), &store, &metrics);
        let before = store.counts().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while store.counts().await.unwrap() == before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ingest.stop().unwrap();
    }
    let ingest = start_with(config, &store, &metrics);
    let counts = wait_for(&*store, 6_000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ingest.stop().unwrap();
    assert_eq!(store.counts().await.unwrap(), counts);
    assert_eq!((counts.predictions, counts.dead_letters), (6_000 - malformed, malformed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_consumer_stopped_mid_stream_loses_and_repeats_nothing() {
    stop_and_restart_mid_stream(Partitions::Group).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_assigned_consumer_stopped_mid_stream_loses_and_repeats_nothing() {
    stop_and_restart_mid_stream(Partitions::All).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_in_one_group_share_the_work_exactly_once() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 6, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("k.sqlite")).await.unwrap());
    let (m1, m2) = (Arc::new(IngestMetrics::default()), Arc::new(IngestMetrics::default()));
    let one = start(&bootstrap, &store, &m1);
    let two = start(&bootstrap, &store, &m2);
    // Let both join before the data arrives, so both get partitions.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    for i in 0..6_000u32 {
        let payload = event(i);
        producer.send(BaseRecord::<(), _>::to(TOPIC).partition((i % 6) as i32).payload(&payload)).unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let counts = wait_for(&*store, 6_000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    one.stop().unwrap();
    two.stop().unwrap();
    assert_eq!(store.counts().await.unwrap(), counts);
    assert_eq!(counts.predictions, 6_000);
    let stored = |m: &IngestMetrics| m.kafka.stored.load(std::sync::atomic::Ordering::Relaxed);
    assert!(stored(&m1) > 0 && stored(&m2) > 0, "both did work: {} and {}", stored(&m1), stored(&m2));
    assert_eq!(stored(&m1) + stored(&m2), 6_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_forwarded_to_the_dead_letter_topic_with_their_reason() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    use rdkafka::{Message, Offset, TopicPartitionList};

    const DEAD: &str = "driftline.dead";
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    cluster.create_topic(DEAD, 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("k.sqlite")).await.unwrap());
    let metrics = Arc::new(IngestMetrics::default());

    let malformed = produce(&bootstrap, 0, 1_000);
    let config = KafkaConfig { dead_letter_topic: Some(DEAD.into()), ..config(&bootstrap) };
    let ingest = start_with(config, &store, &metrics);
    let counts = wait_for(&*store, 1_000).await;
    ingest.stop().unwrap();
    assert_eq!((counts.predictions, counts.dead_letters), (1_000 - malformed, malformed));
    assert_eq!(metrics.dead_letters_forwarded.load(std::sync::atomic::Ordering::Relaxed), malformed);

    // Read the dead-letter topic back: one message per stored dead letter, with the same key,
    // bytes, reason and source.
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "dead-letter-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(DEAD, 0, Offset::Beginning).unwrap();
    reader.assign(&tpl).unwrap();
    let mut forwarded = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (forwarded.len() as u64) < malformed && Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
            let header = |name: &str| {
                let headers = m.headers().expect("headers");
                headers
                    .iter()
                    .find(|h| h.key == name)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8(v.to_vec()).unwrap())
            };
            forwarded.push((
                header(driftline_ingest::SOURCE_HEADER).expect("source header"),
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap_or_default().to_vec(),
                header(driftline_ingest::REASON_HEADER).expect("reason header"),
            ));
        }
    }
    // Nothing more than one per dead letter arrives.
    assert!(reader.poll(Duration::from_millis(500)).is_none());
    forwarded.sort();
    let mut stored: Vec<_> =
        store.dead_letters(100).await.unwrap().into_iter().map(|l| (l.source, l.key, l.raw, l.reason)).collect();
    stored.sort();
    assert_eq!(forwarded.len() as u64, malformed);
    assert_eq!(forwarded, stored);
    assert!(forwarded.iter().any(|f| f.1.as_deref() == Some(b"k99".as_slice()) && f.3.contains("not valid JSON")));
}

/// The partition's low and high watermarks.
fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", "w").create().unwrap();
    c.fetch_watermarks(topic, partition, Duration::from_secs(10)).unwrap()
}

/// Waits (at most 90 s) until the stored offset of every listed partition is `end`.
async fn wait_for_offsets(store: &dyn Store, group: &str, ends: &[(i32, i64)]) -> Vec<(i32, i64)> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let stored: Vec<(i32, i64)> = store.source_positions(group, TOPIC).await.unwrap().into_iter().collect();
        if stored == ends || Instant::now() > deadline {
            return stored;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// librdkafka's mock cluster keeps at most 5 MiB per partition and deletes the oldest message
/// sets beyond that, as a broker's retention would. Messages deleted before the consumer read
/// them are gone; the consumer must say so (a dead letter for the range, an error in the log, a
/// metric) and move on, never skip them silently or stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_deleted_before_they_were_read_are_recorded_not_skipped() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    let padding = "x".repeat(400);
    for i in 0..20_000u32 {
        let payload = event(i).replace(r#""prediction":0.5"#, &format!(r#""prediction":0.5,"pad":"{padding}""#));
        loop {
            match producer.send(BaseRecord::<(), _>::to(TOPIC).partition(0).payload(&payload)) {
                Ok(()) => break,
                Err(_) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    let (low, high) = watermarks(&bootstrap, TOPIC, 0);
    assert!(low > 0, "the mock deleted the oldest messages (log starts at {low} of {high})");

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("k.sqlite")).await.unwrap());
    let metrics = Arc::new(IngestMetrics::default());
    // Nothing stored yet: `earliest` means the oldest message still in the log, which is where
    // the consumer starts, so nothing is missing.
    let ingest = start(&bootstrap, &store, &metrics);
    let stored = wait_for_offsets(&*store, "test-group", &[(0, high)]).await;
    ingest.stop().unwrap();
    assert_eq!(stored, vec![(0, high)]);
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.predictions as i64, counts.dead_letters), (high - low, 0), "the log from its start");

    // A consumer whose stored offset fell below the log's start (it was down longer than the
    // topic's retention): the messages in between are gone, and it records that.
    let store2: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("k2.sqlite")).await.unwrap());
    let start_at = low / 2;
    let mut batch = driftline_store::WriteBatch::new(T0);
    batch.positions = vec![driftline_store::SourcePosition {
        group: "test-group".into(),
        topic: TOPIC.into(),
        partition: 0,
        from: 0,
        next_offset: start_at,
    }];
    store2.write(&batch).await.unwrap();
    let ingest = start(&bootstrap, &store2, &metrics);
    let stored = wait_for_offsets(&*store2, "test-group", &[(0, high)]).await;
    ingest.stop().unwrap();
    assert_eq!(stored, vec![(0, high)]);
    let letters = store2.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].source, format!("kafka:{TOPIC}/0@{start_at}..{low}"));
    assert!(letters[0].reason.contains("deleted by the broker"), "{}", letters[0].reason);
    assert_eq!(letters[0].raw, Vec::<u8>::new());
    assert_eq!(metrics.kafka_offsets_skipped.load(std::sync::atomic::Ordering::Relaxed) as i64, low - start_at);
    assert_eq!(store2.counts().await.unwrap().predictions as i64, high - low);
}

/// A message the validator lets through (the test hook) but the store refuses is set aside as a
/// dead letter with the store's error, every valid message around it is stored, and the
/// partition moves on.
async fn a_poison_message_does_not_stop_the_partition(store: Arc<dyn Store>) {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    let poison = |i: u32| {
        format!(
            r#"{{"v":1,"type":"aggregate_metrics","model_deployment_crn":"d","start_timestamp_ms":{T0},"end_timestamp_ms":{T0},"metrics":{{"n":{i}}},"source":"drift:job\u0000{i}"}}"#
        )
    };
    for i in 0..1_000u32 {
        let payload = if i == 250 || i == 777 { poison(i) } else { event(i) };
        producer.send(BaseRecord::<(), _>::to(TOPIC).partition(0).payload(&payload)).unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let metrics = Arc::new(IngestMetrics::default());
    let mut config = config(&bootstrap);
    config.limits.unchecked_text_for_tests = true;
    let ingest = start_with(config, &store, &metrics);
    let stored = wait_for_offsets(&*store, "test-group", &[(0, 1_000)]).await;
    ingest.stop().unwrap();
    assert_eq!(stored, vec![(0, 1_000)]);
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.predictions, counts.aggregate_metrics, counts.dead_letters), (998, 0, 2));
    let mut sources: Vec<String> = store.dead_letters(10).await.unwrap().into_iter().map(|l| l.source).collect();
    sources.sort();
    assert_eq!(sources, vec![format!("kafka:{TOPIC}/0@250"), format!("kafka:{TOPIC}/0@777")]);
    let letter = &store.dead_letters(1).await.unwrap()[0];
    assert!(letter.reason.starts_with("the store refused this event:"), "{}", letter.reason);
    assert_eq!(metrics.store_refused.load(std::sync::atomic::Ordering::Relaxed), 2);

    // Without the hook the validator refuses the same message itself, with the field named.
    let r = driftline_core::parse_event(poison(1).as_bytes(), &driftline_core::Limits::default()).unwrap_err();
    assert_eq!(r.field, "source");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_poison_message_does_not_stop_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("k.sqlite")).await.unwrap());
    a_poison_message_does_not_stop_the_partition(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_poison_message_does_not_stop_the_partition() {
    let Some(db) = driftline_testkit::TestDatabase::create().await else { return };
    let store: Arc<dyn Store> = Arc::new(driftline_store::postgres::PostgresStore::connect(&db.url).await.unwrap());
    a_poison_message_does_not_stop_the_partition(store).await;
}

/// A group member left without partitions (more members than partitions, or a broker that does
/// not hand them out) says so in its metrics once a rebalance should have ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_without_partitions_says_so() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("k.sqlite")).await.unwrap());
    let (m1, m2) = (Arc::new(IngestMetrics::default()), Arc::new(IngestMetrics::default()));
    let mut c = config(&bootstrap);
    c.overrides.push(("session.timeout.ms".into(), "3000".into()));
    let bound = Duration::from_secs(11);
    let one = start_with(c.clone(), &store, &m1);
    let two = start_with(c, &store, &m2);
    let load = |m: &AtomicU64| m.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = Instant::now() + bound + Duration::from_secs(30);
    let idle = loop {
        let idle = [&m1, &m2].into_iter().find(|m| load(&m.kafka_idle_seconds) > 0);
        if idle.is_some() || Instant::now() > deadline {
            break idle.cloned();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let idle = idle.expect("one member reports itself idle");
    assert_eq!(load(&idle.kafka_assigned_partitions), 0);
    assert!(load(&idle.kafka_idle_seconds) >= bound.as_secs());
    assert!(idle.render().contains("driftline_kafka_idle_seconds "));
    let busy = if Arc::ptr_eq(&idle, &m1) { &m2 } else { &m1 };
    assert_eq!(load(&busy.kafka_assigned_partitions), 1);
    one.stop().unwrap();
    two.stop().unwrap();
}
