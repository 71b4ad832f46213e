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
/// A fixed receive time stamped on the reference rows.
pub const T0: i64 = 1_700_000_000_000;
const DAY_MS: i64 = 86_400_000;

/// Start of the generated predictions' time range: the start of yesterday (UTC), so that they
/// fall on the day partitions a Postgres store keeps ready, as live traffic does.
pub fn base_ms() -> i64 {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as i64;
    (now / DAY_MS - 1) * DAY_MS
}

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
/// over the 24 hours from [`base_ms`], the same for the same `n` but for their times.
pub fn generate(n: usize) -> Vec<Row> {
    let mut rng = StdRng::seed_from_u64(7);
    let span = DAY_MS;
    let base = base_ms();
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
                start: base + (i as i64 * span) / n as i64,
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

/// The `predictions` columns the SQLite store writes, in the order of [`sqlite_values`].
pub fn sqlite_columns() -> &'static [&'static str] {
    &[
        "uuid",
        "model_crn",
        "model_build_crn",
        "model_deployment_crn",
        "start_timestamp_ms",
        "end_timestamp_ms",
        "metrics",
        "received_at_ms",
    ]
}

/// One row's values for [`sqlite_columns`], as the SQLite store writes them.
pub fn sqlite_values(row: &Row) -> serde_json::Value {
    json!([
        row.uuid.to_string(),
        "crn:bench:model/churn",
        "crn:bench:build/1",
        DEPLOYMENT,
        row.start,
        row.start + 15,
        row.metrics,
        T0
    ])
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
    copy_csv(
        &mut conn,
        "COPY predictions (uuid, model_crn, model_build_crn, model_deployment_crn, start_timestamp_ms, \
         end_timestamp_ms, metrics, received_at_ms) FROM STDIN (FORMAT csv)",
        rows,
        |row| {
            format!(
                "{},crn:bench:model/churn,crn:bench:build/1,{DEPLOYMENT},{},{},{},{}\n",
                row.uuid,
                row.start,
                row.start + 15,
                csv_field(&row.metrics),
                T0
            )
        },
    )
    .await
}

/// The same rows as [`copy_rows`] copied them into `from_url`, sent again with a binary `COPY`
/// into the driftline schema at `to_url`. The binary data is Postgres's own (`COPY … TO STDOUT
/// (FORMAT binary)` of the copied rows, read before the clock starts), so this reference does
/// not depend on driftline's encoder. Returns the seconds taken.
pub async fn copy_rows_binary(from_url: &str, to_url: &str, rows: usize) -> anyhow::Result<f64> {
    use futures::TryStreamExt;
    const COLUMNS: &str =
        "uuid, model_crn, model_build_crn, model_deployment_crn, start_timestamp_ms, end_timestamp_ms, metrics, received_at_ms";
    let mut source = PgConnection::connect(from_url).await?;
    let data: Vec<bytes::Bytes> = source
        .copy_out_raw(&format!("COPY (SELECT {COLUMNS} FROM predictions) TO STDOUT (FORMAT binary)"))
        .await?
        .try_collect()
        .await?;
    let store = PostgresStore::connect(to_url).await?;
    let mut conn = store.pool().acquire().await?;
    let started = Instant::now();
    let mut copy = conn.copy_in_raw(&format!("COPY predictions ({COLUMNS}) FROM STDIN (FORMAT binary)")).await?;
    for piece in &data {
        copy.send(piece.as_ref()).await?;
    }
    let copied = copy.finish().await?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(copied == rows as u64, "copied {copied} rows");
    Ok(seconds)
}

/// A plain `COPY … FROM STDIN (FORMAT csv)` of the rows' UUIDs and metrics into a minimal table
/// (`uuid` primary key and a `jsonb` column) at `url`: the least any store of these events does.
/// Returns the seconds taken.
pub async fn copy_minimal(url: &str, rows: &[Row]) -> anyhow::Result<f64> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query("CREATE TABLE minimal (uuid uuid PRIMARY KEY, metrics jsonb NOT NULL)").execute(&mut conn).await?;
    copy_csv(&mut conn, "COPY minimal (uuid, metrics) FROM STDIN (FORMAT csv)", rows, |row| {
        format!("{},{}\n", row.uuid, csv_field(&row.metrics))
    })
    .await
}

/// Runs `statement` (a `COPY … FROM STDIN`) with each row's `line`, sent in 1 MiB pieces, and
/// checks every row arrived. Returns the seconds taken.
async fn copy_csv(
    conn: &mut PgConnection,
    statement: &str,
    rows: &[Row],
    line: impl Fn(&Row) -> String,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut copy = conn.copy_in_raw(statement).await?;
    let mut buf = String::with_capacity(1 << 20);
    for row in rows {
        buf.push_str(&line(row));
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

/// Python's sqlite3 `executemany` of the rows into a fresh SQLite file with driftline's schema
/// (its migrations, in order), 1,000 rows per transaction, WAL, `synchronous=FULL`
/// (`benches/sqlite_executemany.py`). `columns` and `values` give the `predictions` columns the
/// store writes and each row's values for them. Returns the seconds the inserts took.
pub fn python_executemany(columns: &[&str], values: impl Iterator<Item = serde_json::Value>) -> anyhow::Result<f64> {
    use std::io::Write;
    let dir = tempfile::tempdir()?;
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite");
    let mut files: Vec<_> = std::fs::read_dir(&migrations)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.sort();
    let mut schema = String::new();
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "sql")) {
        schema.push_str(&std::fs::read_to_string(file)?);
        schema.push('\n');
    }
    std::fs::write(dir.path().join("schema.sql"), schema)?;
    let mut rows = std::io::BufWriter::new(std::fs::File::create(dir.path().join("rows.jsonl"))?);
    writeln!(rows, "{}", serde_json::to_string(columns)?)?;
    for v in values {
        writeln!(rows, "{v}")?;
    }
    rows.flush()?;
    drop(rows);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sqlite_executemany.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args(["--db", &dir.path().join("ref.sqlite").display().to_string()])
        .args(["--rows", &dir.path().join("rows.jsonl").display().to_string()])
        .args(["--schema", &dir.path().join("schema.sql").display().to_string()])
        .output()?;
    anyhow::ensure!(out.status.success(), "the Python reference failed: {}", String::from_utf8_lossy(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    answer["seconds"].as_f64().ok_or_else(|| anyhow::anyhow!("the Python reference printed no seconds"))
}

/// What a timed drift job run measured.
pub struct TimedRun {
    /// What the run printed.
    pub stdout: String,
    /// Wall-clock seconds of the whole process.
    pub seconds: f64,
    /// Its peak RSS, KiB.
    pub peak_kib: f64,
}

/// Creates drift job `name` with `create_flags` through the `driftline` binary beside this one,
/// then runs it for the window ending at `at` under `/usr/bin/time`, writing its reports into
/// `reports_dir`.
pub fn create_and_time_job(
    name: &str,
    create_flags: &[String],
    at: i64,
    url: &str,
    reports_dir: &std::path::Path,
) -> anyhow::Result<TimedRun> {
    use anyhow::Context;
    let driftline = std::env::current_exe()?.with_file_name("driftline");
    let create = std::process::Command::new(&driftline)
        .args(["drift", "job", "create", name])
        .args(create_flags)
        .args(["--database-url", url])
        .output()?;
    anyhow::ensure!(create.status.success(), "job create failed: {}", String::from_utf8_lossy(&create.stderr));
    let timing = reports_dir.join("time.txt");
    let run = std::process::Command::new("/usr/bin/time")
        .args(["-f", "%e %M", "-o"])
        .arg(&timing)
        .arg(&driftline)
        .args(["drift", "job", "run", name, "--at", &at.to_string(), "--database-url", url])
        .arg("--output-dir")
        .arg(reports_dir)
        .output()?;
    anyhow::ensure!(run.status.success(), "job run failed: {}", String::from_utf8_lossy(&run.stderr));
    let measured = std::fs::read_to_string(&timing)?;
    let mut parts = measured.split_whitespace();
    let seconds: f64 = parts.next().context("time output")?.parse()?;
    let peak_kib: f64 = parts.next().context("time output")?.parse()?;
    Ok(TimedRun { stdout: String::from_utf8_lossy(&run.stdout).into_owned(), seconds, peak_kib })
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

/// The admin key the benchmarks run `driftline serve` with.
pub const KEY: &str = "bench-admin-key-0123456789";

/// A `driftline serve` process on a free loopback port, for intake alone: the rollup worker is
/// off (`benches/rollup.rs` measures it on its own; here it would roll these 2023-dated events
/// up, and its retention remove them, while they arrive). Killed when dropped.
pub struct ServeProcess {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl ServeProcess {
    /// Starts `driftline serve` with these store flags and waits until it listens.
    pub fn start(driftline: &std::path::Path, store_args: &[String]) -> anyhow::Result<ServeProcess> {
        use anyhow::Context;
        use std::io::BufRead;
        let mut child = std::process::Command::new(driftline)
            .args(["serve", "--listen", "127.0.0.1:0", "--no-rollup"])
            .args(store_args)
            .env("DRIFTLINE_ADMIN_KEY", KEY)
            .env("DRIFTLINE_LOG", "warn,sqlx=error")
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut lines = std::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
        let base = loop {
            let line = lines.next().context("driftline exited before listening")??;
            if let Some(rest) = line.strip_prefix("driftline listening on ") {
                break rest.split_whitespace().next().context("an address")?.to_owned();
            }
        };
        Ok(ServeProcess { child, base })
    }

    /// A `VmHWM:` or `VmRSS:` figure of the server, in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        status_kib(self.child.id(), field)
    }

    /// Resets the peak RSS counter (VmHWM) to the current RSS.
    pub fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }

    /// Stops the server with SIGTERM; fails unless it exits cleanly within 30 s.
    pub fn stop(mut self) -> anyhow::Result<()> {
        std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(status.success(), "driftline exited with {status}");
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        anyhow::bail!("driftline did not stop within 30 s")
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
