//! End-to-end tests of the HTTP API: each starts the real `driftline` binary on a free loopback
//! port, against SQLite or a fresh Postgres database.

mod common;

use common::{cli, sqlite_args, Server};

use driftline_testkit::TestDatabase;
use reqwest::StatusCode;
use serde_json::{json, Value};

use common::ADMIN;
const DEP: &str = "crn:test:deployment/churn";
const T0: i64 = 1_700_000_000_000;

fn prediction(uuid: &str, start: i64, score: f64, deployment: &str) -> Value {
    json!({"v":1,"type":"prediction","uuid":uuid,"model_crn":"crn:test:model/churn","model_build_crn":"crn:test:build/1",
           "model_deployment_crn":deployment,"start_timestamp_ms":start,"end_timestamp_ms":start + 12,
           "metrics":{"input":{"tenure":12,"plan":"basic"},"prediction":score}})
}

fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// The whole API flow, run against one store.
async fn api_flow(store_args: Vec<String>) {
    let server = Server::start_admin(&store_args, &[]);

    // Health needs no key.
    assert_eq!(server.get("/healthz", None).await.0, StatusCode::OK);
    assert_eq!(server.get("/readyz", None).await.0, StatusCode::OK);

    // A batch with valid and invalid events: the valid ones are stored.
    let mut bad_time = prediction(&uuid(9), T0, 0.5, DEP);
    bad_time["start_timestamp_ms"] = json!(1_700_000_000);
    let batch = json!([
        prediction(&uuid(1), T0 + 1_000, 0.9, DEP),
        {"v":1,"type":"prediction","model_deployment_crn":DEP},
        prediction(&uuid(2), T0, 0.2, DEP),
        bad_time,
        prediction(&uuid(3), T0 + 2_000, 0.4, "crn:test:deployment/other"),
    ]);
    let (status, _, report) = server.post("/api/v1/events", ADMIN, "application/json", batch.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (report["accepted"].clone(), report["duplicates"].clone(), report["rejected"].clone()),
        (json!(3), json!(0), json!(2))
    );
    assert_eq!(report["errors"][0]["index"], json!(1));
    assert!(report["errors"][0]["reason"].as_str().unwrap().contains("field `uuid`: is required"), "{report}");
    assert_eq!(report["errors"][1]["index"], json!(3));
    assert!(report["errors"][1]["reason"].as_str().unwrap().contains("start_timestamp_ms"), "{report}");

    // The same batch again: duplicates, and the invalid ones dead-lettered again.
    let (_, _, report) = server.post("/api/v1/events", ADMIN, "application/json", batch.to_string()).await;
    assert_eq!(
        (report["accepted"].clone(), report["duplicates"].clone(), report["rejected"].clone()),
        (json!(0), json!(3), json!(2))
    );

    // NDJSON: a broken line is one rejected event.
    let ndjson = format!(
        "{}\n{{\"v\":1,\n{}\n",
        prediction(&uuid(4), T0 + 3_000, 0.7, DEP),
        prediction(&uuid(5), T0 + 4_000, 0.1, DEP)
    );
    let (_, _, report) = server.post("/api/v1/events", ADMIN, "application/x-ndjson", ndjson).await;
    assert_eq!(
        (report["accepted"].clone(), report["rejected"].clone(), report["errors"][0]["index"].clone()),
        (json!(2), json!(1), json!(1))
    );

    // Malformed JSON as a whole: 400 with line and column, as problem+json.
    let (status, content_type, problem) =
        server.post("/api/v1/events", ADMIN, "application/json", "[{\"v\":1,\n  oops]".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(content_type, "application/problem+json");
    assert!(problem["detail"].as_str().unwrap().contains("line 2, column 3"), "{problem}");

    // The one-call forms: a label (for a prediction known, and one not yet known), an aggregate.
    let (status, _, report) = server
        .post(
            "/api/v1/delayed_metrics",
            ADMIN,
            "application/json",
            json!({"prediction_uuid": uuid(1), "metrics": {"label": 1}, "timestamp_ms": T0 + 9_000}).to_string(),
        )
        .await;
    assert_eq!((status, report["accepted"].clone()), (StatusCode::OK, json!(1)));
    let (status, _, _) = server
        .post(
            "/api/v1/delayed_metrics",
            ADMIN,
            "application/json",
            json!({"prediction_uuid": uuid(6), "metrics": {"label": 0}}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, problem) = server
        .post(
            "/api/v1/delayed_metrics",
            ADMIN,
            "application/json",
            json!({"prediction_uuid": "nope", "metrics": {"label": 0}}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problem["detail"].as_str().unwrap().starts_with("field `prediction_uuid`: \"nope\" is not a UUID"),
        "{problem}"
    );
    let aggregate = json!({"model_deployment_crn": DEP, "start_timestamp_ms": T0, "end_timestamp_ms": T0 + 86_400_000, "metrics": {"roc_auc": 0.91}});
    let (status, _, report) =
        server.post("/api/v1/aggregate_metrics", ADMIN, "application/json", aggregate.to_string()).await;
    assert_eq!((status, report["accepted"].clone()), (StatusCode::OK, json!(1)));
    // The prediction whose label came first.
    server
        .post(
            "/api/v1/events",
            ADMIN,
            "application/json",
            json!([prediction(&uuid(6), T0 + 5_000, 0.3, DEP)]).to_string(),
        )
        .await;

    // read_metrics: the compatible shape, labels merged, window on the start time.
    let path = format!(
        "/api/v1/read_metrics?model_deployment_crn={DEP}&start_timestamp_ms={T0}&end_timestamp_ms={}",
        T0 + 60_000
    );
    let (status, content_type, answer) = server.get(&path, Some(ADMIN)).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "application/json"));
    insta::assert_json_snapshot!("read_metrics_window", answer);
    let (_, _, answer) = server
        .get(&format!("/api/v1/read_metrics?model_deployment_crn={DEP}&start_timestamp_ms={}", T0 + 1_000), Some(ADMIN))
        .await;
    assert_eq!(answer["metrics"].as_array().unwrap().len(), 4, "end defaults to now");
    let (_, content_type, lines) =
        server.get("/api/v1/read_metrics?model_crn=crn:test:model/churn&format=ndjson", Some(ADMIN)).await;
    assert_eq!(content_type, "application/x-ndjson");
    assert_eq!(lines.as_str().unwrap().lines().count(), 6);
    let (status, _, problem) = server.get("/api/v1/read_metrics?start_timestamp_ms=1", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(problem["detail"].as_str().unwrap().contains("model_deployment_crn"));

    // Aggregates read back.
    let (_, _, answer) =
        server.get(&format!("/api/v1/aggregate_metrics?model_deployment_crn={DEP}"), Some(ADMIN)).await;
    assert_eq!(answer["metrics"][0]["metrics"]["roc_auc"], json!(0.91));
    assert_eq!(answer["metrics"][0]["source"], json!("user"));

    // Every rejected event is a dead letter: 2 + 2 + 1 + 1.
    let (_, _, stats) = server.get("/api/v1/stats", Some(ADMIN)).await;
    assert_eq!(stats, json!({"predictions": 6, "delayed_metrics": 2, "aggregate_metrics": 1, "dead_letters": 6}));

    // Prometheus metrics count the HTTP intake (a read key needed, no event data in them).
    assert_eq!(server.get("/metrics", None).await.0, StatusCode::UNAUTHORIZED);
    let (status, content_type, text) = server.get("/metrics", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = text.as_str().unwrap().to_owned();
    assert!(text.contains("driftline_events_dead_lettered_total{source=\"http\"} 6"), "{text}");
    assert!(text.contains("driftline_events_duplicate_total{source=\"http\"} 3"), "{text}");
    assert!(text.contains("# TYPE driftline_batch_write_seconds histogram"));

    // Unknown endpoints and methods answer as problems too.
    let (status, content_type, _) = server.get("/api/v1/nothing", Some(ADMIN)).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::NOT_FOUND, "application/problem+json"));

    // A clean stop on SIGTERM; what was acknowledged is there after a restart.
    assert!(server.stop().success());
    let server = Server::start_admin(&store_args, &[]);
    let (_, _, stats) = server.get("/api/v1/stats", Some(ADMIN)).await;
    assert_eq!(stats["predictions"], json!(6));
    assert!(server.stop().success());
}

/// Keys: scopes, deployments, revocation, and the 401/403 answers.
async fn auth_flow(store_args: Vec<String>) {
    let created = cli(&["keys", "create", "--name", "replica", "--scope", "write", "--deployment", DEP], &store_args);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let writer = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    assert!(writer.starts_with("dl_"));
    let reader = String::from_utf8(cli(&["keys", "create", "--name", "nb", "--scope", "read"], &store_args).stdout)
        .unwrap()
        .trim()
        .to_owned();

    let server = Server::start(&store_args, &[]);
    assert!(server.banner.is_empty(), "no admin key is generated when keys exist: {:?}", server.banner);
    let events = json!([prediction(&uuid(1), T0, 0.9, DEP)]).to_string();
    let read_path = format!("/api/v1/read_metrics?model_deployment_crn={DEP}");

    let (status, content_type, problem) = server.get(&read_path, None).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::UNAUTHORIZED, "application/problem+json"));
    assert!(problem["detail"].as_str().unwrap().contains("Authorization: Bearer"));
    assert_eq!(server.get(&read_path, Some("dl_00000000_wrong")).await.0, StatusCode::UNAUTHORIZED);

    assert_eq!(server.post("/api/v1/events", &writer, "application/json", events.clone()).await.0, StatusCode::OK);
    // Wrong scope both ways.
    assert_eq!(server.get(&read_path, Some(&writer)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        server.post("/api/v1/events", &reader, "application/json", events.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(server.get(&read_path, Some(&reader)).await.0, StatusCode::OK);
    // Another deployment: refused as a whole, nothing stored.
    let mixed = json!([prediction(&uuid(2), T0, 0.9, DEP), prediction(&uuid(3), T0, 0.9, "crn:test:deployment/other")])
        .to_string();
    let (status, _, problem) = server.post("/api/v1/events", &writer, "application/json", mixed).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(problem["detail"].as_str().unwrap().contains("crn:test:deployment/other"));
    // Health needs no key.
    assert_eq!(server.get("/healthz", None).await.0, StatusCode::OK);

    // A key created by another process while the server runs works within seconds, and a
    // revocation takes effect within seconds (the server reloads its keys every 2 s).
    let late = String::from_utf8(cli(&["keys", "create", "--name", "late", "--scope", "read"], &store_args).stdout)
        .unwrap()
        .trim()
        .to_owned();
    let created_at = std::time::Instant::now();
    while server.get(&read_path, Some(&late)).await.0 != StatusCode::OK {
        assert!(created_at.elapsed() < std::time::Duration::from_secs(10), "a new key takes effect within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let listed = String::from_utf8(cli(&["keys", "list"], &store_args).stdout).unwrap();
    let id = writer.split('_').nth(1).unwrap();
    assert!(listed.contains(id) && listed.contains("replica") && !listed.contains(&writer), "{listed}");
    assert!(cli(&["keys", "revoke", id], &store_args).status.success());
    let revoked_at = std::time::Instant::now();
    while server.post("/api/v1/events", &writer, "application/json", events.clone()).await.0 != StatusCode::UNAUTHORIZED
    {
        assert!(revoked_at.elapsed() < std::time::Duration::from_secs(10), "a revocation takes effect within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!cli(&["keys", "revoke", id], &store_args).status.success(), "revoking twice fails");
    assert!(server.stop().success());
}

#[tokio::test]
async fn api_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    api_flow(sqlite_args(&dir)).await;
}

#[tokio::test]
async fn api_on_postgres() {
    let Some(db) = TestDatabase::create().await else { return };
    api_flow(vec!["--database-url".into(), db.url.clone()]).await;
}

#[tokio::test]
async fn auth_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    auth_flow(sqlite_args(&dir)).await;
}

#[tokio::test]
async fn auth_on_postgres() {
    let Some(db) = TestDatabase::create().await else { return };
    auth_flow(vec!["--database-url".into(), db.url.clone()]).await;
}

#[tokio::test]
async fn first_start_creates_an_admin_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&sqlite_args(&dir), &[]);
    let line = server.banner.iter().find(|l| l.starts_with("created admin key")).expect("a key is printed");
    let key = line.rsplit(' ').next().unwrap().to_owned();
    assert_eq!(server.get("/api/v1/stats", Some(&key)).await.0, StatusCode::OK);
    assert!(server.stop().success());
    let server = Server::start(&sqlite_args(&dir), &[]);
    assert!(server.banner.is_empty(), "not printed again: {:?}", server.banner);
    assert_eq!(server.get("/api/v1/stats", Some(&key)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn oversized_requests_and_events_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_admin(&sqlite_args(&dir), &["--max-request-bytes", "2000", "--max-event-bytes", "600"]);
    let big: Vec<Value> = (0..20).map(|i| prediction(&uuid(i), T0, 0.5, DEP)).collect();
    let (status, content_type, problem) =
        server.post("/api/v1/events", ADMIN, "application/json", json!(big).to_string()).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "application/problem+json"));
    assert!(problem["detail"].as_str().unwrap().contains("2000 bytes"));
    // Without a key, an oversized body is refused as unauthorized (401 comes before 413).
    let anonymous = server.client.post(server.url("/api/v1/events")).body(json!(big).to_string()).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let mut fat = prediction(&uuid(100), T0, 0.5, DEP);
    fat["metrics"]["blob"] = json!("x".repeat(700));
    let (status, _, report) = server
        .post(
            "/api/v1/events",
            ADMIN,
            "application/json",
            json!([fat, prediction(&uuid(101), T0, 0.5, DEP)]).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((report["accepted"].clone(), report["rejected"].clone()), (json!(1), json!(1)));
    assert!(report["errors"][0]["reason"].as_str().unwrap().contains("over the limit of 600 bytes"));
}
