//! The HTTP API tried as an attacker and an unlucky operator would: poison events, slow
//! readers, huge and slow requests, too many clients, labels from another deployment's key,
//! reads that fail half-way, odd encodings. Each test starts the real `driftline serve`.

mod common;

use std::io::Write as _;
use std::time::{Duration, Instant};

use common::{sqlite_args, Server, ADMIN};
use driftline_testkit::TestDatabase;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEP: &str = "crn:test:deployment/churn";
const T0: i64 = 1_700_000_000_000;

fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

fn prediction(n: u32, deployment: &str) -> Value {
    json!({"v":1,"type":"prediction","uuid":uuid(n),"model_crn":"crn:test:model/churn","model_build_crn":"crn:test:build/1",
           "model_deployment_crn":deployment,"start_timestamp_ms":T0 + i64::from(n),"end_timestamp_ms":T0 + i64::from(n) + 12,
           "metrics":{"input":{"tenure":12,"plan":"basic"},"prediction":0.5}})
}

/// Runs `driftline ARGS STORE_ARGS`, which must succeed; its trimmed output.
fn cli(args: &[&str], store_args: &[String]) -> String {
    let out = common::cli(args, store_args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Sends `head` (request line and headers, without the blank line) and `body` on a raw
/// connection and returns the stream, the request not necessarily complete.
async fn raw(server: &Server, head: &str, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(format!("{head}\r\n\r\n").as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream
}

/// Reads what the server sends until it closes or `within` passes; returns it as text and
/// whether the connection was closed.
async fn read_answer(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                // A whole answer with a body of known length is enough.
                let text = String::from_utf8_lossy(&out);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok());
                    if length.is_some_and(|l| body.len() >= l) {
                        return (text.into_owned(), false);
                    }
                }
            }
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

// ---- 1. Poison events -----------------------------------------------------------------------

/// A batch with an aggregate whose source holds a NUL character, between valid events.
fn poisoned_batch() -> String {
    json!([
        prediction(1, DEP),
        {"v":1,"type":"aggregate_metrics","model_deployment_crn":DEP,"start_timestamp_ms":T0,"end_timestamp_ms":T0,
         "metrics":{"roc_auc":0.9},"source":"drift:job\u{0}x"},
        prediction(2, DEP),
    ])
    .to_string()
}

async fn poison_over_http(store_args: Vec<String>) {
    // The validator refuses it itself, naming the field; the valid events are stored.
    let server = Server::start_admin(&store_args, &[]);
    let (status, _, report) = server.post("/api/v1/events", ADMIN, "application/json", poisoned_batch()).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!((report["accepted"].clone(), report["rejected"].clone()), (json!(2), json!(1)), "{report}");
    let reason = report["errors"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("field `source`:") && reason.contains("control characters"), "{reason}");
    assert!(server.stop().success());
}

async fn poison_past_the_validator(store_args: Vec<String>) {
    // With the validator told to let it through (a test hook), the store refuses the write; the
    // refused event is isolated, kept as a dead letter with the store's error, and the request
    // still stores every valid event, every time it is sent.
    let server = Server::start_with(
        &store_args,
        &[],
        &[("DRIFTLINE_ADMIN_KEY", ADMIN), ("DRIFTLINE_TEST_ONLY_UNCHECKED_TEXT", "1")],
        None,
    );
    let (status, _, report) = server.post("/api/v1/events", ADMIN, "application/json", poisoned_batch()).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!((report["accepted"].clone(), report["rejected"].clone()), (json!(2), json!(1)), "{report}");
    assert_eq!(report["errors"][0]["index"], json!(1));
    assert!(report["errors"][0]["reason"].as_str().unwrap().starts_with("the store refused this event:"), "{report}");
    let (status, _, report) = server.post("/api/v1/events", ADMIN, "application/json", poisoned_batch()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((report["duplicates"].clone(), report["rejected"].clone()), (json!(2), json!(1)));
    let (_, _, stats) = server.get("/api/v1/stats", Some(ADMIN)).await;
    assert_eq!((stats["predictions"].clone(), stats["aggregate_metrics"].clone()), (json!(2), json!(0)));
    assert_eq!(stats["dead_letters"], json!(2));
    let (_, _, metrics) = server.get("/metrics", Some(ADMIN)).await;
    assert!(metrics.as_str().unwrap().contains("driftline_store_refused_total 2"), "{metrics}");
    assert!(server.stop().success());
}

#[tokio::test]
async fn poison_events_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    poison_over_http(sqlite_args(&dir)).await;
    let dir = tempfile::tempdir().unwrap();
    poison_past_the_validator(sqlite_args(&dir)).await;
}

#[tokio::test]
async fn poison_events_on_postgres() {
    let Some(db) = TestDatabase::create().await else { return };
    poison_over_http(vec!["--database-url".into(), db.url.clone()]).await;
    let Some(db) = TestDatabase::create().await else { return };
    poison_past_the_validator(vec!["--database-url".into(), db.url.clone()]).await;
}

// ---- 3. Slow readers ------------------------------------------------------------------------

/// Stores `n` predictions of about 1.5 KB each.
async fn fill(server: &Server, n: u32) {
    let pad = "p".repeat(1_400);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1_000) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|&i| {
                let mut p = prediction(i, DEP);
                p["metrics"]["pad"] = json!(pad);
                p
            })
            .collect();
        let (status, _, report) =
            server.post("/api/v1/events", ADMIN, "application/json", json!(batch).to_string()).await;
        assert_eq!(status, StatusCode::OK, "{report}");
    }
}

/// A reader that asks for a big window and then reads nothing: the server's read of the window
/// stalls, holding its store connection.
async fn stalled_reader(server: &Server) -> TcpStream {
    let head = format!(
        "GET /api/v1/read_metrics?model_deployment_crn={DEP} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}"
    );
    raw(server, &head, b"").await
}

#[tokio::test]
async fn slow_readers_do_not_lock_everyone_out_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_args(&dir);
    let server = Server::start_admin(&store, &["--read-timeout-secs", "600"]);
    fill(&server, 20_000).await;
    let writer = cli(&["keys", "create", "--name", "w", "--scope", "write"], &store);
    // Wait until the new key is in the server's cache.
    let created = Instant::now();
    while server.post("/api/v1/events", &writer, "application/json", "[]".into()).await.0 != StatusCode::OK {
        assert!(created.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Four readers take all four read connections and sit on them.
    let mut readers = Vec::new();
    for _ in 0..4 {
        readers.push(stalled_reader(&server).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Health, authentication and writes do not queue behind them.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let ready = client.get(server.url("/readyz")).send().await.expect("readyz answers");
    assert_eq!(ready.status(), StatusCode::OK);
    let write = client
        .post(server.url("/api/v1/events"))
        .bearer_auth(&writer)
        .body(json!([prediction(99_999, DEP)]).to_string())
        .send()
        .await
        .expect("a write answers");
    assert_eq!(write.status(), StatusCode::OK);
    let unknown =
        client.get(server.url("/api/v1/stats")).bearer_auth("dl_00000000_nope").send().await.expect("401 at once");
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    drop(readers);
    assert!(server.stop().success());
}

#[tokio::test]
async fn a_read_past_its_budget_is_stopped_and_frees_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_args(&dir);
    let log = dir.path().join("server.log");
    let server =
        Server::start_with(&store, &["--read-timeout-secs", "2"], &[("DRIFTLINE_ADMIN_KEY", ADMIN)], Some(&log));
    fill(&server, 20_000).await;
    let mut readers = Vec::new();
    for _ in 0..4 {
        readers.push(stalled_reader(&server).await);
    }
    // The budget stops the stalled reads; their connections come back and reads work again.
    // (A read that waited for a connection while they held them all spent its own budget
    // waiting and is cut off; the next one goes through.)
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let small =
        format!("/api/v1/read_metrics?model_deployment_crn={DEP}&start_timestamp_ms={T0}&end_timestamp_ms={}", T0 + 10);
    let started = Instant::now();
    let body: Value = loop {
        let r = client.get(server.url(&small)).bearer_auth(ADMIN).send().await.expect("a read answers");
        assert_eq!(r.status(), StatusCode::OK);
        if let Ok(body) = r.json().await {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "reads work again once the stalled ones are stopped");
    };
    assert_eq!(body["metrics"].as_array().unwrap().len(), 10);

    // ---- 8. A read that fails half-way: NDJSON readers get a last error line, then the body is
    // cut off; JSON readers see a broken transfer, never a short document that parses.
    let reader = |format: &'static str| {
        let (client, url) =
            (client.clone(), server.url(&format!("/api/v1/read_metrics?model_deployment_crn={DEP}&format={format}")));
        async move {
            let mut r = client.get(url).bearer_auth(ADMIN).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let mut got = Vec::new();
            loop {
                match r.chunk().await {
                    Ok(Some(chunk)) => {
                        got.extend_from_slice(&chunk);
                        // Read slowly, so the read outlives its budget.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Ok(None) => return (got, false),
                    Err(_) => return (got, true),
                }
            }
        }
    };
    let (ndjson, broken) = reader("ndjson").await;
    assert!(broken, "the NDJSON answer is cut off");
    let text = String::from_utf8(ndjson).unwrap();
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("{\"error\":") && last.contains("budget"), "{last}");
    let (json_body, broken) = reader("json").await;
    assert!(broken, "the JSON answer is cut off");
    assert!(serde_json::from_slice::<Value>(&json_body).is_err(), "a cut answer does not parse");
    drop(readers);
    assert!(server.stop().success());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("cut off") && log.contains("request="), "the failure is logged with its request id:\n{log}");
}

// ---- 4. Unbounded answers -------------------------------------------------------------------

#[tokio::test]
async fn answers_and_dead_letters_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_admin(&sqlite_args(&dir), &[]);
    // 5 MiB of `[1,1,1,…]`: refused before any element is parsed.
    let ones = format!("[{}1]", "1,".repeat(2_600_000));
    let (status, _, problem) = server.post("/api/v1/events", ADMIN, "application/json", ones).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(problem["detail"].as_str().unwrap().contains("more than 100000 events"), "{problem}");
    // 1,500 refused events: the answer lists 100 and counts the rest; 1,000 dead letters are
    // kept and one more says how many were not.
    let bad = format!("[{}1]", "1,".repeat(1_499));
    let (status, _, report) = server.post("/api/v1/events", ADMIN, "application/json", bad).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["rejected"], json!(1_500));
    assert_eq!(report["errors"].as_array().unwrap().len(), 100);
    assert_eq!(report["errors_omitted"], json!(1_400));
    let (_, _, stats) = server.get("/api/v1/stats", Some(ADMIN)).await;
    assert_eq!(stats["dead_letters"], json!(1_001));
    // The one-call forms keep to the event size limit.
    let big = json!({"prediction_uuid": uuid(1), "metrics": {"blob": "x".repeat(200_000)}}).to_string();
    let (status, _, problem) = server.post("/api/v1/delayed_metrics", ADMIN, "application/json", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(problem["detail"].as_str().unwrap().contains("102400 bytes"), "{problem}");
    // Aggregates stream like windows.
    let aggregates: Vec<Value> = (0..3_000)
        .map(|i| {
            json!({"v":1,"type":"aggregate_metrics","model_deployment_crn":DEP,"start_timestamp_ms":T0 + i,
                        "end_timestamp_ms":T0 + i + 1,"metrics":{"n":i}})
        })
        .collect();
    let (status, _, _) = server.post("/api/v1/events", ADMIN, "application/json", json!(aggregates).to_string()).await;
    assert_eq!(status, StatusCode::OK);
    let r = server
        .client
        .get(server.url(&format!("/api/v1/aggregate_metrics?model_deployment_crn={DEP}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("transfer-encoding").map(|v| v.to_str().unwrap()), Some("chunked"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["metrics"].as_array().unwrap().len(), 3_000);
    assert_eq!(body["metrics"][2]["metrics"]["n"], json!(2));
    assert!(server.stop().success());
}

// ---- 5. Auth before body, timeouts, bounds --------------------------------------------------

#[tokio::test]
async fn the_key_is_checked_before_the_body_and_slow_clients_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_admin(&sqlite_args(&dir), &["--header-timeout-secs", "2", "--body-timeout-secs", "2"]);
    // No key, a 5 MB body announced and never sent: 401 at once, for every route.
    for path in ["/api/v1/drift/jobs", "/api/v1/events", "/api/v1/delayed_metrics"] {
        let mut s = raw(&server, &format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000"), b"").await;
        let (answer, _) = read_answer(&mut s, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
    }
    // A key, and a body that never comes: 408 once the body deadline passes.
    let mut s = raw(
        &server,
        &format!("POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: 1000"),
        b"[",
    )
    .await;
    let (answer, _) = read_answer(&mut s, Duration::from_secs(15)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Headers sent a byte at a time (slowloris): the connection is closed.
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(15) {
        if s.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "a client trickling its headers is disconnected");
    // An idle keep-alive connection is closed too.
    let mut s = raw(&server, "GET /healthz HTTP/1.1\r\nHost: x", b"").await;
    let (answer, closed) = read_answer(&mut s, Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 200") && !closed, "{answer}");
    let (_, closed) = read_answer(&mut s, Duration::from_secs(15)).await;
    assert!(closed, "an idle connection is closed");
    assert!(server.stop().success());
}

#[tokio::test]
async fn requests_and_body_bytes_in_flight_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_admin(
        &sqlite_args(&dir),
        &["--max-concurrent-requests", "2", "--max-request-bytes", "100000", "--max-inflight-body-bytes", "150000"],
    );
    let stuck = |length: usize| {
        format!("POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: {length}")
    };
    // One upload in flight takes 100 KB of the 150 KB budget: a second one is refused, 503 with
    // Retry-After, while a small one still fits.
    let _first = raw(&server, &stuck(100_000), b"[").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut second = raw(&server, &stuck(100_000), b"[").await;
    let (answer, _) = read_answer(&mut second, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503") && answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    // Two requests in flight (the stuck upload and another): a third is refused.
    let _another = raw(&server, &stuck(10), b"[").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, problem) = server.get("/healthz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("2 requests at once"), "{problem}");
    assert!(server.stop().success());
}

#[tokio::test]
async fn metrics_need_a_key_unless_public() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_args(&dir);
    let server = Server::start_admin(&store, &[]);
    assert_eq!(server.get("/metrics", None).await.0, StatusCode::UNAUTHORIZED);
    let writer = cli(&["keys", "create", "--name", "w", "--scope", "write"], &store);
    let created = Instant::now();
    loop {
        let status = server.get("/metrics", Some(&writer)).await.0;
        if status == StatusCode::FORBIDDEN {
            break;
        }
        assert!(created.elapsed() < Duration::from_secs(10), "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.get("/metrics", Some(ADMIN)).await.0, StatusCode::OK);
    assert!(server.stop().success());
    let server = Server::start_admin(&store, &["--public-metrics"]);
    assert_eq!(server.get("/metrics", None).await.0, StatusCode::OK);
    assert!(server.stop().success());
}

// ---- 6. Labels across deployments -----------------------------------------------------------

#[tokio::test]
async fn a_key_of_one_deployment_cannot_label_another() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_args(&dir);
    let a = cli(&["keys", "create", "--name", "a", "--scope", "write", "--deployment", "crn:dep/a"], &store);
    let b = cli(&["keys", "create", "--name", "b", "--scope", "write", "--deployment", "crn:dep/b"], &store);
    let server = Server::start_admin(&store, &[]);
    let label = |n: u32, value: i64, at: i64| {
        json!([{"v":1,"type":"delayed_metrics","uuid":uuid(n),"timestamp_ms":at,"metrics":{"label":value}}]).to_string()
    };
    let read = |server: &Server| {
        let url = server.url("/api/v1/read_metrics?model_deployment_crn=crn:dep/a");
        let client = server.client.clone();
        async move {
            let v: Value = client.get(url).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
            v["metrics"].as_array().unwrap().iter().map(|m| m["metrics"]["label"].clone()).collect::<Vec<_>>()
        }
    };
    // B labels A's prediction 1 before A sends it: accepted, held with B's deployment.
    let (status, _, report) = server.post("/api/v1/events", &b, "application/json", label(1, 0, T0 + 10)).await;
    assert_eq!((status, report["accepted"].clone()), (StatusCode::OK, json!(1)));
    let (status, ..) =
        server.post("/api/v1/events", &a, "application/json", json!([prediction(1, "crn:dep/a")]).to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read(&server).await, vec![Value::Null], "B's label is not joined to A's prediction");
    // A's own label joins; B cannot override it afterwards: the prediction is known now, 403.
    server.post("/api/v1/events", &a, "application/json", label(1, 1, T0 + 5)).await;
    assert_eq!(read(&server).await, vec![json!(1)]);
    let (status, _, problem) = server.post("/api/v1/events", &b, "application/json", label(1, 0, T0 + 20)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(read(&server).await, vec![json!(1)]);
    // `drift:` sources are for drift jobs: a write key may not send them, an admin may.
    let aggregate = |source: &str| {
        json!([{"v":1,"type":"aggregate_metrics","model_deployment_crn":"crn:dep/a","start_timestamp_ms":T0,"end_timestamp_ms":T0,
                "metrics":{"roc_auc":0.1},"source":source}])
        .to_string()
    };
    let (status, _, problem) = server.post("/api/v1/events", &a, "application/json", aggregate("drift:daily")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(problem["detail"].as_str().unwrap().contains("reserved for drift jobs"), "{problem}");
    assert_eq!(server.post("/api/v1/events", &a, "application/json", aggregate("user")).await.0, StatusCode::OK);
    assert_eq!(
        server.post("/api/v1/events", ADMIN, "application/json", aggregate("drift:daily")).await.0,
        StatusCode::OK
    );
    assert!(server.stop().success());
}

// ---- 8/11. Parameters and encodings ---------------------------------------------------------

#[tokio::test]
async fn odd_parameters_and_encodings() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_admin(&sqlite_args(&dir), &[]);
    // Invalid text in a CRN parameter.
    let (status, _, problem) = server.get("/api/v1/read_metrics?model_deployment_crn=a%00b", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(problem["detail"].as_str().unwrap().contains("control character"), "{problem}");
    // A gzip body is inflated and stored.
    let batch = json!([prediction(1, DEP), prediction(2, DEP)]).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(batch.as_bytes()).unwrap();
    let r = server
        .client
        .post(server.url("/api/v1/events"))
        .bearer_auth(ADMIN)
        .header("content-encoding", "gzip")
        .header("content-type", "application/json")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    let (status, _, report) = common::answer(r).await;
    assert_eq!((status, report["accepted"].clone()), (StatusCode::OK, json!(2)), "{report}");
    // A gzip bomb past the request limit is refused; other encodings are refused, never parsed.
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![b' '; 20 * 1024 * 1024]).unwrap();
    let r = server
        .client
        .post(server.url("/api/v1/events"))
        .bearer_auth(ADMIN)
        .header("content-encoding", "gzip")
        .body(bomb.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = server
        .client
        .post(server.url("/api/v1/events"))
        .bearer_auth(ADMIN)
        .header("content-encoding", "br")
        .body(batch.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // NDJSON without its content type is read as NDJSON, not as one broken event.
    let ndjson = format!("{}\n{}\n", prediction(3, DEP), prediction(4, DEP));
    let r = server.client.post(server.url("/api/v1/events")).bearer_auth(ADMIN).body(ndjson).send().await.unwrap();
    let (_, _, report) = common::answer(r).await;
    assert_eq!((report["accepted"].clone(), report["rejected"].clone()), (json!(2), json!(0)), "{report}");
    // One element with invalid UTF-8 is refused alone.
    let mut body = format!("[{},", prediction(5, DEP)).into_bytes();
    body.extend_from_slice(b"{\"v\":1,\"type\":\"prediction\",\"uuid\":\"\xff\xfe\"},");
    body.extend_from_slice(format!("{}]", prediction(6, DEP)).as_bytes());
    let r = server
        .client
        .post(server.url("/api/v1/events"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, _, report) = common::answer(r).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!((report["accepted"].clone(), report["rejected"].clone()), (json!(2), json!(1)), "{report}");
    assert_eq!(report["errors"][0]["index"], json!(1));
    // A timestamp too large for any integer type says where the accepted range ends.
    let mut p = prediction(7, DEP);
    p["start_timestamp_ms"] = json!(18_446_744_073_709_551_615_u64);
    let (_, _, report) = server.post("/api/v1/events", ADMIN, "application/json", json!([p]).to_string()).await;
    assert!(report["errors"][0]["reason"].as_str().unwrap().contains("2100-01-01"), "{report}");
    assert!(server.stop().success());
}
