//! HTTP ingest benchmark: N prediction events in batches through `POST /api/v1/events` of the
//! real `driftline serve` process, into SQLite and into Postgres, beside a plain `COPY` of the
//! same rows into the same Postgres, all in one run. Then one streaming read of the whole window.
//! Prints events/s, the server's peak RSS and the ratios as a Markdown table.
//!
//! ```text
//! cargo build --release -p driftline -p driftline-benches
//! $CARGO_TARGET_DIR/release/http_ingest --events 200000 --batch 1000
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use driftline_benches::{
    copy_minimal, copy_rows, copy_rows_binary, fresh_database, generate, python_executemany, sqlite_columns,
    sqlite_values, wire, ServeProcess, DEPLOYMENT, KEY,
};
use futures::{StreamExt, TryStreamExt};

struct Options {
    events: usize,
    batch: usize,
    concurrency: usize,
    server_url: String,
    driftline: PathBuf,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        events: 200_000,
        batch: 1_000,
        concurrency: 4,
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
            "--batch" => o.batch = value.parse()?,
            "--concurrency" => o.concurrency = value.parse()?,
            "--postgres" => o.server_url = value.clone(),
            "--driftline" => o.driftline = PathBuf::from(value),
            other => {
                bail!("unknown flag {other}; use --events N --batch N --concurrency N --postgres URL --driftline PATH")
            }
        }
    }
    anyhow::ensure!(
        o.driftline.exists(),
        "no driftline binary at {}; build it with cargo build --release -p driftline",
        o.driftline.display()
    );
    Ok(o)
}

struct Figures {
    seconds: f64,
    peak_rss_kib: u64,
    read_seconds: f64,
    read_rows: usize,
    rss_before_read_kib: u64,
    read_peak_rss_kib: u64,
}

async fn http_run(o: &Options, bodies: &[String], store_args: &[String]) -> anyhow::Result<Figures> {
    let server = ServeProcess::start(&o.driftline, store_args)?;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/events", server.base);
    let started = Instant::now();
    let accepted: Vec<u64> = futures::stream::iter(bodies.iter().cloned().map(|body| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r =
                client.post(url).bearer_auth(KEY).header("content-type", "application/json").body(body).send().await?;
            anyhow::ensure!(r.status().is_success(), "server answered {}", r.status());
            let report: serde_json::Value = r.json().await?;
            Ok(report["accepted"].as_u64().unwrap_or(0))
        }
    }))
    .buffer_unordered(o.concurrency)
    .try_collect()
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let stored: u64 = accepted.iter().sum();
    anyhow::ensure!(stored == o.events as u64, "stored {stored} of {} events", o.events);
    let peak_rss_kib = server.status_kib("VmHWM:");

    // Stream the whole window back and watch the server's memory while it does.
    let rss_before_read_kib = server.status_kib("VmRSS:");
    server.reset_peak();
    let started = Instant::now();
    let mut response = client
        .get(format!("{}/api/v1/read_metrics", server.base))
        .bearer_auth(KEY)
        .query(&[("model_deployment_crn", DEPLOYMENT), ("format", "ndjson")])
        .send()
        .await?
        .error_for_status()?;
    let mut read_rows = 0;
    while let Some(chunk) = response.chunk().await? {
        read_rows += chunk.iter().filter(|&&b| b == b'\n').count();
    }
    let read_seconds = started.elapsed().as_secs_f64();
    let read_peak_rss_kib = server.status_kib("VmHWM:");
    anyhow::ensure!(read_rows == o.events, "read {read_rows} of {} rows", o.events);
    server.stop()?;
    Ok(Figures { seconds, peak_rss_kib, read_seconds, read_rows, rss_before_read_kib, read_peak_rss_kib })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = options()?;
    let rows = generate(o.events);
    let bodies: Vec<String> =
        rows.chunks(o.batch).map(|c| format!("[{}]", c.iter().map(wire).collect::<Vec<_>>().join(","))).collect();
    let mb = bodies.iter().map(String::len).sum::<usize>() as f64 / 1e6;
    println!(
        "{} prediction events ({mb:.1} MB of JSON) in {} requests of {}, {} in flight",
        o.events,
        bodies.len(),
        o.batch,
        o.concurrency
    );

    let dir = tempfile::tempdir()?;
    let sqlite = http_run(&o, &bodies, &["--data-dir".into(), dir.path().display().to_string()]).await?;
    let pg_url = fresh_database(&o.server_url, "driftline_bench_http").await?;
    let postgres = http_run(&o, &bodies, &["--database-url".into(), pg_url]).await?;
    let copy_url = fresh_database(&o.server_url, "driftline_bench_copy").await?;
    let copy = copy_rows(&copy_url, &rows).await?;
    let binary_url = fresh_database(&o.server_url, "driftline_bench_copy_binary").await?;
    let binary = copy_rows_binary(&copy_url, &binary_url, rows.len()).await?;
    let minimal_url = fresh_database(&o.server_url, "driftline_bench_minimal").await?;
    let minimal = copy_minimal(&minimal_url, &rows).await?;
    let executemany = python_executemany(sqlite_columns(), rows.iter().map(sqlite_values))?;

    let rate = |s: f64| o.events as f64 / s;
    println!();
    println!("| run | seconds | events/s | vs its reference | server peak RSS | full-window read (rows/s) | RSS before read → peak during read |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, f, reference) in [
        ("HTTP → SQLite", &sqlite, format!("{:.2}× executemany", executemany / sqlite.seconds)),
        (
            "HTTP → Postgres",
            &postgres,
            format!(
                "{:.2}× COPY, {:.2}× COPY minimal, {:.2}× binary COPY",
                copy / postgres.seconds,
                minimal / postgres.seconds,
                binary / postgres.seconds
            ),
        ),
    ] {
        println!(
            "| {name} | {:.2} | {:.0} | {reference} | {:.0} MiB | {:.0} | {:.0} → {:.0} MiB |",
            f.seconds,
            rate(f.seconds),
            f.peak_rss_kib as f64 / 1024.0,
            f.read_rows as f64 / f.read_seconds,
            f.rss_before_read_kib as f64 / 1024.0,
            f.read_peak_rss_kib as f64 / 1024.0,
        );
    }
    println!(
        "| Python executemany → SQLite, same schema (reference) | {executemany:.2} | {:.0} | — | — | — | — |",
        rate(executemany)
    );
    println!("| COPY → Postgres, same schema (reference) | {copy:.2} | {:.0} | — | — | — | — |", rate(copy));
    println!("| COPY → Postgres, minimal table (reference) | {minimal:.2} | {:.0} | — | — | — | — |", rate(minimal));
    println!("| binary COPY → Postgres, same schema (reference) | {binary:.2} | {:.0} | — | — | — | — |", rate(binary));
    Ok(())
}
