//! SQL end to end: `POST /api/v1/sql` of the real server (JSON, NDJSON, CSV, Arrow IPC; read
//! scope; a deployment-scoped key; refused statements), Arrow Flight SQL from a Flight SQL client
//! (statements, prepared statements, the catalog, bearer and basic auth, the same scopes), and
//! `driftline sql` (one statement in every format, and the interactive prompt fed on standard
//! input), giving the same numbers, on SQLite and on a fresh Postgres database.

mod common;

use std::io::Write;
use std::process::Stdio;

use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::CommandGetTables;
use arrow_flight::FlightInfo;
use common::{cli, sqlite_args, Server, ADMIN};
use datafusion::arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::ipc::reader::StreamReader;
use driftline_testkit::TestDatabase;
use futures::TryStreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tonic::transport::Channel;

const T0: i64 = 1_700_000_000_000;

fn events() -> String {
    let lines: Vec<String> = (0..40)
        .map(|i| {
            let deployment = if i < 30 { "crn:dep/a" } else { "crn:dep/b" };
            json!({"v":1,"type":"prediction","uuid":format!("00000000-0000-4000-8000-{i:012}"),"model_crn":"crn:model",
                   "model_build_crn":"crn:build/1","model_deployment_crn":deployment,"start_timestamp_ms":T0 + i * 1000,
                   "end_timestamp_ms":T0 + i * 1000 + 5,"metrics":{"input":{"tenure":i},"prediction":0.5}})
            .to_string()
        })
        .collect();
    format!("[{}]", lines.join(","))
}

const QUERY: &str = "SELECT model_deployment_crn AS deployment, count(*) AS n, \
                     sum(json_get_int(metrics, 'input', 'tenure')) AS tenure \
                     FROM predictions GROUP BY 1 ORDER BY 1";

async fn sql(server: &Server, key: &str, body: Value, path: &str, accept: Option<&str>) -> reqwest::Response {
    let mut request = server.client.post(server.url(path)).bearer_auth(key).json(&body);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    request.send().await.unwrap()
}

async fn sql_everywhere(store_args: Vec<String>) {
    let server = Server::start_admin(&store_args, &["--no-rollup", "--flight-sql-listen", "127.0.0.1:0"]);
    let flight = server
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("driftline serving Flight SQL on grpc://"))
        .expect("the server says where it serves Flight SQL")
        .to_owned();
    let (status, _, _) = server.post("/api/v1/events", ADMIN, "application/json", events()).await;
    assert_eq!(status, StatusCode::OK);
    let expected =
        json!([{"deployment":"crn:dep/a","n":30,"tenure":435},{"deployment":"crn:dep/b","n":10,"tenure":345}]);

    // JSON: one array of row objects.
    let r = sql(&server, ADMIN, json!({"sql": QUERY}), "/api/v1/sql", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.json::<Value>().await.unwrap(), expected);

    // NDJSON and CSV.
    let r = sql(&server, ADMIN, json!({"sql": QUERY}), "/api/v1/sql?format=ndjson", None).await;
    let lines: Vec<Value> = r.text().await.unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(Value::Array(lines), expected);
    let r = sql(&server, ADMIN, json!({"sql": QUERY}), "/api/v1/sql?format=csv", None).await;
    assert_eq!(r.text().await.unwrap(), "deployment,n,tenure\ncrn:dep/a,30,435\ncrn:dep/b,10,345\n");

    // Arrow IPC, by Accept.
    let r =
        sql(&server, ADMIN, json!({"sql": QUERY}), "/api/v1/sql", Some("application/vnd.apache.arrow.stream")).await;
    assert_eq!(r.headers()["content-type"], "application/vnd.apache.arrow.stream");
    let bytes = r.bytes().await.unwrap();
    let reader = StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None).unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let n = batches[0].column(1).as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!((n.len(), n.value(0), n.value(1)), (2, 30, 10));

    // Mistakes are 400s that say what is wrong; writes are refused.
    for (body, says) in [
        (json!({"sql": "SELECT * FROM nowhere"}), "nowhere"),
        (json!({"sql": "DROP TABLE predictions"}), "not supported"),
        (json!({"sql": "SELECT 1; SELECT 2"}), "single SQL statement"),
        (json!({"query": "SELECT 1"}), "sql"),
    ] {
        let r = sql(&server, ADMIN, body.clone(), "/api/v1/sql", None).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let problem: Value = r.json().await.unwrap();
        assert!(problem["detail"].as_str().unwrap().contains(says), "{body}: {problem}");
    }

    // A deployment-scoped key sees its deployment only; a write key may not query.
    let scoped = cli(&["keys", "create", "--name", "a", "--scope", "read", "--deployment", "crn:dep/a"], &store_args);
    let scoped = String::from_utf8(scoped.stdout).unwrap().trim().to_owned();
    let writer = cli(&["keys", "create", "--name", "w", "--scope", "write"], &store_args);
    let writer = String::from_utf8(writer.stdout).unwrap().trim().to_owned();
    // The server reloads its keys every --key-refresh-ms: wait (boundedly) for the new ones.
    let mut answer = Value::Null;
    for _ in 0..50 {
        let r = sql(&server, &scoped, json!({"sql": QUERY}), "/api/v1/sql", None).await;
        if r.status() == StatusCode::OK {
            answer = r.json().await.unwrap();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(answer, json!([{"deployment":"crn:dep/a","n":30,"tenure":435}]));
    let r = sql(&server, &writer, json!({"sql": QUERY}), "/api/v1/sql", None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Flight SQL answers the same, under the same keys.
    flight_sql(&flight, &scoped, &writer).await;
    assert!(server.stop().success());

    // The command line answers the same.
    let out = cli(&["sql", QUERY, "--format", "json"], &store_args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), expected);
    let out = cli(&["sql", QUERY], &store_args);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("| crn:dep/a  | 30 | 435    |") && table.ends_with("2 rows\n"), "{table}");
    let out = cli(&["sql", "DELETE FROM predictions"], &store_args);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not supported"));

    // The prompt: statements over several lines, an error that does not end the session.
    let history = tempfile::NamedTempFile::new().unwrap();
    let mut prompt = std::process::Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(["sql", "--history", &history.path().display().to_string()])
        .args(&store_args)
        .env("DRIFTLINE_LOG", "warn,sqlx=error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    prompt
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT count(*) AS n\n  FROM predictions\n  WHERE model_deployment_crn = 'crn:dep/b';\nSELECT nope FROM predictions;\nSELECT 7 AS seven;\n")
        .unwrap();
    let out = prompt.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("| 10 |") && stdout.contains("| 7     |"), "{stdout}");
    assert!(stderr.contains("nope"), "{stderr}");
}

/// A Flight SQL client of the server at `addr`, sending `key` as its bearer token (if any).
async fn flight_client(addr: &str, key: Option<&str>) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut client = FlightSqlServiceClient::new(channel);
    if let Some(key) = key {
        client.set_token(key.to_owned());
    }
    client
}

/// Every batch of every endpoint of `info`.
async fn fetch(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let stream = client.do_get(endpoint.ticket.unwrap()).await.unwrap();
        batches.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    }
    batches
}

/// The rows of QUERY's answer as (deployment, n, tenure).
fn rows(batches: &[RecordBatch]) -> Vec<(String, i64, i64)> {
    let mut rows = Vec::new();
    for batch in batches {
        let deployment = batch.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let n = batch.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        let tenure = batch.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..batch.num_rows() {
            rows.push((deployment.value(i).to_owned(), n.value(i), tenure.value(i)));
        }
    }
    rows
}

async fn flight_sql(addr: &str, scoped: &str, writer: &str) {
    let expected = vec![("crn:dep/a".to_owned(), 30, 435), ("crn:dep/b".to_owned(), 10, 345)];

    // A statement: its FlightInfo's schema is the answer's.
    let mut admin = flight_client(addr, Some(ADMIN)).await;
    let info = admin.execute(QUERY.to_owned(), None).await.unwrap();
    let schema = info.clone().try_decode_schema().unwrap();
    let batches = fetch(&mut admin, info).await;
    assert_eq!(batches[0].schema().fields(), schema.fields());
    assert_eq!(rows(&batches), expected);

    // A prepared statement (what JDBC clients send), with its dataset schema up front.
    let mut prepared = admin.prepare(QUERY.to_owned(), None).await.unwrap();
    assert_eq!(prepared.dataset_schema().unwrap().fields(), schema.fields());
    let info = prepared.execute().await.unwrap();
    assert_eq!(rows(&fetch(&mut admin, info).await), expected);
    prepared.close().await.unwrap();

    // The catalog, with each table's schema.
    let request = CommandGetTables { include_schema: true, ..Default::default() };
    let info = admin.get_tables(request).await.unwrap();
    let batches = fetch(&mut admin, info).await;
    let names = batches[0].column_by_name("table_name").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
    let mut names: Vec<&str> = (0..names.len()).map(|i| names.value(i)).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "aggregate_metrics",
            "dead_letters",
            "delayed_metrics",
            "labelled_predictions",
            "predictions",
            "replica_stats",
            "rollups_1d",
            "rollups_1h",
            "rollups_1m"
        ]
    );

    // Mistakes and refused statements are InvalidArgument and say what is wrong.
    for (query, says) in [("SELECT * FROM nowhere", "nowhere"), ("DROP TABLE predictions", "not supported")] {
        let e = admin.execute(query.to_owned(), None).await.unwrap_err().to_string();
        assert!(e.contains("invalid argument") && e.contains(says), "{query}: {e}");
    }

    // Basic auth with the key as password gives a bearer token (what JDBC's user and password do).
    let mut basic = flight_client(addr, None).await;
    basic.handshake("analyst", scoped).await.unwrap();
    assert_eq!(basic.token().map(String::as_str), Some(scoped));
    let info = basic.execute(QUERY.to_owned(), None).await.unwrap();
    // The scoped key sees its deployment only.
    assert_eq!(rows(&fetch(&mut basic, info).await), expected[..1]);

    // No key, an unknown key, a write key: refused.
    let mut nobody = flight_client(addr, None).await;
    let e = nobody.execute(QUERY.to_owned(), None).await.unwrap_err().to_string();
    assert!(e.contains("valid authentication credentials") && e.contains("Bearer"), "{e}");
    let e = flight_client(addr, Some("not-a-key")).await.execute(QUERY.to_owned(), None).await.unwrap_err();
    assert!(e.to_string().contains("unknown or revoked"), "{e}");
    assert!(flight_client(addr, None).await.handshake("x", "not-a-key").await.is_err());
    let e = flight_client(addr, Some(writer)).await.execute(QUERY.to_owned(), None).await.unwrap_err();
    assert!(e.to_string().contains("does not have permission") && e.to_string().contains("scope"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    sql_everywhere(sqlite_args(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_on_postgres() {
    let Some(db) = TestDatabase::create().await else { return };
    sql_everywhere(vec!["--database-url".into(), db.url.clone()]).await;
}
