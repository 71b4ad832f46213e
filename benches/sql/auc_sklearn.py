"""ROC AUC per day with scikit-learn, for benches/sql_read.rs: reads `day,score,label` rows (CSV,
no header) and prints `[[day, auc], ...]` as JSON, days in order."""

import csv
import json
import sys
from collections import defaultdict

from sklearn.metrics import roc_auc_score


def main(path: str) -> None:
    scores = defaultdict(list)
    labels = defaultdict(list)
    with open(path, newline="") as f:
        for day, score, label in csv.reader(f):
            scores[int(day)].append(float(score))
            labels[int(day)].append(int(label))
    print(json.dumps([[day, roc_auc_score(labels[day], scores[day])] for day in sorted(scores)]))


if __name__ == "__main__":
    main(sys.argv[1])
