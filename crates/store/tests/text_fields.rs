//! Every text field of every event type, against what each backend can hold: for generated
//! strings (control characters, NUL, quotes, backslashes, any Unicode), whatever validation
//! accepts, both backends store without error and read back unchanged. So no text field can let
//! an event through validation that the store then refuses.

use std::sync::Arc;

use driftline_core::{parse_event, Event, Limits};
use driftline_store::postgres::PostgresStore;
use driftline_store::sqlite::SqliteStore;
use driftline_store::{Selection, Store, Window, WriteBatch};
use driftline_testkit::TestDatabase;
use futures::TryStreamExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

const T0: i64 = 1_700_000_000_000;

/// Strings as producers send them, and as an attacker would.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z:/\\-]{1,12}",
        "[\\x00-\\x1f\"\\\\' ]{0,6}",
        "[a-z]{0,4}\\x00[a-z]{0,4}",
        "[\\u{80}-\\u{10ffff}]{0,6}",
    ]
}

/// The text fields of one case: CRNs, a job name, metric keys and values at two levels.
#[derive(Debug, Clone)]
struct Case {
    model: String,
    build: String,
    deployment: String,
    job: String,
    key: String,
    value: String,
    nested_key: String,
    nested_value: String,
    label_key: String,
    label_value: String,
}

fn case() -> impl Strategy<Value = Case> {
    (text(), text(), text(), text(), text(), text(), text(), text(), text(), text()).prop_map(
        |(model, build, deployment, job, key, value, nested_key, nested_value, label_key, label_value)| Case {
            model,
            build,
            deployment,
            job,
            key,
            value,
            nested_key,
            nested_value,
            label_key,
            label_value,
        },
    )
}

/// Validates the case's four events, writes what validation accepts, and reads it back.
async fn check(store: &dyn Store, n: usize, c: Case) -> Result<(), TestCaseError> {
    let uuid = uuid::Uuid::new_v4();
    // A prefix keeps the cases apart in one store; the generated text follows it.
    let deployment = format!("case{n}:{}", c.deployment);
    let prediction = json!({"v":1,"type":"prediction","uuid":uuid.to_string(),"model_crn":c.model,"model_build_crn":c.build,
        "model_deployment_crn":deployment,"start_timestamp_ms":T0,"end_timestamp_ms":T0,
        "metrics":{c.key.clone(): c.value, "nested": {c.nested_key.clone(): [c.nested_value]}}});
    let delayed = json!({"v":1,"type":"delayed_metrics","uuid":uuid.to_string(),"timestamp_ms":T0,
        "metrics":{c.label_key.clone(): c.label_value}});
    let aggregate = json!({"v":1,"type":"aggregate_metrics","model_deployment_crn":deployment,"start_timestamp_ms":T0,
        "end_timestamp_ms":T0,"metrics":{c.key.clone(): 1},"source":format!("drift:{}", c.job)});
    let replica = json!({"v":1,"type":"replica_stats","model_deployment_crn":deployment,"replica_id":c.job,
        "timestamp_ms":T0,"cpu_percent":12.5,"memory_bytes":1024});
    let limits = Limits::default();
    let mut batch = WriteBatch::new(T0);
    let mut accepted = Vec::new();
    for event in [prediction, delayed, aggregate, replica] {
        // As HTTP and Kafka read events: from their bytes, in one pass.
        if let Ok(e) = parse_event(&serde_json::to_vec(&event).unwrap(), &limits) {
            accepted.push(e.clone());
            batch.push(e);
        }
    }
    if let Err(e) = store.write(&batch).await {
        return Err(TestCaseError::fail(format!("validation accepted what the store refused: {e}; {accepted:?}")));
    }
    for event in &accepted {
        match event {
            Event::Prediction(p) => {
                let read: Vec<_> = store
                    .read_window(
                        Selection::Deployment(p.model_deployment_crn.clone()),
                        Window { start_ms: 0, end_ms: i64::MAX },
                    )
                    .try_collect()
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(read.len(), 1);
                prop_assert_eq!(&read[0].model_crn, &p.model_crn);
                prop_assert_eq!(&read[0].model_build_crn, &p.model_build_crn);
                let mut expected = p.metrics.to_map();
                if let Some(Event::DelayedMetrics(d)) = accepted.iter().find(|e| matches!(e, Event::DelayedMetrics(_)))
                {
                    expected.extend(d.metrics.to_map());
                }
                prop_assert_eq!(Value::Object(read[0].metrics.clone()), Value::Object(expected));
            }
            Event::AggregateMetrics(a) => {
                let read: Vec<_> = store
                    .aggregate_window(&a.model_deployment_crn, Window { start_ms: 0, end_ms: i64::MAX })
                    .try_collect()
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(read.len(), 1);
                prop_assert_eq!(&read[0].source, &a.source);
                prop_assert_eq!(&read[0].metrics, &a.metrics.to_map());
            }
            Event::ReplicaStats(r) => {
                let read = store
                    .replica_source(&r.model_deployment_crn, Window { start_ms: 0, end_ms: i64::MAX })
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(read.len(), 1);
                prop_assert_eq!(&read[0].replica_id, &r.replica_id);
            }
            Event::DelayedMetrics(_) => {}
        }
    }
    Ok(())
}

fn run_against(store: Arc<dyn Store>, runtime: &tokio::runtime::Runtime) {
    let mut runner = TestRunner::new(Config { cases: 96, failure_persistence: None, ..Config::default() });
    let counter = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&case(), |c| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            runtime.block_on(check(&*store, n, c))
        })
        .unwrap();
}

#[test]
fn sqlite_holds_every_text_that_validation_accepts() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = runtime.block_on(SqliteStore::open(&dir.path().join("t.sqlite"))).unwrap();
    run_against(Arc::new(store), &runtime);
}

#[test]
fn postgres_holds_every_text_that_validation_accepts() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = runtime.block_on(TestDatabase::create()) else { return };
    let store = runtime.block_on(PostgresStore::connect(&db.url)).unwrap();
    run_against(Arc::new(store), &runtime);
}
