//! Kafka → Postgres benchmark: N prediction events already in a topic, drained by the real
//! `driftline ingest` process into a fresh Postgres database, beside a plain `COPY` of the same
//! rows into the same Postgres in the same run. Prints events/s, the ratio and the ingest
//! process's peak RSS.
//!
//! ```text
//! cargo build --release -p driftline -p driftline-benches
//! target/release/kafka_ingest --events 1000000 [--tansu PATH | --brokers HOST:PORT] [--partitions 6]
//! ```
//! Without `--brokers` it starts a tansu broker (memory storage) on a free loopback port.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use driftline_benches::{copy_rows, fresh_database, generate, status_kib, wire};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};
use sqlx::{Connection, PgConnection};

const TOPIC: &str = "bench.events";

struct Options {
    events: usize,
    partitions: u32,
    batch_size: usize,
    writers: usize,
    brokers: Option<String>,
    tansu: PathBuf,
    server_url: String,
    driftline: PathBuf,
}

fn options() -> anyhow::Result<Options> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let mut o = Options {
        events: 1_000_000,
        partitions: 6,
        batch_size: 5_000,
        writers: 4,
        brokers: None,
        tansu: std::env::var_os("DRIFTLINE_TANSU_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".cache/driftline/tansu/bin/tansu")),
        server_url: std::env::var("DRIFTLINE_TEST_DATABASE_URL")
            .unwrap_or_else(|_| driftline_testkit::DEFAULT_TEST_SERVER.to_owned()),
        driftline: std::env::current_exe()?.with_file_name("driftline"),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--events" => o.events = value.parse()?,
            "--partitions" => o.partitions = value.parse()?,
            "--batch-size" => o.batch_size = value.parse()?,
            "--writers" => o.writers = value.parse()?,
            "--brokers" => o.brokers = Some(value.clone()),
            "--tansu" => o.tansu = PathBuf::from(value),
            "--postgres" => o.server_url = value.clone(),
            "--driftline" => o.driftline = PathBuf::from(value),
            other => bail!("unknown flag {other}; see the top of benches/kafka_ingest.rs"),
        }
    }
    Ok(o)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn produce(brokers: &str, payloads: &[String]) -> anyhow::Result<f64> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000")
        .create()?;
    let started = Instant::now();
    for (i, payload) in payloads.iter().enumerate() {
        driftline_benches::send(&producer, TOPIC, &i.to_string(), payload).context("producing")?;
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(started.elapsed().as_secs_f64())
}

/// Messages the ingest process has stored so far: the sum of the next offsets it committed with
/// its batches (a fresh topic starts every partition at offset 0). Reading this small table keeps
/// the progress check cheap; counting the growing `predictions` table every 100 ms would itself
/// load the server the drain is measured on.
async fn progress(conn: &mut Option<PgConnection>, url: &str) -> i64 {
    if conn.is_none() {
        *conn = PgConnection::connect(url).await.ok();
    }
    let Some(c) = conn.as_mut() else { return 0 };
    sqlx::query_scalar("SELECT coalesce(sum(next_offset), 0)::int8 FROM ingest_offsets WHERE topic = $1")
        .bind(TOPIC)
        .fetch_one(c)
        .await
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = options()?;
    let rows = generate(o.events);
    let payloads: Vec<String> = rows.iter().map(wire).collect();
    let (_broker, brokers) = match &o.brokers {
        Some(b) => (None, b.clone()),
        None => {
            anyhow::ensure!(
                o.tansu.is_file(),
                "no tansu broker at {}; pass --tansu PATH or --brokers",
                o.tansu.display()
            );
            let broker = driftline_testkit::Tansu::start(&o.tansu);
            broker.create_topic(TOPIC, o.partitions);
            let brokers = broker.bootstrap.clone();
            (Some(broker), brokers)
        }
    };
    let produce_seconds = produce(&brokers, &payloads)?;
    println!(
        "{} events ({:.1} MB) produced to {TOPIC} ({} partitions) in {produce_seconds:.2} s",
        o.events,
        payloads.iter().map(String::len).sum::<usize>() as f64 / 1e6,
        o.partitions
    );

    let url = fresh_database(&o.server_url, "driftline_bench_kafka").await?;
    let started = Instant::now();
    let mut child = Command::new(&o.driftline)
        .args(["ingest", "--kafka-brokers", &brokers, "--topic", TOPIC, "--group", "bench"])
        .args(["--database-url", &url, "--batch-size", &o.batch_size.to_string()])
        .args(["--writers", &o.writers.to_string()])
        .env("DRIFTLINE_LOG", "warn,sqlx=error")
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let ingest = Killed(child);
    std::thread::spawn(move || for _ in BufReader::new(stdout).lines() {});
    let mut first_row: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(1_800);
    let mut peak_kib = 0;
    let mut conn = None;
    loop {
        let n = progress(&mut conn, &url).await;
        peak_kib = peak_kib.max(status_kib(pid, "VmHWM:"));
        if n > 0 && first_row.is_none() {
            first_row = Some(Instant::now());
        }
        if n >= o.events as i64 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "ingest stored only {n} of {} events in 30 minutes", o.events);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total = started.elapsed().as_secs_f64();
    let draining = first_row.map_or(total, |t| t.elapsed().as_secs_f64());
    drop(ingest);
    let mut conn = PgConnection::connect(&url).await?;
    let rows_stored: i64 = sqlx::query_scalar("SELECT count(*) FROM predictions").fetch_one(&mut conn).await?;
    anyhow::ensure!(rows_stored == o.events as i64, "the topic's offsets say done, but {rows_stored} rows are stored");

    let copy_url = fresh_database(&o.server_url, "driftline_bench_kafka_copy").await?;
    let copy = copy_rows(&copy_url, &rows).await?;
    let rate = |s: f64| o.events as f64 / s;
    println!();
    println!("| run | seconds | events/s | vs COPY | ingest peak RSS |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| Kafka → Postgres, from process start | {total:.2} | {:.0} | {:.2}× | {:.0} MiB |",
        rate(total),
        copy / total,
        peak_kib as f64 / 1024.0
    );
    println!(
        "| Kafka → Postgres, from the first stored batch | {draining:.2} | {:.0} | {:.2}× | |",
        rate(draining),
        copy / draining
    );
    println!("| COPY → Postgres (reference) | {copy:.2} | {:.0} | 1.00× | — |", rate(copy));
    Ok(())
}
