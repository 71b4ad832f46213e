#!/usr/bin/env python3
"""NannyML's side of the chunked benchmark (run by benches/drift/nannyml.sh), and the check that
driftline's answer on the same data equals NannyML's.

    nannyml_chunked.py data DIR
        writes NannyML's largest shipped data set (US census, Massachusetts employment:
        68,785 reference and 208,892 analysis rows) into DIR as Parquet files, once
    nannyml_chunked.py run DIR OUT
        one Python process, timed from its start by the caller: reads both files, univariate
        drift (Jensen-Shannon, NannyML's default) of the 16 features in 10 chunks, and CBPE
        (ROC AUC, F1, precision, recall, specificity, accuracy) in 10 chunks; writes the
        results to OUT as JSON
    nannyml_chunked.py compare OUT DRIFT_JSON ESTIMATE_JSON
        compares NannyML's results (OUT) with driftline's JSON output and prints the largest
        differences; exits 1 when a value or an alert differs
"""

import json
import pathlib
import sys

FEATURES = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC", "NATIVITY",
            "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]
METRICS = ["roc_auc", "f1", "precision", "recall", "specificity", "accuracy"]
CHUNKS = 10


def data(directory):
    import nannyml
    d = pathlib.Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if (d / "employment_reference.parquet").exists():
        return
    reference, analysis, _targets = nannyml.load_us_census_ma_employment_data()
    reference.to_parquet(d / "employment_reference.parquet", index=False)
    analysis.to_parquet(d / "employment_analysis.parquet", index=False)


def run(directory, out):
    import nannyml
    import pandas as pd
    d = pathlib.Path(directory)
    reference = pd.read_parquet(d / "employment_reference.parquet")
    analysis = pd.read_parquet(d / "employment_analysis.parquet")
    drift = nannyml.UnivariateDriftCalculator(
        column_names=FEATURES, chunk_number=CHUNKS,
        continuous_methods=["jensen_shannon"], categorical_methods=["jensen_shannon"])
    drift.fit(reference)
    drifted = drift.calculate(analysis).filter(period="all").to_df()
    cbpe = nannyml.CBPE(
        y_pred_proba="predicted_probability", y_pred="prediction", y_true="employed",
        metrics=METRICS, chunk_number=CHUNKS, problem_type="classification_binary")
    cbpe.fit(reference)
    estimated = cbpe.estimate(analysis).filter(period="all").to_df()

    def f(x):
        return None if x is None or x != x else float(x)

    result = {"drift": [], "estimate": []}
    for _, row in drifted.iterrows():
        result["drift"].append({
            "key": row[("chunk", "chunk", "key")], "period": row[("chunk", "chunk", "period")],
            "columns": {c: {"value": f(row[(c, "jensen_shannon", "value")]),
                            "upper_threshold": f(row[(c, "jensen_shannon", "upper_threshold")]),
                            "alert": bool(row[(c, "jensen_shannon", "alert")])} for c in FEATURES}})
    for _, row in estimated.iterrows():
        result["estimate"].append({
            "key": row[("chunk", "key")], "period": row[("chunk", "period")],
            "metrics": {m: {"value": f(row[(m, "value")]),
                            "lower_threshold": f(row[(m, "lower_threshold")]),
                            "upper_threshold": f(row[(m, "upper_threshold")]),
                            "alert": bool(row[(m, "alert")])} for m in METRICS}})
    pathlib.Path(out).write_text(json.dumps(result))


def compare(out, drift_json, estimate_json):
    theirs = json.loads(pathlib.Path(out).read_text())
    drift = json.loads(pathlib.Path(drift_json).read_text())["chunks"]
    estimate = json.loads(pathlib.Path(estimate_json).read_text())["chunks"]
    worst = {"drift": 0.0, "estimate": 0.0}
    problems = []

    def check(kind, at, name, want, have):
        if want is None or have is None:
            if want != have:
                problems.append(f"{kind} {at} {name}: {have} != {want}")
            return
        diff = abs(want - have) / max(abs(want), 1e-12)
        worst[kind] = max(worst[kind], diff)

    if len(theirs["drift"]) != len(drift) or len(theirs["estimate"]) != len(estimate):
        sys.exit(f"chunk counts differ: drift {len(drift)} vs {len(theirs['drift'])}, "
                 f"estimate {len(estimate)} vs {len(theirs['estimate'])}")
    alerts = 0
    for t, o in zip(theirs["drift"], drift):
        for c in FEATURES:
            mine, want = o["results"][c]["jensen_shannon"], t["columns"][c]
            check("drift", t["key"], c, want["value"], mine["value"])
            check("drift", t["key"], c + " threshold", want["upper_threshold"], mine["upper_threshold"])
            alerts += want["alert"]
            if want["alert"] != mine["alert"]:
                problems.append(f"drift {t['key']} {c}: alert {mine['alert']} != {want['alert']}")
    for t, o in zip(theirs["estimate"], estimate):
        for m in METRICS:
            mine, want = o["metrics"][m], t["metrics"][m]
            for field in ("value", "lower_threshold", "upper_threshold"):
                check("estimate", t["key"], f"{m} {field}", want[field], mine[field])
            alerts += want["alert"]
            if want["alert"] != mine["alert"]:
                problems.append(f"estimate {t['key']} {m}: alert {mine['alert']} != {want['alert']}")
    print(f"largest relative difference: drift {worst['drift']:.2e}, estimates {worst['estimate']:.2e}; "
          f"{alerts} alerts in NannyML's results")
    for p in problems[:20]:
        print(p)
    sys.exit(1 if problems or max(worst.values()) > 1e-9 else 0)


if __name__ == "__main__":
    {"data": data, "run": run, "compare": compare}[sys.argv[1]](*sys.argv[2:])
