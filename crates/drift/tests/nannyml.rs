//! Drift per chunk, data quality per chunk, performance estimated without labels (CBPE) and
//! realised performance per chunk against NannyML 0.13.1 on its synthetic car-loan data set: the chunks (keys, rows, times),
//! every statistic of every column in every chunk, every estimate, the thresholds and the
//! alerts. The numbers were written by `fixtures/nannyml/generate.py` (its `RULES.md` says how
//! NannyML computes each of them).

use std::path::PathBuf;

use chrono::NaiveDateTime;
use driftline_drift::chunk::{ChunkInfo, Chunking, Period};
use driftline_drift::chunked::{ChunkMethod, ChunkThreshold};
use driftline_drift::estimate::{Basis, Estimate, EstimateMetric, EstimateOptions};
use driftline_drift::stats::performance::Task;
use driftline_drift::table::files::{
    chunked_compare_files, estimate_files, realized_files, ChunkRequest, EstimateRequest, RealizedRequest,
};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nannyml")
}

/// Equal within 1e-9 relative (1e-12 absolute near zero): NannyML sums with NumPy's pairwise
/// order, these in order.
fn close(got: Option<f64>, expected: &Value) -> bool {
    match (got, expected.as_f64()) {
        (None, None) => expected.is_null(),
        (Some(g), Some(e)) => (g - e).abs() <= 1e-9 * e.abs().max(g.abs()) || (g - e).abs() <= 1e-12,
        _ => false,
    }
}

/// Fails with the first 40 differences, if there are any.
fn all_equal(failures: &[String], compared: usize) {
    assert!(
        failures.is_empty(),
        "{} of {compared} differ:\n{}",
        failures.len(),
        failures[..failures.len().min(40)].join("\n")
    );
}

/// Performance per chunk of the car-loan data on `basis`, its score, predicted class and label
/// as the CBPE fixture names them.
fn car_loan_performance(chunking: Chunking, basis: Basis) -> Estimate {
    let request = EstimateRequest {
        chunking,
        timestamp_column: Some("timestamp".into()),
        score: "y_pred_proba".into(),
        prediction: Some("y_pred".into()),
        decision_threshold: 0.5,
        label: "repaid".into(),
        options: EstimateOptions { basis, ..EstimateOptions::default() },
    };
    estimate_files(
        &fixtures().join("car_loan_reference.parquet"),
        &fixtures().join("car_loan_analysis.parquet"),
        &request,
    )
    .unwrap()
    .estimate
}

/// NannyML's ROC AUC sampling-error component over ours: they differ only by how a sort orders
/// tied scores (RULES.md §5.6), and both are in the fixture.
fn tie_ratio(run: &Value) -> f64 {
    let sort = &run["auroc_sampling_error_component_by_sort"];
    sort["default"]["std"].as_f64().unwrap() / sort["stable"]["std"].as_f64().unwrap()
}

/// A chunk as NannyML cut it: key, period, rows and times.
fn same_chunk(got: &ChunkInfo, want: &Value, at: &str) {
    assert_eq!(got.key, want["key"].as_str().unwrap(), "{at}");
    assert_eq!(got.period, want["period"].as_str().unwrap(), "{at}");
    assert_eq!(
        (got.start_index as u64, got.end_index as u64),
        (want["start_index"].as_u64().unwrap(), want["end_index"].as_u64().unwrap()),
        "{at}"
    );
    assert_eq!(got.size as u64, want["size"].as_u64().unwrap(), "{at}");
    assert_eq!(got.start_timestamp_ms, Some(millis(want["start_date"].as_str().unwrap())), "{at}");
    assert_eq!(got.end_timestamp_ms, Some(millis(want["end_date"].as_str().unwrap())), "{at}");
}

fn millis(text: &str) -> i64 {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").expect("a NannyML date").and_utc().timestamp_millis()
}

#[test]
fn chunked_drift_equals_nannyml_on_the_car_loan_data() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected_univariate_drift.json")).unwrap())
            .unwrap();
    let mut failures = Vec::new();
    let mut compared = 0;
    for (run, chunking) in [
        ("chunk_size_5000", Chunking::Size(5_000)),
        ("chunk_number_7", Chunking::Number(7)),
        ("chunk_period_M", Chunking::Period(Period::Month)),
    ] {
        let e = &expected["runs"][run];
        let columns: Vec<String> =
            e["column_names"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
        let request = ChunkRequest {
            chunking,
            timestamp_column: Some("timestamp".into()),
            methods: ChunkMethod::DRIFT.to_vec(),
            threshold: ChunkThreshold::StandardDeviations(3.0),
        };
        let got = chunked_compare_files(
            &fixtures().join("car_loan_reference.parquet"),
            &fixtures().join("car_loan_analysis.parquet"),
            &columns,
            &[],
            &request,
        )
        .unwrap();
        let chunks = e["chunks"].as_array().unwrap();
        assert_eq!(got.drift.chunks.len(), chunks.len(), "{run}");
        for (g, x) in got.drift.chunks.iter().zip(chunks) {
            let at = format!("{run} {} {}", x["period"], x["key"]);
            same_chunk(&g.chunk, x, &at);
            for (column, methods) in x["columns"].as_object().unwrap() {
                for (method, want) in methods.as_object().unwrap() {
                    let m: ChunkMethod = method.parse().unwrap();
                    let Some(have) = g.results.get(column).and_then(|r| r.get(&m)) else {
                        failures.push(format!("{at} {column} {method}: missing"));
                        continue;
                    };
                    compared += 1;
                    if !close(have.value, &want["value"]) {
                        failures.push(format!("{at} {column} {method}: value {:?} != {}", have.value, want["value"]));
                    }
                    if !close(have.upper_threshold, &want["upper_threshold"]) {
                        failures.push(format!(
                            "{at} {column} {method}: upper threshold {:?} != {}",
                            have.upper_threshold, want["upper_threshold"]
                        ));
                    }
                    if want.get("p_value").is_some() && !close(have.p_value, &want["p_value"]) {
                        failures.push(format!("{at} {column} {method}: p {:?} != {}", have.p_value, want["p_value"]));
                    }
                    if Some(have.alert) != want["alert"].as_bool() {
                        failures.push(format!("{at} {column} {method}: alert {} != {}", have.alert, want["alert"]));
                    }
                }
            }
        }
    }
    all_equal(&failures, compared);
    // 3 runs × (20, 16, 21) chunks × (4 numeric + 3 categorical columns) × 4 statistics.
    assert_eq!(compared, (20 + 16 + 21) * 7 * 4);
}

/// Missing and unseen values per chunk, on NannyML's car-loan data-quality variant (three
/// columns with missing values and categories the reference lacks).
#[test]
fn data_quality_per_chunk_equals_nannyml() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected_data_quality.json")).unwrap()).unwrap();
    let in_files = ["salary_range", "driver_tenure", "size_of_downpayment"];
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut alerts = 0;
    for (run, chunking) in [
        ("dq_chunk_size_5000", Chunking::Size(5_000)),
        ("dq_chunk_number_7", Chunking::Number(7)),
        ("dq_chunk_period_M", Chunking::Period(Period::Month)),
    ] {
        for (measure, method) in [("missing", ChunkMethod::MissingValues), ("unseen", ChunkMethod::UnseenValues)] {
            let e = &expected["runs"][format!("{measure}_{run}")];
            let columns: Vec<String> = e["column_names"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .filter(|c| in_files.contains(&c.as_str()))
                .collect();
            let request = ChunkRequest {
                chunking,
                timestamp_column: Some("timestamp".into()),
                methods: vec![method],
                threshold: ChunkThreshold::StandardDeviations(3.0),
            };
            let got = chunked_compare_files(
                &fixtures().join("car_loan_dq_reference.parquet"),
                &fixtures().join("car_loan_dq_analysis.parquet"),
                &columns,
                &[],
                &request,
            )
            .unwrap();
            let chunks = e["chunks"].as_array().unwrap();
            assert_eq!(got.drift.chunks.len(), chunks.len(), "{measure} {run}");
            for (g, x) in got.drift.chunks.iter().zip(chunks) {
                assert_eq!(g.chunk.key, x["key"].as_str().unwrap());
                for column in &columns {
                    let want = &x["columns"][column];
                    let have = &g.results[column][&method];
                    let at = format!("{measure} {run} {} {} {column}", x["period"], x["key"]);
                    compared += 1;
                    alerts += usize::from(have.alert);
                    for (name, have, want) in [
                        ("value", have.value, &want["value"]),
                        ("upper", have.upper_threshold, &want["upper_threshold"]),
                        ("lower", have.lower_threshold, &want["lower_threshold"]),
                    ] {
                        if !close(have, want) {
                            failures.push(format!("{at}: {name} {have:?} != {want}"));
                        }
                    }
                    if Some(have.alert) != want["alert"].as_bool() {
                        failures.push(format!("{at}: alert {} != {}", have.alert, want["alert"]));
                    }
                }
            }
        }
    }
    all_equal(&failures, compared);
    // (20 + 16 + 21) chunks × (3 columns missing + 2 columns unseen), and some of them alert.
    assert_eq!(compared, (20 + 16 + 21) * 5);
    assert!(alerts > 0);
}

/// Performance estimated without labels (CBPE) on the car-loan data: the calibration's knots,
/// and per chunk and metric the estimate, the realised value, the thresholds, the alert, the
/// sampling error and the confidence band.
///
/// ROC AUC's sampling error rests on a per-row spread that depends on how a sort orders tied
/// scores (`RULES.md` §5.6): NannyML's unstable sort gave 0.0906804852788091 on the machine that
/// made the fixture, a stable sort (ours) 0.09056197596969252, both recorded in the fixture. So
/// ROC AUC's sampling error is compared after scaling by their ratio, and its band within three
/// times the difference of the two errors.
#[test]
fn performance_estimates_equal_nannyml_cbpe() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected_cbpe.json")).unwrap()).unwrap();
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut alerts = 0;
    for (run, chunking) in [
        ("chunk_size_5000", Chunking::Size(5_000)),
        ("chunk_number_7", Chunking::Number(7)),
        ("chunk_period_M", Chunking::Period(Period::Month)),
    ] {
        let e = &expected["runs"][run];
        let got = car_loan_performance(chunking, Basis::Estimated);

        let calibration = &got.calibration;
        assert_eq!(calibration.calibrated, e["calibration_check"]["needs_calibration"].as_bool().unwrap(), "{run}");
        let (xs, ys) =
            (e["calibrator"]["X_thresholds"].as_array().unwrap(), e["calibrator"]["y_thresholds"].as_array().unwrap());
        assert_eq!(calibration.knots.len(), xs.len(), "{run}: knots");
        for (knot, (x, y)) in calibration.knots.iter().zip(xs.iter().zip(ys)) {
            assert!(close(Some(knot[0]), x) && close(Some(knot[1]), y), "{run}: knot {knot:?} != ({x}, {y})");
        }

        let tie_ratio = tie_ratio(e);
        let chunks = e["chunks"].as_array().unwrap();
        assert_eq!(got.chunks.len(), chunks.len(), "{run}");
        for (g, x) in got.chunks.iter().zip(chunks) {
            let at = format!("{run} {} {}", x["period"], x["key"]);
            same_chunk(&g.chunk, x, &at);
            for (metric, want) in x["metrics"].as_object().unwrap() {
                let m: EstimateMetric = metric.parse().unwrap();
                let Some(have) = g.metrics.get(&m) else {
                    failures.push(format!("{at} {metric}: missing"));
                    continue;
                };
                compared += 1;
                alerts += usize::from(have.alert);
                let roc = m == EstimateMetric::RocAuc;
                let error = have.sampling_error.map(|se| if roc { se * tie_ratio } else { se });
                for (name, have, want) in [
                    ("value", have.value, &want["value"]),
                    ("realized", have.realized, &want["realized"]),
                    ("upper threshold", have.upper_threshold, &want["upper_threshold"]),
                    ("lower threshold", have.lower_threshold, &want["lower_threshold"]),
                    ("sampling error", error, &want["sampling_error"]),
                ] {
                    if !close(have, want) {
                        failures.push(format!("{at} {metric}: {name} {have:?} != {want}"));
                    }
                }
                let band_slack = if roc { 3.0 * (error.unwrap() - have.sampling_error.unwrap()).abs() } else { 0.0 };
                for (name, have, want) in [
                    ("upper band", have.upper_confidence_boundary, &want["upper_confidence_boundary"]),
                    ("lower band", have.lower_confidence_boundary, &want["lower_confidence_boundary"]),
                ] {
                    let within = match (have, want.as_f64()) {
                        (Some(h), Some(w)) => (h - w).abs() <= band_slack + 1e-9 * w.abs(),
                        _ => false,
                    };
                    if !within {
                        failures.push(format!("{at} {metric}: {name} {have:?} != {want}"));
                    }
                }
                if Some(have.alert) != want["alert"].as_bool() {
                    failures.push(format!("{at} {metric}: alert {} != {}", have.alert, want["alert"]));
                }
            }
        }
    }
    all_equal(&failures, compared);
    // 3 runs × (20, 16, 21) chunks × 6 metrics, and NannyML's 66 alerts among them.
    assert_eq!(compared, (20 + 16 + 21) * 6);
    assert_eq!(alerts, 30 + 5 + 31);
}

/// Realised performance per chunk (NannyML's performance calculator) from the same machinery:
/// each chunk's metric from its labels equals the `realized` value NannyML recorded beside its
/// estimates, with the same thresholds and sampling errors, and a chunk alerts exactly when its
/// realised value is outside the thresholds.
#[test]
fn realised_performance_per_chunk_equals_nannyml() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected_cbpe.json")).unwrap()).unwrap();
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut alerts = 0;
    for (run, chunking) in
        [("chunk_size_5000", Chunking::Size(5_000)), ("chunk_period_M", Chunking::Period(Period::Month))]
    {
        let e = &expected["runs"][run];
        let got = car_loan_performance(chunking, Basis::Realized);
        assert!(!got.calibration.calibrated);
        let tie_ratio = tie_ratio(e);
        for (g, x) in got.chunks.iter().zip(e["chunks"].as_array().unwrap()) {
            for (metric, want) in x["metrics"].as_object().unwrap() {
                let m: EstimateMetric = metric.parse().unwrap();
                let have = &g.metrics[&m];
                let at = format!("{run} {} {} {metric}", x["period"], x["key"]);
                compared += 1;
                let error = have.sampling_error.map(|se| if m == EstimateMetric::RocAuc { se * tie_ratio } else { se });
                for (name, have, want) in [
                    ("value", have.value, &want["realized"]),
                    ("upper threshold", have.upper_threshold, &want["upper_threshold"]),
                    ("lower threshold", have.lower_threshold, &want["lower_threshold"]),
                    ("sampling error", error, &want["sampling_error"]),
                ] {
                    if !close(have, want) {
                        failures.push(format!("{at}: {name} {have:?} != {want}"));
                    }
                }
                let (lower, upper) =
                    (want["lower_threshold"].as_f64().unwrap(), want["upper_threshold"].as_f64().unwrap());
                let outside = want["realized"].as_f64().is_some_and(|r| r < lower || r > upper);
                alerts += usize::from(outside);
                if have.alert != outside {
                    failures.push(format!("{at}: alert {} but the realised value is {}", have.alert, want["realized"]));
                }
            }
        }
        assert!(got.chunks.iter().all(|c| c.metrics.values().all(|v| v.realized.is_none())), "{run}");
    }
    all_equal(&failures, compared);
    assert_eq!(compared, (20 + 21) * 6);
    assert!(alerts > 10, "the drifted months alert: {alerts}");
}

/// Realised performance per chunk of a multiclass classifier and of a regression model, from
/// NannyML's synthetic multiclass and car-price data sets (`fixtures/nannyml/generate_realized.py`):
/// the chunks, every metric's value, sampling error and thresholds, and the alerts, as NannyML's
/// performance calculator gives them. ROC AUC's sampling error differs only by how a sort orders
/// tied scores (RULES.md §7.3), by the ratio of the two sorts' components in the fixture.
#[test]
fn realised_multiclass_and_regression_performance_equals_nannyml() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected_realized.json")).unwrap()).unwrap();
    let chunkings = [
        ("chunk_size_5000", Chunking::Size(5_000)),
        ("chunk_number_10", Chunking::Number(10)),
        ("chunk_number_7", Chunking::Number(7)),
        ("chunk_period_M", Chunking::Period(Period::Month)),
    ];
    let (mut failures, mut compared, mut alerts) = (Vec::new(), 0, 0);
    for (task, data) in [(Task::Multiclass, "multiclass"), (Task::Regression, "car_price")] {
        for (name, chunking) in chunkings {
            let run = format!("{}/{name}", task.name());
            let e = &expected["runs"][&run];
            let class_scores: Vec<(String, String)> = e["y_pred_proba"]
                .as_object()
                .map(|m| {
                    m.iter().map(|(class, column)| (class.clone(), column.as_str().unwrap().to_string())).collect()
                })
                .unwrap_or_default();
            let metrics = match task {
                Task::Regression => EstimateMetric::REGRESSION.to_vec(),
                _ => EstimateMetric::CLASSIFICATION.to_vec(),
            };
            let request = RealizedRequest {
                task,
                chunking,
                timestamp_column: Some("timestamp".into()),
                prediction: "y_pred".into(),
                label: "y_true".into(),
                class_scores,
                metrics,
                threshold: ChunkThreshold::default(),
            };
            let got = realized_files(
                &fixtures().join(format!("{data}_reference.parquet")),
                &fixtures().join(format!("{data}_analysis.parquet")),
                &request,
            )
            .unwrap()
            .estimate;
            let tie_ratio = match task {
                Task::Multiclass => {
                    let sum = |sort: &str| -> f64 {
                        e["roc_auc_sampling_error_components_by_sort"][sort]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|c| c["variance"].as_f64().unwrap() / c["fraction"].as_f64().unwrap())
                            .sum()
                    };
                    (sum("default") / sum("stable")).sqrt()
                }
                _ => 1.0,
            };
            let want_chunks = e["chunks"].as_array().unwrap();
            assert_eq!(got.chunks.len(), want_chunks.len(), "{run}");
            for (g, x) in got.chunks.iter().zip(want_chunks) {
                let at = format!("{run} {} {}", x["period"], x["key"]);
                same_chunk(&g.chunk, x, &at);
                for (metric, want) in x["metrics"].as_object().unwrap() {
                    if metric == "average_precision" {
                        continue;
                    }
                    let m: EstimateMetric = metric.parse().unwrap();
                    let have = &g.metrics[&m];
                    compared += 1;
                    let error =
                        have.sampling_error.map(|se| if m == EstimateMetric::RocAuc { se * tie_ratio } else { se });
                    for (field, have, want) in [
                        ("value", have.value, &want["value"]),
                        ("upper threshold", have.upper_threshold, &want["upper_threshold"]),
                        ("lower threshold", have.lower_threshold, &want["lower_threshold"]),
                        ("sampling error", error, &want["sampling_error"]),
                    ] {
                        if !close(have, want) {
                            failures.push(format!("{at} {metric}: {field} {have:?} != {want}"));
                        }
                    }
                    alerts += usize::from(have.alert && !g.chunk.is_reference());
                    if Some(have.alert) != want["alert"].as_bool() {
                        failures.push(format!("{at} {metric}: alert {} != {}", have.alert, want["alert"]));
                    }
                }
            }
        }
    }
    all_equal(&failures, compared);
    let expected_count: usize =
        expected["runs"].as_object().unwrap().values().map(|r| r["chunks"].as_array().unwrap().len() * 6).sum();
    assert_eq!(compared, expected_count);
    assert!(alerts > 10, "the analysis periods' changes alert: {alerts}");
}
