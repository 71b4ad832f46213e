#!/usr/bin/env python3
"""Reference side of the drift benchmarks (run by benches/drift/run.sh).

    reference.py data DIR          writes the benchmark inputs into DIR (once)
    reference.py roc DIR           times sklearn.metrics.roc_auc_score on 10,000,000 rows
    reference.py ks DIR            times scipy.stats.ks_2samp on 2 x 10,000,000 rows
    reference.py ks_exact DIR      times ks_2samp(method="exact") on 2 x 10,000 rows
    reference.py roc_file PATH     one whole process: pandas reads the score and label columns of
                                   PATH (Parquet or CSV) and roc_auc_score scores them
    reference.py evidently REF CUR METHOD
                                   Evidently's data-drift preset on two CSV files (whole process)

Timings are the best of three calls, the inputs already in memory, as the Rust side does.
"""

import json
import pathlib
import sys
import time

import numpy as np

ROWS = 10_000_000


def best_of(fn, repeat=3):
    best, value = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t)
    return best, value


def data(directory):
    d = pathlib.Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    if not (d / "labels.f64").exists():
        labels = (rng.random(ROWS) < 0.3).astype(np.float64)
        scores = np.clip(rng.normal(0.35 + 0.25 * labels, 0.2), 0, 1).round(6)
        labels.tofile(d / "labels.f64")
        scores.tofile(d / "scores.f64")
    if not (d / "ks_a.f64").exists():
        rng.normal(0, 1, ROWS).tofile(d / "ks_a.f64")
        rng.normal(0.002, 1, ROWS).tofile(d / "ks_b.f64")
    if not (d / "ks_small_a.f64").exists():
        rng.normal(0, 1, 10_000).tofile(d / "ks_small_a.f64")
        rng.normal(0.03, 1, 10_000).tofile(d / "ks_small_b.f64")
    if not (d / "roc.parquet").exists():
        import pandas as pd
        labels = np.fromfile(d / "labels.f64").astype(np.int8)
        scores = np.fromfile(d / "scores.f64")
        frame = pd.DataFrame({
            "id": np.arange(ROWS, dtype=np.int64),
            "timestamp": 1_793_491_200_000 + np.arange(ROWS, dtype=np.int64) * 10,
            "tenure": rng.normal(30, 10, ROWS).round(2),
            "plan": rng.choice(["basic", "standard", "premium"], ROWS),
            "score": scores,
            "label": labels,
        })
        frame.to_parquet(d / "roc.parquet", index=False)
        frame.to_csv(d / "roc.csv", index=False)
    if not (d / "reference.csv").exists():
        import pandas as pd
        n = 200_000
        cols = {}
        cur = {}
        for i in range(10):
            cols[f"f{i}"] = rng.normal(i, 1 + i / 10, n).round(5)
            shift = 0.25 if i < 4 else 0.0
            cur[f"f{i}"] = rng.normal(i + shift, 1 + i / 10, n).round(5)
        pd.DataFrame(cols).to_csv(d / "reference.csv", index=False)
        pd.DataFrame(cur).to_csv(d / "current.csv", index=False)


def roc(directory):
    from sklearn.metrics import roc_auc_score
    d = pathlib.Path(directory)
    labels = np.fromfile(d / "labels.f64")
    scores = np.fromfile(d / "scores.f64")
    seconds, auc = best_of(lambda: roc_auc_score(labels, scores))
    print(json.dumps({"what": "roc_auc", "seconds": seconds, "value": float(auc)}))


def ks(directory):
    from scipy.stats import ks_2samp
    d = pathlib.Path(directory)
    a = np.fromfile(d / "ks_a.f64")
    b = np.fromfile(d / "ks_b.f64")
    seconds, r = best_of(lambda: ks_2samp(a, b))
    print(json.dumps({"what": "ks", "seconds": seconds, "statistic": float(r.statistic), "pvalue": float(r.pvalue)}))


def ks_exact(directory):
    from scipy.stats import ks_2samp
    d = pathlib.Path(directory)
    a = np.fromfile(d / "ks_small_a.f64")
    b = np.fromfile(d / "ks_small_b.f64")
    seconds, r = best_of(lambda: ks_2samp(a, b, method="exact"))
    print(json.dumps({"what": "ks_exact", "seconds": seconds, "statistic": float(r.statistic), "pvalue": float(r.pvalue)}))


def roc_file(path):
    import pandas as pd
    from sklearn.metrics import roc_auc_score
    if path.endswith(".parquet"):
        frame = pd.read_parquet(path, columns=["score", "label"])
    else:
        frame = pd.read_csv(path, usecols=["score", "label"])
    print(json.dumps({"what": "roc_file", "value": float(roc_auc_score(frame["label"], frame["score"]))}))


def evidently(reference, current, method):
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset
    ref = pd.read_csv(reference)
    cur = pd.read_csv(current)
    snapshot = Report([DataDriftPreset(method=method)]).run(current_data=cur, reference_data=ref)
    result = snapshot.dict()
    drifted = result["metrics"][0]["value"]
    print(json.dumps({"what": "evidently", "method": method, "drifted_columns": drifted["count"], "share": drifted["share"]}))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "data":
        data(sys.argv[2])
    elif command == "roc":
        roc(sys.argv[2])
    elif command == "ks":
        ks(sys.argv[2])
    elif command == "ks_exact":
        ks_exact(sys.argv[2])
    elif command == "roc_file":
        roc_file(sys.argv[2])
    elif command == "evidently":
        evidently(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(f"unknown command {command}")
