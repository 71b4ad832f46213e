//! Consumer-group mode, tested the way it once failed: librdkafka's mock cluster (a broker with a
//! full group coordinator) served over TCP to real `driftline ingest` processes in one group on
//! six partitions, with members SIGKILLed and restarted while the topic drains and while the
//! producer is still sending. Afterwards the store must hold every event exactly once, every
//! malformed message exactly once as a dead letter, and every partition's stored offset must be
//! at the partition's end.
//!
//! The mock drops a dead member only at its session timeout and then waits about another one, so
//! each takeover takes about twice `session.timeout.ms` (6 s here).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use driftline_testkit::kafka::TestProducer;
use driftline_testkit::process::scratch_dir;
use driftline_testkit::{IngestProcess, MockBroker, TestDatabase};
use rand::Rng;
use sqlx::{Connection, PgConnection};

const TOPIC: &str = "group.events";
const PARTITIONS: i32 = 6;
/// Every this many events, a malformed message is produced as well.
const MALFORMED_EVERY: u32 = 997;
const T0: i64 = 1_700_000_000_000;

/// The scenarios run one at a time: each drives a broker, Postgres and several processes on a
/// machine with few cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn event(i: u32) -> String {
    format!(
        r#"{{"v":1,"type":"prediction","uuid":"00000000-0000-4000-8000-{i:012}","model_crn":"m","model_build_crn":"b","model_deployment_crn":"d","start_timestamp_ms":{},"end_timestamp_ms":{},"metrics":{{"input":{{"x":{i}}},"prediction":0.5}}}}"#,
        T0 + i64::from(i) * 10,
        T0 + i64::from(i) * 10 + 4
    )
}

/// What was produced: the malformed count and each partition's end offset.
#[derive(Debug, Clone, Default)]
struct Produced {
    bootstrap: String,
    malformed: u64,
    ends: Vec<i64>,
}

/// Produces events `from..to` (and a malformed message after every [`MALFORMED_EVERY`]th),
/// round-robin over the partitions, at most `per_second` per second (0: as fast as possible).
fn produce(bootstrap: &str, from: u32, to: u32, per_second: u32, produced: &mut Produced) {
    let producer = TestProducer::new(bootstrap);
    produced.bootstrap = bootstrap.to_owned();
    if produced.ends.is_empty() {
        produced.ends = vec![0; PARTITIONS as usize];
    }
    let started = Instant::now();
    let mut next = 0usize;
    let mut send = |key: String, payload: String, produced: &mut Produced| {
        producer.send(TOPIC, Some(next as i32), &key, payload.as_bytes());
        produced.ends[next] += 1;
        next = (next + 1) % PARTITIONS as usize;
    };
    for i in from..to {
        send(format!("e{i}"), event(i), produced);
        if i % MALFORMED_EVERY == 0 {
            produced.malformed += 1;
            send(format!("bad{i}"), format!("{{\"v\":1,\"type\":\"prediction\",\"broken\":{i}"), produced);
        }
        if per_second > 0 && (i - from) % 1_000 == 999 {
            let due = Duration::from_secs_f64(f64::from(i - from + 1) / f64::from(per_second));
            std::thread::sleep(due.saturating_sub(started.elapsed()));
        }
    }
    producer.flush();
}

#[derive(Debug, PartialEq, Eq)]
struct Totals {
    predictions: i64,
    distinct_uuids: i64,
    dead_letters: i64,
    distinct_dead_letters: i64,
    /// The stored next offset of each partition (-1: none stored).
    offsets: Vec<i64>,
}

async fn totals(url: &str) -> Option<Totals> {
    let mut c = PgConnection::connect(url).await.ok()?;
    // One snapshot for the counts and the offsets: they are committed together.
    let mut tx = c.begin().await.ok()?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await.ok()?;
    let row: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM predictions), (SELECT count(DISTINCT uuid) FROM predictions), \
         (SELECT count(*) FROM dead_letters), (SELECT count(DISTINCT source) FROM dead_letters)",
    )
    .fetch_one(&mut *tx)
    .await
    .ok()?;
    let stored: Vec<(i32, i64)> =
        sqlx::query_as("SELECT partition, next_offset FROM ingest_offsets WHERE consumer_group = 'g' AND topic = $1")
            .bind(TOPIC)
            .fetch_all(&mut *tx)
            .await
            .ok()?;
    let mut offsets = vec![-1; PARTITIONS as usize];
    for (p, next) in stored {
        offsets[p as usize] = next;
    }
    Some(Totals {
        predictions: row.0,
        distinct_uuids: row.1,
        dead_letters: row.2,
        distinct_dead_letters: row.3,
        offsets,
    })
}

/// Waits (at most `limit`) until every partition's stored offset is at its end; returns the
/// totals then.
async fn wait_for_ends(url: &str, ends: &[i64], limit: Duration) -> Totals {
    let deadline = Instant::now() + limit;
    loop {
        let t = totals(url).await.expect("the store answers");
        if t.offsets == ends || Instant::now() > deadline {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits (at most 60 s) until more than `before` predictions are stored.
async fn wait_for_progress(url: &str, before: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while totals(url).await.map_or(before, |t| t.predictions) <= before {
        assert!(Instant::now() < deadline, "ingest made no progress within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn member(bootstrap: &str, url: &str, log: &Path) -> IngestProcess {
    let args: Vec<String> = [
        "--kafka-brokers",
        bootstrap,
        "--topic",
        TOPIC,
        "--group",
        "g",
        "--database-url",
        url,
        "--batch-size",
        "2000",
        "--linger-ms",
        "100",
        "--kafka-option",
        "session.timeout.ms=6000",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    IngestProcess::start(Path::new(env!("CARGO_BIN_EXE_driftline")), &args, Some(log))
}

/// Checks the end state, printing the members' logs when it is wrong.
fn assert_exactly_once(t: &Totals, events: u32, produced: &Produced, logs: &Path) {
    let expected = Totals {
        predictions: i64::from(events),
        distinct_uuids: i64::from(events),
        dead_letters: produced.malformed as i64,
        distinct_dead_letters: produced.malformed as i64,
        offsets: produced.ends.clone(),
    };
    // The mock cluster deletes the oldest messages of a partition past 5 MiB: the test is only
    // meaningful if it deleted nothing.
    let producer = TestProducer::new(&produced.bootstrap);
    for p in 0..PARTITIONS {
        assert_eq!(producer.watermarks(TOPIC, p).0, 0, "the mock deleted messages of partition {p}; produce less");
    }
    if *t != expected {
        for entry in std::fs::read_dir(logs).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            eprintln!("--- {} (last lines)", entry.path().display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        panic!("not exactly once:\n  stored   {t:?}\n  expected {expected:?}\n  logs in {}", logs.display());
    }
}

/// A member of the group that keeps a stable log file across restarts.
struct Member {
    log: PathBuf,
    process: Option<IngestProcess>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_killed_and_restarted_during_the_drain_lose_and_repeat_nothing() {
    let _serial = SERIAL.lock().await;
    let Some(db) = TestDatabase::create().await else { return };
    const EVENTS: u32 = 200_000;
    let broker = MockBroker::start(&[(TOPIC, PARTITIONS)]);
    let logs = scratch_dir("kafka-group-kill");
    // A backlog first, then live traffic while members die and rejoin.
    let mut produced = Produced::default();
    produce(&broker.bootstrap, 0, 40_000, 0, &mut produced);
    let live = {
        let bootstrap = broker.bootstrap.clone();
        let mut produced = produced.clone();
        std::thread::spawn(move || {
            produce(&bootstrap, 40_000, EVENTS, 5_000, &mut produced);
            produced
        })
    };
    let mut members: Vec<Member> = (0..3)
        .map(|i| {
            let log = logs.join(format!("member{i}.log"));
            Member { process: Some(member(&broker.bootstrap, &db.url, &log)), log }
        })
        .collect();
    let mut rng = rand::rng();
    for kill in 0..3 {
        let victim = rng.random_range(0..members.len());
        let before = totals(&db.url).await.map_or(0, |t| t.predictions);
        wait_for_progress(&db.url, before).await;
        let pause = rng.random_range(0..3_000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let at = totals(&db.url).await.map_or(0, |t| t.predictions);
        eprintln!("kill {}: SIGKILL member {victim} {pause} ms after progress, {at} predictions stored", kill + 1);
        members[victim].process.take().expect("running").kill();
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..2_000))).await;
        members[victim].process = Some(member(&broker.bootstrap, &db.url, &members[victim].log));
    }
    let produced = live.join().expect("the producer finished");
    let t = wait_for_ends(&db.url, &produced.ends, Duration::from_secs(300)).await;
    // Nothing more arrives once everything is in.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for m in &mut members {
        assert!(m.process.take().expect("running").stop(), "a member exited with an error; see {}", m.log.display());
    }
    let after = totals(&db.url).await.unwrap();
    assert_eq!(after, t, "something was stored after every offset reached its end");
    assert_exactly_once(&t, EVENTS, &produced, &logs);
    let _ = std::fs::remove_dir_all(&logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_starting_together_on_a_backlog_store_it_exactly_once() {
    let _serial = SERIAL.lock().await;
    let Some(db) = TestDatabase::create().await else { return };
    const EVENTS: u32 = 100_000;
    let broker = MockBroker::start(&[(TOPIC, PARTITIONS)]);
    let logs = scratch_dir("kafka-group-two");
    let mut produced = Produced::default();
    produce(&broker.bootstrap, 0, EVENTS, 0, &mut produced);
    // The second member joins while the first is draining: one rebalance mid-drain.
    let one = member(&broker.bootstrap, &db.url, &logs.join("one.log"));
    let two = member(&broker.bootstrap, &db.url, &logs.join("two.log"));
    let t = wait_for_ends(&db.url, &produced.ends, Duration::from_secs(240)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (one_ok, two_ok) = (one.stop(), two.stop());
    assert!(one_ok && two_ok, "a member exited with an error; logs in {}", logs.display());
    assert_exactly_once(&t, EVENTS, &produced, &logs);
    let _ = std::fs::remove_dir_all(&logs);
}
