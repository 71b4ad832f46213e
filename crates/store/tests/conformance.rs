//! One conformance suite, run unchanged against both backends.

use std::sync::Arc;

use driftline_core::{AggregateMetrics, DelayedMetrics, Metrics, Prediction};
use driftline_store::postgres::PostgresStore;
use driftline_store::sqlite::SqliteStore;
use driftline_store::testing::TestDatabase;
use driftline_store::{
    ApiKey, DeadLetter, NewKey, ReadRecord, Scope, Selection, SourcePosition, Store, Window, WriteBatch,
};
use futures::TryStreamExt;
use serde_json::json;
use uuid::Uuid;

const T0: i64 = 1_700_000_000_000;
const DAY: i64 = 86_400_000;

fn metrics(value: serde_json::Value) -> Metrics {
    value.as_object().expect("object").clone()
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
    assert_eq!(read[0].metrics, b.metrics, "no delayed metrics: unchanged");
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
    assert_eq!(original.metrics, first[0].metrics, "the first write is kept");

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
    assert_eq!(read[0].metrics, x.metrics, "the first of the batch is kept");
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
    assert_eq!((read[0].model_crn.as_str(), &read[0].metrics), (p.model_crn.as_str(), &p.metrics));
}

async fn source_positions_commit_with_the_batch(store: Arc<dyn Store>) {
    assert!(store.source_positions("g", "t").await.unwrap().is_empty());
    let pos = |partition, previous, next_offset| SourcePosition {
        group: "g".into(),
        topic: "t".into(),
        partition,
        next_offset,
        previous,
    };
    let mut batch = batch_of(vec![prediction("dep", T0, 0.4)]);
    batch.positions = vec![pos(0, None, 10), pos(3, None, 7)];
    store.write(&batch).await.unwrap();
    let batch = WriteBatch { positions: vec![pos(0, Some(10), 25)], ..WriteBatch::new(T0) };
    store.write(&batch).await.unwrap();
    assert_eq!(store.source_positions("g", "t").await.unwrap(), vec![pos(0, Some(25), 25), pos(3, Some(7), 7)]);
    assert!(store.source_positions("other", "t").await.unwrap().is_empty());
}

async fn a_moved_position_fails_the_whole_batch(store: Arc<dyn Store>) {
    let pos = |partition, previous, next_offset| SourcePosition {
        group: "g".into(),
        topic: "t".into(),
        partition,
        next_offset,
        previous,
    };
    store.write(&WriteBatch { positions: vec![pos(1, None, 100)], ..WriteBatch::new(T0) }).await.unwrap();
    // A stalled consumer that still believes partition 1 is at 40, and one that believes it has
    // no position yet: both are refused, and nothing of their batches is stored.
    for stale in [Some(40), None] {
        let mut batch = batch_of(vec![prediction("dep", T0, 0.4)]);
        batch.dead_letters = vec![DeadLetter {
            received_at_ms: T0,
            source: "kafka:t/1@41".into(),
            reason: "bad".into(),
            raw: b"x".to_vec(),
            key: None,
        }];
        batch.positions = vec![pos(0, None, 5), pos(1, stale, 140)];
        match store.write(&batch).await {
            Err(driftline_store::Error::PositionMoved { partition, expected, stored, .. }) => {
                assert_eq!((partition, expected, stored), (1, stale, Some(100)));
            }
            other => panic!("expected PositionMoved, got {other:?}"),
        }
    }
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.predictions, counts.dead_letters), (0, 0));
    assert_eq!(store.source_positions("g", "t").await.unwrap(), vec![pos(1, Some(100), 100)]);
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
    let read = store.aggregate_metrics("dep", everything()).await.unwrap();
    assert_eq!(read.iter().map(|a| a.source.as_str()).collect::<Vec<_>>(), vec!["user", "drift:daily"]);
    assert_eq!(read[0].metrics["roc_auc"], json!(0.91));
    let read = store.aggregate_metrics("dep", Window { start_ms: T0 + 1, end_ms: i64::MAX }).await.unwrap();
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
    predictions_are_idempotent_on_uuid,
    retried_metrics_are_stored_once,
    awkward_text_round_trips,
    source_positions_commit_with_the_batch,
    a_moved_position_fails_the_whole_batch,
    dead_letters_keep_raw_bytes,
    aggregates_are_read_by_deployment_and_window,
    any_day_old_or_new_is_accepted,
    deployments_of_known_predictions,
    keys_are_stored_hashed_and_revocable,
    ping_answers,
);

#[tokio::test]
async fn postgres_creates_day_partitions_on_demand() {
    let Some(db) = TestDatabase::create().await else { return };
    let store = PostgresStore::connect(&db.url).await.unwrap();
    store.write(&batch_of(vec![prediction("d", T0, 0.1), prediction("d", T0 + 3 * DAY, 0.1)])).await.unwrap();
    assert_eq!(store.partitions().await.unwrap(), vec!["predictions_p20231114", "predictions_p20231117"]);
    // A second store on the same database (another process) creates the same day without error.
    let again = PostgresStore::connect(&db.url).await.unwrap();
    again.write(&batch_of(vec![prediction("d", T0 + 1, 0.1)])).await.unwrap();
    assert_eq!(store.partitions().await.unwrap().len(), 2);
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
