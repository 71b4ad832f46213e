//! Drift per chunk against NannyML 0.13.1 on its synthetic car-loan data set: the chunks (keys,
//! rows, times), every statistic of every column in every chunk, the thresholds and the
//! alerts. The numbers were written by `fixtures/nannyml/generate.py` (its `RULES.md` says how
//! NannyML computes each of them).

use std::path::PathBuf;

use chrono::NaiveDateTime;
use driftline_drift::chunk::{Chunking, Period};
use driftline_drift::chunked::{ChunkMethod, ChunkThreshold};
use driftline_drift::table::files::{chunked_compare_files, ChunkRequest};
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
            assert_eq!(g.key, x["key"].as_str().unwrap(), "{at}");
            assert_eq!(g.period, x["period"].as_str().unwrap(), "{at}");
            assert_eq!(
                (g.start_index as u64, g.end_index as u64),
                (x["start_index"].as_u64().unwrap(), x["end_index"].as_u64().unwrap()),
                "{at}"
            );
            assert_eq!(g.size as u64, x["size"].as_u64().unwrap(), "{at}");
            assert_eq!(g.start_timestamp_ms, Some(millis(x["start_date"].as_str().unwrap())), "{at}");
            assert_eq!(g.end_timestamp_ms, Some(millis(x["end_date"].as_str().unwrap())), "{at}");
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
    assert!(
        failures.is_empty(),
        "{} of {compared} differ:\n{}",
        failures.len(),
        failures[..failures.len().min(40)].join("\n")
    );
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
                assert_eq!(g.key, x["key"].as_str().unwrap());
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
    assert!(
        failures.is_empty(),
        "{} of {compared} differ:\n{}",
        failures.len(),
        failures[..failures.len().min(40)].join("\n")
    );
    // (20 + 16 + 21) chunks × (3 columns missing + 2 columns unseen), and some of them alert.
    assert_eq!(compared, (20 + 16 + 21) * 5);
    assert!(alerts > 0);
}
