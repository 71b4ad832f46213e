//! `driftline models …` and `driftline governance verify`, through the real binary, on the
//! embedded store and on Postgres.

mod common;

use common::{failure, stdout};

use std::path::Path;
use std::process::{Command, Output};

use driftline_core::{MetricsJson, Prediction};
use driftline_store::{StoreConfig, WriteBatch};
use driftline_testkit::TestDatabase;
use serde_json::{json, Value};

const T0: i64 = 1_793_491_200_000;

/// Runs driftline in `dir` with the store flags and `args`.
fn driftline(dir: &Path, store: &[String], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driftline"))
        .current_dir(dir)
        .args(args)
        .args(store)
        .env("DRIFTLINE_LOG", "warn")
        .env("USER", "ana")
        .output()
        .expect("run driftline")
}

const TEMPLATE: &str = "required:\n  owner: string\n  training_date: date\n  risk_tier: [low, medium, high]\n\
                        optional:\n  documentation: url\n";

/// Registration against the template, the inventory (with a model only seen in predictions),
/// metadata updates, a stricter template, and the chain check.
async fn inventory_flow(dir: &Path, store: Vec<String>, database_url: Option<String>) {
    std::fs::write(dir.join("t.yaml"), TEMPLATE).unwrap();
    std::fs::write(dir.join("bad.yaml"), "owner: ana\ntraining_date: last week\nrisk_tier: extreme\ncolour: blue\n")
        .unwrap();
    std::fs::write(dir.join("good.yaml"), "owner: ana\ntraining_date: 2026-10-30\nrisk_tier: low\n").unwrap();
    let run = |args: &[&str]| driftline(dir, &store, args);
    let with_template = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--governance-template", "t.yaml"]);
        driftline(dir, &store, &all)
    };

    // Every field at fault named at once, nothing written.
    let err = failure(&with_template(&["models", "register", "crn:churn", "--metadata", "bad.yaml"]));
    assert!(
        err.contains("crn:churn was not registered: its metadata does not meet the governance template (3 fields)"),
        "{err}"
    );
    for expected in [
        "colour: is not in the governance template",
        "risk_tier: \"extreme\" is not valid; write one of low, medium, high",
        "training_date: \"last week\" is not valid; write a date, YYYY-MM-DD",
    ] {
        assert!(err.contains(expected), "{expected}: {err}");
    }
    let listed: Value = serde_json::from_str(&stdout(&run(&["models", "list", "--format", "json"]))).unwrap();
    assert_eq!(listed, json!([]));

    let out =
        stdout(&with_template(&["models", "register", "crn:churn", "--metadata", "good.yaml", "--cluster", "east"]));
    assert!(out.starts_with("registered crn:churn (model.registered, event "), "{out}");
    let err = failure(&with_template(&["models", "register", "crn:churn", "--metadata", "good.yaml"]));
    assert!(
        err.contains("crn:churn is registered already (by ana on ") && err.contains("driftline models update"),
        "{err}"
    );
    let err = failure(&with_template(&["models", "update", "crn:other", "--metadata", "good.yaml"]));
    assert!(err.contains("crn:other is not registered"), "{err}");

    // A model that only sends predictions is in the inventory, unregistered.
    let store_handle = driftline_store::open(&StoreConfig {
        database_url: database_url.clone(),
        data_dir: dir.join("data"),
        options: Default::default(),
    })
    .await
    .unwrap();
    let mut batch = WriteBatch::new(T0);
    batch.predictions.push(Prediction {
        uuid: uuid::Uuid::new_v4(),
        model_crn: "crn:shadow".into(),
        model_build_crn: "crn:shadow/b1".into(),
        model_deployment_crn: "crn:shadow/prod".into(),
        start_timestamp_ms: T0,
        end_timestamp_ms: T0 + 5,
        metrics: MetricsJson::from(json!({"prediction": 0.4}).as_object().unwrap().clone()),
    });
    store_handle.write(&batch).await.unwrap();
    store_handle.close().await;

    let listed: Value = serde_json::from_str(&stdout(&with_template(&["models", "list", "--format", "json"]))).unwrap();
    let rows: Vec<(String, String, Value, Value)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["crn"].as_str().unwrap().into(),
                m["status"].as_str().unwrap().into(),
                m["cluster"].clone(),
                m["missing_metadata"].clone(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("crn:churn".into(), "registered".into(), json!("east"), json!([])),
            ("crn:shadow".into(), "unregistered".into(), Value::Null, json!(["owner", "risk_tier", "training_date"])),
        ]
    );
    let table = stdout(&with_template(&["models", "list"]));
    assert!(table.lines().any(|l| l.starts_with("crn:shadow") && l.contains("unregistered")), "{table}");

    // An update is checked as a registration is, and the history keeps both.
    std::fs::write(dir.join("newer.yaml"), "owner: bo\ntraining_date: 2026-11-20\nrisk_tier: medium\n").unwrap();
    stdout(&with_template(&["models", "update", "crn:churn", "--metadata", "newer.yaml", "--actor", "bo"]));
    let shown: Value =
        serde_json::from_str(&stdout(&with_template(&["models", "show", "crn:churn", "--format", "json"]))).unwrap();
    assert_eq!(shown["metadata"], json!({"owner": "bo", "training_date": "2026-11-20", "risk_tier": "medium"}));
    let history: Vec<(&str, &str)> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["kind"].as_str().unwrap(), h["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(history, [("model.registered", "ana"), ("metadata.updated", "bo")]);
    let text = stdout(&with_template(&["models", "show", "crn:churn"]));
    assert!(text.starts_with("crn:churn  registered  (cluster east)\n") && text.contains("  owner: bo\n"), "{text}");
    let err = failure(&run(&["models", "show", "crn:nothing"]));
    assert!(err.contains("no model crn:nothing is registered or seen in predictions"), "{err}");

    // A stricter template flags the models that no longer meet it.
    let stricter = TEMPLATE.replace("optional:", "  approver: string\noptional:");
    std::fs::write(dir.join("t.yaml"), stricter).unwrap();
    let listed: Value = serde_json::from_str(&stdout(&with_template(&["models", "list", "--format", "json"]))).unwrap();
    assert_eq!(listed[0]["missing_metadata"], json!(["approver"]), "{listed}");

    // The chain is whole.
    let verified = stdout(&run(&["governance", "verify"]));
    assert!(verified.contains("cluster east: 1 event,") && verified.contains("cluster local: 1 event,"), "{verified}");
    assert!(verified.ends_with("every chain is whole (2 events)\n"), "{verified}");
}

#[tokio::test]
async fn models_register_list_show_and_verify_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = vec!["--data-dir".to_string(), dir.path().join("data").display().to_string()];
    inventory_flow(dir.path(), store.clone(), None).await;

    // Tampering with the file (past the database's own refusal) is found and named.
    let path = dir.path().join("data").join(driftline_store::open::SQLITE_FILE);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query("DROP TRIGGER governance_events_no_update").execute(&pool).await.unwrap();
    sqlx::query("UPDATE governance_events SET actor = 'eve' WHERE kind = 'metadata.updated'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let out = driftline(dir.path(), &store, &["governance", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("BROKEN cluster local: event 2 was changed after it was written"), "{text}");
}

#[tokio::test]
async fn models_register_list_show_and_verify_on_postgres() {
    let Some(db) = TestDatabase::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = vec!["--database-url".to_string(), db.url.clone()];
    inventory_flow(dir.path(), store, Some(db.url.clone())).await;
}

/// Posts governance events.
async fn post(server: &common::Server, key: &str, body: Value) -> (reqwest::StatusCode, String, Value) {
    server.post("/api/v1/governance/events", key, "application/json", body.to_string()).await
}

/// The governance API: appends by a govern key (checked against the data directory's
/// template, exactly once per event id), refusals by field, and the inventory read back.
#[tokio::test]
async fn governance_events_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_args(&dir);
    std::fs::write(dir.path().join("governance.yaml"), TEMPLATE).unwrap();
    let key = |scope: &str| {
        let out = common::cli(&["keys", "create", "--name", &format!("{scope}-bot"), "--scope", scope], &store);
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (govern, write) = (key("govern"), key("write"));
    let server = common::Server::start_admin(&store, &["--cluster", "east"]);

    let id = uuid::Uuid::new_v4();
    let register = json!({"events": [{"id": id, "kind": "model.registered", "subject": "crn:churn",
        "payload": {"metadata": {"owner": "ana", "training_date": "2026-10-30", "risk_tier": "low"}}}]});
    let (status, _, body) = post(&server, &govern, register.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"], json!([{"id": id, "seq": 1, "cluster": "east"}]));
    // The same event again (a retry) is stored once.
    let (status, _, body) = post(&server, &govern, register).await;
    assert_eq!((status.as_u16(), &body["results"]), (200, &json!([{"id": id, "duplicate": true}])), "{body}");

    let (status, _, body) = post(
        &server,
        &govern,
        json!({"events": [{"kind": "model.registered", "subject": "crn:fraud",
        "payload": {"metadata": {"owner": "bo"}}}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("events[0]: the metadata does not meet the governance template: risk_tier: missing"),
        "{detail}"
    );
    assert!(detail.contains("training_date: missing"), "{detail}");
    let (status, _, body) = post(
        &server,
        &govern,
        json!({"events": [{"kind": "metadata.updated", "subject": "crn:fraud",
        "payload": {"metadata": {}}}]}),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["detail"].as_str().unwrap()),
        (409, "events[0]: crn:fraud is not registered; register it first")
    );
    let (status, _, body) = post(
        &server,
        &govern,
        json!({"events": [{"kind": "deployment.promoted", "subject": "crn:churn/prod",
        "payload": {"model": "crn:churn", "build": "crn:churn/b1", "enviroment": "prod"}}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("unknown field `enviroment`"), "{body}");
    let (status, _, body) = post(&server, &write, json!({"events": []})).await;
    assert_eq!(status, 403, "{body}");

    // A build and its promotion in one request: the second checked after the first.
    let (status, _, body) = post(&server, &govern, json!({"events": [
        {"kind": "build.registered", "subject": "crn:churn/b1", "payload": {"model": "crn:churn",
            "artifact": {"uri": "s3://models/churn/b1.pkl", "sha256": "ab12"}, "training_data": ["warehouse.customers"]}},
        {"kind": "deployment.promoted", "subject": "crn:churn/prod", "actor": "lee", "payload": {"model": "crn:churn",
            "build": "crn:churn/b1", "environment": "prod", "approvals": [{"by": "kim", "role": "risk"}]}}]}))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"].as_array().unwrap().iter().map(|r| r["seq"].as_i64().unwrap()).collect::<Vec<_>>(),
        [2, 3]
    );

    let (status, _, listed) = server.get("/api/v1/models", Some(common::ADMIN)).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["models"][0]["crn"], "crn:churn");
    assert_eq!(listed["models"][0]["status"], "deployed");
    assert_eq!(listed["models"][0]["deployments"], json!(["crn:churn/prod"]));
    let (status, _, model) = server.get("/api/v1/models/crn:churn", Some(common::ADMIN)).await;
    assert_eq!(status, 200, "{model}");
    let actors: Vec<&str> = model["history"].as_array().unwrap().iter().map(|h| h["actor"].as_str().unwrap()).collect();
    assert_eq!(actors, ["govern-bot", "govern-bot", "lee"]);
    assert_eq!(model["deployments"]["crn:churn/prod"]["approvals"], json!([{"by": "kim", "role": "risk"}]));
    let (status, _, body) = server.get("/api/v1/models/crn:nothing", Some(common::ADMIN)).await;
    assert_eq!(status, 404, "{body}");
    server.stop();

    // The audit of that inventory: a promoted deployment no drift job watches and that has sent
    // no prediction.
    let audit_dir = dir.path().join("audit");
    let out = common::cli(&["models", "audit", "--output", audit_dir.to_str().unwrap()], &store);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.starts_with("audit ready: 0% (0 of 1 models without findings; 1 registered, 0 unregistered, 1 deployed)"),
        "{text}"
    );
    let audit: Value = serde_json::from_str(&std::fs::read_to_string(audit_dir.join("audit.json")).unwrap()).unwrap();
    let findings: Vec<(&str, &str, &str)> = audit["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["check"].as_str().unwrap(), f["subject"].as_str().unwrap(), f["detail"].as_str().unwrap()))
        .collect();
    assert_eq!(
        findings,
        [
            ("no_drift_job", "crn:churn/prod", "no drift job watches it"),
            ("orphaned", "crn:churn/prod", "no stored prediction")
        ]
    );
    assert_eq!(audit["summary"]["findings"]["build_without_checksum"], 0);
    let page = std::fs::read_to_string(audit_dir.join("audit.html")).unwrap();
    assert!(page.contains("<h1>Model audit</h1>") && page.contains("<b>0%</b>audit ready (0 of 1 models)"), "{page}");

    let verified = common::cli(&["governance", "verify", "--format", "json"], &store);
    let report: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!((report["events"].as_u64(), report["breaks"].as_array().map(Vec::len)), (Some(3), Some(0)), "{report}");
}

/// Builds, promotion through configured environments with every check, the served schema
/// inferred from predictions, and retirement, through the CLI on the embedded store.
#[tokio::test]
async fn builds_are_promoted_only_when_every_check_passes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = vec!["--data-dir".to_string(), d.join("data").display().to_string()];
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::write(
        d.join("data/governance.yaml"),
        "required:\n  owner: string\nenvironments:\n  staging:\n    approvals: 1\n  prod:\n    approvals: 2\n    after: staging\n",
    )
    .unwrap();
    std::fs::write(d.join("owner.yaml"), "owner: ana\n").unwrap();
    std::fs::write(d.join("m1.pkl"), "model one").unwrap();
    std::fs::write(d.join("m2.pkl"), "model two").unwrap();
    std::fs::write(d.join("schema1.json"), r#"{"tenure": "number", "plan": "string"}"#).unwrap();
    std::fs::write(d.join("schema2.json"), r#"{"tenure": "string", "region": {"type": "string", "optional": true}}"#)
        .unwrap();
    let run = |args: &[&str]| driftline(d, &store, args);
    stdout(&run(&["models", "register", "crn:churn", "--metadata", "owner.yaml"]));
    let out = stdout(&run(&[
        "models",
        "build",
        "crn:churn/b1",
        "--model",
        "crn:churn",
        "--artifact",
        "m1.pkl",
        "--input-schema",
        "schema1.json",
        "--training-data",
        "warehouse.customers",
    ]));
    assert!(out.starts_with("registered build crn:churn/b1"), "{out}");
    stdout(&run(&[
        "models",
        "build",
        "crn:churn/b2",
        "--model",
        "crn:churn",
        "--artifact",
        "m2.pkl",
        "--input-schema",
        "schema2.json",
    ]));
    let err = failure(&run(&["models", "build", "crn:churn/b3", "--model", "crn:churn", "--sha256", "ab"]));
    assert!(err.contains("give the artifact with --artifact"), "{err}");

    // Straight to prod with one approval: order and approvals fail, nothing is written.
    let out = run(&[
        "models",
        "promote",
        "crn:churn/b1",
        "--to",
        "prod",
        "--deployment",
        "crn:churn/prod",
        "--approved-by",
        "kim",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("order") && l.contains("FAILED") && l.contains("must be promoted to staging")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("approvals") && l.contains("FAILED") && l.contains("1 of 2 required (kim)")),
        "{table}"
    );
    assert!(table.lines().any(|l| l.starts_with("artifact") && l.contains("ok")), "{table}");
    assert!(String::from_utf8(out.stderr).unwrap().contains("crn:churn/b1 was not promoted"));

    let out = stdout(&run(&[
        "models",
        "promote",
        "crn:churn/b1",
        "--to",
        "staging",
        "--deployment",
        "crn:churn/staging",
        "--approved-by",
        "kim:risk",
    ]));
    assert!(out.contains("promoted crn:churn/b1 to staging as crn:churn/staging"), "{out}");
    let out = stdout(&run(&[
        "models",
        "promote",
        "crn:churn/b1",
        "--to",
        "prod",
        "--deployment",
        "crn:churn/prod",
        "--approved-by",
        "kim,lee",
    ]));
    assert!(out.contains("promoted crn:churn/b1 to prod"), "{out}");

    // b2 with its file changed after registration, and a schema that breaks staging's callers.
    std::fs::write(d.join("m2.pkl"), "model two, edited").unwrap();
    let out = run(&[
        "models",
        "promote",
        "crn:churn/b2",
        "--to",
        "staging",
        "--deployment",
        "crn:churn/staging",
        "--approved-by",
        "kim",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["artifact", "schema"], "{report}");
    let changes: Vec<(&str, &str)> = report["schema_differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["field"].as_str().unwrap(), c["change"].as_str().unwrap()))
        .collect();
    assert_eq!(changes, [("plan", "removed"), ("tenure", "retyped"), ("region", "added_optional")]);

    // A deployment known only from its predictions: its inputs' schema is what b1 is checked against.
    let handle = driftline_store::open(&StoreConfig {
        database_url: None,
        data_dir: d.join("data"),
        options: Default::default(),
    })
    .await
    .unwrap();
    let mut batch = WriteBatch::new(T0);
    for i in 0..20 {
        batch.predictions.push(Prediction {
            uuid: uuid::Uuid::new_v4(),
            model_crn: "crn:churn".into(),
            model_build_crn: "crn:churn/b0".into(),
            model_deployment_crn: "crn:churn/canary".into(),
            start_timestamp_ms: T0 + i,
            end_timestamp_ms: T0 + i,
            metrics: MetricsJson::from(
                json!({"input": {"tenure": i, "plan": "basic"}, "prediction": 0.5}).as_object().unwrap().clone(),
            ),
        });
    }
    handle.write(&batch).await.unwrap();
    handle.close().await;
    let out = stdout(&run(&[
        "models",
        "promote",
        "crn:churn/b1",
        "--to",
        "staging",
        "--deployment",
        "crn:churn/canary",
        "--approved-by",
        "kim",
    ]));
    assert!(
        out.lines().any(|l| l.starts_with("schema") && l.contains("the same as the inputs of its stored predictions")),
        "{out}"
    );
    let out = run(&[
        "models",
        "promote",
        "crn:churn/b2",
        "--to",
        "staging",
        "--deployment",
        "crn:churn/canary",
        "--approved-by",
        "kim",
        "--artifact",
        "m1.pkl",
    ]);
    assert_eq!(out.status.code(), Some(1));

    let out = stdout(&run(&["models", "retire", "crn:churn/prod", "--reason", "replaced"]));
    assert!(out.starts_with("retired crn:churn/prod"), "{out}");
    let shown: Value =
        serde_json::from_str(&stdout(&run(&["models", "show", "crn:churn", "--format", "json"]))).unwrap();
    assert_eq!(shown["status"], "deployed");
    assert_eq!(shown["deployments"]["crn:churn/prod"]["status"], "retired");
    assert_eq!(shown["deployments"]["crn:churn/staging"]["approvals"], json!([{"by": "kim", "role": "risk"}]));
    assert!(shown["builds"]["crn:churn/b1"]["artifact"]["sha256"].as_str().unwrap().len() == 64);
    assert!(stdout(&run(&["governance", "verify"])).contains("every chain is whole (7 events)"));
}
