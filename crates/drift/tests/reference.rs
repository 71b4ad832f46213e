//! The statistics against scikit-learn and SciPy on the same data (fixtures/generate.py).

use driftline_drift::stats::drift::{self as stats, KsMethod};
use driftline_drift::stats::performance::{self, Confusion};
use driftline_drift::stats::sample::Sample;
use driftline_drift::stats::value::Stat;
use serde_json::Value;

const VALUE_TOLERANCE: f64 = 1e-9;
const P_VALUE_RELATIVE: f64 = 1e-6;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn cases(name: &str) -> Vec<Value> {
    let cases = fixture(name)["cases"].as_array().expect("cases").clone();
    assert!(cases.len() >= 10, "{name} holds {} cases", cases.len());
    cases
}

/// Compares a statistic with the reference: both null, or both values within `tolerance`.
fn check(case: &str, metric: &str, got: &Stat, expected: &Value, failures: &mut Vec<String>) {
    match (got.value, expected.as_f64()) {
        (None, None) => assert!(got.reason.is_some(), "{case}/{metric}: null without a reason"),
        (Some(g), Some(e)) if (g - e).abs() <= VALUE_TOLERANCE => {}
        (g, e) => failures.push(format!("{case}/{metric}: got {g:?} ({:?}), expected {e:?}", got.reason)),
    }
}

fn check_p(case: &str, got: f64, expected: f64, failures: &mut Vec<String>) {
    let ok = if expected == 0.0 { got.abs() < 1e-300 } else { ((got - expected) / expected).abs() <= P_VALUE_RELATIVE };
    if !ok {
        failures.push(format!("{case}: p-value {got:e}, expected {expected:e}"));
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().expect("array").iter().map(|x| x.as_str().expect("string").to_string()).collect()
}

#[test]
fn performance_matches_scikit_learn() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases("performance.json") {
        let name = case["name"].as_str().unwrap();
        let e = &case["expected"];
        match case["task"].as_str().unwrap() {
            "binary" => {
                let labels: Vec<bool> = floats(&case["label"]).iter().map(|l| *l == 1.0).collect();
                let got = performance::binary(&floats(&case["score"]), &labels, case["threshold"].as_f64().unwrap());
                for (metric, stat) in [
                    ("roc_auc", &got.roc_auc),
                    ("average_precision", &got.average_precision),
                    ("accuracy", &got.accuracy),
                    ("precision", &got.precision),
                    ("recall", &got.recall),
                    ("f1", &got.f1),
                    ("log_loss", &got.log_loss),
                    ("brier", &got.brier),
                ] {
                    check(name, metric, stat, &e[metric], &mut failures);
                    checked += 1;
                }
                let c: Vec<u64> = e["confusion"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
                let want = Confusion {
                    true_negatives: c[0],
                    false_positives: c[1],
                    false_negatives: c[2],
                    true_positives: c[3],
                };
                assert_eq!(got.confusion, want, "{name}: confusion matrix");
            }
            "multiclass" => {
                let (p, l) = (strings(&case["predicted"]), strings(&case["label"]));
                let p: Vec<&str> = p.iter().map(String::as_str).collect();
                let l: Vec<&str> = l.iter().map(String::as_str).collect();
                let got = performance::multiclass(&p, &l);
                check(name, "accuracy", &got.accuracy, &e["accuracy"], &mut failures);
                check(name, "macro_f1", &got.macro_f1, &e["macro_f1"], &mut failures);
                checked += 2;
                if let Some(per_class) = e.get("per_class").and_then(Value::as_object) {
                    assert_eq!(got.per_class.len(), per_class.len(), "{name}: classes");
                    for (class, want) in per_class {
                        let have = &got.per_class[class];
                        for (metric, value) in
                            [("precision", have.precision), ("recall", have.recall), ("f1-score", have.f1)]
                        {
                            check(name, &format!("{class}/{metric}"), &Stat::of(value), &want[metric], &mut failures);
                        }
                        assert_eq!(Some(have.support as f64), want["support"].as_f64(), "{name}/{class}: support");
                        checked += 4;
                    }
                    for (metric, stat) in [
                        ("macro_precision", &got.macro_precision),
                        ("macro_recall", &got.macro_recall),
                        ("weighted_precision", &got.weighted_precision),
                        ("weighted_recall", &got.weighted_recall),
                        ("weighted_f1", &got.weighted_f1),
                    ] {
                        check(name, metric, stat, &e[metric], &mut failures);
                        checked += 1;
                    }
                }
                if let Some(scores) = case.get("class_scores").and_then(Value::as_object) {
                    let scores = scores.iter().map(|(c, v)| (c.clone(), floats(v))).collect();
                    let ovr = performance::one_vs_rest(&scores, &l);
                    check(name, "roc_auc_ovr_macro", &ovr.macro_roc_auc, &e["roc_auc_ovr_macro"], &mut failures);
                    check(
                        name,
                        "roc_auc_ovr_weighted",
                        &ovr.weighted_roc_auc,
                        &e["roc_auc_ovr_weighted"],
                        &mut failures,
                    );
                    for (class, want) in e["roc_auc_per_class"].as_object().unwrap() {
                        let have = ovr.per_class[class].map_or_else(|| Stat::undefined("none"), Stat::of);
                        check(name, &format!("roc_auc[{class}]"), &have, want, &mut failures);
                    }
                    checked += 2 + ovr.per_class.len();
                }
            }
            "regression" => {
                let got = performance::regression(&floats(&case["predicted"]), &floats(&case["label"]));
                for (metric, stat) in
                    [("mse", &got.mse), ("rmse", &got.rmse), ("mae", &got.mae), ("r2", &got.r2), ("mape", &got.mape)]
                {
                    // MAPE over a zero target divides by machine epsilon: compare relatively.
                    if metric == "mape" && e[metric].as_f64().is_some_and(|v| v > 1e6) {
                        let (g, w) = (stat.value.unwrap(), e[metric].as_f64().unwrap());
                        if ((g - w) / w).abs() > 1e-12 {
                            failures.push(format!("{name}/mape: got {g}, expected {w}"));
                        }
                    } else {
                        check(name, metric, stat, &e[metric], &mut failures);
                    }
                    checked += 1;
                }
            }
            other => panic!("unknown task {other}"),
        }
    }
    assert!(failures.is_empty(), "{} of {checked} values differ:\n{}", failures.len(), failures.join("\n"));
}

fn sample(v: &Value) -> Sample {
    Sample::new(v.as_array().unwrap().iter().map(|x| match x {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    }))
}

#[test]
fn numeric_drift_matches_scipy() {
    let mut failures = Vec::new();
    let mut numeric = 0;
    for case in cases("drift.json") {
        if case["kind"] != "numeric" {
            continue;
        }
        numeric += 1;
        let name = case["name"].as_str().unwrap();
        let e = &case["expected"];
        let (r, c) = (sample(&case["reference"]), sample(&case["current"]));
        assert_eq!(r.excluded as u64, e["reference_excluded"].as_u64().unwrap(), "{name}");
        assert_eq!(c.excluded as u64, e["current_excluded"].as_u64().unwrap(), "{name}");

        let ks = stats::ks_two_sample(&r, &c).expect("both samples hold values");
        check(name, "ks_statistic", &Stat::of(ks.statistic), &e["ks_statistic"], &mut failures);
        check_p(name, ks.p_value, e["ks_pvalue"].as_f64().unwrap(), &mut failures);
        let method = if ks.method == KsMethod::Exact { "exact" } else { "asymptotic" };
        assert_eq!(method, e["ks_method"].as_str().unwrap(), "{name}: KS method");

        check(name, "wasserstein", &Stat::of(stats::wasserstein(&r, &c).unwrap()), &e["wasserstein"], &mut failures);

        let edges = stats::quantile_edges(&r, stats::DEFAULT_BINS);
        // NumPy's interpolation may round the last bit differently with or without FMA.
        let want_edges = floats(&e["bin_edges"]);
        assert_eq!(edges.len(), want_edges.len(), "{name}: bin edges {edges:?} vs {want_edges:?}");
        for (g, w) in edges.iter().zip(&want_edges) {
            assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{name}: bin edges {edges:?} vs {want_edges:?}");
        }
        let (rc, cc) = (stats::bin_counts(&r, &edges), stats::bin_counts(&c, &edges));
        let want_rc: Vec<u64> = floats(&e["reference_counts"]).iter().map(|x| *x as u64).collect();
        let want_cc: Vec<u64> = floats(&e["current_counts"]).iter().map(|x| *x as u64).collect();
        assert_eq!((rc.clone(), cc.clone()), (want_rc, want_cc), "{name}: bin counts");
        check(name, "psi", &Stat::of(stats::psi(&rc, &cc).0), &e["psi"], &mut failures);
        check(name, "jensen_shannon", &Stat::of(stats::jensen_shannon(&rc, &cc)), &e["jensen_shannon"], &mut failures);
    }
    assert!(numeric >= 15, "{numeric} numeric cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn categorical_drift_matches_scipy() {
    let mut failures = Vec::new();
    let mut categorical = 0;
    for case in cases("drift.json") {
        if case["kind"] != "categorical" {
            continue;
        }
        categorical += 1;
        let name = case["name"].as_str().unwrap();
        let e = &case["expected"];
        let (r, c) = (strings(&case["reference"]), strings(&case["current"]));
        let (names, rc, cc) = stats::category_counts(r.iter().map(String::as_str), c.iter().map(String::as_str));
        assert_eq!(names, strings(&e["categories"]), "{name}");
        let chi = stats::chi_square(&rc, &cc).unwrap();
        check(name, "chi2_statistic", &Stat::of(chi.statistic), &e["chi2_statistic"], &mut failures);
        check_p(name, chi.p_value, e["chi2_pvalue"].as_f64().unwrap(), &mut failures);
        assert_eq!(chi.degrees_of_freedom as u64, e["chi2_dof"].as_u64().unwrap(), "{name}");
        assert!(!chi.corrected, "{name}");
        let yates = stats::chi_square_with(&rc, &cc, stats::Chi2Correction::Yates).unwrap();
        check(name, "chi2_yates_statistic", &Stat::of(yates.statistic), &e["chi2_yates_statistic"], &mut failures);
        check_p(name, yates.p_value, e["chi2_yates_pvalue"].as_f64().unwrap(), &mut failures);
        assert_eq!(yates.corrected, chi.degrees_of_freedom == 1, "{name}");
        let (psi, terms) = stats::psi(&rc, &cc);
        check(name, "psi", &Stat::of(psi), &e["psi"], &mut failures);
        for (category, term) in names.iter().zip(terms) {
            check(name, category, &Stat::of(term), &e["psi_per_category"][category], &mut failures);
        }
        check(name, "jensen_shannon", &Stat::of(stats::jensen_shannon(&rc, &cc)), &e["jensen_shannon"], &mut failures);
    }
    assert!(categorical >= 4, "{categorical} categorical cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
