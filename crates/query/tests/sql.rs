//! SQL over the store, on SQLite and on a fresh Postgres database: the tables and their
//! semantics (labelled predictions are exactly what `read_metrics` answers), the JSON functions,
//! the filters the store applies (shown by EXPLAIN), read-only planning, deployment scope that
//! no join, subquery or union escapes, and the limits on rows, time and memory.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::util::pretty::pretty_format_batches;
use driftline_core::{AggregateMetrics, DelayedMetrics, MetricsJson, Prediction};
use driftline_query::sql::{self, SqlError, SqlLimits};
use driftline_query::window::{encode_window, read_window};
use driftline_query::{Encoding, ReadRequest};
use driftline_store::postgres::PostgresStore;
use driftline_store::sqlite::SqliteStore;
use driftline_store::{DeadLetter, Selection, Store, Window, WriteBatch};
use driftline_testkit::TestDatabase;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use uuid::Uuid;

const T0: i64 = 1_793_491_200_000;

fn metrics(value: serde_json::Value) -> MetricsJson {
    value.as_object().expect("object").clone().into()
}

/// 300 predictions of deployment `a` and 200 of `b`; labels for every third (some sent with
/// the deployment named, some without, one corrected later); an aggregate event each, and a
/// dead letter of `b`'s.
async fn load(store: &dyn Store) -> Vec<Prediction> {
    let mut batch = WriteBatch::new(T0);
    let mut named: Vec<WriteBatch> = ["a", "b"]
        .iter()
        .map(|d| WriteBatch { delayed_deployment: Some(d.to_string()), ..WriteBatch::new(T0) })
        .collect();
    for i in 0..500i64 {
        let deployment = if i < 300 { "a" } else { "b" };
        let plan = if i % 3 == 0 { "pro" } else { "basic" };
        let p = Prediction {
            uuid: Uuid::new_v4(),
            model_crn: "crn:model".into(),
            model_build_crn: format!("crn:build/{}", i % 2),
            model_deployment_crn: deployment.into(),
            start_timestamp_ms: T0 + i * 1_000,
            end_timestamp_ms: T0 + i * 1_000 + 7,
            metrics: metrics(json!({"input": {"tenure": i % 40, "plan": plan}, "prediction": (i % 10) as f64 / 10.0})),
        };
        if i % 3 == 0 {
            let label =
                DelayedMetrics { uuid: p.uuid, timestamp_ms: T0 + 10_000_000, metrics: metrics(json!({"label": 0})) };
            if i % 2 == 0 {
                named[usize::from(i >= 300)].delayed_metrics.push(label);
            } else {
                batch.delayed_metrics.push(label);
            }
            if i % 9 == 0 {
                batch.delayed_metrics.push(DelayedMetrics {
                    uuid: p.uuid,
                    timestamp_ms: T0 + 20_000_000,
                    metrics: metrics(json!({"label": 1, "note": "fixed"})),
                });
            }
        }
        batch.predictions.push(p);
    }
    for d in ["a", "b"] {
        batch.aggregate_metrics.push(AggregateMetrics {
            model_deployment_crn: d.into(),
            start_timestamp_ms: T0,
            end_timestamp_ms: T0 + 86_400_000,
            metrics: metrics(json!({"accuracy": 0.9})),
            source: "user".into(),
        });
    }
    batch.dead_letters.push(DeadLetter {
        received_at_ms: T0,
        source: "http:test#0".into(),
        reason: "field `metrics`: missing".into(),
        raw: br#"{"model_deployment_crn":"b"}"#.to_vec(),
        key: None,
    });
    store.write(&batch).await.expect("write");
    for b in named {
        store.write(&b).await.expect("write");
    }
    batch.predictions
}

async fn query(store: &Arc<dyn Store>, scope: Option<&str>, sql_text: &str) -> Result<Vec<RecordBatch>, SqlError> {
    query_with(store, scope, sql_text, &SqlLimits::default()).await
}

async fn query_with(
    store: &Arc<dyn Store>,
    scope: Option<&str>,
    sql_text: &str,
    limits: &SqlLimits,
) -> Result<Vec<RecordBatch>, SqlError> {
    let ctx = sql::session(store.clone(), scope.map(str::to_owned), limits)?;
    let answer = sql::run(&ctx, sql_text, limits).await?;
    answer.batches.try_collect().await
}

fn ints(batches: &[RecordBatch], column: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column(column).as_any().downcast_ref::<Int64Array>().expect("int64").clone();
            (0..a.len()).map(move |i| a.value(i))
        })
        .collect()
}

fn texts(batches: &[RecordBatch], column: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column(column).as_any().downcast_ref::<StringArray>().expect("utf8").clone();
            (0..a.len()).map(move |i| a.value(i).to_string())
        })
        .collect()
}

async fn one_int(store: &Arc<dyn Store>, scope: Option<&str>, sql_text: &str) -> i64 {
    let batches = query(store, scope, sql_text).await.unwrap_or_else(|e| panic!("{sql_text}: {e}"));
    ints(&batches, 0)[0]
}

async fn tables_read_like_the_store(store: Arc<dyn Store>) {
    let predictions = load(store.as_ref()).await;
    assert_eq!(one_int(&store, None, "SELECT count(*) FROM predictions").await, 500);
    assert_eq!(one_int(&store, None, "SELECT count(*) FROM delayed_metrics").await, 167 + 56);
    assert_eq!(one_int(&store, None, "SELECT count(*) FROM aggregate_metrics").await, 2);
    assert_eq!(one_int(&store, None, "SELECT count(*) FROM dead_letters").await, 1);

    // Labelled predictions are read_metrics' answer: metrics with delayed metrics merged in.
    let window = Window { start_ms: T0, end_ms: T0 + 1_000_000 };
    let expected: Vec<(String, String)> = store
        .read_window(Selection::Deployment("a".into()), window)
        .map(|r| r.unwrap())
        .map(|r| (r.uuid.to_string(), serde_json::Value::Object(r.metrics).to_string()))
        .collect()
        .await;
    let got = query(
        &store,
        None,
        "SELECT uuid, metrics FROM labelled_predictions WHERE model_deployment_crn = 'a' ORDER BY start_timestamp_ms, uuid",
    )
    .await
    .unwrap();
    let got: Vec<(String, String)> = texts(&got, 0).into_iter().zip(texts(&got, 1)).collect();
    assert_eq!(got.len(), 300);
    assert_eq!(got, expected);
    assert!(got[0].1.contains(r#""label":1"#) && got[0].1.contains(r#""note":"fixed""#), "{}", got[0].1);

    // JSON functions, on both backends the same numbers.
    let batches = query(
        &store,
        None,
        "SELECT model_deployment_crn, avg(json_get_float(metrics, 'input', 'tenure')) AS tenure, \
         count(*) FILTER (WHERE json_get_str(metrics, 'input', 'plan') = 'pro') AS pro, \
         sum(json_get_int(metrics, 'label')) AS positives \
         FROM labelled_predictions GROUP BY 1 ORDER BY 1",
    )
    .await
    .unwrap();
    let tenure = batches[0].column(1).as_any().downcast_ref::<Float64Array>().unwrap().clone();
    let mean = |range: std::ops::Range<i64>| range.clone().map(|i| (i % 40) as f64).sum::<f64>() / range.count() as f64;
    assert!((tenure.value(0) - mean(0..300)).abs() < 1e-9 && (tenure.value(1) - mean(300..500)).abs() < 1e-9);
    assert_eq!(ints(&batches, 2), [100, 67]);
    assert_eq!(ints(&batches, 3), [34, 22]);
    let labelled = predictions.iter().filter(|p| p.model_deployment_crn == "a").count();
    assert_eq!(labelled, 300);

    // The filters on CRNs and times are the store's, as EXPLAIN shows.
    let plan = query(
        &store,
        None,
        &format!(
            "EXPLAIN SELECT count(*) FROM predictions WHERE model_deployment_crn = 'a' AND start_timestamp_ms >= {} \
             AND json_get_str(metrics, 'input', 'plan') = 'pro'",
            T0 + 100_000
        ),
    )
    .await
    .unwrap();
    let plan = pretty_format_batches(&plan).unwrap().to_string();
    assert!(
        plan.contains("WHERE t.model_deployment_crn = ") && plan.contains("AND t.start_timestamp_ms >= "),
        "{plan}"
    );
    // So is the typed JSON filter, and with it the count: the store sends one row.
    assert!(plan.contains("jsonb_typeof(t.metrics -> ") || plan.contains("json_type(t.metrics, "), "{plan}");
    assert!(plan.contains("SELECT count(*) FROM predictions t WHERE"), "{plan}");
    assert_eq!(
        one_int(
            &store,
            None,
            &format!(
                "SELECT count(*) FROM predictions WHERE model_deployment_crn = 'a' AND start_timestamp_ms >= {} \
                 AND json_get_str(metrics, 'input', 'plan') = 'pro'",
                T0 + 100_000
            )
        )
        .await,
        66
    );
    // A limit goes to the store when every filter does.
    let plan =
        query(&store, None, "EXPLAIN SELECT uuid FROM predictions WHERE model_build_crn IN ('crn:build/1') LIMIT 3")
            .await
            .unwrap();
    let plan = pretty_format_batches(&plan).unwrap().to_string();
    assert!(plan.contains("LIMIT 3") && plan.contains("t.model_build_crn = "), "{plan}");

    // Rollup tables are there (empty until the worker runs).
    assert_eq!(one_int(&store, None, "SELECT count(*) FROM rollups_1h").await, 0);
}

async fn reads_only(store: Arc<dyn Store>) {
    load(store.as_ref()).await;
    for statement in [
        "DROP TABLE predictions",
        "DELETE FROM predictions",
        "INSERT INTO predictions SELECT * FROM predictions",
        "CREATE TABLE x AS SELECT 1",
        "SET datafusion.execution.batch_size = 1",
        "COPY predictions TO '/tmp/x.csv'",
        "SELECT 1; SELECT 2",
        "SELECT * FROM nowhere",
        "SELEC 1",
    ] {
        match query(&store, None, statement).await {
            Err(SqlError::Query(message)) => assert!(!message.is_empty(), "{statement}"),
            other => panic!("{statement}: {other:?}"),
        }
    }
    assert_eq!(one_int(&store, None, "SELECT count(*) FROM predictions").await, 500);
    let mixed = query(&store, None, "SELECT metrics -> 'input' FROM predictions").await.unwrap_err();
    assert!(mixed.to_string().contains("json_get_str"), "{mixed}");
}

async fn scope_is_kept_inside_the_tables(store: Arc<dyn Store>) {
    load(store.as_ref()).await;
    let a = Some("a");
    for (sql_text, expected) in [
        ("SELECT count(*) FROM predictions", 300),
        ("SELECT count(*) FROM predictions WHERE model_deployment_crn = 'b'", 0),
        ("SELECT count(*) FROM labelled_predictions", 300),
        ("SELECT count(*) FROM (SELECT uuid FROM predictions UNION ALL SELECT uuid FROM labelled_predictions)", 600),
        ("SELECT count(*) FROM predictions p JOIN delayed_metrics d ON p.uuid = d.uuid", 100 + 34),
        ("SELECT count(*) FROM delayed_metrics", 100 + 34),
        ("SELECT count(*) FROM delayed_metrics WHERE uuid IN (SELECT uuid FROM predictions)", 134),
        ("SELECT count(*) FROM aggregate_metrics", 1),
        ("SELECT count(*) FROM dead_letters", 0),
        ("SELECT count(DISTINCT model_deployment_crn) FROM predictions", 1),
    ] {
        assert_eq!(one_int(&store, a, sql_text).await, expected, "{sql_text}");
    }
    assert_eq!(one_int(&store, Some("b"), "SELECT count(*) FROM dead_letters").await, 1);
    assert_eq!(
        one_int(
            &store,
            None,
            "SELECT count(*) FROM (SELECT uuid FROM predictions UNION ALL SELECT uuid FROM labelled_predictions)"
        )
        .await,
        1000
    );
}

async fn limits_stop_a_query(store: Arc<dyn Store>) {
    load(store.as_ref()).await;
    let few_rows = SqlLimits { rows: 10, ..SqlLimits::default() };
    match query_with(&store, None, "SELECT uuid FROM predictions", &few_rows).await {
        Err(SqlError::Limit(m)) => assert!(m.contains("more than 10 rows"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        query_with(&store, None, "SELECT uuid FROM predictions LIMIT 10", &few_rows)
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        10
    );
    let little_memory = SqlLimits { memory_bytes: 64 << 10, ..SqlLimits::default() };
    match query_with(&store, None, "SELECT metrics FROM labelled_predictions ORDER BY metrics", &little_memory).await {
        Err(SqlError::Limit(m)) => assert!(m.contains("memory"), "{m}"),
        other => panic!("{other:?}"),
    }
    let short = SqlLimits { time: Duration::from_millis(50), ..SqlLimits::default() };
    let slow = "SELECT count(*) FROM predictions a, predictions b, predictions c WHERE a.metrics < b.metrics";
    match query_with(&store, None, slow, &short).await {
        Err(SqlError::Limit(m)) => assert!(m.contains("longer than"), "{m}"),
        other => panic!("{other:?}"),
    }
}

fn floats(batches: &[RecordBatch], column: usize) -> Vec<Option<f64>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column(column).as_any().downcast_ref::<Float64Array>().expect("float64").clone();
            (0..a.len()).map(move |i| a.is_valid(i).then(|| a.value(i)))
        })
        .collect()
}

/// Equal to within floating-point summation order (rows reach an aggregate in any order).
#[track_caller]
fn same(got: Option<f64>, expected: Option<f64>) {
    match (got, expected) {
        (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}"),
        (a, b) => assert_eq!(a, b),
    }
}

/// The drift and performance functions give the drift engine's numbers on the same rows.
async fn drift_functions_are_the_engines(store: Arc<dyn Store>) {
    use driftline_drift::compare::{compare_column, Method, Options};
    use driftline_drift::stats::column::ColumnData;
    use driftline_drift::stats::performance;

    load(store.as_ref()).await;
    let records: Vec<driftline_store::ReadRecord> = store
        .read_window(Selection::Model("crn:model".into()), Window { start_ms: T0, end_ms: T0 + 1_000_000 })
        .map(|r| r.unwrap())
        .collect()
        .await;
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for r in &records {
        if let Some(label) = r.metrics.get("label").and_then(|v| v.as_f64()) {
            scores.push(r.metrics["prediction"].as_f64().unwrap());
            labels.push(label == 1.0);
        }
    }
    let expected = performance::binary(&scores, &labels, 0.5);
    let got = query(
        &store,
        None,
        "SELECT roc_auc(json_get_float(metrics, 'prediction'), json_get_int(metrics, 'label')),          average_precision(json_get_float(metrics, 'prediction'), json_get_int(metrics, 'label')),          log_loss(json_get_float(metrics, 'prediction'), json_get_int(metrics, 'label')),          brier(json_get_float(metrics, 'prediction'), json_get_int(metrics, 'label')) FROM labelled_predictions",
    )
    .await
    .unwrap();
    same(floats(&got, 0)[0], expected.roc_auc.value);
    same(floats(&got, 1)[0], expected.average_precision.value);
    same(floats(&got, 2)[0], expected.log_loss.value);
    same(floats(&got, 3)[0], expected.brier.value);

    // Reference: the first 250 predictions; current: the rest.
    let split = T0 + 250_000;
    let tenure = |r: &driftline_store::ReadRecord| r.metrics["input"]["tenure"].as_f64().unwrap();
    let side = |reference: bool| -> Vec<f64> {
        records.iter().filter(|r| (r.start_timestamp_ms < split) == reference).map(tenure).collect()
    };
    let numbers = |v: Vec<f64>| ColumnData::Numeric(v.into_iter().map(Some).collect());
    let verdict = |method| {
        compare_column("t", &numbers(side(true)), &numbers(side(false)), &Options { method, ..Options::default() })
            .unwrap()
    };
    let got = query(
        &store,
        None,
        &format!(
            "SELECT psi(v, r), ks_stat(v, r), ks_pvalue(v, r), js_distance(v, r), wasserstein(v, r) FROM              (SELECT json_get_float(metrics, 'input', 'tenure') AS v, start_timestamp_ms < {split} AS r FROM predictions)"
        ),
    )
    .await
    .unwrap();
    same(floats(&got, 0)[0], verdict(Method::Psi).statistic);
    same(floats(&got, 1)[0], verdict(Method::Ks).statistic);
    same(floats(&got, 2)[0], verdict(Method::Ks).p_value);
    same(floats(&got, 3)[0], verdict(Method::Js).statistic);
    let raw_distance = driftline_drift::stats::drift::wasserstein(
        &driftline_drift::stats::sample::Sample::from_finite(side(true)),
        &driftline_drift::stats::sample::Sample::from_finite(side(false)),
    );
    same(floats(&got, 4)[0], raw_distance);
    let plans = |reference: bool| -> ColumnData {
        let names: Vec<String> = records
            .iter()
            .filter(|r| (r.start_timestamp_ms < split) == reference)
            .map(|r| r.metrics["input"]["plan"].as_str().unwrap().to_owned())
            .collect();
        ColumnData::Categorical(driftline_drift::stats::categories::Categories::of(
            names.iter().map(|n| Some(n.as_str())),
        ))
    };
    let chi = compare_column("p", &plans(true), &plans(false), &Options { method: Method::Chi2, ..Options::default() })
        .unwrap();
    let got = query(
        &store,
        None,
        &format!(
            "SELECT chi2_pvalue(json_get_str(metrics, 'input', 'plan'), start_timestamp_ms < {split}) FROM predictions"
        ),
    )
    .await
    .unwrap();
    same(floats(&got, 0)[0], chi.p_value);

    // Sketches: per deployment, then merged; the median within the sketch's rank error.
    let got = query(
        &store,
        None,
        "SELECT kll_quantile(kll_merge(s), 0.5) FROM (SELECT model_deployment_crn,          kll_sketch(json_get_float(metrics, 'input', 'tenure')) AS s FROM predictions GROUP BY 1)",
    )
    .await
    .unwrap();
    let median = floats(&got, 0)[0].unwrap();
    let mut all: Vec<f64> = records.iter().map(tenure).collect();
    all.sort_by(f64::total_cmp);
    let rank = all.partition_point(|x| *x <= median) as f64 / all.len() as f64;
    assert!((rank - 0.5).abs() <= 0.0133 + 1.0 / 40.0, "median {median} at rank {rank}");
    // Wrong arguments are the query's mistakes.
    for bad in [
        "SELECT roc_auc(metrics, 1) FROM predictions",
        "SELECT psi(1.0, 2) FROM predictions",
        "SELECT kll_quantile(kll_sketch(1.0), 2.0)",
    ] {
        assert!(query(&store, None, bad).await.is_err(), "{bad}");
    }
}

/// The old `read_metrics` record shape, field for field, to check the answer byte for byte.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct OldShape<'a> {
    model_crn: &'a str,
    model_build_crn: &'a str,
    model_deployment_crn: &'a str,
    prediction_uuid: String,
    #[serde(rename = "startTimeStampMs")]
    start: i64,
    #[serde(rename = "endTimeStampMs")]
    end: i64,
    metrics: &'a driftline_core::Metrics,
}

async fn read_metrics_is_a_plan_over_labelled_predictions(store: Arc<dyn Store>) {
    load(store.as_ref()).await;
    let read = |selection: Selection, encoding: Encoding| ReadRequest {
        selection,
        window: Window { start_ms: T0 + 3_000, end_ms: T0 + 400_000 },
        encoding,
    };
    for selection in [
        Selection::Deployment("a".into()),
        Selection::Build("crn:build/1".into()),
        Selection::Model("crn:model".into()),
    ] {
        // What the store's own window read gives, serialised as the answer always was.
        let records: Vec<_> = store
            .read_window(selection.clone(), read(selection.clone(), Encoding::Json).window)
            .try_collect()
            .await
            .unwrap();
        let old: Vec<String> = records
            .iter()
            .map(|r| {
                serde_json::to_string(&OldShape {
                    model_crn: &r.model_crn,
                    model_build_crn: &r.model_build_crn,
                    model_deployment_crn: &r.model_deployment_crn,
                    prediction_uuid: r.uuid.to_string(),
                    start: r.start_timestamp_ms,
                    end: r.end_timestamp_ms,
                    metrics: &r.metrics,
                })
                .unwrap()
            })
            .collect();
        assert!(old.len() > 100, "{selection:?}");
        for (encoding, expected) in [
            (Encoding::Json, format!("{{\"metrics\":[{}]}}", old.join(","))),
            (Encoding::Ndjson, old.iter().map(|l| format!("{l}\n")).collect::<String>()),
        ] {
            let request = read(selection.clone(), encoding);
            let batches = read_window(store.clone(), None, &request).await.unwrap();
            let chunks: Vec<bytes::Bytes> = encode_window(batches, encoding).try_collect().await.unwrap();
            assert_eq!(String::from_utf8(chunks.concat()).unwrap(), expected, "{selection:?} {encoding:?}");
        }
        // Arrow: the same rows as columns, metrics as JSON text.
        let request = read(selection.clone(), Encoding::Arrow);
        let chunks: Vec<bytes::Bytes> =
            encode_window(read_window(store.clone(), None, &request).await.unwrap(), Encoding::Arrow)
                .try_collect()
                .await
                .unwrap();
        let reader =
            datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(chunks.concat()), None).unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        let uuids: Vec<String> = records.iter().map(|r| r.uuid.to_string()).collect();
        assert_eq!(texts(&batches, 3), uuids);
        let metrics: Vec<String> =
            records.iter().map(|r| serde_json::Value::Object(r.metrics.clone()).to_string()).collect();
        assert_eq!(texts(&batches, 6), metrics);
    }
    // A scoped caller reading another deployment's rows gets none, inside the plan.
    let request = read(Selection::Deployment("b".into()), Encoding::Ndjson);
    let batches = read_window(store.clone(), Some("a".into()), &request).await.unwrap();
    let rows: Vec<RecordBatch> = batches.try_collect().await.unwrap();
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
}

/// Runs `sql_text` with and without the store computing the groups; both answers, and whether
/// the store did.
async fn with_and_without_pushdown(
    store: &Arc<dyn Store>,
    scope: Option<&str>,
    sql_text: &str,
) -> (Vec<RecordBatch>, Vec<RecordBatch>, String) {
    let limits = SqlLimits::default();
    let ctx = sql::session(store.clone(), scope.map(str::to_owned), &limits).unwrap();
    let pushed: Vec<RecordBatch> =
        sql::run(&ctx, sql_text, &limits).await.unwrap().batches.try_collect().await.unwrap();
    let explain: Vec<RecordBatch> =
        sql::run(&ctx, &format!("EXPLAIN {sql_text}"), &limits).await.unwrap().batches.try_collect().await.unwrap();
    let plan = pretty_format_batches(&explain).unwrap().to_string();
    assert!(ctx.remove_optimizer_rule("driftline_push_aggregates"));
    let kept: Vec<RecordBatch> = sql::run(&ctx, sql_text, &limits).await.unwrap().batches.try_collect().await.unwrap();
    (pushed, kept, plan)
}

/// Every value of `batches` as text, floats to 12 significant digits.
fn cells(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    let mut rows = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            rows.push(
                b.columns()
                    .iter()
                    .map(|c| match c.as_any().downcast_ref::<Float64Array>() {
                        Some(f) if !f.is_null(i) => format!("{:.12e}", f.value(i)),
                        _ => {
                            ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()).unwrap().value(i).to_string()
                        }
                    })
                    .collect(),
            );
        }
    }
    rows
}

async fn groupings_are_the_stores(store: Arc<dyn Store>) {
    load(store.as_ref()).await;
    // Predictions whose values have other types than the rest: a number where a string was,
    // a word and a number written as strings where numbers were, a boolean as a string.
    let mut odd = WriteBatch::new(T0);
    for (i, m) in [
        json!({"input": {"tenure": "long", "plan": 7, "a.b c": "x"}, "prediction": "high"}),
        json!({"input": {"plan": "pro"}, "prediction": "0.95", "flag": "true"}),
    ]
    .into_iter()
    .enumerate()
    {
        odd.predictions.push(Prediction {
            uuid: Uuid::new_v4(),
            model_crn: "crn:model".into(),
            model_build_crn: "crn:build/0".into(),
            model_deployment_crn: "a".into(),
            start_timestamp_ms: T0 + 5 + i as i64,
            end_timestamp_ms: T0 + 9 + i as i64,
            metrics: metrics(m),
        });
    }
    store.write(&odd).await.unwrap();
    for (scope, sql_text) in [
        (
            None,
            "SELECT model_deployment_crn, date_trunc('minute', to_timestamp_millis(start_timestamp_ms)) AS minute, \
             count(*) AS n, avg(end_timestamp_ms - start_timestamp_ms) AS latency, \
             sum(end_timestamp_ms - start_timestamp_ms) AS total, min(start_timestamp_ms) AS first, \
             max(start_timestamp_ms) AS last FROM predictions GROUP BY 1, 2 ORDER BY 1, 2",
        ),
        (
            None,
            "SELECT json_get_str(metrics, 'input', 'plan') AS plan, count(*) AS n, avg(end_timestamp_ms - start_timestamp_ms) AS l \
             FROM predictions WHERE model_deployment_crn = 'a' AND json_get_str(metrics, 'input', 'plan') <> 'zzz' \
             GROUP BY 1 ORDER BY 1",
        ),
        (Some("a"), "SELECT start_timestamp_ms / 60000 AS m, count(*) AS n FROM labelled_predictions GROUP BY 1 ORDER BY 1"),
        (Some("a"), "SELECT count(*) AS n, max(timestamp_ms) AS last FROM delayed_metrics"),
        (None, "SELECT count(*) AS n FROM predictions WHERE json_get_str(metrics, 'input', 'a.b c') = 'x'"),
        (None, "SELECT count(*) AS n FROM predictions WHERE json_get_bool(metrics, 'flag')"),
        (
            None,
            "SELECT model_build_crn, count(*) AS n FROM predictions WHERE json_get_str(metrics, 'input', 'plan') <> 'pro' \
             GROUP BY 1 ORDER BY 1",
        ),
    ] {
        let (pushed, kept, plan) = with_and_without_pushdown(&store, scope, sql_text).await;
        assert!(plan.contains("_grouped") && plan.contains("count("), "{sql_text}: {plan}");
        assert_eq!(cells(&pushed), cells(&kept), "{sql_text}");
        assert!(!cells(&pushed).is_empty(), "{sql_text}");
    }
    // Typed reads of values of other types are null, never errors; booleans written as strings
    // are booleans.
    let (pushed, _, _) = with_and_without_pushdown(
        &store,
        None,
        "SELECT count(*) AS n, count(json_get_str(metrics, 'input', 'plan')) AS planned, \
         count(*) FILTER (WHERE json_get_bool(metrics, 'flag')) AS flagged FROM predictions",
    )
    .await;
    assert_eq!((ints(&pushed, 0), ints(&pushed, 1), ints(&pushed, 2)), (vec![502], vec![501], vec![1]));
    // A comparison of json_get_float goes to the store as a superset (strings kept), and
    // DataFusion decides: the number written as a string counts.
    let above = "SELECT count(*) AS n FROM predictions WHERE json_get_float(metrics, 'prediction') >= 0.3";
    let (pushed, kept, plan) = with_and_without_pushdown(&store, None, above).await;
    assert_eq!((ints(&pushed, 0), ints(&kept, 0)), (vec![351], vec![351]));
    assert!(plan.contains("WHEN 'string' THEN true") || plan.contains("IN ('integer', 'real', 'text')"), "{plan}");
    assert!(!plan.contains("_grouped"), "{plan}");
    // What does not translate stays with DataFusion, with the same answer.
    for sql_text in [
        "SELECT count(DISTINCT json_get_int(metrics, 'input', 'tenure')) AS n FROM predictions",
        "SELECT model_crn, count(*) FILTER (WHERE start_timestamp_ms > 0) AS n FROM predictions GROUP BY 1",
        "SELECT json_get_str(metrics, 'input', 'plan') AS plan, count(*) AS n FROM labelled_predictions GROUP BY 1 ORDER BY 1",
        "SELECT model_deployment_crn, avg(json_get_float(metrics, 'prediction')) AS p FROM predictions GROUP BY 1 ORDER BY 1",
    ] {
        let (pushed, kept, plan) = with_and_without_pushdown(&store, None, sql_text).await;
        assert!(!plan.contains("_grouped"), "{sql_text}: {plan}");
        assert_eq!(cells(&pushed), cells(&kept), "{sql_text}");
    }
}

/// Series answers read through the SQL layer's plans equal those read by the store's own
/// queries, for every source, step and kind of path, with rolled, stale and unrolled minutes
/// side by side; a caller limited to another deployment reads nothing of it.
async fn series_are_plans_over_the_tables(store: Arc<dyn Store>) {
    use driftline_rollup::{SeriesQuery, Source, SummaryOptions, Worker, WorkerOptions};
    use driftline_store::Resolution;

    let predictions = load(store.as_ref()).await;
    let mut extra = WriteBatch::new(T0 + 400_000);
    for i in 0..30i64 {
        extra.replica_stats.push(driftline_core::ReplicaStats {
            model_deployment_crn: "a".into(),
            replica_id: format!("r-{}", i % 2),
            timestamp_ms: T0 + i * 20_000,
            cpu_percent: 10.0 + i as f64 * 1.5,
            memory_bytes: 1_000_000 + i as u64 * 4096,
        });
    }
    for i in 0..4i64 {
        extra.dead_letters.push(DeadLetter {
            received_at_ms: T0 + i * 70_000,
            source: format!("http:test#{i}"),
            reason: "field `metrics`: missing".into(),
            raw: br#"{"model_deployment_crn":"a"}"#.to_vec(),
            key: None,
        });
    }
    store.write(&extra).await.expect("write");
    // Rolled up to the third minute; then a late label makes the first minute stale.
    let options = WorkerOptions { lateness: Duration::ZERO, ..Default::default() };
    Worker::new(store.clone(), options).catch_up(T0 + 180_000, |_| {}).await.expect("roll");
    let late = DelayedMetrics {
        uuid: predictions[12].uuid,
        timestamp_ms: T0 + 30_000_000,
        metrics: metrics(json!({"label": 1, "late": true})),
    };
    store.write(&WriteBatch { delayed_metrics: vec![late], ..WriteBatch::new(T0 + 500_000) }).await.expect("write");

    // The new column and table, as SQL sees them.
    let labelled_twice = &predictions[0];
    let sql_text = format!("SELECT delayed_metrics FROM predictions WHERE uuid = '{}'", labelled_twice.uuid);
    let delayed = texts(&query(&store, None, &sql_text).await.expect("delayed_metrics"), 0);
    assert_eq!(delayed, [r#"[{"label":0},{"label":1,"note":"fixed"}]"#]);
    assert_eq!(one_int(&store, None, "SELECT count(*) FROM predictions WHERE delayed_metrics IS NULL").await, 333);
    assert_eq!(one_int(&store, None, "SELECT count(*) FROM replica_stats WHERE replica_id = 'r-1'").await, 15);
    assert_eq!(one_int(&store, Some("b"), "SELECT count(*) FROM replica_stats").await, 0);

    let paths = [
        "input.tenure",
        "input.plan",
        "prediction",
        "label",
        "@predictions",
        "@latency_ms",
        "@event_bytes",
        "@labels",
        "@rejected",
        "@replica.r-1.cpu_percent",
        "@replica.r-0.memory_bytes",
    ];
    for path in paths {
        for step in [Resolution::Minute, Resolution::Hour] {
            for source in [Source::Auto, Source::Rollup, Source::Raw] {
                let q = SeriesQuery {
                    deployment: "a".into(),
                    path: path.into(),
                    window: Window { start_ms: T0, end_ms: T0 + 600_000 },
                    step,
                    source,
                    // A minute holds fewer values than a sketch keeps, so its quantiles and
                    // sketch are exact; merged into hours, sketches compact at random.
                    quantiles: if step == Resolution::Minute { vec![0.1, 0.5, 0.9] } else { vec![] },
                    include_sketch: step == Resolution::Minute,
                };
                let direct = driftline_rollup::series(store.as_ref(), &q, SummaryOptions::default()).await.unwrap();
                for scope in [None, Some("a".to_owned())] {
                    let planned =
                        driftline_query::series::series(store.clone(), scope.clone(), &q, SummaryOptions::default())
                            .await
                            .unwrap();
                    assert_eq!(planned, direct, "{path} {step:?} {source:?} {scope:?}");
                }
                let other =
                    driftline_query::series::series(store.clone(), Some("b".into()), &q, SummaryOptions::default())
                        .await
                        .unwrap();
                assert!(other.series.is_empty(), "{path} {step:?} {source:?}: {other:?}");
                // Not a comparison of empty answers (but rollups by the hour: the worker has
                // not finished the first hour).
                let rolled_hours = step == Resolution::Hour && source == Source::Rollup;
                assert_eq!(direct.series.is_empty(), rolled_hours, "{path} {step:?} {source:?}");
            }
        }
    }
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::SqliteStore::open(&dir.path().join("t.sqlite")).await.unwrap();
                    super::$name(std::sync::Arc::new(store)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::TestDatabase::create().await else { return };
                    let store = super::PostgresStore::connect(&db.url).await.unwrap();
                    super::$name(std::sync::Arc::new(store)).await;
                }
            )*
        }
    };
}

both_backends!(
    tables_read_like_the_store,
    reads_only,
    scope_is_kept_inside_the_tables,
    limits_stop_a_query,
    drift_functions_are_the_engines,
    read_metrics_is_a_plan_over_labelled_predictions,
    groupings_are_the_stores,
    series_are_plans_over_the_tables,
);
