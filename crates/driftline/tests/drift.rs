//! `driftline drift …` and the drift jobs API, through the real binary.

mod common;

use common::{failure, stdout};

use std::path::Path;
use std::process::{Command, Output};

use common::Server;
use driftline_core::{DelayedMetrics, MetricsJson, Prediction};
use driftline_store::{StoreConfig, StoredJob, WriteBatch};
use driftline_testkit::TestDatabase;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};

use common::ADMIN;
const DEPLOYMENT: &str = "crn:test:deployment/churn";
const DAY: i64 = 86_400_000;
/// Midnight UTC, 2026-11-01.
const D0: i64 = 1_793_491_200_000;

fn driftline(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driftline"))
        .current_dir(dir)
        .args(args)
        .env("DRIFTLINE_LOG", "warn")
        .output()
        .expect("run driftline")
}

/// A reference and a current CSV: `tenure` shifts, `charges` does not, `plan` changes its mix
/// and gains a category, and `calls` has missing and non-numeric-free gaps.
fn write_tables(dir: &Path) {
    let mut rng = StdRng::seed_from_u64(5);
    let mut reference = String::from("tenure,charges,plan,calls\n");
    let mut current = reference.clone();
    for i in 0..600 {
        let plan = ["basic", "standard", "premium"][i % 3];
        let calls = if i % 50 == 0 { String::new() } else { format!("{}", rng.random_range(0..4)) };
        reference.push_str(&format!(
            "{:.2},{:.2},{plan},{calls}\n",
            rng.random_range(0.0..40.0f64),
            rng.random_range(20.0..100.0f64)
        ));
        let plan = ["basic", "premium", "premium", "enterprise"][i % 4];
        current.push_str(&format!(
            "{:.2},{:.2},{plan},{calls}\n",
            rng.random_range(10.0..50.0f64),
            rng.random_range(20.0..100.0f64)
        ));
    }
    std::fs::write(dir.join("reference.csv"), reference).unwrap();
    std::fs::write(dir.join("current.csv"), current).unwrap();
    let mut predictions = String::from("score,label,target,predicted\n");
    for i in 0..200 {
        let label = i % 3 == 0;
        let score = if label { rng.random_range(0.3..1.0f64) } else { rng.random_range(0.0..0.7f64) };
        let target = rng.random_range(0.0..10.0f64);
        predictions.push_str(&format!(
            "{score:.4},{},{target:.3},{:.3}\n",
            u8::from(label),
            target + rng.random_range(-1.0..1.0f64)
        ));
    }
    predictions.push_str(",1,,\n");
    std::fs::write(dir.join("predictions.csv"), predictions).unwrap();
}

/// `driftline drift compare` of the two tables, with `extra` arguments.
fn compare(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["drift", "compare", "--reference", "reference.csv", "--current", "current.csv"];
    args.extend_from_slice(extra);
    driftline(dir, &args)
}

#[test]
fn compare_files_as_json_table_and_html() {
    let dir = tempfile::tempdir().unwrap();
    write_tables(dir.path());
    let json_out = stdout(&compare(dir.path(), &["--format", "json"]));
    let report: Value = serde_json::from_str(&json_out).unwrap();
    insta::assert_json_snapshot!("compare_auto", report);
    let drifted: Vec<&str> = report["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["drifted"] == json!(true))
        .map(|c| c["column"].as_str().unwrap())
        .collect();
    assert_eq!(drifted, ["tenure", "plan"]);

    let table = stdout(&compare(dir.path(), &["--method", "psi", "--columns", "tenure,charges"]));
    assert!(table.contains("tenure") && table.contains("DRIFT") && table.contains("1 of 2 columns drifted"), "{table}");

    stdout(&compare(dir.path(), &["--format", "html", "--output", "report.html"]));
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.matches("<svg").count() == 4, "one histogram per column");
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
}

#[test]
fn performance_of_files() {
    let dir = tempfile::tempdir().unwrap();
    write_tables(dir.path());
    let out = stdout(&driftline(
        dir.path(),
        &[
            "drift",
            "performance",
            "--input",
            "predictions.csv",
            "--score",
            "score",
            "--label",
            "label",
            "--format",
            "json",
        ],
    ));
    let mut report: Value = serde_json::from_str(&out).unwrap();
    // The loss sums are added part by part, one part per core: their last digits depend on
    // the machine, so the snapshot keeps twelve significant digits of them.
    for metric in ["log_loss", "brier"] {
        let value = report["metrics"][metric]["value"].as_f64().unwrap();
        report["metrics"][metric]["value"] = json!(format!("{value:.11e}").parse::<f64>().unwrap());
    }
    insta::assert_json_snapshot!("performance_binary", report);
    assert_eq!(report["rows_excluded"], json!(1), "the row without a score is left out and counted");

    let table = stdout(&driftline(
        dir.path(),
        &[
            "drift",
            "performance",
            "--input",
            "predictions.csv",
            "--score",
            "predicted",
            "--label",
            "target",
            "--task",
            "regression",
        ],
    ));
    assert!(table.contains("rmse") && table.contains("r2"), "{table}");

    let err = failure(&driftline(
        dir.path(),
        &["drift", "performance", "--input", "predictions.csv", "--score", "score", "--label", "target"],
    ));
    assert!(err.contains("column `target`") && err.contains("not a binary label") && err.contains("--task"), "{err}");
}

#[test]
fn exclude_ids_and_fail_on_drift() {
    let dir = tempfile::tempdir().unwrap();
    write_tables(dir.path());
    // An id column beside the features: a different whole number in every row.
    for (file, offset) in [("reference.csv", 0), ("current.csv", 10_000)] {
        let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
        let mut lines = text.lines();
        let mut out = format!("customer_id,{}\n", lines.next().unwrap());
        for (i, line) in lines.enumerate() {
            out.push_str(&format!("{},{line}\n", offset + i));
        }
        std::fs::write(dir.path().join(file), out).unwrap();
    }
    let run = compare(dir.path(), &["--format", "json"]);
    let report: Value = serde_json::from_str(&stdout(&run)).unwrap();
    assert_eq!(report["unique_columns"], json!(["customer_id"]));
    let note = String::from_utf8(run.stderr).unwrap();
    assert!(
        note.contains("`customer_id` holds a different value in every row") && note.contains("--exclude customer_id")
    );
    let column = |r: &Value, name: &str| r["columns"].as_array().unwrap().iter().find(|c| c["column"] == name).cloned();
    assert_eq!(column(&report, "customer_id").unwrap()["drifted"], json!(true), "an id drifts by construction");

    let out = stdout(&compare(dir.path(), &["--format", "json", "--exclude", "customer_id, calls"]));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["excluded_columns"], json!(["customer_id", "calls"]));
    assert!(report.get("unique_columns").is_none());
    let names: Vec<&str> =
        report["columns"].as_array().unwrap().iter().map(|c| c["column"].as_str().unwrap()).collect();
    assert_eq!(names, ["tenure", "charges", "plan"]);
    let err = failure(&compare(dir.path(), &["--exclude", "colour"]));
    assert!(err.contains("--exclude") && err.contains("`colour`"), "{err}");
    let err = failure(&compare(dir.path(), &["--columns", "tenure", "--exclude", "tenure"]));
    assert!(err.contains("--exclude: leaves no column to compare"), "{err}");

    // Exit 3 on drift, after the answer is written; 0 without drift.
    let drifted = compare(dir.path(), &["--exclude", "customer_id", "--fail-on-drift"]);
    assert_eq!(drifted.status.code(), Some(3), "{}", String::from_utf8_lossy(&drifted.stderr));
    assert!(String::from_utf8_lossy(&drifted.stdout).contains("2 of 4 columns drifted"));
    assert!(String::from_utf8_lossy(&drifted.stderr).contains("drift: 2 of 4 columns drifted (--fail-on-drift)"));
    let calm = compare(dir.path(), &["--columns", "charges", "--fail-on-drift"]);
    assert_eq!(calm.status.code(), Some(0), "{}", String::from_utf8_lossy(&calm.stderr));

    // Wasserstein: the raw distance and the normalised one the threshold applies to.
    let out = stdout(&compare(dir.path(), &["--format", "json", "--method", "wasserstein", "--columns", "tenure"]));
    let tenure = column(&serde_json::from_str(&out).unwrap(), "tenure").unwrap();
    assert_eq!(tenure["statistic"], tenure["wasserstein_normalized"]);
    assert_eq!(tenure["variant"], json!("normalized_by_reference_std"));
    let (raw, normalized) =
        (tenure["wasserstein"].as_f64().unwrap(), tenure["wasserstein_normalized"].as_f64().unwrap());
    assert!(raw > normalized && normalized > 0.1, "tenure spans 40 units: {raw} {normalized}");
    let table = stdout(&compare(dir.path(), &["--method", "wasserstein", "--columns", "tenure"]));
    assert!(
        table.contains("tenure: Wasserstein distance") && table.contains("reference standard deviations"),
        "{table}"
    );
}

#[test]
fn performance_with_predicted_classes_and_as_html() {
    let dir = tempfile::tempdir().unwrap();
    write_tables(dir.path());
    // The model's own decisions: class 1 from 0.6 on, unlike the default threshold of 0.5.
    let text = std::fs::read_to_string(dir.path().join("predictions.csv")).unwrap();
    let mut lines = text.lines();
    let mut out = format!("{},decision\n", lines.next().unwrap());
    let (mut tp, mut fp, mut tn, mut fn_) = (0, 0, 0, 0);
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let decision = match fields[0].parse::<f64>() {
            Ok(score) => {
                let (predicted, label) = (score >= 0.6, fields[1] == "1");
                match (predicted, label) {
                    (true, true) => tp += 1,
                    (true, false) => fp += 1,
                    (false, false) => tn += 1,
                    (false, true) => fn_ += 1,
                }
                u8::from(predicted).to_string()
            }
            Err(_) => String::new(),
        };
        out.push_str(&format!("{line},{decision}\n"));
    }
    std::fs::write(dir.path().join("decisions.csv"), out).unwrap();
    let args = |extra: &[&'static str]| {
        let mut a = vec!["drift", "performance", "--input", "decisions.csv", "--score-column", "score"];
        a.extend_from_slice(&["--label-column", "label"]);
        a.extend_from_slice(extra);
        a
    };
    let json_out = stdout(&driftline(dir.path(), &args(&["--prediction-column", "decision", "--format", "json"])));
    let report: Value = serde_json::from_str(&json_out).unwrap();
    let metrics = &report["metrics"];
    assert_eq!(report["prediction"], json!("decision"));
    assert_eq!(metrics["threshold"], Value::Null);
    assert_eq!(
        metrics["confusion"],
        json!({"true_negatives": tn, "false_positives": fp, "false_negatives": fn_, "true_positives": tp})
    );
    let precision = tp as f64 / (tp + fp) as f64;
    assert_eq!(metrics["precision"]["value"].as_f64().unwrap(), precision);
    // The ranking metrics still come from the scores: the same as without the column.
    let plain: Value = serde_json::from_str(&stdout(&driftline(dir.path(), &args(&["--format", "json"])))).unwrap();
    assert_eq!(metrics["roc_auc"], plain["metrics"]["roc_auc"]);
    assert_ne!(metrics["confusion"], plain["metrics"]["confusion"]);

    stdout(&driftline(
        dir.path(),
        &args(&["--prediction-column", "decision", "--format", "html", "--output", "p.html"]),
    ));
    let html = std::fs::read_to_string(dir.path().join("p.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("Confusion matrix") && html.contains("ROC curve"));
    assert!(html.contains(&format!("<td>{tn}</td><td>{fp}</td>")) && html.contains("predicted classes `decision`"));
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    let err = failure(&driftline(
        dir.path(),
        &[
            "drift",
            "performance",
            "--input",
            "decisions.csv",
            "--score",
            "predicted",
            "--label",
            "target",
            "--task",
            "regression",
            "--prediction",
            "decision",
        ],
    ));
    assert!(err.contains("--prediction") && err.contains("binary task"), "{err}");
}

#[test]
fn chunked_compare_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    write_tables(dir.path());
    let chunked = |extra: &[&str]| {
        let mut args = vec!["--chunk-size", "100", "--chunk-methods", "ks,js,chi2"];
        args.extend_from_slice(extra);
        compare(dir.path(), &args)
    };
    let report: Value = serde_json::from_str(&stdout(&chunked(&["--format", "json"]))).unwrap();
    let chunks = report["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 12, "6 chunks of 100 rows on each side");
    assert_eq!((chunks[0]["period"].as_str(), chunks[6]["period"].as_str()), (Some("reference"), Some("analysis")));
    assert_eq!((chunks[6]["start_index"].as_u64(), chunks[6]["end_index"].as_u64()), (Some(0), Some(99)));
    assert_eq!(report["chunking"], json!({"size": 100}));
    let alert =
        |chunk: &Value, column: &str, method: &str| chunk["results"][column][method]["alert"].as_bool().unwrap();
    // tenure moves by 10 in every current chunk; charges stays.
    assert!(chunks[6..]
        .iter()
        .all(|c| alert(c, "tenure", "kolmogorov_smirnov") && alert(c, "tenure", "jensen_shannon")));
    assert!(chunks[..6].iter().all(|c| !alert(c, "tenure", "kolmogorov_smirnov")), "the reference's own chunks");
    let threshold = chunks[0]["results"]["tenure"]["kolmogorov_smirnov"]["upper_threshold"].as_f64().unwrap();
    assert!(threshold > 0.0 && threshold < 1.0, "{threshold}");
    assert!(chunks[6]["results"]["plan"]["chi2"]["p_value"].as_f64().unwrap() < 0.05);
    assert!(chunks[0]["results"]["plan"].get("kolmogorov_smirnov").is_none(), "categories get no KS");

    let csv = stdout(&chunked(&["--format", "csv"]));
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("chunk,period,start_index,end_index,"));
    // 12 chunks × (tenure, charges, calls: ks and js; plan: js and chi2).
    assert_eq!(lines.count(), 12 * 8);
    let table = stdout(&chunked(&[]));
    assert!(table.contains("ALERT") && table.contains("6 of 6 analysis chunks alerted"), "{table}");
    stdout(&chunked(&["--format", "html", "--output", "chunks.html"]));
    let html = std::fs::read_to_string(dir.path().join("chunks.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 8, "one chart per column and statistic");
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));

    let drifted = chunked(&["--fail-on-drift"]);
    assert_eq!(drifted.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&drifted.stderr).contains("6 of 6 analysis chunks alerted (--fail-on-drift)"));
    let constant = chunked(&["--format", "json", "--threshold", "0.99", "--columns", "charges"]);
    let report: Value = serde_json::from_str(&stdout(&constant)).unwrap();
    assert_eq!(report["chunks"][7]["results"]["charges"]["jensen_shannon"]["upper_threshold"], json!(0.99));
    assert_eq!(report["alerting_chunks"], json!(0));

    // By default: Jensen-Shannon and the data-quality measures. `calls` misses every 50th value.
    let out = stdout(&compare(dir.path(), &["--chunk-size", "100", "--format", "json", "--columns", "calls,plan"]));
    let report: Value = serde_json::from_str(&out).unwrap();
    let first = &report["chunks"][0]["results"];
    assert_eq!(first["calls"]["missing_values"]["value"], json!(0.02));
    assert!(first["calls"].get("unseen_values").is_none(), "numbers have no unseen values");
    // `enterprise` is a plan the reference never had: every current chunk alerts on it.
    let unseen = |c: &Value| c["results"]["plan"]["unseen_values"]["alert"].as_bool().unwrap();
    assert!(report["chunks"].as_array().unwrap()[6..].iter().all(unseen));

    let err = failure(&compare(dir.path(), &["--chunk-period", "1d"]));
    assert!(err.contains("--chunk-period") && err.contains("--timestamp-column"), "{err}");
    let err = failure(&compare(dir.path(), &["--chunk-number", "700"]));
    assert!(err.contains("--chunk-number: 700 chunks need at least 700 rows"), "{err}");
    let err = failure(&compare(dir.path(), &["--chunk-size", "100", "--chunk-methods", "ks", "--columns", "plan"]));
    assert!(err.contains("`plan`") && err.contains("--chunk-methods"), "{err}");
    let both = compare(dir.path(), &["--chunk-size", "100", "--chunk-number", "3"]);
    assert_eq!(both.status.code(), Some(2), "clap refuses two ways of chunking");
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_tables(dir.path());
    let refused = |extra: &[&str]| failure(&compare(dir.path(), extra));
    let err = refused(&["--columns", "tenure,colour"]);
    assert!(err.contains("`colour`") && err.contains("tenure, charges, plan, calls"), "{err}");
    let err = refused(&["--method", "kl"]);
    assert!(err.contains("kl") && err.contains("psi, ks, chi2, js, wasserstein"), "{err}");
    let err = refused(&["--method", "ks", "--columns", "plan"]);
    assert!(err.contains("column `plan`") && err.contains("chi2"), "{err}");
    let err = refused(&["--bins", "1"]);
    assert!(err.contains("--bins"), "{err}");
    let err = failure(&driftline(
        dir.path(),
        &["drift", "compare", "--reference", "missing.csv", "--current", "current.csv"],
    ));
    assert!(err.contains("missing.csv"), "{err}");
}

fn metrics(v: Value) -> MetricsJson {
    v.as_object().unwrap().clone().into()
}

/// Five days of predictions (the last two drifted) with labels, into the SQLite file.
async fn load(url: &str, dir: &Path) {
    let store = driftline_store::open(&StoreConfig {
        database_url: Some(url.into()),
        data_dir: dir.into(),
        options: Default::default(),
    })
    .await
    .unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    let mut batch = WriteBatch::new(D0);
    for day in 0..5 {
        for i in 0..300 {
            let at = D0 + day * DAY + i * (DAY / 300);
            let uuid = uuid::Uuid::new_v4();
            let shift = if day >= 3 { 30.0 } else { 0.0 };
            let truth = rng.random::<f64>() < 0.3;
            batch.predictions.push(Prediction {
                uuid,
                model_crn: "crn:test:model/churn".into(),
                model_build_crn: "crn:test:build/1".into(),
                model_deployment_crn: DEPLOYMENT.into(),
                start_timestamp_ms: at,
                end_timestamp_ms: at + 3,
                metrics: metrics(json!({"input": {"tenure": ((i * 37) % 300) as f64 * 40.0 / 300.0 + shift}, "prediction": if truth { 0.7 } else { 0.3 }})),
            });
            batch.delayed_metrics.push(DelayedMetrics {
                uuid,
                timestamp_ms: at + 1000,
                metrics: metrics(json!({"label": u8::from(truth)})),
            });
        }
    }
    store.write(&batch).await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn job_commands_and_backfill() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.sqlite").display());
    load(&url, dir.path()).await;
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["--database-url", &url]);
        driftline(dir.path(), &all)
    };
    let created = stdout(&run(&[
        "drift",
        "job",
        "create",
        "churn",
        "--deployment",
        DEPLOYMENT,
        "--window",
        "1d",
        "--reference",
        "baseline:2026-11-01T00:00:00Z..2026-11-02T00:00:00Z",
        "--features",
        "input.tenure",
        "--alert",
        "roc_auc<0.5",
        "--schedule",
        "daily@00:00",
        "--timezone",
        "UTC",
    ]));
    assert!(created.contains("created drift job `churn`"), "{created}");
    let err =
        failure(&run(&["drift", "job", "create", "churn", "--deployment", DEPLOYMENT, "--features", "input.tenure"]));
    assert!(err.contains("exists"), "{err}");
    let err = failure(&run(&[
        "drift",
        "job",
        "create",
        "x",
        "--deployment",
        DEPLOYMENT,
        "--features",
        "a",
        "--schedule",
        "daily@7pm",
    ]));
    assert!(err.contains("schedule.expression"), "{err}");
    assert!(stdout(&run(&["drift", "job", "list"])).contains("churn"));

    // Reference files only from the references directory (<data-dir>/references by default).
    std::fs::create_dir_all(dir.path().join("driftline-data/references")).unwrap();
    std::fs::write(dir.path().join("driftline-data/references/day1.csv"), "input.tenure\n1\n2\n").unwrap();
    std::fs::write(dir.path().join("outside.csv"), "input.tenure\n1\n2\n").unwrap();
    let create_with = |reference: &str| {
        let args = ["drift", "job", "create", "from-file", "--deployment", DEPLOYMENT, "--features", "input.tenure"];
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["--reference", reference, "--max-categories", "20"]);
        run(&all)
    };
    let outside = dir.path().join("outside.csv").display().to_string();
    for refused in [format!("file:{outside}"), "file:../outside.csv".into(), "file:missing.csv".into()] {
        let err = failure(&create_with(&refused));
        assert!(err.contains("references directory") && err.contains("--references-dir"), "{err}");
    }
    assert!(stdout(&create_with("file:day1.csv")).contains("created drift job `from-file`"));

    // Times outside 2000-01-01 .. 2100-01-01 are refused, naming the range.
    let err = failure(&run(&["drift", "job", "run", "churn", "--at", "5000000000000"]));
    assert!(
        err.contains("--at") && err.contains("2000-01-01T00:00:00Z") && err.contains("2100-01-01T00:00:00Z"),
        "{err}"
    );
    let err = failure(&run(&[
        "drift",
        "backfill",
        "churn",
        "--from",
        "1999-12-01T00:00:00Z",
        "--to",
        "2026-11-05T00:00:00Z",
    ]));
    assert!(err.contains("--from") && err.contains("accepted range"), "{err}");
    let err = failure(&run(&[
        "drift",
        "job",
        "create",
        "old",
        "--deployment",
        DEPLOYMENT,
        "--features",
        "input.tenure",
        "--reference",
        "baseline:1999-01-01T00:00:00Z..1999-01-02T00:00:00Z",
    ]));
    assert!(err.contains("accepted range"), "{err}");

    let one =
        stdout(&run(&["drift", "job", "run", "churn", "--at", "2026-11-03T00:00:00Z", "--output-dir", "reports"]));
    let report = std::fs::read_to_string(dir.path().join("reports/churn-run1.json")).unwrap_or_default();
    assert!(one.contains(" ok ") && one.contains("report"), "{one}\n{report}");

    let filled = run(&[
        "drift",
        "backfill",
        "churn",
        "--from",
        "2026-11-03T00:00:00Z",
        "--to",
        "2026-11-05T00:00:00Z",
        "--output-dir",
        "reports",
    ]);
    let text = stdout(&filled);
    let progress = String::from_utf8(filled.stderr.clone()).unwrap();
    assert!(progress.contains("3/3"), "progress bar: {progress}");
    let statuses: Vec<&str> =
        text.lines().filter(|l| l.starts_with("run ")).map(|l| l.split_whitespace().nth(9).unwrap()).collect();
    assert_eq!(statuses, ["ok", "ok", "drift"], "{text}");
    let html = std::fs::read_dir(dir.path().join("reports"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().unwrap() == "html")
        .count();
    assert_eq!(html, 2, "one report per `run`, the last one of the backfill");

    // A job that estimates performance, and the check of its estimates against the labels.
    let err = failure(&run(&["drift", "job", "estimates", "churn"]));
    assert!(err.contains("does not estimate"), "{err}");
    let estimating = [
        "drift",
        "job",
        "create",
        "churn-estimate",
        "--deployment",
        DEPLOYMENT,
        "--window",
        "1d",
        "--reference",
        "baseline:2026-11-01T00:00:00Z..2026-11-02T00:00:00Z",
        "--features",
        "input.tenure",
        "--estimate",
    ];
    assert!(stdout(&run(&estimating)).contains("created drift job `churn-estimate`"));
    let ran = stdout(&run(&[
        "drift",
        "job",
        "run",
        "churn-estimate",
        "--at",
        "2026-11-03T00:00:00Z",
        "--output-dir",
        "reports",
    ]));
    assert!(ran.contains("run "), "{ran}");
    let checks: Value =
        serde_json::from_str(&stdout(&run(&["drift", "job", "estimates", "churn-estimate", "--format", "json"])))
            .unwrap();
    let check = &checks[0];
    assert_eq!((check["rows"].as_u64(), check["labelled"].as_u64()), (Some(300), Some(300)), "{check}");
    let accuracy = &check["metrics"]["accuracy"];
    assert!(accuracy["estimated"]["value"].is_f64() && accuracy["realized_now"].is_f64(), "{accuracy}");
    let table = stdout(&run(&["drift", "job", "estimates", "churn-estimate"]));
    assert!(table.contains("realised now") && table.contains("300 of 300"), "{table}");
    let err = failure(&run(&[
        "drift",
        "job",
        "create",
        "x",
        "--deployment",
        DEPLOYMENT,
        "--features",
        "a",
        "--estimate-prediction",
        "p",
    ]));
    assert!(err.contains("--estimate"), "{err}");
    let err = failure(&run(&[
        "drift",
        "job",
        "create",
        "x",
        "--deployment",
        DEPLOYMENT,
        "--features",
        "a",
        "--estimate",
        "--task",
        "regression",
    ]));
    assert!(err.contains("--estimate: estimates performance of a binary classifier"), "{err}");

    // A job with thresholds from the reference's chunks: its report has them.
    let mut chunked = estimating;
    chunked[3] = "churn-chunks";
    chunked[12] = "--chunks";
    assert!(stdout(&run(&chunked)).contains("created drift job `churn-chunks`"));
    let shown = stdout(&run(&["drift", "job", "show", "churn-chunks"]));
    let shown: Value = serde_json::from_str(shown.split("\n\n").next().unwrap()).unwrap();
    assert_eq!(
        shown["chunks"],
        serde_json::json!({"methods": ["jensen_shannon", "missing_values", "unseen_values"], "threshold": {"standard_deviations": 3.0}}),
        "{shown}"
    );
    stdout(&run(&["drift", "job", "run", "churn-chunks", "--at", "2026-11-03T00:00:00Z", "--output-dir", "chunks"]));
    let written: Vec<_> = std::fs::read_dir(dir.path().join("chunks")).unwrap().map(|e| e.unwrap().path()).collect();
    let json = written.iter().find(|p| p.extension().is_some_and(|e| e == "json")).expect("a JSON report");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let tenure = &report["chunks"]["results"]["input.tenure"]["jensen_shannon"];
    assert!(tenure["value"].is_f64() && tenure["upper_threshold"].is_f64(), "{report}");
    let mut refused = chunked.to_vec();
    refused[3] = "x";
    refused.push("--chunk-threshold-sd=-1");
    let err = failure(&run(&refused));
    assert!(err.contains("--chunk-threshold-sd or --chunk-threshold: -1 is not a non-negative number"), "{err}");

    // Split into chunks by period: the spec has it, a zero size is refused by its flag, and a
    // split needs --chunks.
    let mut split = chunked.to_vec();
    split[3] = "churn-split";
    split.extend(["--chunk-period", "1h"]);
    assert!(stdout(&run(&split)).contains("created drift job `churn-split`"));
    let shown = stdout(&run(&["drift", "job", "show", "churn-split"]));
    let shown: Value = serde_json::from_str(shown.split("\n\n").next().unwrap()).unwrap();
    assert_eq!(shown["chunks"]["split"], serde_json::json!({"period": "hour"}), "{shown}");
    let mut zero = chunked.to_vec();
    zero[3] = "x";
    zero.extend(["--chunk-size", "0"]);
    assert!(failure(&run(&zero)).contains("--chunk-size: must be at least 1 prediction"));
    let err = failure(&run(&[
        "drift",
        "job",
        "create",
        "x",
        "--deployment",
        DEPLOYMENT,
        "--features",
        "a",
        "--chunk-number",
        "4",
    ]));
    assert!(err.contains("--chunks"), "{err}");
    // Class scores: pairs of class and path, for the multiclass task.
    let classes = [
        "drift",
        "job",
        "create",
        "x",
        "--deployment",
        DEPLOYMENT,
        "--features",
        "a",
        "--class-scores",
        "cat=scores.cat,dog",
    ];
    assert!(failure(&run(&classes)).contains("--class-scores: `dog` is not CLASS=PATH, e.g. cat=scores.cat"));
    let err = failure(&run(&classes[..9].iter().copied().chain(["cat=scores.cat"]).collect::<Vec<_>>()));
    assert!(err.contains("--class-scores: are for the multiclass task; this job's task is binary"), "{err}");

    let shown = stdout(&run(&["drift", "job", "show", "churn"]));
    assert!(shown.contains("\"deployment\"") && shown.contains("drift"), "{shown}");
    assert!(stdout(&run(&["drift", "job", "delete", "churn"])).contains("deleted"));
    assert!(failure(&run(&["drift", "job", "show", "churn"])).contains("no drift job"));
}

#[tokio::test]
async fn sqlite_jobs_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.sqlite").display());
    jobs_over_the_api(&url, dir.path()).await;
}

#[tokio::test]
async fn postgres_jobs_over_the_api() {
    let Some(db) = TestDatabase::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    jobs_over_the_api(&db.url, dir.path()).await;
}

async fn jobs_over_the_api(url: &str, dir: &Path) {
    load(url, dir).await;
    // A job whose stored settings no longer parse: an internal error, not the caller's.
    let store = driftline_store::open(&StoreConfig {
        database_url: Some(url.into()),
        data_dir: dir.into(),
        options: Default::default(),
    })
    .await
    .unwrap();
    let broken = StoredJob { name: "broken".into(), spec: "{".into(), created_at_ms: D0, updated_at_ms: D0 };
    assert!(store.create_job(&broken).await.unwrap());
    store.close().await;
    let data_dir = dir.join("data");
    std::fs::create_dir_all(data_dir.join("references")).unwrap();
    let server = Server::start_admin(
        &["--database-url".into(), url.into(), "--data-dir".into(), data_dir.display().to_string()],
        &["--no-drift-scheduler", "--drift-backfill"],
    );
    let job = json!({
        "name": "churn-api", "deployment": DEPLOYMENT, "window": "1d",
        "reference": {"kind": "previous", "offset": "1d"},
        "features": ["input.tenure"], "schedule": {"expression": "daily@00:00", "timezone": "UTC"}
    });
    let (status, _, created) = server.post("/api/v1/drift/jobs", ADMIN, "application/json", job.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["spec"]["task"], json!("binary"), "defaults are filled in");
    assert_eq!(created["spec"]["max_categories"], json!(50), "defaults are filled in");
    let (status, _, _) = server.post("/api/v1/drift/jobs", ADMIN, "application/json", job.to_string()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let mut bad = job.clone();
    bad["name"] = json!("bad name");
    let (status, kind, problem) = server.post("/api/v1/drift/jobs", ADMIN, "application/json", bad.to_string()).await;
    assert_eq!((status, kind.as_str()), (StatusCode::BAD_REQUEST, "application/problem+json"));
    assert!(problem["detail"].as_str().unwrap().starts_with("name:"), "{problem}");

    let (status, _, _) = server.get("/api/v1/drift/jobs", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, _, jobs) = server.get("/api/v1/drift/jobs", Some(ADMIN)).await;
    assert_eq!(jobs["jobs"][0]["name"], json!("churn-api"));

    // The window ending on Nov 5 (day 4) against the day before: the shift starts on day 4.
    let (status, _, run) = server
        .post("/api/v1/drift/jobs/churn-api/runs?at=2026-11-05T00:00:00Z", ADMIN, "application/json", String::new())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let (status, _, run2) = server
        .post("/api/v1/drift/jobs/churn-api/runs?at=2026-11-04T00:00:00Z", ADMIN, "application/json", String::new())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run2}");
    assert_eq!((run["status"].as_str(), run2["status"].as_str()), (Some("drift"), Some("ok")));
    let id = run["id"].as_i64().unwrap();
    let (status, kind, html) = server.get(&format!("/api/v1/drift/jobs/churn-api/runs/{id}/report"), Some(ADMIN)).await;
    assert_eq!((status, kind.as_str()), (StatusCode::OK, "text/html; charset=utf-8"));
    assert!(html.as_str().unwrap().contains("input.tenure"));
    let (_, kind, report) =
        server.get(&format!("/api/v1/drift/jobs/churn-api/runs/{id}/report?format=json"), Some(ADMIN)).await;
    assert_eq!(kind, "application/json");
    assert_eq!(report["status"], json!("drift"));
    let (_, _, runs) = server.get("/api/v1/drift/jobs/churn-api/runs", Some(ADMIN)).await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2);

    // Times outside 2000-01-01 .. 2100-01-01 are refused with the range; nothing is run.
    for at in ["5000000000000", "1999-12-31T23:59:59Z", "1794096000"] {
        let (status, _, problem) = server
            .post(&format!("/api/v1/drift/jobs/churn-api/runs?at={at}"), ADMIN, "application/json", String::new())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{at}: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("2000-01-01T00:00:00Z") && detail.contains("2100-01-01T00:00:00Z"), "{detail}");
    }
    let mut old = job.clone();
    old["name"] = json!("old-baseline");
    old["reference"] = json!({"kind": "baseline", "start_ms": 0, "end_ms": 86_400_000});
    let (status, _, problem) = server.post("/api/v1/drift/jobs", ADMIN, "application/json", old.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let (_, _, runs) = server.get("/api/v1/drift/jobs/churn-api/runs", Some(ADMIN)).await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2);

    // The results are aggregate metrics like any other.
    let (_, _, aggregates) = server
        .get(&format!("/api/v1/aggregate_metrics?model_deployment_crn={DEPLOYMENT}&start_timestamp_ms={D0}&end_timestamp_ms={}", D0 + 10 * DAY), Some(ADMIN))
        .await;
    let sources: Vec<&str> =
        aggregates["metrics"].as_array().unwrap().iter().map(|a| a["source"].as_str().unwrap()).collect();
    assert_eq!(sources, ["drift:churn-api", "drift:churn-api"]);

    // Reference files: only inside <data-dir>/references, and a refusal does not tell whether
    // a path exists.
    std::fs::write(data_dir.join("references/day1.csv"), "input.tenure\n1\n2\n3\n").unwrap();
    std::fs::write(dir.join("secret.csv"), "input.tenure\n1\n").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.join("secret.csv"), data_dir.join("references/link.csv")).unwrap();
    let with_file = |name: &str, path: &str| {
        let mut j = job.clone();
        j["name"] = json!(name);
        j["reference"] = json!({"kind": "file", "path": path});
        j.to_string()
    };
    let secret = dir.join("secret.csv").display().to_string();
    let missing = dir.join("missing.csv").display().to_string();
    let mut details = Vec::new();
    for path in [secret.as_str(), missing.as_str(), "/etc/passwd", "../../secret.csv", "link.csv", "nope.csv"] {
        let (status, kind, problem) =
            server.post("/api/v1/drift/jobs", ADMIN, "application/json", with_file("probe", path)).await;
        assert_eq!((status, kind.as_str()), (StatusCode::BAD_REQUEST, "application/problem+json"), "{path}");
        details.push(problem["detail"].as_str().unwrap().replace(path, "PATH"));
    }
    assert!(details.windows(2).all(|w| w[0] == w[1]), "one answer for every refusal: {details:#?}");
    assert!(details[0].contains("references directory"), "{}", details[0]);
    let (status, _, created) =
        server.post("/api/v1/drift/jobs", ADMIN, "application/json", with_file("from-file", "day1.csv")).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, _, run) = server
        .post("/api/v1/drift/jobs/from-file/runs?at=2026-11-05T00:00:00Z", ADMIN, "application/json", String::new())
        .await;
    assert_eq!((status, run["status"].as_str()), (StatusCode::CREATED, Some("drift")), "{run}");

    // What went wrong decides the status: a missing job 404, a damaged one 500.
    let (status, _, problem) =
        server.post("/api/v1/drift/jobs/nope/runs", ADMIN, "application/json", String::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let (status, kind, problem) = server.get("/api/v1/drift/jobs/broken/runs", Some(ADMIN)).await;
    assert_eq!((status, kind.as_str()), (StatusCode::INTERNAL_SERVER_ERROR, "application/problem+json"), "{problem}");

    let r = server.client.delete(server.url("/api/v1/drift/jobs/churn-api")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (status, _, _) = server.get("/api/v1/drift/jobs/churn-api", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(server.stop().success());
}

/// A reference whose scores rank well but are not calibrated (the square of the probability),
/// with predicted classes and labels; an analysis file without labels whose first half is like
/// the reference and whose second half holds scores the model is unsure about (near 0.25, the
/// decision boundary).
fn write_scores(dir: &Path) {
    let mut rng = StdRng::seed_from_u64(9);
    let mut reference = String::from("score,predicted,label\n");
    let mut analysis = String::from("score,predicted\n");
    for i in 0..2000 {
        let p: f64 = rng.random();
        let label = rng.random::<f64>() < p;
        reference.push_str(&format!("{:.4},{},{}\n", p * p, u8::from(p >= 0.5), u8::from(label)));
        let p: f64 = if i < 1000 { rng.random() } else { rng.random_range(0.4..0.6) };
        analysis.push_str(&format!("{:.4},{}\n", p * p, u8::from(p >= 0.5)));
    }
    std::fs::write(dir.join("scored_reference.csv"), reference).unwrap();
    std::fs::write(dir.join("scored_analysis.csv"), analysis).unwrap();
}

fn estimate(dir: &Path, extra: &[&str]) -> Output {
    estimate_from(dir, "scored_reference.csv", "label", extra)
}

fn estimate_from(dir: &Path, reference: &str, label: &str, extra: &[&str]) -> Output {
    let mut args = vec!["drift", "estimate", "--reference", reference, "--analysis", "scored_analysis.csv"];
    args.extend_from_slice(&["--score", "score", "--prediction", "predicted", "--label", label]);
    args.extend_from_slice(extra);
    driftline(dir, &args)
}

#[test]
fn estimate_without_labels_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    write_scores(dir.path());
    let report: Value =
        serde_json::from_str(&stdout(&estimate(dir.path(), &["--chunk-size", "500", "--format", "json"]))).unwrap();
    let chunks = report["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 8, "4 chunks of 500 rows on each side");
    assert_eq!(report["calibration"]["calibrated"], json!(true), "{}", report["calibration"]);
    let metric = |c: &Value, m: &str, field: &str| c["metrics"][m][field].clone();
    for c in &chunks[..4] {
        assert!(metric(c, "accuracy", "realized").is_f64(), "the reference has labels");
        assert_eq!(metric(c, "accuracy", "alert"), json!(false), "{c}");
    }
    for c in &chunks[4..] {
        assert_eq!(metric(c, "roc_auc", "realized"), Value::Null, "the analysis has no labels");
        assert_eq!(c["rows_labelled"], json!(0));
    }
    // The unsure half: its estimated accuracy is far below the reference's thresholds.
    let accuracy = |c: &Value| metric(c, "accuracy", "value").as_f64().unwrap();
    let lower = metric(&chunks[0], "accuracy", "lower_threshold").as_f64().unwrap();
    assert!(accuracy(&chunks[4]) > lower && accuracy(&chunks[7]) < lower - 0.1, "{lower} {}", accuracy(&chunks[7]));
    for (i, c) in chunks[4..].iter().enumerate() {
        assert_eq!(metric(c, "accuracy", "alert"), json!(i >= 2), "accuracy alerts in the unsure half only: {c}");
    }
    assert!(report["alerting_chunks"].as_u64().unwrap() >= 2);

    let csv = stdout(&estimate(dir.path(), &["--chunk-size", "500", "--format", "csv"]));
    assert!(csv.starts_with("chunk,period,start_index,end_index,"));
    assert_eq!(csv.lines().count(), 1 + 8 * 6, "a line per chunk and metric");
    let table = stdout(&estimate(dir.path(), &["--chunk-size", "500", "--metrics", "roc_auc,accuracy"]));
    assert!(
        table.contains("scores calibrated (isotonic)") && table.contains(" of 4 analysis chunks alerted"),
        "{table}"
    );
    assert_eq!(table.matches("roc_auc").count(), 8, "{table}");
    stdout(&estimate(dir.path(), &["--chunk-size", "500", "--format", "html", "--output", "estimate.html"]));
    let html = std::fs::read_to_string(dir.path().join("estimate.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 6, "one chart per metric");
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));

    // NannyML's default: ten chunks; never calibrating changes the estimates.
    let default: Value = serde_json::from_str(&stdout(&estimate(dir.path(), &["--format", "json"]))).unwrap();
    assert_eq!(default["chunks"].as_array().unwrap().len(), 20);
    let raw: Value = serde_json::from_str(&stdout(&estimate(
        dir.path(),
        &["--chunk-size", "500", "--format", "json", "--calibration", "never"],
    )))
    .unwrap();
    assert_eq!(raw["calibration"]["calibrated"], json!(false));
    assert_ne!(raw["chunks"][4]["metrics"]["accuracy"]["value"], chunks[4]["metrics"]["accuracy"]["value"]);

    let alerted = estimate(dir.path(), &["--chunk-size", "500", "--fail-on-alert"]);
    assert_eq!(alerted.status.code(), Some(3));
    let constant = estimate(dir.path(), &["--chunk-size", "500", "--alert-below", "0.01", "--fail-on-drift"]);
    assert_eq!(constant.status.code(), Some(0), "nothing is below 0.01");

    let err = failure(&estimate_from(dir.path(), "scored_reference.csv", "nope", &[]));
    assert!(err.contains("column `nope`") && err.contains("its columns are"), "{err}");
    let err = failure(&estimate(dir.path(), &["--alert-below", "2"]));
    assert!(err.contains("--alert-below must be between 0 and 1"), "{err}");
    let err = failure(&estimate(dir.path(), &["--metrics", "auc"]));
    assert!(err.contains("unknown metric `auc`"), "{err}");
    let err = failure(&estimate(dir.path(), &["--chunk-number", "5000"]));
    assert!(err.contains("--chunk-number: 5000 chunks need at least 5000 rows"), "{err}");
    std::fs::write(dir.path().join("one_class.csv"), "score,predicted,label\n0.2,0,1\n0.9,1,1\n0.7,1,1\n").unwrap();
    let err = failure(&estimate_from(dir.path(), "one_class.csv", "label", &["--chunk-number", "1"]));
    assert!(err.contains("--label: the reference's 3 rows") && err.contains("one class only"), "{err}");
}

#[test]
fn multiclass_performance_with_class_scores() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let mut text = String::from("label,predicted,p_a,p_b,p_c\n");
    for _ in 0..300 {
        let truth = rng.random_range(0..3usize);
        let mut p = [rng.random::<f64>(), rng.random::<f64>(), rng.random::<f64>()];
        p[truth] += 1.0;
        let sum: f64 = p.iter().sum();
        let best = (0..3).max_by(|a, b| p[*a].total_cmp(&p[*b])).unwrap();
        let names = ["a", "b", "c"];
        text.push_str(&format!(
            "{},{},{:.4},{:.4},{:.4}\n",
            names[truth],
            names[best],
            p[0] / sum,
            p[1] / sum,
            p[2] / sum
        ));
    }
    std::fs::write(dir.path().join("classes.csv"), text).unwrap();
    let run = |extra: &[&str]| {
        let mut args =
            vec!["drift", "performance", "--input", "classes.csv", "--score", "predicted", "--label", "label"];
        args.extend_from_slice(extra);
        driftline(dir.path(), &args)
    };
    let scored = ["--task", "multiclass", "--class-scores", "a=p_a,b=p_b,c=p_c"];
    let report: Value = serde_json::from_str(&stdout(&run(&[&scored[..], &["--format", "json"]].concat()))).unwrap();
    let ovr = &report["metrics"]["one_vs_rest"];
    assert!(ovr["macro_roc_auc"]["value"].as_f64().unwrap() > 0.8, "{ovr}");
    assert_eq!(ovr["per_class"].as_object().unwrap().len(), 3);
    let per_class = report["metrics"]["per_class"].as_object().unwrap();
    let support: u64 = per_class.values().map(|c| c["support"].as_u64().unwrap()).sum();
    assert_eq!(support, 300, "every row's class is counted once");
    let table = stdout(&run(&scored));
    assert!(table.contains("roc_auc (one-vs-rest, macro)") && table.contains("weighted_f1"), "{table}");
    assert!(table.contains("support") && table.lines().any(|l| l.starts_with("b ")), "{table}");

    let err = failure(&run(&["--task", "multiclass", "--class-scores", "a"]));
    assert!(err.contains("--class-scores: `a` is not CLASS=COLUMN"), "{err}");
    let err = failure(&run(&["--task", "multiclass", "--class-scores", "a=p_x"]));
    assert!(err.contains("column `p_x`"), "{err}");
    let err = failure(&run(&["--class-scores", "a=p_a"]));
    assert!(err.contains("--class-scores: are for the multiclass task"), "{err}");
}

#[test]
fn realised_performance_per_chunk() {
    let dir = tempfile::tempdir().unwrap();
    write_scores(dir.path());
    // Labelled input: the first half behaves as the reference, in the second the labels no
    // longer follow the scores.
    let mut rng = StdRng::seed_from_u64(21);
    let mut input = String::from("score,predicted,label\n");
    for i in 0..2000 {
        let p: f64 = rng.random();
        let label = if i < 1000 { rng.random::<f64>() < p } else { rng.random::<bool>() };
        input.push_str(&format!("{:.4},{},{}\n", p * p, u8::from(p >= 0.5), u8::from(label)));
    }
    std::fs::write(dir.path().join("labelled.csv"), input).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["drift", "performance", "--input", "labelled.csv", "--score", "score"];
        args.extend_from_slice(&["--prediction", "predicted", "--label", "label"]);
        args.extend_from_slice(extra);
        driftline(dir.path(), &args)
    };
    let chunked = ["--reference", "scored_reference.csv", "--chunk-size", "500"];
    let report: Value = serde_json::from_str(&stdout(&run(&[&chunked[..], &["--format", "json"]].concat()))).unwrap();
    assert_eq!(report["basis"], json!("realized"));
    let chunks = report["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 8);
    for (i, c) in chunks[4..].iter().enumerate() {
        let accuracy = &c["metrics"]["accuracy"];
        assert_eq!(accuracy["alert"], json!(i >= 2), "the second half alerts: {accuracy}");
        assert_eq!(accuracy["realized"], Value::Null, "the value is the realised one");
    }
    let table = stdout(&run(&chunked));
    assert!(table.contains("realised") && !table.contains("scores calibrated"), "{table}");
    assert_eq!(run(&[&chunked[..], &["--fail-on-alert"]].concat()).status.code(), Some(3));

    let err = failure(&run(&["--chunk-size", "500"]));
    assert!(err.contains("--reference: performance per chunk"), "{err}");
    let err = failure(&run(&["--timestamp-column", "t"]));
    assert!(err.contains("--timestamp-column orders rows for chunks"), "{err}");
    let err = failure(&run(&["--reference", "scored_reference.csv", "--task", "regression"]));
    assert!(err.contains("binary task"), "{err}");
}

/// `rows` of a three-class model: the label, the predicted class and each class's score; from
/// row `noisy` on, the labels no longer follow the scores.
fn class_table(rows: usize, noisy: usize, seed: u64) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let names = ["a", "b", "c"];
    let mut text = String::from("label,predicted,p_a,p_b,p_c\n");
    for i in 0..rows {
        let mut p = [rng.random::<f64>(), rng.random::<f64>(), rng.random::<f64>()];
        let best = (0..3).max_by(|a, b| p[*a].total_cmp(&p[*b])).unwrap();
        let truth = if i < noisy && rng.random::<f64>() < 0.8 { best } else { rng.random_range(0..3usize) };
        let sum: f64 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= sum);
        text.push_str(&format!("{},{},{:.4},{:.4},{:.4}\n", names[truth], names[best], p[0], p[1], p[2]));
    }
    text
}

#[test]
fn realised_performance_per_chunk_of_multiclass_and_regression_models() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("classes_reference.csv"), class_table(3000, 3000, 5)).unwrap();
    std::fs::write(dir.path().join("classes.csv"), class_table(2000, 1000, 6)).unwrap();
    let run = |input: &str, extra: &[&str]| {
        let mut args = vec!["drift", "performance", "--input", input, "--score", "predicted", "--label", "label"];
        args.extend_from_slice(extra);
        driftline(dir.path(), &args)
    };
    let multiclass = ["--task", "multiclass", "--reference", "classes_reference.csv", "--chunk-size", "500"];
    let scored = [&multiclass[..], &["--class-scores", "a=p_a,b=p_b,c=p_c", "--format", "json"]].concat();
    let report: Value = serde_json::from_str(&stdout(&run("classes.csv", &scored))).unwrap();
    assert_eq!((&report["task"], &report["basis"]), (&json!("multiclass"), &json!("realized")));
    let names: Vec<&str> = report["metrics"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    assert_eq!(names, ["roc_auc", "f1", "precision", "recall", "specificity", "accuracy"]);
    let chunks = report["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 6 + 4, "3000 reference rows and 2000 input rows in chunks of 500");
    for (i, c) in chunks[6..].iter().enumerate() {
        for metric in ["accuracy", "f1", "roc_auc"] {
            let m = &c["metrics"][metric];
            assert_eq!(m["alert"], json!(i >= 2), "the second half alerts on {metric}: {m}");
            let (value, lower) = (m["value"].as_f64().unwrap(), m["lower_threshold"].as_f64().unwrap());
            assert_eq!(value < lower, i >= 2, "{m}");
            let se = m["sampling_error"].as_f64().unwrap();
            assert!(se > 0.0 && se < 0.1, "{m}");
        }
    }
    // Without class scores there is no ROC AUC to take by default, and asking for it says why.
    let report: Value =
        serde_json::from_str(&stdout(&run("classes.csv", &[&multiclass[..], &["--format", "json"]].concat()))).unwrap();
    assert_eq!(report["metrics"].as_array().unwrap().len(), 5, "{}", report["metrics"]);
    let err = failure(&run("classes.csv", &[&multiclass[..], &["--metrics", "roc_auc"]].concat()));
    assert!(err.contains("--class-scores: ROC AUC needs each class's column of scores"), "{err}");
    let err = failure(&run("classes.csv", &[&multiclass[..], &["--class-scores", "a=p_a,b=p_b"]].concat()));
    assert!(
        err.contains("column `predicted`") && err.contains("the class `c`, which has no column of scores"),
        "{err}"
    );
    let err = failure(&run("classes.csv", &[&multiclass[..], &["--metrics", "mae"]].concat()));
    assert!(err.contains("--metrics: mae is a regression error"), "{err}");

    // A regression model whose errors grow in the second half of the input.
    let mut rng = StdRng::seed_from_u64(8);
    let mut values = |rows: usize, worse: usize| {
        let mut text = String::from("label,predicted\n");
        for i in 0..rows {
            let y: f64 = rng.random_range(10.0..100.0);
            let spread = if i < worse { 2.0 } else { 12.0 };
            text.push_str(&format!("{y:.3},{:.3}\n", y + rng.random_range(-spread..spread)));
        }
        text
    };
    std::fs::write(dir.path().join("values_reference.csv"), values(3000, 3000)).unwrap();
    std::fs::write(dir.path().join("values.csv"), values(2000, 1000)).unwrap();
    let regression = ["--task", "regression", "--reference", "values_reference.csv", "--chunk-number", "4"];
    let report: Value =
        serde_json::from_str(&stdout(&run("values.csv", &[&regression[..], &["--format", "json"]].concat()))).unwrap();
    let names: Vec<&str> = report["metrics"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    assert_eq!(names, ["mae", "mape", "mse", "msle", "rmse", "rmsle"]);
    let chunks = report["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 8);
    for (i, c) in chunks[4..].iter().enumerate() {
        let mae = &c["metrics"]["mae"];
        assert_eq!(mae["alert"], json!(i >= 2), "{mae}");
        assert!(mae["upper_threshold"].as_f64().unwrap() < 1.5, "{mae}");
        assert!(mae["lower_confidence_boundary"].as_f64().unwrap() >= 0.0, "{mae}");
    }
    let csv = stdout(&run("values.csv", &[&regression[..], &["--format", "csv"]].concat()));
    assert_eq!(csv.lines().count(), 1 + 8 * 6, "a line per chunk and metric");
    let html = stdout(&run("values.csv", &[&regression[..], &["--format", "html"]].concat()));
    assert!(html.contains("<h3>rmsle</h3>") && html.contains("regression model"), "{}", &html[..400]);
    assert_eq!(run("values.csv", &[&regression[..], &["--fail-on-alert"]].concat()).status.code(), Some(3));
    let err = failure(&run("values.csv", &[&regression[..], &["--metrics", "f1"]].concat()));
    assert!(err.contains("--metrics: f1 is a classifier's metric"), "{err}");
    let err = failure(&run("classes.csv", &["--task", "regression", "--reference", "classes_reference.csv"]));
    assert!(err.contains("column `predicted`") && err.contains("numbers"), "{err}");
}
