//! What the load generators share: the generated prediction rows, their wire JSON, fresh
//! Postgres databases, the plain `COPY` reference, and reading a process's memory.

use std::time::Instant;

use driftline_store::postgres::PostgresStore;
use driftline_testkit::with_database;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sqlx::{Connection, PgConnection};

/// The deployment every generated prediction belongs to.
pub const DEPLOYMENT: &str = "crn:bench:deployment/churn";
/// Start of the generated predictions' time range (2023-11-14).
pub const T0: i64 = 1_700_000_000_000;
const DAYS: i64 = 7;

/// One generated prediction, kept as the fields a COPY needs.
pub struct Row {
    /// The prediction's UUID.
    pub uuid: uuid::Uuid,
    /// Its start time.
    pub start: i64,
    /// Its metrics, as JSON.
    pub metrics: String,
}

/// `n` churn-style predictions (7 inputs and a score, about 450 bytes of wire JSON each) spread
/// over 7 days, the same for the same `n`.
pub fn generate(n: usize) -> Vec<Row> {
    let mut rng = StdRng::seed_from_u64(7);
    let span = DAYS * 86_400_000;
    (0..n)
        .map(|i| {
            let plan = ["basic", "standard", "premium"][rng.random_range(0..3)];
            let contract = ["month-to-month", "one-year", "two-year"][rng.random_range(0..3)];
            let region = ["north", "south", "east", "west"][rng.random_range(0..4)];
            let metrics = json!({
                "input": {"tenure_months": rng.random_range(0..72), "monthly_charges": (rng.random::<f64>() * 10_000.0).round() / 100.0,
                          "support_calls": rng.random_range(0..6), "plan": plan, "contract": contract,
                          "paperless_billing": rng.random::<bool>(), "region": region},
                "prediction": (rng.random::<f64>() * 10_000.0).round() / 10_000.0,
            });
            Row {
                uuid: uuid::Builder::from_random_bytes(rng.random()).into_uuid(),
                start: T0 + (i as i64 * span) / n as i64,
                metrics: metrics.to_string(),
            }
        })
        .collect()
}

/// The row as a v1 prediction event.
pub fn wire(row: &Row) -> String {
    format!(
        r#"{{"v":1,"type":"prediction","uuid":"{}","model_crn":"crn:bench:model/churn","model_build_crn":"crn:bench:build/1","model_deployment_crn":"{DEPLOYMENT}","start_timestamp_ms":{},"end_timestamp_ms":{},"metrics":{}}}"#,
        row.uuid,
        row.start,
        row.start + 15,
        row.metrics
    )
}

/// Drops and creates database `name` on the server of `server_url`; returns its URL.
pub async fn fresh_database(server_url: &str, name: &str) -> anyhow::Result<String> {
    let mut admin = PgConnection::connect(server_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;
    Ok(with_database(server_url, name))
}

fn csv_field(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A plain `COPY … FROM STDIN (FORMAT csv)` of the rows into the driftline schema's
/// `predictions` table at `url`. Returns the seconds taken.
pub async fn copy_rows(url: &str, rows: &[Row]) -> anyhow::Result<f64> {
    let store = PostgresStore::connect(url).await?;
    let mut conn = store.pool().acquire().await?;
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(
            "COPY predictions (uuid, model_crn, model_build_crn, model_deployment_crn, start_timestamp_ms, \
             end_timestamp_ms, metrics, received_at_ms) FROM STDIN (FORMAT csv)",
        )
        .await?;
    let mut buf = String::with_capacity(1 << 20);
    for row in rows {
        buf.push_str(&format!(
            "{},crn:bench:model/churn,crn:bench:build/1,{DEPLOYMENT},{},{},{},{}\n",
            row.uuid,
            row.start,
            row.start + 15,
            csv_field(&row.metrics),
            T0
        ));
        if buf.len() > 1 << 20 {
            copy.send(buf.as_bytes()).await?;
            buf.clear();
        }
    }
    copy.send(buf.as_bytes()).await?;
    let copied = copy.finish().await?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(copied == rows.len() as u64, "copied {copied} rows");
    Ok(seconds)
}

/// A field of `/proc/PID/status` in KiB (`VmHWM:` peak RSS, `VmRSS:` current RSS); 0 if unknown.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Sends one message, waiting out a full producer queue by serving delivery reports:
/// backpressure instead of failing. Any other error is returned.
pub fn send(
    producer: &rdkafka::producer::BaseProducer,
    topic: &str,
    key: &str,
    payload: &str,
) -> Result<(), rdkafka::error::KafkaError> {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::BaseRecord;
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(std::time::Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e),
        }
    }
    producer.poll(std::time::Duration::ZERO);
    Ok(())
}
