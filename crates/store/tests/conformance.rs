//! One conformance suite, run unchanged against both backends.

use std::collections::BTreeMap;
use std::sync::Arc;

use driftline_core::{AggregateMetrics, DelayedMetrics, Event, MetricsJson, Prediction};
use driftline_store::governance::{chain_hash, GENESIS};
use driftline_store::postgres::PostgresStore;
use driftline_store::sqlite::SqliteStore;
use driftline_store::{
    ApiKey, Appended, DeadLetter, EventStore, GovernanceStore, NewGovernanceEvent, NewKey, ReadRecord, Scope,
    SeenDeployment, Selection, SourcePosition, Store, Window, WriteBatch,
};
use driftline_testkit::TestDatabase;
use futures::TryStreamExt;
use serde_json::json;
use uuid::Uuid;

const T0: i64 = 1_700_000_000_000;
const DAY: i64 = 86_400_000;

fn metrics(value: serde_json::Value) -> MetricsJson {
    value.as_object().expect("object").clone().into()
}

fn prediction(deployment: &str, start: i64, score: f64) -> Prediction {
    Prediction {
        uuid: Uuid::new_v4(),
        model_crn: "crn:model/churn".into(),
        model_build_crn: format!("crn:build/{deployment}"),
        model_deployment_crn: deployment.into(),
        start_timestamp_ms: start,
        end_timestamp_ms: start + 12,
        metrics: metrics(json!({"input": {"tenure": 12, "plan": "basic"}, "prediction": score})),
    }
}

fn batch_of(predictions: Vec<Prediction>) -> WriteBatch {
    WriteBatch { predictions, ..WriteBatch::new(T0) }
}

async fn read_all(store: &dyn Store, selection: Selection, window: Window) -> Vec<ReadRecord> {
    store.read_window(selection, window).try_collect().await.expect("read window")
}

fn everything() -> Window {
    Window { start_ms: 0, end_ms: i64::MAX }
}

async fn writes_and_reads_back_with_delayed_metrics_merged(store: Arc<dyn Store>) {
    let a = prediction("dep-a", T0 + 1_000, 0.9);
    let b = prediction("dep-a", T0, 0.2);
    let other = prediction("dep-b", T0, 0.5);
    // A label that arrives before its prediction.
    let early =
        DelayedMetrics { uuid: a.uuid, timestamp_ms: T0 + 5, metrics: metrics(json!({"label": 0, "note": "early"})) };
    store.write(&WriteBatch { delayed_metrics: vec![early], ..WriteBatch::new(T0) }).await.unwrap();
    let outcome = store.write(&batch_of(vec![a.clone(), b.clone(), other.clone()])).await.unwrap();
    assert_eq!((outcome.predictions, outcome.duplicates.len()), (3, 0));
    // A later correction: later keys win.
    let late = DelayedMetrics { uuid: a.uuid, timestamp_ms: T0 + 9_000, metrics: metrics(json!({"label": 1})) };
    store.write(&WriteBatch { delayed_metrics: vec![late], ..WriteBatch::new(T0) }).await.unwrap();

    let read = read_all(&*store, Selection::Deployment("dep-a".into()), everything()).await;
    assert_eq!(read.iter().map(|r| r.uuid).collect::<Vec<_>>(), vec![b.uuid, a.uuid], "ordered by start time");
    assert_eq!(read[0].metrics, b.metrics.to_map(), "no delayed metrics: unchanged");
    assert_eq!(read[1].metrics["label"], json!(1));
    assert_eq!(read[1].metrics["note"], json!("early"));
    assert_eq!(read[1].metrics["prediction"], json!(0.9));
    assert_eq!(read[1].model_build_crn, "crn:build/dep-a");
    assert_eq!((read[1].start_timestamp_ms, read[1].end_timestamp_ms), (T0 + 1_000, T0 + 1_012));

    // Half-open window on the start timestamp.
    let window = Window { start_ms: T0, end_ms: T0 + 1_000 };
    let read = read_all(&*store, Selection::Deployment("dep-a".into()), window).await;
    assert_eq!(read.iter().map(|r| r.uuid).collect::<Vec<_>>(), vec![b.uuid]);

    let by_build = read_all(&*store, Selection::Build("crn:build/dep-b".into()), everything()).await;
    assert_eq!(by_build.iter().map(|r| r.uuid).collect::<Vec<_>>(), vec![other.uuid]);
    let by_model = read_all(&*store, Selection::Model("crn:model/churn".into()), everything()).await;
    assert_eq!(by_model.len(), 3);
    assert!(read_all(&*store, Selection::Deployment("nobody".into()), everything()).await.is_empty());

    let counts = store.counts().await.unwrap();
    assert_eq!((counts.predictions, counts.delayed_metrics), (3, 2));
}

/// Neighbouring predictions with several delayed metrics each, none, or one, the first and the
/// last of the window among them: each is read once with its own merged in time order.
async fn several_delayed_metrics_per_prediction_merge_in_time_order(store: Arc<dyn Store>) {
    let p: Vec<Prediction> = (0..4).map(|i| prediction("dep", T0 + i * 10, 0.5)).collect();
    store.write(&batch_of(p.clone())).await.unwrap();
    let delayed = |i: usize, at: i64, value: serde_json::Value| DelayedMetrics {
        uuid: p[i].uuid,
        timestamp_ms: at,
        metrics: metrics(value),
    };
    // Written out of time order, over two batches.
    store
        .write(&WriteBatch {
            delayed_metrics: vec![
                delayed(0, T0 + 300, json!({"label": 3, "c": 3})),
                delayed(3, T0 + 100, json!({"label": 30})),
                delayed(0, T0 + 100, json!({"label": 1, "a": 1})),
            ],
            ..WriteBatch::new(T0)
        })
        .await
        .unwrap();
    store
        .write(&WriteBatch {
            delayed_metrics: vec![
                delayed(2, T0 + 500, json!({"label": 22})),
                delayed(0, T0 + 200, json!({"label": 2, "a": 2, "b": 2})),
                delayed(2, T0 + 400, json!({"label": 21, "prediction": "replaced"})),
            ],
            ..WriteBatch::new(T0)
        })
        .await
        .unwrap();

    let read = read_all(&*store, Selection::Deployment("dep".into()), everything()).await;
    assert_eq!(read.iter().map(|r| r.uuid).collect::<Vec<_>>(), p.iter().map(|p| p.uuid).collect::<Vec<_>>());
    let input = json!({"tenure": 12, "plan": "basic"});
    let merged: Vec<serde_json::Value> = read.iter().map(|r| serde_json::Value::Object(r.metrics.clone())).collect();
    assert_eq!(merged[0], json!({"input": input, "prediction": 0.5, "label": 3, "a": 2, "b": 2, "c": 3}));
    assert_eq!(merged[1], json!({"input": input, "prediction": 0.5}));
    assert_eq!(merged[2], json!({"input": input, "prediction": "replaced", "label": 22}));
    assert_eq!(merged[3], json!({"input": input, "prediction": 0.5, "label": 30}));

    // A job's read: the same predictions in the same order, with their delayed metrics as the
    // array of objects oldest first.
    let rows: Vec<driftline_store::JobRow> = store.job_rows("dep", everything()).try_collect().await.unwrap();
    assert_eq!(rows.iter().map(|r| r.uuid).collect::<Vec<_>>(), p.iter().map(|p| p.uuid).collect::<Vec<_>>());
    assert_eq!(rows.iter().map(|r| r.start_timestamp_ms).collect::<Vec<_>>(), [T0, T0 + 10, T0 + 20, T0 + 30]);
    let delayed: Vec<Option<serde_json::Value>> =
        rows.iter().map(|r| r.delayed.as_deref().map(|d| serde_json::from_str(d).unwrap())).collect();
    assert_eq!(
        delayed,
        [
            Some(json!([{"label": 1, "a": 1}, {"label": 2, "a": 2, "b": 2}, {"label": 3, "c": 3}])),
            None,
            Some(json!([{"label": 21, "prediction": "replaced"}, {"label": 22}])),
            Some(json!([{"label": 30}])),
        ]
    );
    let stored: serde_json::Value = serde_json::from_str(&rows[1].metrics).unwrap();
    assert_eq!(stored, json!({"input": input, "prediction": 0.5}));
    assert!(store.job_rows("other", everything()).try_collect::<Vec<_>>().await.unwrap().is_empty());
}

async fn predictions_are_idempotent_on_uuid(store: Arc<dyn Store>) {
    let first: Vec<Prediction> = (0..1_200).map(|i| prediction("dep", T0 + i * 1_000, 0.1)).collect();
    let outcome = store.write(&batch_of(first.clone())).await.unwrap();
    assert_eq!(outcome.predictions, 1_200);

    // A retry of part of it, a repeat inside the batch, and new ones.
    let fresh = prediction("dep", T0, 0.3);
    let mut retry: Vec<Prediction> = first[1_000..].to_vec();
    retry.push(fresh.clone());
    retry.push(fresh.clone());
    let mut changed = first[0].clone();
    changed.metrics = metrics(json!({"prediction": 1.0}));
    retry.push(changed);
    let outcome = store.write(&batch_of(retry)).await.unwrap();
    assert_eq!(outcome.predictions, 1);
    assert_eq!(outcome.duplicates.len(), 202);
    assert_eq!(outcome.duplicates[200], fresh.uuid, "the in-batch repeat is the duplicate");
    assert_eq!(outcome.duplicates[201], first[0].uuid);
    assert_eq!(store.counts().await.unwrap().predictions, 1_201);

    let read = read_all(&*store, Selection::Deployment("dep".into()), Window { start_ms: T0, end_ms: T0 + 1 }).await;
    assert_eq!(read.len(), 2);
    let original = read.iter().find(|r| r.uuid == first[0].uuid).unwrap();
    assert_eq!(original.metrics, first[0].metrics.to_map(), "the first write is kept");

    // A repeat inside a batch none of whose UUIDs is stored yet (on Postgres the optimistic
    // claim, without its ON CONFLICT fallback): the first is stored, the repeat reported.
    let (x, y) = (prediction("dep", T0 + 7, 0.5), prediction("dep", T0 + 8, 0.6));
    let mut x_again = x.clone();
    x_again.metrics = metrics(json!({"prediction": 0.9}));
    let outcome = store.write(&batch_of(vec![x.clone(), y.clone(), x_again])).await.unwrap();
    assert_eq!(outcome.predictions, 2);
    assert_eq!(outcome.duplicates, vec![x.uuid]);
    assert_eq!(store.counts().await.unwrap().predictions, 1_203);
    let read =
        read_all(&*store, Selection::Deployment("dep".into()), Window { start_ms: T0 + 7, end_ms: T0 + 8 }).await;
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].metrics, x.metrics.to_map(), "the first of the batch is kept");
}

async fn retried_metrics_are_stored_once(store: Arc<dyn Store>) {
    let p = prediction("dep", T0, 0.4);
    let label =
        DelayedMetrics { uuid: p.uuid, timestamp_ms: T0 + 5, metrics: metrics(json!({"label": 1, "by": "crm"})) };
    // The same keys in another order are the same metrics.
    let reordered = DelayedMetrics { metrics: metrics(json!({"by": "crm", "label": 1})), ..label.clone() };
    let correction = DelayedMetrics { uuid: p.uuid, timestamp_ms: T0 + 9, metrics: metrics(json!({"label": 0})) };
    let agg = AggregateMetrics {
        model_deployment_crn: "dep".into(),
        start_timestamp_ms: T0,
        end_timestamp_ms: T0 + DAY,
        metrics: metrics(json!({"roc_auc": 0.9})),
        source: "user".into(),
    };
    let batch = || WriteBatch {
        predictions: vec![p.clone()],
        delayed_metrics: vec![label.clone(), reordered.clone()],
        aggregate_metrics: vec![agg.clone()],
        ..WriteBatch::new(T0)
    };
    let first = store.write(&batch()).await.unwrap();
    assert_eq!((first.predictions, first.delayed_metrics, first.aggregate_metrics), (1, 1, 1));
    assert_eq!((first.delayed_duplicates, first.duplicate_events()), (1, 1));
    let retry = store.write(&batch()).await.unwrap();
    assert_eq!(retry.accepted(), 0);
    assert_eq!((retry.duplicates.len(), retry.delayed_duplicates, retry.aggregate_duplicates), (1, 2, 1));
    // A different time or a different source is a new fact.
    let other_source = AggregateMetrics { source: "drift:daily".into(), ..agg.clone() };
    let more =
        WriteBatch { delayed_metrics: vec![correction], aggregate_metrics: vec![other_source], ..WriteBatch::new(T0) };
    let more = store.write(&more).await.unwrap();
    assert_eq!((more.delayed_metrics, more.aggregate_metrics, more.duplicate_events()), (1, 1, 0));
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.predictions, counts.delayed_metrics, counts.aggregate_metrics), (1, 2, 2));
    let read = read_all(&*store, Selection::Deployment("dep".into()), everything()).await;
    assert_eq!(read[0].metrics["label"], json!(0));
}

async fn awkward_text_round_trips(store: Arc<dyn Store>) {
    let mut p = prediction("dep,\"quoted\"\nline", T0, 0.5);
    p.model_crn = "crn:model/\"a\",b\\c".into();
    p.metrics =
        metrics(json!({"note": "comma, \"quote\", back\\slash,\nnewline, tab\t, ünïcødé ✓", "x": [1, "2", null]}));
    store.write(&batch_of(vec![p.clone()])).await.unwrap();
    let read = read_all(&*store, Selection::Deployment(p.model_deployment_crn.clone()), everything()).await;
    assert_eq!(read.len(), 1);
    assert_eq!((read[0].model_crn.as_str(), &read[0].metrics), (p.model_crn.as_str(), &p.metrics.to_map()));
}

fn pos(partition: i32, from: i64, next_offset: i64) -> SourcePosition {
    SourcePosition { group: "g".into(), topic: "t".into(), partition, from, next_offset }
}

async fn source_positions_commit_with_the_batch(store: Arc<dyn Store>) {
    assert!(store.source_positions("g", "t").await.unwrap().is_empty());
    let mut batch = batch_of(vec![prediction("dep", T0, 0.4)]);
    batch.positions = vec![pos(0, 0, 10), pos(3, 2, 7)];
    store.write(&batch).await.unwrap();
    let batch = WriteBatch { positions: vec![pos(0, 10, 25)], ..WriteBatch::new(T0) };
    store.write(&batch).await.unwrap();
    assert_eq!(store.source_positions("g", "t").await.unwrap(), BTreeMap::from([(0, 25), (3, 7)]));
    assert!(store.source_positions("other", "t").await.unwrap().is_empty());
}

async fn a_write_that_does_not_start_at_the_stored_position_fails_whole(store: Arc<dyn Store>) {
    store.write(&WriteBatch { positions: vec![pos(1, 0, 100)], ..WriteBatch::new(T0) }).await.unwrap();
    // A stalled consumer whose batch covers partition 1 from 40, and one that would jump past
    // stored messages (from 120): both are refused, and nothing of their batches is stored.
    for from in [40, 120] {
        let mut batch = batch_of(vec![prediction("dep", T0, 0.4)]);
        batch.dead_letters = vec![DeadLetter {
            received_at_ms: T0,
            source: "kafka:t/1@41".into(),
            reason: "bad".into(),
            raw: b"x".to_vec(),
            key: None,
        }];
        batch.positions = vec![pos(0, 0, 5), pos(1, from, 140)];
        match store.write(&batch).await {
            Err(driftline_store::Error::PositionMoved { partition, from: f, stored, .. }) => {
                assert_eq!((partition, f, stored), (1, from, Some(100)));
            }
            other => panic!("expected PositionMoved, got {other:?}"),
        }
    }
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.predictions, counts.dead_letters), (0, 0));
    assert_eq!(store.source_positions("g", "t").await.unwrap(), BTreeMap::from([(1, 100)]));
    // From exactly where it stands, it moves.
    store.write(&WriteBatch { positions: vec![pos(1, 100, 140)], ..WriteBatch::new(T0) }).await.unwrap();
    assert_eq!(store.source_positions("g", "t").await.unwrap(), BTreeMap::from([(1, 140)]));
}

async fn dead_letters_keep_raw_bytes(store: Arc<dyn Store>) {
    let raw = b"{\"v\":1,\"type\":\"prediction\"\xff\x00".to_vec();
    let letter = DeadLetter {
        received_at_ms: T0,
        source: "http:req-1#4".into(),
        reason: "field `event`: is not valid JSON".into(),
        raw: raw.clone(),
        key: Some(b"order-17".to_vec()),
    };
    let mut batch = batch_of(vec![prediction("dep", T0, 0.4)]);
    batch.dead_letters = vec![letter.clone()];
    let outcome = store.write(&batch).await.unwrap();
    assert_eq!((outcome.predictions, outcome.dead_letters), (1, 1));
    assert_eq!(store.dead_letters(10).await.unwrap(), vec![letter]);
    assert_eq!(store.counts().await.unwrap().dead_letters, 1);
}

async fn aggregates_are_read_by_deployment_and_window(store: Arc<dyn Store>) {
    let agg = |dep: &str, start: i64, source: &str| AggregateMetrics {
        model_deployment_crn: dep.into(),
        start_timestamp_ms: start,
        end_timestamp_ms: start + DAY,
        metrics: metrics(json!({"roc_auc": 0.91})),
        source: source.into(),
    };
    let batch = WriteBatch {
        aggregate_metrics: vec![agg("dep", T0 + DAY, "drift:daily"), agg("dep", T0, "user"), agg("other", T0, "user")],
        ..WriteBatch::new(T0)
    };
    assert_eq!(store.write(&batch).await.unwrap().aggregate_metrics, 3);
    let read: Vec<_> = store.aggregate_window("dep", everything()).try_collect().await.unwrap();
    assert_eq!(read.iter().map(|a| a.source.as_str()).collect::<Vec<_>>(), vec!["user", "drift:daily"]);
    assert_eq!(read[0].metrics["roc_auc"], json!(0.91));
    let read: Vec<_> =
        store.aggregate_window("dep", Window { start_ms: T0 + 1, end_ms: i64::MAX }).try_collect().await.unwrap();
    assert_eq!(read.len(), 1);
}

async fn any_day_old_or_new_is_accepted(store: Arc<dyn Store>) {
    let old = prediction("dep", 946_684_800_000, 0.1);
    let new = prediction("dep", 4_102_444_799_999, 0.2);
    let spread: Vec<Prediction> = (0..30).map(|d| prediction("dep", T0 + d * DAY, 0.3)).collect();
    let mut all = vec![old, new];
    all.extend(spread);
    assert_eq!(store.write(&batch_of(all)).await.unwrap().predictions, 32);
    assert_eq!(read_all(&*store, Selection::Deployment("dep".into()), everything()).await.len(), 32);
}

async fn reads_by_build_and_model_span_deployments(store: Arc<dyn Store>) {
    // A build served by two deployments, one of which later serves another build, and a model
    // over all of it; starts interleaved across the deployments.
    let on = |deployment: &str, build: &str, start: i64| Prediction {
        model_build_crn: build.into(),
        ..prediction(deployment, start, 0.5)
    };
    let mut written = vec![
        on("dep-1", "b1", T0 + 30),
        on("dep-2", "b1", T0 + 10),
        on("dep-1", "b2", T0 + 20),
        on("dep-2", "b1", T0 + 40),
        on("dep-1", "b1", T0 + 10),
    ];
    store.write(&batch_of(written.clone())).await.unwrap();
    // A retried UUID naming another model and build is not stored: it selects nothing.
    let retried = Prediction { model_crn: "crn:model/other".into(), ..on("dep-3", "b9", T0) };
    let retried = Prediction { uuid: written[0].uuid, ..retried };
    let outcome = store.write(&batch_of(vec![retried])).await.unwrap();
    assert_eq!(outcome.duplicates.len(), 1);
    written.sort_by_key(|p| (p.start_timestamp_ms, p.uuid.to_string()));

    let uuids = |read: Vec<ReadRecord>| read.iter().map(|r| r.uuid).collect::<Vec<_>>();
    let of =
        |keep: &dyn Fn(&Prediction) -> bool| written.iter().filter(|p| keep(p)).map(|p| p.uuid).collect::<Vec<_>>();
    let by_b1 = read_all(&*store, Selection::Build("b1".into()), everything()).await;
    assert_eq!(uuids(by_b1), of(&|p| p.model_build_crn == "b1"), "build b1, by start then UUID");
    let by_b2 = read_all(&*store, Selection::Build("b2".into()), everything()).await;
    assert_eq!(uuids(by_b2), of(&|p| p.model_build_crn == "b2"));
    let by_model = read_all(&*store, Selection::Model("crn:model/churn".into()), everything()).await;
    assert_eq!(uuids(by_model), of(&|_| true));
    let window = Window { start_ms: T0 + 10, end_ms: T0 + 30 };
    let by_model = read_all(&*store, Selection::Model("crn:model/churn".into()), window).await;
    assert_eq!(uuids(by_model), of(&|p| p.start_timestamp_ms < T0 + 30));
    for nothing in [Selection::Model("crn:model/other".into()), Selection::Build("b9".into())] {
        assert!(read_all(&*store, nothing, everything()).await.is_empty());
    }
}

async fn deployments_of_known_predictions(store: Arc<dyn Store>) {
    let p = prediction("dep-x", T0, 0.4);
    store.write(&batch_of(vec![p.clone()])).await.unwrap();
    let unknown = Uuid::new_v4();
    assert_eq!(store.deployments_of(&[p.uuid, unknown]).await.unwrap(), vec![(p.uuid, "dep-x".to_owned())]);
}

async fn keys_are_stored_hashed_and_revocable(store: Arc<dyn Store>) {
    let new = NewKey::generate("replica", Scope::Write, Some("dep".into()), T0);
    store.insert_key(&new.key, &new.hash).await.unwrap();
    let found: ApiKey = store.find_key(&new.hash).await.unwrap().expect("found by hash");
    assert_eq!(found, new.key);
    assert!(store.find_key(&new.secret).await.unwrap().is_none(), "the secret itself is not a lookup key");
    assert_eq!(store.list_keys().await.unwrap().len(), 1);
    assert!(store.revoke_key(&new.key.id).await.unwrap());
    assert!(!store.revoke_key(&new.key.id).await.unwrap(), "already revoked");
    assert!(store.find_key(&new.hash).await.unwrap().is_none());
    assert!(store.list_keys().await.unwrap()[0].revoked_at_ms.is_some());
}

async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    assert!(store.write(&WriteBatch::new(T0)).await.unwrap() == Default::default());
}

async fn a_probe_writes_nothing(store: Arc<dyn Store>) {
    let p = prediction("dep", T0, 0.4);
    let mut batch = batch_of(vec![p.clone()]);
    batch.delayed_metrics =
        vec![DelayedMetrics { uuid: p.uuid, timestamp_ms: T0, metrics: metrics(json!({"label": 1})) }];
    store.probe(&batch).await.unwrap();
    assert_eq!(store.counts().await.unwrap(), Default::default());
    // What a probe claimed is free for the real write.
    assert_eq!(store.write(&batch).await.unwrap().predictions, 1);
    // A refused event makes the probe fail as a data error, and leaves nothing behind.
    let mut bad = AggregateMetrics {
        model_deployment_crn: "dep".into(),
        start_timestamp_ms: T0,
        end_timestamp_ms: T0,
        metrics: MetricsJson::from(serde_json::Map::new()),
        source: "drift:a\u{0}b".into(),
    };
    let e = store.probe(&WriteBatch { aggregate_metrics: vec![bad.clone()], ..WriteBatch::new(T0) }).await.unwrap_err();
    assert!(e.is_data_error(), "{e}");
    bad.source = "drift:ab".into();
    store.probe(&WriteBatch { aggregate_metrics: vec![bad], ..WriteBatch::new(T0) }).await.unwrap();
    assert_eq!(store.counts().await.unwrap().aggregate_metrics, 0);
}

async fn text_a_backend_cannot_hold_is_a_data_error_on_both(store: Arc<dyn Store>) {
    let mut p = prediction("dep", T0, 0.4);
    p.model_crn = "crn:model/\u{0}".into();
    let e = store.write(&batch_of(vec![p])).await.unwrap_err();
    assert!(e.is_data_error(), "{e}");
    assert!(!e.is_timeout());
    assert_eq!(store.counts().await.unwrap().predictions, 0);
}

async fn delayed_metrics_of_a_scoped_key_join_only_its_deployment(store: Arc<dyn Store>) {
    let label =
        |uuid, value: i64| DelayedMetrics { uuid, timestamp_ms: T0 + 5, metrics: metrics(json!({"label": value})) };
    let scoped = |delayed: Vec<DelayedMetrics>, deployment: &str| WriteBatch {
        delayed_metrics: delayed,
        delayed_deployment: Some(deployment.into()),
        ..WriteBatch::new(T0)
    };
    // The label arrives first, from deployment B's key, for a prediction A has not sent yet.
    let a = prediction("dep-a", T0, 0.9);
    store.write(&scoped(vec![label(a.uuid, 1)], "dep-b")).await.unwrap();
    // A's own label with the same content and time is not taken for a repeat of B's.
    let own = store.write(&scoped(vec![label(a.uuid, 1)], "dep-a")).await.unwrap();
    assert_eq!(own.delayed_metrics, 1);
    store.write(&batch_of(vec![a.clone()])).await.unwrap();
    let read = read_all(&*store, Selection::Deployment("dep-a".into()), everything()).await;
    assert_eq!(read[0].metrics["label"], json!(1));
    // B's override of a label of A's, in either order, never shows on A's prediction; an
    // unscoped writer's (a Kafka producer's, an admin's) does.
    store.write(&scoped(vec![DelayedMetrics { timestamp_ms: T0 + 9, ..label(a.uuid, 0) }], "dep-b")).await.unwrap();
    let read = read_all(&*store, Selection::Deployment("dep-a".into()), everything()).await;
    assert_eq!(read[0].metrics["label"], json!(1));
    let unscoped = WriteBatch {
        delayed_metrics: vec![DelayedMetrics { timestamp_ms: T0 + 10, ..label(a.uuid, 7) }],
        ..WriteBatch::new(T0)
    };
    store.write(&unscoped).await.unwrap();
    let read = read_all(&*store, Selection::Deployment("dep-a".into()), everything()).await;
    assert_eq!(read[0].metrics["label"], json!(7));
}

async fn validated_negative_zero_reads_back_the_same(store: Arc<dyn Store>) {
    let event = json!({"v":1,"type":"prediction","uuid":Uuid::new_v4().to_string(),"model_crn":"m","model_build_crn":"b",
        "model_deployment_crn":"dz","start_timestamp_ms":T0,"end_timestamp_ms":T0,"metrics":{"x":-0.0,"y":[-0.0],"z":-2.5}});
    let Event::Prediction(p) = driftline_core::parse_event_value(event, &Default::default()).unwrap() else { panic!() };
    store.write(&batch_of(vec![p.clone()])).await.unwrap();
    let read = read_all(&*store, Selection::Deployment("dz".into()), everything()).await;
    assert_eq!(serde_json::to_string(&read[0].metrics).unwrap(), r#"{"x":0.0,"y":[0.0],"z":-2.5}"#);
}

fn governance_event(cluster: &str, subject: &str, n: i64) -> NewGovernanceEvent {
    NewGovernanceEvent {
        id: Uuid::new_v4(),
        kind: "metadata.updated".into(),
        subject: subject.into(),
        actor: "ana".into(),
        cluster: cluster.into(),
        time_ms: T0 + n,
        payload: format!("{{\"metadata\":{{\"n\":{n}}}}}"),
    }
}

/// Checks that the stored log is, per cluster, one unbroken chain numbered from 1.
async fn assert_whole_chains(store: &dyn Store) -> Vec<driftline_store::GovernanceEvent> {
    let log = store.governance_events(0, 10_000).await.unwrap();
    let mut heads: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for (i, e) in log.iter().enumerate() {
        if i > 0 {
            assert!(e.seq > log[i - 1].seq, "log order");
        }
        let (position, prev) = heads.get(&e.event.cluster).cloned().unwrap_or((0, GENESIS.to_string()));
        assert_eq!((e.cluster_seq, &e.prev_hash), (position + 1, &prev), "event {}", e.seq);
        assert_eq!(e.hash, chain_hash(&prev, &e.event));
        heads.insert(e.event.cluster.clone(), (e.cluster_seq, e.hash.clone()));
    }
    let stored_heads = store.governance_heads().await.unwrap();
    let expected: Vec<(String, i64, String)> = heads.into_iter().map(|(c, (p, h))| (c, p, h)).collect();
    assert_eq!(stored_heads, expected);
    log
}

async fn governance_events_chain_per_cluster_and_are_stored_once(store: Arc<dyn Store>) {
    assert!(store.governance_events(0, 10).await.unwrap().is_empty());
    let first = vec![
        governance_event("east", "crn:m1", 1),
        governance_event("west", "crn:m2", 2),
        governance_event("east", "crn:m1", 3),
    ];
    let appended = store.append_governance(&first).await.unwrap();
    assert!(appended.iter().all(|a| matches!(a, Appended::New { .. })), "{appended:?}");
    // A retry of an event (as a sync resends it) is not stored again; the rest are.
    let second = vec![first[1].clone(), governance_event("west", "crn:m2", 4), first[0].clone()];
    let appended = store.append_governance(&second).await.unwrap();
    assert!(matches!(appended[..], [Appended::Duplicate, Appended::New { .. }, Appended::Duplicate]), "{appended:?}");
    let log = assert_whole_chains(&*store).await;
    let ids: Vec<Uuid> = log.iter().map(|e| e.event.id).collect();
    assert_eq!(ids, [first[0].id, first[1].id, first[2].id, second[1].id]);
    assert_eq!(log[3].event, second[1]);
    assert_eq!(log.iter().map(|e| e.cluster_seq).collect::<Vec<_>>(), [1, 1, 2, 2]);
    // Pages after a position.
    let page = store.governance_events(log[1].seq, 1).await.unwrap();
    assert_eq!(page, vec![log[2].clone()]);
    assert!(store.governance_events(log[3].seq, 5).await.unwrap().is_empty());
}

async fn concurrent_governance_appends_keep_one_chain(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..6)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..5 {
                    let batch = vec![governance_event("east", "crn:m", t * 10 + i)];
                    store.append_governance(&batch).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let log = assert_whole_chains(&*store).await;
    assert_eq!(log.len(), 30);
}

async fn sync_cursors_and_remote_clusters_are_kept(store: Arc<dyn Store>) {
    assert_eq!(store.sync_cursor("governance http://a").await.unwrap(), None);
    store.set_sync_cursor("governance http://a", 7, 100).await.unwrap();
    store.set_sync_cursor("governance http://b", 3, 100).await.unwrap();
    store.set_sync_cursor("governance http://a", 12, 200).await.unwrap();
    assert_eq!(store.sync_cursor("governance http://a").await.unwrap(), Some(12));
    assert_eq!(store.sync_cursor("governance http://b").await.unwrap(), Some(3));

    assert!(store.remotes().await.unwrap().is_empty());
    let east = driftline_store::RemoteSync {
        cluster: "east".into(),
        remote_seq: 40,
        pending: 5,
        oldest_pending_ms: Some(1_000),
        last_event_ms: Some(900),
        contacted_at_ms: 2_000,
    };
    store.record_remote(&east).await.unwrap();
    // A retried earlier batch moves neither the position nor what is pending back, and says
    // nothing of the newest event when it brought none.
    let retried = driftline_store::RemoteSync {
        remote_seq: 30,
        pending: 0,
        oldest_pending_ms: None,
        last_event_ms: None,
        contacted_at_ms: 3_000,
        ..east.clone()
    };
    store.record_remote(&retried).await.unwrap();
    let west = driftline_store::RemoteSync { cluster: "west".into(), remote_seq: 1, ..east.clone() };
    store.record_remote(&west).await.unwrap();
    let remotes = store.remotes().await.unwrap();
    assert_eq!(remotes.len(), 2);
    assert_eq!(
        remotes[0],
        driftline_store::RemoteSync {
            cluster: "east".into(),
            remote_seq: 40,
            pending: 5,
            oldest_pending_ms: Some(1_000),
            last_event_ms: Some(900),
            contacted_at_ms: 3_000,
        }
    );
    // A later batch moves all of it.
    let caught_up =
        driftline_store::RemoteSync { remote_seq: 45, pending: 0, oldest_pending_ms: None, ..retried.clone() };
    store.record_remote(&caught_up).await.unwrap();
    assert_eq!(
        store.remotes().await.unwrap()[0],
        driftline_store::RemoteSync { last_event_ms: Some(900), ..caught_up }
    );
    assert_eq!(remotes[1], west);

    // Sync runs: kept with their counts, read back newest first by name prefix.
    let run = |name: &str, created: i64| driftline_store::SyncRun {
        id: 0,
        name: name.into(),
        started_at_ms: 10,
        finished_at_ms: 20,
        created,
        updated: 1,
        skipped: 2,
        failed: 3,
        detail: "{\"items\":[]}".into(),
    };
    let first = store.record_sync_run(&run("mlflow http://a", 5)).await.unwrap();
    store.record_sync_run(&run("other", 6)).await.unwrap();
    let third = store.record_sync_run(&run("mlflow http://b", 7)).await.unwrap();
    assert!(third > first);
    let runs = store.sync_runs("mlflow ", 10).await.unwrap();
    assert_eq!(runs.iter().map(|r| (r.id, r.created)).collect::<Vec<_>>(), [(third, 7), (first, 5)]);
    assert_eq!(runs[1], driftline_store::SyncRun { id: first, ..run("mlflow http://a", 5) });
    assert_eq!(store.sync_runs("mlflow ", 1).await.unwrap().len(), 1);
}

async fn deployments_seen_in_predictions(store: Arc<dyn Store>) {
    store.write(&batch_of(vec![prediction("dep-b", T0 + 5, 0.1), prediction("dep-a", T0, 0.2)])).await.unwrap();
    store.write(&batch_of(vec![prediction("dep-a", T0 - DAY, 0.3)])).await.unwrap();
    let seen = store.seen_deployments().await.unwrap();
    let triples: Vec<(&str, &str, &str)> =
        seen.iter().map(|s| (s.model.as_str(), s.build.as_str(), s.deployment.as_str())).collect();
    assert_eq!(
        triples,
        [("crn:model/churn", "crn:build/dep-a", "dep-a"), ("crn:model/churn", "crn:build/dep-b", "dep-b")]
    );
    assert!(seen.iter().all(|s: &SeenDeployment| s.first_seen_ms > 0));
    assert_eq!(store.last_prediction_ms("dep-a").await.unwrap(), Some(T0));
    assert_eq!(store.last_prediction_ms("dep-b").await.unwrap(), Some(T0 + 5));
    assert_eq!(store.last_prediction_ms("dep-none").await.unwrap(), None);
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::SqliteStore::open(&dir.path().join("t.sqlite")).await.unwrap();
                    super::$name(std::sync::Arc::new(store)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = super::TestDatabase::create().await else { return };
                    let store = super::PostgresStore::connect(&db.url).await.unwrap();
                    super::$name(std::sync::Arc::new(store)).await;
                }
            )*
        }
    };
}

conformance!(
    writes_and_reads_back_with_delayed_metrics_merged,
    several_delayed_metrics_per_prediction_merge_in_time_order,
    predictions_are_idempotent_on_uuid,
    retried_metrics_are_stored_once,
    awkward_text_round_trips,
    source_positions_commit_with_the_batch,
    a_write_that_does_not_start_at_the_stored_position_fails_whole,
    dead_letters_keep_raw_bytes,
    aggregates_are_read_by_deployment_and_window,
    any_day_old_or_new_is_accepted,
    deployments_of_known_predictions,
    reads_by_build_and_model_span_deployments,
    keys_are_stored_hashed_and_revocable,
    ping_answers,
    a_probe_writes_nothing,
    text_a_backend_cannot_hold_is_a_data_error_on_both,
    delayed_metrics_of_a_scoped_key_join_only_its_deployment,
    validated_negative_zero_reads_back_the_same,
    governance_events_chain_per_cluster_and_are_stored_once,
    concurrent_governance_appends_keep_one_chain,
    deployments_seen_in_predictions,
    sync_cursors_and_remote_clusters_are_kept,
);

/// The governance log refuses edits and removals in the database itself (the chain check
/// would find them; this stops them first).
#[tokio::test]
async fn governance_events_are_append_only_in_both_databases() {
    fn refused<T: std::fmt::Debug>(result: Result<T, sqlx::Error>) {
        let message = result.expect_err("refused").to_string();
        assert!(message.contains("governance_events is append-only"), "{message}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sqlite");
    let store = SqliteStore::open(&path).await.unwrap();
    store.append_governance(&[governance_event("east", "crn:m", 1)]).await.unwrap();
    store.close().await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    for statement in ["UPDATE governance_events SET actor = 'eve'", "DELETE FROM governance_events"] {
        refused(sqlx::query(statement).execute(&pool).await);
    }
    let Some(db) = TestDatabase::create().await else { return };
    let store = PostgresStore::connect(&db.url).await.unwrap();
    store.append_governance(&[governance_event("east", "crn:m", 1)]).await.unwrap();
    for statement in ["UPDATE governance_events SET actor = 'eve'", "DELETE FROM governance_events"] {
        refused(sqlx::query(statement).execute(store.pool()).await);
    }
}

#[tokio::test]
async fn postgres_makes_day_partitions_ahead_and_never_in_a_write() {
    let Some(db) = TestDatabase::create().await else { return };
    let store = PostgresStore::connect(&db.url).await.unwrap();
    let today = driftline_core::time::day_of(driftline_core::time::now_ms());
    let ahead: Vec<String> =
        (today - 1..=today + 7).map(driftline_store::postgres::partitions::partition_name).collect();
    assert_eq!(store.partitions().await.unwrap(), ahead, "yesterday to 7 days ahead, made when the store opens");
    // Days far outside that range go to the default partition; no write makes a partition.
    store.write(&batch_of(vec![prediction("d", T0, 0.1), prediction("d", T0 + 3 * DAY, 0.1)])).await.unwrap();
    assert_eq!(store.partitions().await.unwrap(), ahead);
    let in_default: i64 =
        sqlx::query_scalar("SELECT count(*) FROM predictions_default").fetch_one(store.pool()).await.unwrap();
    assert_eq!(in_default, 2);
    assert_eq!(read_all(&store, Selection::Deployment("d".into()), everything()).await.len(), 2);
    // A second store on the same database (another process) finds nothing to make.
    let again = PostgresStore::connect(&db.url).await.unwrap();
    assert_eq!(again.make_partitions().await.unwrap(), 0);
}

#[tokio::test]
async fn postgres_a_batch_over_3000_days_is_one_ordinary_write() {
    let Some(db) = TestDatabase::create().await else { return };
    let store = PostgresStore::connect(&db.url).await.unwrap();
    let days: Vec<Prediction> = (0..3_000).map(|d| prediction("d", T0 - d * DAY, 0.1)).collect();
    let done = tokio::time::timeout(std::time::Duration::from_secs(120), store.write(&batch_of(days))).await;
    assert_eq!(done.expect("bounded").unwrap().predictions, 3_000);
    // The very next write is served as usual.
    assert_eq!(store.write(&batch_of(vec![prediction("d", T0, 0.2)])).await.unwrap().predictions, 1);
}

#[tokio::test]
async fn postgres_a_long_read_does_not_stop_writes_while_a_day_is_attached() {
    let Some(db) = TestDatabase::create().await else { return };
    let store = PostgresStore::connect(&db.url).await.unwrap();
    let today = driftline_core::time::day_of(driftline_core::time::now_ms());
    store.write(&batch_of(vec![prediction("d", today * DAY + 1, 0.1)])).await.unwrap();
    // A reader holding a snapshot of predictions (every partition, default included), open for
    // the whole test, as a slow read_metrics would.
    let mut reader = store.pool().begin().await.unwrap();
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *reader).await.unwrap();
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM predictions").fetch_one(&mut *reader).await.unwrap();
    assert_eq!(seen, 1);
    // The day after the partitioned range is due: the task attaches it (or, if the reader's
    // locks are in the way, gives up after its short lock timeout and tries later).
    let next = today + 8;
    let attach = tokio::spawn({
        let url = db.url.clone();
        async move {
            let options = driftline_store::StoreOptions { partition_days_ahead: 8, ..Default::default() };
            PostgresStore::connect_with(&url, options).await.map(|_| ())
        }
    });
    // Meanwhile writes of today, and of the day being attached, go through in bounded time.
    for day in [today, next] {
        let batch = batch_of(vec![prediction("d", day * DAY + 5, 0.3)]);
        let done = tokio::time::timeout(std::time::Duration::from_secs(20), store.write(&batch)).await;
        assert_eq!(done.expect("a write waited behind the partition task").unwrap().predictions, 1);
    }
    attach.await.unwrap().unwrap();
    reader.rollback().await.unwrap();
    assert_eq!(read_all(&store, Selection::Deployment("d".into()), everything()).await.len(), 3);
    // Once the reader is gone the day is attached, and its early row moves into it.
    let store8 = PostgresStore::connect_with(
        &db.url,
        driftline_store::StoreOptions { partition_days_ahead: 8, ..Default::default() },
    )
    .await
    .unwrap();
    assert!(store8.partitions().await.unwrap().contains(&driftline_store::postgres::partitions::partition_name(next)));
    assert_eq!(read_all(&store8, Selection::Deployment("d".into()), everything()).await.len(), 3);
}

#[tokio::test]
async fn postgres_overlapping_concurrent_batches_do_not_deadlock() {
    use rand::seq::SliceRandom;
    let Some(db) = TestDatabase::create().await else { return };
    let store = Arc::new(PostgresStore::connect(&db.url).await.unwrap());
    let mut rng = rand::rng();
    for round in 0..5 {
        // Two writers with the same 2,000 predictions and labels, each in its own shuffled order.
        let shared: Vec<Prediction> = (0..2_000).map(|i| prediction("d", T0 + i, 0.5)).collect();
        let labels: Vec<DelayedMetrics> = shared
            .iter()
            .map(|p| DelayedMetrics { uuid: p.uuid, timestamp_ms: T0, metrics: metrics(json!({"label": round})) })
            .collect();
        let mut writes = Vec::new();
        for _ in 0..2 {
            let (mut p, mut l) = (shared.clone(), labels.clone());
            p.shuffle(&mut rng);
            l.shuffle(&mut rng);
            let store = store.clone();
            writes.push(tokio::spawn(async move {
                store.write(&WriteBatch { predictions: p, delayed_metrics: l, ..WriteBatch::new(T0) }).await
            }));
        }
        let mut stored = 0;
        for w in writes {
            let outcome = w.await.unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
            stored += outcome.predictions;
        }
        assert_eq!(stored, 2_000, "round {round}: each prediction stored once");
    }
}

#[tokio::test]
async fn postgres_connections_carry_statement_and_lock_timeouts() {
    let Some(db) = TestDatabase::create().await else { return };
    let options = driftline_store::StoreOptions {
        statement_timeout: std::time::Duration::from_millis(1_500),
        lock_timeout: std::time::Duration::from_millis(700),
        ..Default::default()
    };
    let store = PostgresStore::connect_with(&db.url, options).await.unwrap();
    let (statement, lock): (String, String) =
        sqlx::query_as("SELECT current_setting('statement_timeout'), current_setting('lock_timeout')")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!((statement.as_str(), lock.as_str()), ("1500ms", "700ms"));
    let e = sqlx::query("SELECT pg_sleep(5)").execute(store.pool()).await.unwrap_err();
    assert_eq!(e.as_database_error().and_then(|d| d.code()).as_deref(), Some("57014"));
}

/// The fallback used when no server is configured or running: a cluster of our own from the
/// installed binaries, which serves a store and is gone afterwards.
#[tokio::test]
async fn a_throwaway_cluster_serves_the_store() {
    let Some(db) = TestDatabase::throwaway().await else { return };
    let store = PostgresStore::connect(&db.url).await.unwrap();
    assert_eq!(store.write(&batch_of(vec![prediction("d", T0, 0.1)])).await.unwrap().predictions, 1);
    store.close().await;
    let port: u16 = db.url.rsplit(':').next().unwrap().split('/').next().unwrap().parse().unwrap();
    drop(db);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the cluster stopped with the test");
}
