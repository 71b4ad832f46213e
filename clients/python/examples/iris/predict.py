"""The model-metrics example of Cloudera AI's documentation, with the imports changed to driftline.

A classifier of iris species is trained on scikit-learn's bundled iris data. Its predict function
tracks the input and the predicted class of every call; the true species arrives later as delayed
metrics; then the development deployment's metrics are read back.
"""

import time

import driftline.cdsw as cdsw
import driftline.metrics_v1 as metrics
import driftline.models_v1 as models
from sklearn import datasets
from sklearn.linear_model import LogisticRegression

iris = datasets.load_iris()
feature_names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
model = LogisticRegression(max_iter=1000)
model.fit(iris.data, iris.target)


@models.cml_model(metrics=True)
def predict(args):
    # Track the input, as a dict, e.g. {"petal_length": 1.4, ...}.
    metrics.track_metric("input", args)
    features = [[float(args[name]) for name in feature_names]]
    prediction = int(model.predict(features)[0])
    # Track the output.
    metrics.track_metric("predict_result", str(iris.target_names[prediction]))
    return prediction


# Make a prediction for every tenth flower, then report its true species as delayed metrics.
for row, target in list(zip(iris.data, iris.target))[::10]:
    result = predict(dict(zip(feature_names, (float(v) for v in row))))
    cdsw.track_delayed_metrics({"actual_result": str(iris.target_names[target])}, result["uuid"], dev=True)

# Windows are in whole milliseconds and exclude their end: a prediction that started in the
# millisecond "now" falls in is not in [0, now). The last one above started a fraction of a
# millisecond ago, so let the clock leave its millisecond first. (Sending is not the reason:
# read_metrics sends what this process has queued before it reads.)
time.sleep(0.002)
current_timestamp_ms = int(round(time.time() * 1000))
known_metrics = cdsw.read_metrics(
    model_deployment_crn=cdsw.dev_model_deployment_crn,
    start_timestamp_ms=0,
    end_timestamp_ms=current_timestamp_ms,
    dev=True,
)

rows = known_metrics["metrics"]
labelled = sum(1 for m in rows if "actual_result" in m["metrics"])
correct = sum(1 for m in rows if m["metrics"].get("predict_result") == m["metrics"].get("actual_result"))
print(f"{len(rows)} predictions of deployment {cdsw.dev_model_deployment_crn}, {labelled} labelled, {correct} correct")
print("first:", rows[0]["metrics"])
