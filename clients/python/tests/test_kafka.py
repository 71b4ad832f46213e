"""Kafka delivery: events produced to a real Kafka-protocol broker (tansu), moved into the store by
`driftline ingest`, and read back through `driftline serve` on the same store.

The broker tests are skipped when there is no tansu binary, unless DRIFTLINE_REQUIRE_KAFKA=1.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

import driftline
import driftline.metrics_v1 as metrics
import driftline.models_v1 as models
from driftline import DriftlineError

N = 200
READ_BACK_TIMEOUT_S = 120.0


@models.cml_model(metrics=True)
def predict(args):
    metrics.track_metric("input", args)
    return args["n"] * 2


def wait_for(condition: Callable[[], Any], timeout: float = READ_BACK_TIMEOUT_S, every: float = 0.2) -> Any:
    """The first true value of ``condition()``, or its last value when the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def new_topic(broker, partitions: int = 3) -> str:
    topic = f"test.{uuid.uuid4().hex[:10]}"
    broker.create_topic(topic, partitions)
    return topic


def topic_messages(bootstrap: str, topic: str) -> List[Tuple[int, str, Dict[str, Any]]]:
    """Every message the client produced to ``topic``, as (partition, key, event).

    A marker is produced to each partition first, after the client's flush: what comes before
    it in a partition is all the partition held. (tansu's watermarks cannot tell: it answers
    ListOffsets with other numbers.) The markers reach `driftline ingest` as dead letters.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

    token = uuid.uuid4().hex
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-" + token, "enable.auto.commit": False})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        for p in partitions:
            producer.produce(topic, b"marker " + token.encode(), partition=p)
        assert producer.flush(30) == 0, "the markers were not acknowledged within 30 s"
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: List[Tuple[int, str, Dict[str, Any]]] = []
        open_partitions = set(partitions)
        deadline = time.monotonic() + 60
        while open_partitions:
            assert time.monotonic() < deadline, f"the markers of partitions {sorted(open_partitions)} of {topic} were not read within 60 s"
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            if message.value() == b"marker " + token.encode():
                open_partitions.discard(message.partition())
            else:
                out.append((message.partition(), message.key().decode(), json.loads(message.value())))
        return out
    finally:
        consumer.close()


def test_predictions_labels_and_aggregates_arrive_once_each(broker, server, start_ingest, crns, monkeypatch):
    # Configured from the environment, as a model replica is, and on the default topic: the one
    # `driftline ingest` consumes when given no --topic.
    broker.create_topic("driftline.events", 3)
    start_ingest(broker.bootstrap, None)
    for name, value in {
        "DRIFTLINE_KAFKA_BROKERS": broker.bootstrap,
        "DRIFTLINE_URL": server.url,
        "DRIFTLINE_API_KEY": server.key,
        "DRIFTLINE_MODEL_CRN": crns["model_crn"],
        "DRIFTLINE_MODEL_BUILD_CRN": crns["model_build_crn"],
        "DRIFTLINE_MODEL_DEPLOYMENT_CRN": crns["model_deployment_crn"],
        "DRIFTLINE_LINGER_MS": "20",
    }.items():
        monkeypatch.setenv(name, value)

    answers = [predict({"n": i}) for i in range(N)]
    labelled = answers[::4]
    for answer in labelled:
        metrics.track_delayed_metrics({"label": answer["prediction"] + 1}, answer["uuid"])
    metrics.track_aggregate_metrics({"roc_auc": 0.875}, 1_700_000_000_000, 1_700_000_060_000)
    events = N + len(labelled) + 1
    assert driftline.flush(30)
    s = driftline.stats()
    assert (s["enqueued"], s["sent"], s["failed"], s["dropped"], s["queued"], s["in_flight"]) == (events, events, 0, 0, 0, 0)
    assert s["kafka"] == {"brokers": broker.bootstrap, "topic": "driftline.events"}
    assert s["dev"] is False and s["url"] == server.url

    def all_stored():
        rows = metrics.read_metrics(start_timestamp_ms=0)["metrics"]
        labels = sum(1 for r in rows if "label" in r["metrics"])
        return rows if len(rows) >= N and labels >= len(labelled) else None

    rows = wait_for(all_stored)
    assert rows, f"not everything was stored within {READ_BACK_TIMEOUT_S} s: {server.get('/api/v1/stats')}"
    uuids = [r["predictionUuid"] for r in rows]
    assert len(uuids) == len(set(uuids)) == N
    assert set(uuids) == {a["uuid"] for a in answers}
    labels = {a["uuid"]: a["prediction"] + 1 for a in labelled}
    for row in rows:
        n = row["metrics"]["input"]["n"]
        assert row["metrics"]["_driftline"] == {"input_bytes": len(json.dumps({"n": n}, separators=(",", ":"))), "output_bytes": len(str(2 * n))}
        assert row["modelDeploymentCrn"] == crns["model_deployment_crn"]
        assert row["metrics"].get("label") == labels.get(row["predictionUuid"])
    assert server.get("/api/v1/stats")["predictions"] == N
    aggregates = wait_for(lambda: metrics.read_aggregate_metrics()["metrics"])
    assert [(a["metrics"], a["startTimeStampMs"]) for a in aggregates] == [({"roc_auc": 0.875}, 1_700_000_000_000)]

    # One message per event, each the v1 JSON event, keyed by its prediction's UUID (so a label
    # follows its prediction into one partition) or, for aggregates, by the deployment CRN.
    messages = topic_messages(broker.bootstrap, "driftline.events")
    assert len(messages) == events
    types = sorted(event["type"] for _, _, event in messages)
    assert types == ["aggregate_metrics"] + ["delayed_metrics"] * len(labelled) + ["prediction"] * N
    partition_of = {}
    for partition, key, event in messages:
        assert event["v"] == 1
        if event["type"] == "aggregate_metrics":
            assert key == crns["model_deployment_crn"]
            continue
        assert key == event["uuid"]
        if event["type"] == "prediction":
            partition_of[key] = partition
    for partition, key, event in messages:
        if event["type"] == "delayed_metrics":
            assert partition == partition_of[key]
    assert len(set(partition_of.values())) > 1  # a deployment's predictions spread over the partitions


def test_with_kafka_only_reads_raise_an_error_naming_driftline_url(broker, crns):
    topic = new_topic(broker)
    driftline.init(kafka_brokers=broker.bootstrap, kafka_topic=topic, linger_ms=20, **crns)
    answer = predict({"n": 1})
    assert driftline.flush(30)
    s = driftline.stats()
    assert (s["sent"], s["dev"], s["url"]) == (1, False, None)
    for read in (metrics.read_metrics, metrics.read_aggregate_metrics, lambda: driftline.series("input.n")):
        with pytest.raises(DriftlineError, match="DRIFTLINE_URL"):
            read()
    # No development server was started in its place.
    assert not (Path(os.environ["DRIFTLINE_DEV_DIR"]) / "server.json").exists()
    [(_, key, event)] = topic_messages(broker.bootstrap, topic)
    assert key == event["uuid"] == answer["uuid"]


def test_without_confluent_kafka_the_error_says_to_install_the_extra(monkeypatch, caplog, crns):
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'driftline\[kafka\]'"):
        driftline.init(kafka_brokers="127.0.0.1:9", **crns)

    monkeypatch.setenv("DRIFTLINE_KAFKA_BROKERS", "127.0.0.1:9")
    driftline.shutdown()
    with pytest.raises(ImportError, match=r"DRIFTLINE_KAFKA_BROKERS.*pip install 'driftline\[kafka\]'"):
        metrics.track_delayed_metrics({"label": 1}, str(uuid.uuid4()))
    # Inside a predict function tracking never fails the prediction: the reason is logged.
    with caplog.at_level(logging.WARNING, logger="driftline"):
        answer = predict({"n": 3})
    assert answer["prediction"] == 6
    assert "pip install 'driftline[kafka]'" in caplog.text
    assert not (Path(os.environ["DRIFTLINE_DEV_DIR"]) / "server.json").exists()


def test_broker_down_then_back_drops_the_oldest_and_repeats_nothing(make_broker, server, start_ingest, crns):
    tansu = make_broker()  # its port is chosen, nothing listens there yet
    driftline.init(
        url=server.url,
        api_key=server.key,
        kafka_brokers=tansu.bootstrap,
        kafka_topic="test.down",
        queue_size=10,
        batch_size=5,
        linger_ms=0,
        max_backoff_s=0.2,
        request_timeout_s=2,  # the producer's message timeout: a batch comes back after 2 s
        **crns,
    )
    answers = [predict({"n": i}) for i in range(100)]
    s = driftline.stats()
    assert s["enqueued"] == 100
    assert s["dropped"] == 100 - s["queued"] - s["in_flight"]
    assert s["dropped"] >= 100 - 10 - 5
    assert s["queued"] <= 10

    # Unacknowledged messages come back to the sender, which produces them again.
    assert wait_for(lambda: driftline.stats()["retries"] >= 2, timeout=60)
    assert driftline.flush(0.5) is False
    assert driftline.stats()["last_error"]

    tansu.start()
    tansu.create_topic("test.down", 2)
    start_ingest(tansu.bootstrap, "test.down")
    assert driftline.flush(90)
    s = driftline.stats()
    assert (s["sent"], s["failed"], s["queued"], s["in_flight"]) == (100 - s["dropped"], 0, 0, 0)

    rows = wait_for(lambda: (lambda r: r if len(r) >= s["sent"] else None)(metrics.read_metrics(start_timestamp_ms=0)["metrics"]))
    assert rows, f"not everything was stored within {READ_BACK_TIMEOUT_S} s"
    stored = [r["predictionUuid"] for r in rows]
    assert len(stored) == len(set(stored)) == s["sent"]
    assert set(stored) <= {a["uuid"] for a in answers}
    # The newest ten were never dropped.
    assert {a["uuid"] for a in answers[-10:]} <= set(stored)


FORK_SCRIPT = r"""
import json, os, sys
import driftline
import driftline.metrics_v1 as metrics
import driftline.models_v1 as models

@models.cml_model(metrics=True)
def predict(args):
    metrics.track_metric("input", args)
    return args["n"]

brokers, topic, deployment = sys.argv[1:4]
driftline.init(kafka_brokers=brokers, kafka_topic=topic, linger_ms=600_000, model_deployment_crn=deployment)
sent = [predict({"n": i, "who": "parent"})["uuid"] for i in range(20)]
assert driftline.flush(30)          # the producer is running when the process forks
queued = [predict({"n": 100 + i, "who": "parent"})["uuid"] for i in range(10)]
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read_end)
    at_start = driftline.stats()
    mine = [predict({"n": 1000 + i, "who": "child"})["uuid"] for i in range(15)]
    with os.fdopen(write_end, "w") as out:
        json.dump({"uuids": mine, "at_start": at_start}, out)
    sys.exit(0)                     # an ordinary exit: atexit sends what the child queued
os.close(write_end)
with os.fdopen(read_end) as answer:
    child = json.load(answer)
_, status = os.waitpid(pid, 0)
assert driftline.flush(30)
print(json.dumps({"parent": sent + queued, "child": child, "child_exit": os.waitstatus_to_exitcode(status), "stats": driftline.stats()}))
"""


def test_forked_child_produces_its_own_events_and_exits(broker, server, start_ingest, crns):
    topic = new_topic(broker)
    start_ingest(broker.bootstrap, topic)
    deployment = crns["model_deployment_crn"]
    done = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, broker.bootstrap, topic, deployment],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["child_exit"] == 0
    child_start = answer["child"]["at_start"]
    assert (child_start["enqueued"], child_start["queued"], child_start["sent"]) == (0, 0, 0)
    s = answer["stats"]
    assert (s["enqueued"], s["sent"], s["dropped"], s["failed"]) == (30, 30, 0, 0)

    parent, child = set(answer["parent"]), set(answer["child"]["uuids"])
    # Exactly one message per event: the child sent neither the parent's queued events nor its own twice.
    messages = topic_messages(broker.bootstrap, topic)
    assert sorted(key for _, key, _ in messages) == sorted(parent | child)

    rows = wait_for(lambda: (lambda r: r if len(r) >= 45 else None)(server.rows(model_deployment_crn=deployment)))
    assert rows, f"not everything was stored within {READ_BACK_TIMEOUT_S} s"
    who = {r["predictionUuid"]: r["metrics"]["input"]["who"] for r in rows}
    assert len(rows) == len(who) == 45
    assert {u for u, w in who.items() if w == "child"} == child
    assert {u for u, w in who.items() if w == "parent"} == parent


IDLE_FORK_SCRIPT = r"""
import json, os, sys, time
import driftline
import driftline.metrics_v1 as metrics
import driftline.models_v1 as models

@models.cml_model(metrics=True)
def predict(args):
    metrics.track_metric("input", args)
    return args["n"]

# Configured before forking, as a pre-forking server does: the producer exists, its threads run.
driftline.init(kafka_brokers=sys.argv[1], exit_flush_timeout_s=1)
driftline.stats()
children = []
for n in range(int(sys.argv[2])):
    pid = os.fork()
    if pid == 0:
        if n % 2:
            predict({"n": n})       # a producer of its own, which cannot deliver either
        sys.exit(0)                 # an ordinary exit, with the parent's producer in memory
    children.append(pid)
deadline = time.monotonic() + 30
exits = {}
while len(exits) < len(children) and time.monotonic() < deadline:
    for pid in children:
        if pid not in exits:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                exits[pid] = os.waitstatus_to_exitcode(status)
    time.sleep(0.05)
for pid in children:
    if pid not in exits:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        exits[pid] = "still running 30 s after the fork"
print(json.dumps(sorted(exits.values(), key=str)))
"""


def test_kafka_settings_are_checked_when_configured(confluent_kafka, monkeypatch):
    with pytest.raises(DriftlineError, match=r"no\.such\.setting.*DRIFTLINE_KAFKA_OPTIONS"):
        driftline.init(kafka_brokers="127.0.0.1:9", kafka_options={"no.such.setting": "1"})
    monkeypatch.setenv("DRIFTLINE_KAFKA_OPTIONS", "acks=all,linger")
    with pytest.raises(ValueError, match="DRIFTLINE_KAFKA_OPTIONS: 'linger' is not KEY=VALUE"):
        driftline.init(kafka_brokers="127.0.0.1:9")
    monkeypatch.setenv("DRIFTLINE_KAFKA_OPTIONS", "client.id=churn-7, linger.ms=50")
    monkeypatch.setenv("DRIFTLINE_KAFKA_TOPIC", "churn.events")
    driftline.init(kafka_brokers="127.0.0.1:9")
    assert driftline.stats()["kafka"] == {"brokers": "127.0.0.1:9", "topic": "churn.events"}
    assert driftline._client.get_client().config.kafka_options == {"client.id": "churn-7", "linger.ms": "50"}
    # dev=True means the development server, whatever the environment says.
    monkeypatch.setenv("DRIFTLINE_KAFKA_BROKERS", "127.0.0.1:9")
    driftline.init(dev=True)
    s = driftline.stats()
    assert s["dev"] is True and "kafka" not in s


def test_after_a_fork_the_parents_producer_is_forgotten_but_never_freed(confluent_kafka):
    from driftline._kafka import KafkaDelivery

    transport = KafkaDelivery("127.0.0.1:9", "t", {}, batch_size=10, timeout_s=1)
    parent = transport._producer
    assert isinstance(parent, confluent_kafka.Producer)
    held = sys.getrefcount(parent)  # the transport's reference and ours
    transport.after_fork_in_child()
    assert transport._producer is None
    # The transport let go of it, yet it holds more references than before: nothing can free it.
    assert sys.getrefcount(parent) > held


def test_forked_children_exit_with_the_parents_producer_in_memory(confluent_kafka):
    # librdkafka's threads do not exist in a child: freeing the parent's producer there waits for
    # them, forever at times (a lock held at the fork: one child in ten to twenty, by chance).
    # No broker is needed: the children's own events stay undelivered.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    children = 40
    done = subprocess.run(
        [sys.executable, "-c", IDLE_FORK_SCRIPT, f"127.0.0.1:{closed_port}", str(children)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [0] * children, done.stderr
