"""Series reads (``driftline.series``, ``driftline.series_frame``) against a real server."""

from __future__ import annotations

import statistics
import sys

import pytest

import driftline
import driftline.metrics_v1 as metrics
import driftline.models_v1 as models
from driftline import _client

HOUR_MS = 3_600_000
INPUTS = [(1, "basic"), (2, "basic"), (3, "pro"), (10, "basic")]


@models.cml_model(metrics=True)
def predict(args):
    metrics.track_metric("input", args)
    return args["tenure"] * 2


@pytest.fixture
def moment(monkeypatch):
    """The middle of the previous hour: every prediction made in the test starts there."""
    at = (_client.now_ms() // HOUR_MS - 1) * HOUR_MS + HOUR_MS // 2
    monkeypatch.setattr(_client, "now_ms", lambda: at)
    return at


@pytest.fixture
def predicted(client, crns, moment):
    for tenure, plan in INPUTS:
        predict({"tenure": tenure, "plan": plan})
    return moment


def window(at):
    return {"start_timestamp_ms": at - HOUR_MS, "end_timestamp_ms": at + HOUR_MS}


def test_numeric_path_is_summarised_per_bucket(predicted, crns):
    answer = driftline.series("input.tenure", source="raw", quantiles=[0.5, 0.9, 1.0], **window(predicted))
    assert answer["resolution"] == "1h"
    [bucket] = answer["series"]
    tenures = [t for t, _ in INPUTS]
    assert bucket["bucketStartMs"] == predicted - HOUR_MS // 2
    assert (bucket["count"], bucket["sum"], bucket["min"], bucket["max"], bucket["mean"]) == (4, 16.0, 1.0, 10.0, 4.0)
    assert bucket["stddev"] == pytest.approx(statistics.stdev(tenures))
    assert set(bucket["quantiles"]) == {"0.5", "0.9", "1"}
    assert bucket["quantiles"]["1"] == 10.0
    assert "counts" not in bucket and "sketch" not in bucket
    # The same read by the deployment's CRN given explicitly, and as the server answers it.
    explicit = driftline.series(
        "input.tenure", model_deployment_crn=crns["model_deployment_crn"], source="raw", quantiles="0.5,0.9,1", **window(predicted)
    )
    assert explicit == answer


def test_categorical_path_gives_counts(predicted):
    [bucket] = driftline.series("input.plan", source="raw", step="1m", **window(predicted))["series"]
    assert bucket["count"] == 4
    assert bucket["counts"] == {"basic": 3, "pro": 1}
    assert "sum" not in bucket and "quantiles" not in bucket


def test_sketch_and_store_series(predicted):
    [bucket] = driftline.series("input.tenure", source="raw", step="1d", include_sketch=True, **window(predicted))["series"]
    assert isinstance(bucket["sketch"], str) and len(bucket["sketch"]) > 10
    [predictions] = driftline.series("@predictions", source="raw", **window(predicted))["series"]
    assert predictions["count"] == 4
    [latency] = driftline.series("@latency_ms", source="raw", **window(predicted))["series"]
    assert latency["count"] == 4 and latency["max"] == 0.0  # start and end come from the same clock here


def test_default_window_is_recent_past(client, crns):
    # The server's default start (0) spans too many 1h buckets for one answer: the client's is
    # the last day at 1m, 30 days at 1h, 365 days at 1d.
    predict({"tenure": 7, "plan": "basic"})
    for step in ("1m", "1h", "1d"):
        [bucket] = driftline.series("input.tenure", step=step)["series"]
        assert (bucket["count"], bucket["sum"]) == (1, 7.0), step
    later = _client.now_ms() + 2 * 86_400_000  # the start is reckoned from the end
    assert driftline.series("input.tenure", step="1m", end_timestamp_ms=later)["series"] == []
    assert len(driftline.series("input.tenure", step="1h", end_timestamp_ms=later)["series"]) == 1


def test_unknown_deployment_is_an_empty_series(client):
    answer = driftline.series("input.tenure", model_deployment_crn="crn:test:deployment/none", source="raw")
    assert answer == {"resolution": "1h", "series": []}
    frame = driftline.series_frame("input.tenure", model_deployment_crn="crn:test:deployment/none", quantiles=[0.5])
    assert len(frame) == 0
    assert list(frame.columns) == ["bucket_start", "bucket_start_ms", "count", "sum", "min", "max", "mean", "stddev", "p50"]


def test_series_frame_has_one_row_per_bucket(predicted):
    frame = driftline.series_frame("input.tenure", source="raw", step="1m", quantiles=[0.5, 0.99, 0.999], **window(predicted))
    assert len(frame) == 1
    assert list(frame.columns) == ["bucket_start", "bucket_start_ms", "count", "sum", "min", "max", "mean", "stddev", "p50", "p99", "p99.9"]
    row = frame.iloc[0]
    assert str(frame["bucket_start"].dt.tz) == "UTC"
    assert row["bucket_start"].value // 1_000_000 == row["bucket_start_ms"] == predicted
    assert (row["count"], row["sum"], row["p99.9"]) == (4, 16.0, 10.0)

    categorical = driftline.series_frame("input.plan", source="raw", **window(predicted))
    row = categorical.iloc[0]
    assert (row["counts.basic"], row["counts.pro"], row["other_count"]) == (3, 1, 0)
    assert categorical[["sum", "mean"]].isna().all().all()


def test_series_frame_without_pandas_says_what_to_install(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(driftline.NotSupportedError, match=r"pip install 'driftline\[pandas\]'"):
        driftline.series_frame("input.tenure")


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"step": "5m"}, "step='5m'"),
        ({"step": "1H"}, "step='1H'"),
        ({"quantiles": [0.5, 1.5]}, "quantiles: 1.5"),
        ({"quantiles": "0.5,-0.1"}, "quantiles: '-0.1'"),
        ({"quantiles": [float("nan")]}, "quantiles: nan"),
        ({"quantiles": ["median"]}, "quantiles: 'median'"),
        ({"source": "cache"}, "source='cache'"),
        ({"start_timestamp_ms": 10, "end_timestamp_ms": 10}, "end_timestamp_ms (10) must be after start_timestamp_ms (10)"),
    ],
)
def test_bad_arguments_are_refused_before_sending(client, kwargs, named):
    with pytest.raises(ValueError) as caught:
        driftline.series("input.tenure", **kwargs)
    assert named in str(caught.value)
    with pytest.raises(ValueError, match="metric"):
        driftline.series("")


def test_server_refusal_carries_its_detail(client):
    with pytest.raises(driftline.DriftlineError) as caught:
        driftline.series("input.tenure", step="1m", start_timestamp_ms=0)
    assert caught.value.status == 400
    assert "more than 100000" in caught.value.detail
    assert caught.value.detail in str(caught.value)


def test_series_in_development_mode(monkeypatch):
    driftline.init(dev=True, linger_ms=20)
    predict({"tenure": 4, "plan": "pro"})
    [bucket] = driftline.series("input.tenure", source="raw")["series"]
    assert (bucket["count"], bucket["sum"]) == (1, 4.0)
    assert driftline.stats()["dev"] is True
