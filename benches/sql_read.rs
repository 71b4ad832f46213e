//! Reads through the SQL layer against Postgres itself, on the same data in the same run:
//!
//! 1. `GET /api/v1/read_metrics` of a window of one deployment (1 M predictions by default, each
//!    labelled), as JSON and as Arrow, against `psql -c "COPY (SELECT … the same rows, delayed
//!    metrics joined, same order …) TO STDOUT"`; the server's peak RSS during each read.
//! 2. ROC AUC per day over those labelled predictions (`POST /api/v1/sql` with `roc_auc`), against
//!    Postgres computing the same AUC with window functions (`psql`), and both against
//!    scikit-learn on the same rows (`benches/sql/auc_sklearn.py`).
//! 3. A count and mean grouped by deployment and day over every prediction (10 M by default)
//!    through `POST /api/v1/sql`, against `psql` running the same SQL.
//! 4. With `--big-read`, `read_metrics` of all of them (by model), for the server's peak RSS.
//!
//! Every figure is the median of `--runs` runs, each read to its last byte.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{ensure, Context};
use driftline_benches::{fresh_database, ServeProcess, KEY};
use driftline_store::postgres::PostgresStore;
use futures::StreamExt;
use serde_json::Value;

const DAY_MS: i64 = 86_400_000;
const MODEL: &str = "crn:bench:model/churn";

struct Args {
    deployments: usize,
    per_deployment: usize,
    days: i64,
    runs: usize,
    big_read: bool,
    server_url: String,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        deployments: 10,
        per_deployment: 1_000_000,
        days: 10,
        runs: 3,
        big_read: false,
        server_url: std::env::var("DRIFTLINE_BENCH_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--deployments" => a.deployments = value()?.parse()?,
            "--per-deployment" => a.per_deployment = value()?.parse()?,
            "--days" => a.days = value()?.parse()?,
            "--runs" => a.runs = value()?.parse()?,
            "--big-read" => a.big_read = true,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn deployment(d: usize) -> String {
    format!("crn:bench:deployment/{d}")
}

/// Seconds of the median run.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Runs `psql -c SQL` with its output read to the end; seconds and bytes.
fn psql(url: &str, sql: &str) -> anyhow::Result<(f64, u64, String)> {
    let started = Instant::now();
    let mut child = Command::new("psql")
        .args([url, "-X", "-q", "-A", "-t", "-c", sql])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("psql")?;
    let mut out = child.stdout.take().context("stdout")?;
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = out.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        if kept.len() < 1 << 20 {
            kept.extend_from_slice(&buf[..n]);
        }
    }
    let status = child.wait()?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(status.success(), "psql failed: {sql}");
    Ok((secs, bytes, String::from_utf8_lossy(&kept).into_owned()))
}

/// Loads the predictions (spread over `days` days before today) and a label for each of the
/// first deployment's, inside Postgres.
async fn load(url: &str, a: &Args, end_ms: i64) -> anyhow::Result<()> {
    let store = PostgresStore::connect(url).await?;
    let pool = store.pool();
    let n = a.per_deployment as i64;
    let span = a.days * DAY_MS;
    let start = end_ms - span;
    sqlx::query("SELECT setseed(0.7)").execute(pool).await?;
    for d in 0..a.deployments {
        let started = Instant::now();
        sqlx::query(&format!(
            "INSERT INTO predictions (uuid, model_crn, model_build_crn, model_deployment_crn, start_timestamp_ms, \
             end_timestamp_ms, metrics, received_at_ms) \
             SELECT gen_random_uuid(), '{MODEL}', 'crn:bench:build/{b}', '{dep}', t, t + 12, \
                    jsonb_build_object('input', jsonb_build_object('tenure_months', floor(random() * 72)::int, \
                        'monthly_charges', round((random() * 100)::numeric, 2), \
                        'plan', (ARRAY['basic', 'standard', 'premium'])[1 + floor(random() * 3)::int], \
                        'region', (ARRAY['north', 'south', 'east', 'west'])[1 + floor(random() * 4)::int]), \
                      'prediction', round(random()::numeric, 4)), {start} \
             FROM (SELECT {start} + (i::bigint * {span}) / {n} AS t FROM generate_series(0, {n} - 1) AS i) s",
            b = d % 2,
            dep = deployment(d),
        ))
        .execute(pool)
        .await?;
        eprintln!("loaded {} predictions of {} in {:.1} s", n, deployment(d), started.elapsed().as_secs_f64());
    }
    // Labels, more likely 1 the higher the score; some scores tie (4 decimals).
    let started = Instant::now();
    sqlx::query(&format!(
        "INSERT INTO delayed_metrics (uuid, timestamp_ms, metrics, digest, received_at_ms) \
         SELECT uuid, start_timestamp_ms + 3600000, \
                jsonb_build_object('label', CASE WHEN random() < 0.15 + 0.7 * (metrics->>'prediction')::float8 THEN 1 ELSE 0 END), \
                decode(md5(uuid::text), 'hex'), {end_ms} \
         FROM predictions WHERE model_deployment_crn = '{}'",
        deployment(0)
    ))
    .execute(pool)
    .await?;
    eprintln!("loaded {n} labels in {:.1} s", started.elapsed().as_secs_f64());
    sqlx::query("VACUUM ANALYZE").execute(pool).await?;
    Ok(())
}

/// A GET or POST answer read to its end: seconds, bytes, and the first MiB.
async fn http(request: reqwest::RequestBuilder) -> anyhow::Result<(f64, u64, Vec<u8>)> {
    let started = Instant::now();
    let response = request.bearer_auth(KEY).send().await?;
    ensure!(response.status().is_success(), "{}: {}", response.status(), response.text().await?);
    let mut body = response.bytes_stream();
    let (mut bytes, mut kept) = (0u64, Vec::new());
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        if kept.len() < 1 << 20 {
            kept.extend_from_slice(&chunk);
        }
    }
    Ok((started.elapsed().as_secs_f64(), bytes, kept))
}

/// The Postgres reference of `read_metrics`: the same rows, labels joined, in the same order.
fn copy_window_sql(selection: &str, crn: &str, from: i64, to: i64) -> String {
    format!(
        "COPY (SELECT p.uuid, p.model_crn, p.model_build_crn, p.model_deployment_crn, p.start_timestamp_ms, \
         p.end_timestamp_ms, p.metrics, (SELECT json_agg(d.metrics ORDER BY d.timestamp_ms, d.id) FROM delayed_metrics d \
         WHERE d.uuid = p.uuid AND (d.model_deployment_crn IS NULL OR d.model_deployment_crn = p.model_deployment_crn)) \
         FROM predictions p WHERE p.{selection} = '{crn}' AND p.start_timestamp_ms >= {from} AND p.start_timestamp_ms < {to} \
         ORDER BY p.start_timestamp_ms, p.uuid) TO STDOUT"
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let driftline = std::env::var("DRIFTLINE_BIN").map(std::path::PathBuf::from).unwrap_or_else(|_| {
        let exe = std::env::current_exe().expect("own path");
        exe.with_file_name("driftline")
    });
    let end_ms = (driftline_core::time::now_ms() / DAY_MS) * DAY_MS;
    let start_ms = end_ms - a.days * DAY_MS;
    let url = fresh_database(&a.server_url, "driftline_bench_sql").await?;
    load(&url, &a, end_ms).await?;
    let server = ServeProcess::start(&driftline, &["--database-url".into(), url.clone()])?;
    let client = reqwest::Client::new();
    let dep0 = deployment(0);
    let n = a.per_deployment;
    println!(
        "# SQL layer against Postgres: {} deployments × {n} predictions over {} days, {} runs each",
        a.deployments, a.days, a.runs
    );

    // 1. read_metrics of one deployment's window.
    let read_url = format!(
        "{}/api/v1/read_metrics?model_deployment_crn={dep0}&start_timestamp_ms={start_ms}&end_timestamp_ms={end_ms}",
        server.base
    );
    let copy = copy_window_sql("model_deployment_crn", &dep0, start_ms, end_ms);
    let (mut t_copy, mut t_json, mut t_arrow) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rss_json, mut rss_arrow) = (0u64, 0u64);
    let (mut json_bytes, mut arrow_bytes, mut copy_bytes) = (0, 0, 0);
    for _ in 0..a.runs {
        let (secs, bytes, _) = psql(&url, &copy)?;
        t_copy.push(secs);
        copy_bytes = bytes;
        server.reset_peak();
        let (secs, bytes, head) = http(client.get(&read_url)).await?;
        rss_json = rss_json.max(server.status_kib("VmHWM:"));
        t_json.push(secs);
        json_bytes = bytes;
        ensure!(head.starts_with(b"{\"metrics\":[{\"modelCrn\":"), "the JSON answer has its shape");
        server.reset_peak();
        let (secs, bytes, _) = http(client.get(format!("{read_url}&format=arrow"))).await?;
        rss_arrow = rss_arrow.max(server.status_kib("VmHWM:"));
        t_arrow.push(secs);
        arrow_bytes = bytes;
    }
    let (copy_s, json_s, arrow_s) = (median(t_copy), median(t_json), median(t_arrow));
    println!("\n## read_metrics of {n} labelled predictions (one deployment, {} days)", a.days);
    println!("| | seconds | bytes | × COPY | server peak RSS |");
    println!("|---|---:|---:|---:|---:|");
    println!("| psql COPY (reference) | {copy_s:.2} | {copy_bytes} | 1.00× | |");
    println!("| read_metrics JSON | {json_s:.2} | {json_bytes} | {:.2}× | {} MiB |", json_s / copy_s, rss_json / 1024);
    println!(
        "| read_metrics format=arrow | {arrow_s:.2} | {arrow_bytes} | {:.2}× | {} MiB |",
        arrow_s / copy_s,
        rss_arrow / 1024
    );

    // 2. ROC AUC per day.
    let auc_sql = format!(
        "SELECT start_timestamp_ms / {DAY_MS} AS day, roc_auc(json_get_float(metrics, 'prediction'), \
         json_get_float(metrics, 'label')) AS auc, count(*) AS n FROM labelled_predictions \
         WHERE model_deployment_crn = '{dep0}' GROUP BY 1 ORDER BY 1"
    );
    // Mann–Whitney with average ranks for ties, by window functions; the label is the latest
    // delayed metrics' (later keys win), as labelled_predictions has it.
    let pg_auc = format!(
        "WITH l AS (SELECT p.start_timestamp_ms / {DAY_MS} AS day, (p.metrics->>'prediction')::float8 AS s, \
           (SELECT (d.metrics->>'label')::int FROM delayed_metrics d WHERE d.uuid = p.uuid \
            AND (d.model_deployment_crn IS NULL OR d.model_deployment_crn = p.model_deployment_crn) \
            AND d.metrics ? 'label' ORDER BY d.timestamp_ms DESC, d.id DESC LIMIT 1) AS y \
           FROM predictions p WHERE p.model_deployment_crn = '{dep0}'), \
         r AS (SELECT day, y, rank() OVER (PARTITION BY day ORDER BY s) + (count(*) OVER (PARTITION BY day, s) - 1) / 2.0 AS rk \
           FROM l WHERE y IS NOT NULL AND s IS NOT NULL) \
         SELECT day, (sum(rk) FILTER (WHERE y = 1) - count(*) FILTER (WHERE y = 1) * (count(*) FILTER (WHERE y = 1) + 1) / 2.0) \
           / (count(*) FILTER (WHERE y = 1) * count(*) FILTER (WHERE y = 0))::float8 AS auc, count(*) FROM r GROUP BY day ORDER BY day"
    );
    let (mut t_pg, mut t_dl) = (Vec::new(), Vec::new());
    let (mut pg_rows, mut dl_rows) = (String::new(), Value::Null);
    for _ in 0..a.runs {
        let (secs, _, out) = psql(&url, &pg_auc)?;
        t_pg.push(secs);
        pg_rows = out;
        let (secs, _, body) =
            http(client.post(format!("{}/api/v1/sql", server.base)).json(&serde_json::json!({"sql": auc_sql}))).await?;
        t_dl.push(secs);
        dl_rows = serde_json::from_slice(&body)?;
    }
    let pg: Vec<(i64, f64)> = pg_rows
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap())
        })
        .collect();
    let dl: Vec<(i64, f64)> = dl_rows
        .as_array()
        .context("rows")?
        .iter()
        .map(|r| (r["day"].as_i64().unwrap(), r["auc"].as_f64().unwrap()))
        .collect();
    ensure!(pg.len() == dl.len() && !dl.is_empty(), "{} days from Postgres, {} from driftline", pg.len(), dl.len());
    let worst_pg = pg.iter().zip(&dl).map(|(p, d)| (p.1 - d.1).abs()).fold(0.0, f64::max);
    // scikit-learn on the very rows.
    let csv = std::env::temp_dir().join("driftline_bench_auc.csv");
    let (_, _, _) = psql(
        &url,
        &format!(
            "\\copy (SELECT p.start_timestamp_ms / {DAY_MS}, p.metrics->>'prediction', d.metrics->>'label' FROM predictions p \
             JOIN delayed_metrics d ON d.uuid = p.uuid WHERE p.model_deployment_crn = '{dep0}') TO '{}' (FORMAT csv)",
            csv.display()
        ),
    )?;
    let python = std::env::var("DRIFTLINE_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/auc_sklearn.py");
    let out = Command::new(&python).args([script, &csv.display().to_string()]).output().context("python")?;
    ensure!(out.status.success(), "scikit-learn: {}", String::from_utf8_lossy(&out.stderr));
    let sk: Vec<(i64, f64)> = serde_json::from_slice::<Vec<(i64, f64)>>(&out.stdout)?;
    ensure!(sk.len() == dl.len(), "{} days from scikit-learn", sk.len());
    let worst_sk = sk.iter().zip(&dl).map(|(s, d)| (s.1 - d.1).abs()).fold(0.0, f64::max);
    let (pg_s, dl_s) = (median(t_pg), median(t_dl));
    println!("\n## ROC AUC per day over {n} labelled predictions ({} days)", dl.len());
    println!("| | seconds | × Postgres |");
    println!("|---|---:|---:|");
    println!("| Postgres, window-function AUC (reference) | {pg_s:.2} | 1.00× |");
    println!("| SQL `roc_auc` over labelled_predictions | {dl_s:.2} | {:.2}× |", dl_s / pg_s);
    println!("largest difference per day: vs Postgres {worst_pg:.2e}, vs scikit-learn {worst_sk:.2e}");

    // 3. count and mean by deployment and day over everything.
    let total = a.deployments * n;
    let grouped = format!(
        "SELECT model_deployment_crn, start_timestamp_ms / {DAY_MS} AS day, count(*) AS n, \
         avg(end_timestamp_ms - start_timestamp_ms) AS latency FROM predictions GROUP BY 1, 2 ORDER BY 1, 2"
    );
    let grouped_json = format!(
        "SELECT model_deployment_crn, start_timestamp_ms / {DAY_MS} AS day, count(*) AS n, \
         avg(json_get_float(metrics, 'prediction')) AS score FROM predictions GROUP BY 1, 2 ORDER BY 1, 2"
    );
    let grouped_pg_json = format!(
        "SELECT model_deployment_crn, start_timestamp_ms / {DAY_MS} AS day, count(*) AS n, \
         avg((metrics->>'prediction')::float8) AS score FROM predictions GROUP BY 1, 2 ORDER BY 1, 2"
    );
    println!("\n## count and mean by deployment and day over {total} predictions");
    println!("| query | Postgres (s) | driftline SQL (s) | × Postgres | groups |");
    println!("|---|---:|---:|---:|---:|");
    for (name, ours, theirs) in
        [("avg(end - start)", &grouped, &grouped), ("avg(prediction) from metrics", &grouped_json, &grouped_pg_json)]
    {
        let (mut t_pg, mut t_dl, mut groups) = (Vec::new(), Vec::new(), 0);
        for _ in 0..a.runs {
            t_pg.push(psql(&url, theirs)?.0);
            let (secs, _, body) =
                http(client.post(format!("{}/api/v1/sql", server.base)).json(&serde_json::json!({"sql": ours})))
                    .await?;
            t_dl.push(secs);
            let rows: Value = serde_json::from_slice(&body)?;
            groups = rows.as_array().map_or(0, Vec::len);
            let counted: i64 = rows.as_array().context("rows")?.iter().map(|r| r["n"].as_i64().unwrap_or(0)).sum();
            ensure!(counted as usize == total, "the groups count {counted} rows, not {total}");
        }
        let (pg_s, dl_s) = (median(t_pg), median(t_dl));
        println!("| {name} | {pg_s:.2} | {dl_s:.2} | {:.2}× | {groups} |", dl_s / pg_s);
    }

    // 4. A read of everything, for memory.
    if a.big_read {
        let url_all = format!(
            "{}/api/v1/read_metrics?model_crn={MODEL}&start_timestamp_ms={start_ms}&end_timestamp_ms={end_ms}&format=ndjson",
            server.base
        );
        server.reset_peak();
        let (secs, bytes, _) = http(client.get(&url_all)).await?;
        println!(
            "\nread_metrics of all {total} predictions (NDJSON): {secs:.1} s, {bytes} bytes, server peak RSS {} MiB",
            server.status_kib("VmHWM:") / 1024
        );
    }
    server.stop()?;
    Ok(())
}
