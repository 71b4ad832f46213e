#!/usr/bin/env python3
"""Writes the example files the README uses (deterministic): a reference and a current sample
of a churn model's inputs, and scored predictions with their labels."""
import numpy as np
import pandas as pd

rng = np.random.default_rng(2026)
n = 2000


def inputs(shifted):
    return pd.DataFrame({
        "tenure_months": np.floor(rng.exponential(14 if shifted else 30, n)).clip(0, 72),
        "monthly_charges": rng.normal(82 if shifted else 65, 20, n).clip(18, 120).round(2),
        "support_calls": np.floor(rng.exponential(2.2 if shifted else 1.2, n)),
        "plan": rng.choice(["basic", "standard", "premium"], n, p=[0.3, 0.35, 0.35] if shifted else [0.5, 0.35, 0.15]),
        "contract": rng.choice(["month-to-month", "one-year", "two-year"], n, p=[0.55, 0.25, 0.2]),
    })


inputs(False).to_csv("reference.csv", index=False)
inputs(True).to_csv("current.csv", index=False)
label = (rng.random(n) < 0.3).astype(int)
score = np.clip(rng.normal(0.35 + 0.3 * label, 0.18), 0, 1).round(4)
pd.DataFrame({"score": score, "label": label}).to_csv("predictions.csv", index=False)
