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

/// Templates per model kind, lineage at build registration (asked by table from the CLI and
/// the API, exported as OpenLineage), evaluations with metrics and hashed attachments, and
/// deletion, through the CLI on the embedded store.
#[tokio::test]
async fn kinds_lineage_evaluation_and_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = vec!["--data-dir".to_string(), d.join("data").display().to_string()];
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::write(
        d.join("data/governance.yaml"),
        "required:\n  owner: string\nkinds:\n  classifier:\n    required:\n      decision_threshold: number\n  \
         regressor:\n    required:\n      target_unit: string\n",
    )
    .unwrap();
    std::fs::write(d.join("classifier.yaml"), "owner: ana\nkind: classifier\ndecision_threshold: 0.4\n").unwrap();
    std::fs::write(d.join("regressor.yaml"), "owner: ana\nkind: regressor\ndecision_threshold: 0.4\n").unwrap();
    std::fs::write(
        d.join("lineage.yaml"),
        "churn:\n  - warehouse.customers\n  - table: warehouse.events\n    query: SELECT customer_id, count(*) FROM warehouse.events GROUP BY 1\n\
         fraud:\n  - payments\n",
    )
    .unwrap();
    std::fs::write(d.join("report.html"), "<p>evaluation</p>").unwrap();
    let run = |args: &[&str]| driftline(d, &store, args);

    // A regressor's metadata is checked against the regressor's fields.
    let err = failure(&run(&["models", "register", "crn:demo:model/ltv", "--metadata", "regressor.yaml"]));
    assert!(err.contains("(2 fields)"), "{err}");
    assert!(
        err.contains("decision_threshold: is not in the governance template; its fields for a regressor are"),
        "{err}"
    );
    assert!(err.contains("target_unit: missing; it is required"), "{err}");
    stdout(&run(&["models", "register", "crn:demo:model/churn", "--metadata", "classifier.yaml"]));
    let out = stdout(&run(&[
        "models",
        "build",
        "crn:demo:build/churn-v1",
        "--model",
        "crn:demo:model/churn",
        "--lineage",
        "lineage.yaml",
        "--training-rows",
        "120000",
    ]));
    assert!(out.starts_with("registered build crn:demo:build/churn-v1"), "{out}");
    let err = failure(&run(&[
        "models",
        "build",
        "crn:demo:build/x",
        "--model",
        "crn:demo:model/ltv",
        "--lineage",
        "lineage.yaml",
    ]));
    assert!(err.contains("has no entry for crn:demo:model/ltv (nor `ltv`); its entries are churn, fraud"), "{err}");

    // An evaluation: metrics, rows and a hashed attachment; a build that is not registered is refused.
    let out = stdout(&run(&[
        "models",
        "evaluate",
        "crn:demo:deployment/churn-staging",
        "--build",
        "crn:demo:build/churn-v1",
        "--environment",
        "staging",
        "--metric",
        "roc_auc=0.91",
        "--metric",
        "accuracy=0.88",
        "--evaluation-rows",
        "5000",
        "--attachment",
        "report.html",
    ]));
    assert!(out.starts_with("evaluated crn:demo:build/churn-v1 for crn:demo:deployment/churn-staging"), "{out}");
    let err = failure(&run(&["models", "evaluate", "crn:d", "--build", "crn:demo:build/v9", "--metric", "auc=1"]));
    assert!(err.contains("crn:demo:build/v9 is not a build the governance log knows"), "{err}");
    let err =
        failure(&run(&["models", "evaluate", "crn:d", "--build", "crn:demo:build/churn-v1", "--metric", "auc=high"]));
    assert!(err.contains("--metric auc: `high` is not a finite number"), "{err}");

    let shown: Value =
        serde_json::from_str(&stdout(&run(&["models", "show", "crn:demo:model/churn", "--format", "json"]))).unwrap();
    assert_eq!(shown["status"], "evaluated");
    assert_eq!(shown["tables"], json!(["warehouse.customers", "warehouse.events"]));
    assert_eq!(shown["builds"]["crn:demo:build/churn-v1"]["training_rows"], 120000);
    let evaluation = &shown["history"][2]["payload"];
    assert_eq!(evaluation["metrics"], json!({"accuracy": 0.88, "roc_auc": 0.91}));
    assert_eq!(evaluation["evaluation_rows"], 5000);
    let attachment = &evaluation["attachments"][0];
    assert_eq!(attachment["size_bytes"], 17);
    // sha256 of "<p>evaluation</p>"
    let expected = {
        use std::fmt::Write;
        let digest = <sha2::Sha256 as sha2::Digest>::digest(b"<p>evaluation</p>");
        digest.iter().fold(String::new(), |mut s, b| {
            write!(s, "{b:02x}").unwrap();
            s
        })
    };
    assert_eq!(attachment["sha256"], expected.as_str());
    let text = stdout(&run(&["models", "show", "crn:demo:model/churn"]));
    assert!(text.contains("trained from: warehouse.customers, warehouse.events"), "{text}");

    // Lineage by table, as a table, JSON and OpenLineage run events.
    let table = stdout(&run(&["models", "lineage", "--table", "warehouse.events"]));
    assert!(table.lines().nth(2).unwrap().contains("crn:demo:build/churn-v1"), "{table}");
    assert!(table.contains("crn:demo:deployment/churn-staging (staging)") && table.contains("GROUP BY 1"), "{table}");
    let uses: Value = serde_json::from_str(&stdout(&run(&[
        "models",
        "lineage",
        "--table",
        "warehouse.customers",
        "--format",
        "json",
    ])))
    .unwrap();
    assert_eq!(uses["uses"][0]["model"], "crn:demo:model/churn");
    assert_eq!(uses["uses"][0]["deployments"][0]["status"], "evaluated");
    let all = stdout(&run(&["models", "lineage"]));
    assert_eq!(all.lines().count(), 4, "{all}");
    let events = stdout(&run(&["models", "lineage", "--format", "openlineage"]));
    let events: Vec<Value> = events.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["job"]["name"], "crn:demo:build/churn-v1");
    assert_eq!(events[0]["inputs"].as_array().unwrap().len(), 2);
    assert_eq!(events[0]["outputs"][0]["name"], "crn:demo:model/churn");

    // The API answers the same question.
    let server = common::Server::start_admin(&store, &[]);
    let (status, _, body) = server.get("/api/v1/lineage?table=warehouse.customers", Some(common::ADMIN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["uses"], uses["uses"]);
    let (status, _, body) = server.get("/api/v1/lineage", Some(common::ADMIN)).await;
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().starts_with("table: name the table"), "{body}");
    server.stop();

    // Deletion keeps the model, and its history, as deleted; a second deletion is refused.
    let out = stdout(&run(&["models", "delete", "crn:demo:model/churn", "--reason", "replaced"]));
    assert!(out.starts_with("deleted crn:demo:model/churn"), "{out}");
    let shown: Value =
        serde_json::from_str(&stdout(&run(&["models", "show", "crn:demo:model/churn", "--format", "json"]))).unwrap();
    assert_eq!((shown["status"].as_str(), shown["history"].as_array().map(Vec::len)), (Some("deleted"), Some(4)));
    let err =
        failure(&run(&["models", "evaluate", "crn:d", "--build", "crn:demo:build/churn-v1", "--metric", "auc=1"]));
    assert!(err.contains("was deleted"), "{err}");
    let err = failure(&run(&["models", "delete", "crn:demo:model/nothing"]));
    assert!(err.contains("there is nothing to delete"), "{err}");
}

/// The primary's view of its models and remote clusters.
async fn primary_models(primary: &common::Server) -> Vec<Value> {
    let (status, _, body) = primary.get("/api/v1/models", Some(common::ADMIN)).await;
    assert_eq!(status, 200, "{body}");
    body["models"].as_array().unwrap().clone()
}

/// Registers `model` with a build on a remote's store through the CLI; with `evaluate`, also
/// evaluates the build, which releases the model to the primary.
fn remote_model(dir: &Path, store: &[String], model: &str, evaluate: bool) {
    std::fs::write(dir.join("owner.yaml"), "owner: ana\n").unwrap();
    let run = |args: &[&str]| stdout(&driftline(dir, store, args));
    run(&["models", "register", model, "--metadata", "owner.yaml", "--cluster", "east"]);
    let build = format!("{model}/b1");
    run(&["models", "build", &build, "--model", model, "--cluster", "east"]);
    if evaluate {
        let deployment = format!("{model}/staging");
        run(&["models", "evaluate", &deployment, "--build", &build, "--metric", "auc=0.9", "--cluster", "east"]);
    }
}

/// A remote cluster's sync to a primary: only released models leave, each event is stored
/// once (also when a sync is repeated from a cursor that was lost), the primary tags the
/// models with the cluster and shows its progress, and bad syncs are refused by name.
#[tokio::test]
async fn a_remote_cluster_syncs_its_released_models_to_the_primary_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let primary_store = vec!["--data-dir".to_string(), d.join("primary").display().to_string()];
    let remote_store = vec!["--data-dir".to_string(), d.join("east").display().to_string()];
    let primary = common::Server::start_admin(&primary_store, &["--cluster", "hq"]);
    remote_model(d, &remote_store, "crn:a", true);
    remote_model(d, &remote_store, "crn:b", false);
    let sync = |extra: &[&str]| {
        let mut args = vec!["sync", "--to", primary.base.as_str(), "--key", common::ADMIN, "--once"];
        args.extend(extra);
        driftline(d, &remote_store, &args)
    };

    // A sync under another cluster's name sends nothing and moves nothing of east's.
    let out = stdout(&sync(&["--cluster", "local"]));
    assert!(out.contains(": 0 events stored, 0 already there, cursor at 0"), "{out}");
    let out = stdout(&sync(&["--cluster", "east"]));
    assert!(
        out.starts_with(&format!(
            "synced cluster east to {}: 3 events stored, 0 already there, cursor at 5",
            primary.base
        )),
        "{out}"
    );
    let models = primary_models(&primary).await;
    assert_eq!(models.len(), 1, "only the evaluated model leaves the remote: {models:?}");
    assert_eq!((models[0]["crn"].as_str(), models[0]["cluster"].as_str()), (Some("crn:a"), Some("east")));
    assert_eq!(models[0]["status"], "evaluated");
    let out = stdout(&sync(&["--cluster", "east"]));
    assert!(out.contains(": 0 events stored, 0 already there, cursor at 5"), "{out}");

    // b is evaluated later: its registration and build go with the evaluation, in one batch
    // however small the batches.
    let run = |args: &[&str]| stdout(&driftline(d, &remote_store, args));
    run(&["models", "evaluate", "crn:b/staging", "--build", "crn:b/b1", "--metric", "auc=0.8", "--cluster", "east"]);
    // A copy of the remote's store now: the state of a sync that crashed after the primary
    // took the next batch and before the cursor was saved.
    let copy = d.join("east-copy");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(d.join("east")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let out = stdout(&sync(&["--cluster", "east", "--sync-batch-size", "1"]));
    assert!(out.contains(": 3 events stored, 0 already there, cursor at 6"), "{out}");
    let models = primary_models(&primary).await;
    assert_eq!(models.iter().map(|m| m["crn"].as_str().unwrap()).collect::<Vec<_>>(), ["crn:a", "crn:b"]);
    // The sync from the lost cursor sends the batch again; the primary keeps one of each.
    let copy_store = vec!["--data-dir".to_string(), copy.display().to_string()];
    let again = driftline(
        d,
        &copy_store,
        &["sync", "--to", primary.base.as_str(), "--key", common::ADMIN, "--once", "--cluster", "east"],
    );
    let out = stdout(&again);
    assert!(out.contains(": 0 events stored, 3 already there, cursor at 6"), "{out}");

    // A deletion of a synced model follows it.
    run(&["models", "delete", "crn:b", "--cluster", "east"]);
    let out = stdout(&sync(&["--cluster", "east"]));
    assert!(out.contains(": 1 event stored, 0 already there, cursor at 7"), "{out}");
    let (status, _, b) = primary.get("/api/v1/models/crn:b", Some(common::ADMIN)).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!((b["status"].as_str(), b["history"].as_array().map(Vec::len)), (Some("deleted"), Some(4)), "{b}");

    // The primary's view of the remote: through 7, nothing pending.
    let (status, _, clusters) = primary.get("/api/v1/governance/clusters", Some(common::ADMIN)).await;
    assert_eq!(status, 200, "{clusters}");
    assert_eq!(clusters["cluster"], "hq");
    let east = &clusters["remotes"][0];
    assert_eq!((east["cluster"].as_str(), east["synced_through_seq"].as_i64()), (Some("east"), Some(7)), "{clusters}");
    assert_eq!((east["pending_events"].as_i64(), east["lag_seconds"].as_i64()), (Some(0), Some(0)), "{clusters}");

    // The primary refuses what would not fold into its log (a retirement of a deployment it
    // cannot place), and another cluster's events posted as its own.
    let batch = json!({"cluster": "east", "through_seq": 99, "pending": 0, "events": [{
        "id": "00000000-0000-4000-8000-000000000001", "kind": "deployment.retired", "subject": "crn:x/prod",
        "actor": "ana", "cluster": "east", "time_ms": 1, "payload": "{}"}]});
    let (status, _, body) =
        primary.post("/api/v1/governance/sync", common::ADMIN, "application/json", batch.to_string()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["detail"],
        "events[0]: retires crn:x/prod, which no earlier event names; name its model in `model`; nothing of the batch was stored"
    );
    let (status, _, body) = post(
        &primary,
        common::ADMIN,
        json!({"events": [{"kind": "model.deleted", "subject": "crn:a", "cluster": "east", "payload": {}}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().starts_with("events[0]: cluster: is `east`, not this server's cluster `hq`"),
        "{body}"
    );

    // Refused by name: the primary's own cluster, a key it does not know, a primary that is
    // not there (and then nothing moves: the next sync sends what was due).
    let err = failure(&sync(&["--cluster", "hq"]));
    assert!(err.contains("refused the batch (409 Conflict): cluster: `hq` is this server's own cluster"), "{err}");
    let err = failure(&driftline(d, &remote_store, &["sync", "--to", "https://hq.example", "--key", "k", "--once"]));
    assert!(err.contains("--to: `https://hq.example`: this build speaks plain HTTP only"), "{err}");
    let err = failure(&driftline(
        d,
        &remote_store,
        &["sync", "--to", primary.base.as_str(), "--key", "not-a-key", "--once", "--cluster", "east"],
    ));
    assert!(err.contains("refused the batch (401 Unauthorized)"), "{err}");
    run(&["models", "evaluate", "crn:a/prod", "--build", "crn:a/b1", "--cluster", "east"]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let err = failure(&driftline(
        d,
        &remote_store,
        &["sync", "--to", &format!("http://{closed}"), "--key", common::ADMIN, "--once", "--cluster", "east"],
    ));
    assert!(err.contains(&format!("cannot reach the primary at http://{closed}")), "{err}");
    let out = stdout(&sync(&["--cluster", "east"]));
    assert!(out.contains(": 1 event stored, 0 already there, cursor at 8"), "{out}");
    primary.stop();

    // Each cluster's chain on the primary is whole: hq has none, east the 8 synced events.
    let verified = driftline(d, &primary_store, &["governance", "verify", "--format", "json"]);
    let report: Value = serde_json::from_slice(&stdout_bytes(&verified)).unwrap();
    assert_eq!((report["events"].as_u64(), report["breaks"].as_array().map(Vec::len)), (Some(8), Some(0)), "{report}");
    let table = stdout(&driftline(d, &primary_store, &["governance", "clusters"]));
    assert!(table.lines().nth(2).is_some_and(|l| l.starts_with("east") && l.contains(" 8 ")), "{table}");
}

fn stdout_bytes(o: &Output) -> Vec<u8> {
    stdout(o).into_bytes()
}

/// `models` models, each registered, built and evaluated, posted to a remote's API: three
/// events each, every model released.
async fn post_released_models(remote: &common::Server, models: usize) {
    let mut events = Vec::new();
    for i in 0..models {
        let (model, build) = (format!("crn:m{i:02}"), format!("crn:m{i:02}/b1"));
        events.push(json!({"kind": "model.registered", "subject": model, "payload": {"metadata": {"owner": "ana"}}}));
        events.push(json!({"kind": "build.registered", "subject": build, "payload": {"model": model}}));
        events.push(json!({"kind": "deployment.evaluated", "subject": format!("{model}/staging"),
                           "payload": {"model": model, "build": build, "metrics": {"auc": 0.9}}}));
    }
    let (status, _, body) = post(remote, common::ADMIN, json!({ "events": events })).await;
    assert_eq!(status, 200, "{body}");
}

/// Every model on the primary, with its history's length.
async fn primary_histories(primary: &common::Server) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for m in primary_models(primary).await {
        let crn = m["crn"].as_str().unwrap().to_string();
        let (status, _, shown) = primary.get(&format!("/api/v1/models/{crn}"), Some(common::ADMIN)).await;
        assert_eq!(status, 200, "{shown}");
        assert_eq!(shown["cluster"], "east");
        out.push((crn, shown["history"].as_array().unwrap().len()));
    }
    out
}

/// `driftline sync` killed with SIGKILL again and again in the middle of its batches, then run
/// to the end: the primary has every event of the remote's once. The remote's store is
/// Postgres (the embedded store when no Postgres is configured), the primary's embedded.
#[tokio::test]
async fn a_sync_killed_at_any_point_leaves_each_event_on_the_primary_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = TestDatabase::create().await;
    let remote_store = match &db {
        Some(db) => vec!["--database-url".to_string(), db.url.clone()],
        None => vec!["--data-dir".to_string(), d.join("east").display().to_string()],
    };
    let remote = common::Server::start_admin(&remote_store, &["--cluster", "east"]);
    post_released_models(&remote, 40).await;
    remote.stop();
    let primary = common::Server::start_admin(
        &["--data-dir".to_string(), d.join("hq").display().to_string()],
        &["--cluster", "hq"],
    );

    // Each round starts the sync and kills it as soon as the primary has more than before:
    // in the middle of its batches (one model per batch, forty batches).
    let (mut before, mut mid_sync_kills) = (0, 0);
    for _ in 0..8 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_driftline"))
            .current_dir(d)
            .args(["sync", "--to", primary.base.as_str(), "--key", common::ADMIN, "--cluster", "east"])
            .args(["--sync-batch-size", "1", "--sync-interval-secs", "1"])
            .args(&remote_store)
            .env("DRIFTLINE_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut now = before;
        for _ in 0..2_000 {
            now = primary_models(&primary).await.len();
            if now > before {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if now < 40 {
            mid_sync_kills += 1;
        }
        before = primary_models(&primary).await.len();
        if before == 40 {
            break;
        }
    }
    assert!(mid_sync_kills > 0, "no kill came while the sync had models left to send");
    let out = stdout(&driftline(
        d,
        &remote_store,
        &["sync", "--to", primary.base.as_str(), "--key", common::ADMIN, "--once", "--cluster", "east"],
    ));
    assert!(out.contains("already there, cursor at 120"), "{out}");
    let histories = primary_histories(&primary).await;
    assert_eq!(histories.len(), 40);
    assert!(histories.iter().all(|(_, events)| *events == 3), "{histories:?}");
    let (_, _, clusters) = primary.get("/api/v1/governance/clusters", Some(common::ADMIN)).await;
    assert_eq!(clusters["remotes"][0]["pending_events"], 0, "{clusters}");
    assert_eq!(clusters["remotes"][0]["synced_through_seq"], 120, "{clusters}");
    primary.stop();
    let verified = driftline(
        d,
        &["--data-dir".to_string(), d.join("hq").display().to_string()],
        &["governance", "verify", "--format", "json"],
    );
    let report: Value = serde_json::from_slice(&stdout_bytes(&verified)).unwrap();
    assert_eq!(
        (report["events"].as_u64(), report["breaks"].as_array().map(Vec::len)),
        (Some(120), Some(0)),
        "{report}"
    );
}

/// The sync service inside `serve`: the primary is down when the remote's activity happens;
/// the remote keeps working, and once the primary comes up at its address the service catches
/// up by itself.
#[tokio::test]
async fn the_sync_service_catches_up_when_the_primary_comes_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let primary_url = format!("http://{address}");
    let remote_store = vec!["--data-dir".to_string(), d.join("east").display().to_string()];
    let remote = common::Server::start_admin(
        &remote_store,
        &["--cluster", "east", "--sync-to", &primary_url, "--sync-key", common::ADMIN, "--sync-interval-secs", "1"],
    );
    post_released_models(&remote, 5).await;
    let (status, _, body) = remote.get("/api/v1/models", Some(common::ADMIN)).await;
    assert_eq!((status.as_u16(), body["models"].as_array().map(Vec::len)), (200, Some(5)), "{body}");
    std::thread::sleep(std::time::Duration::from_millis(1_500));

    let primary = common::Server::start_at(
        &address,
        &["--data-dir".to_string(), d.join("hq").display().to_string()],
        &["--cluster", "hq"],
        &[("DRIFTLINE_ADMIN_KEY", common::ADMIN)],
        None,
    );
    let mut histories = Vec::new();
    for _ in 0..120 {
        histories = primary_histories(&primary).await;
        if histories.len() == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(histories.len(), 5, "the remote did not catch up within 30 s: {histories:?}");
    assert!(histories.iter().all(|(_, events)| *events == 3), "{histories:?}");
    remote.stop();
    primary.stop();
}

/// A real MLflow tracking server (`mlflow server`, SQLite backend) on a free loopback port, in
/// its own process group, killed with it when dropped.
struct MlflowServer {
    child: std::process::Child,
    base: String,
    client: reqwest::Client,
}

impl MlflowServer {
    /// Starts it, or `None` when no `mlflow` is installed (a failure instead when
    /// DRIFTLINE_REQUIRE_MLFLOW=1, as CI sets it).
    async fn start(dir: &Path) -> Option<MlflowServer> {
        use std::os::unix::process::CommandExt;
        let bin = std::env::var("DRIFTLINE_MLFLOW_BIN").map(std::path::PathBuf::from).unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/driftline/mlflow-env/bin/mlflow")
        });
        if !bin.exists() {
            assert!(
                std::env::var("DRIFTLINE_REQUIRE_MLFLOW").as_deref() != Ok("1"),
                "DRIFTLINE_REQUIRE_MLFLOW=1 but there is no mlflow at {} (set DRIFTLINE_MLFLOW_BIN)",
                bin.display()
            );
            eprintln!("skipped: no mlflow at {} (set DRIFTLINE_MLFLOW_BIN)", bin.display());
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.join("mlflow.log")).unwrap();
        let child = Command::new(&bin)
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--default-artifact-root")
            .arg(format!("file://{}", dir.join("artifacts").display()))
            .current_dir(dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start mlflow server");
        let server = MlflowServer { child, base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new() };
        // Its first start creates its database: allow a minute, polling.
        for _ in 0..240 {
            if let Ok(r) = server.client.get(format!("{}/health", server.base)).send().await {
                if r.status().is_success() {
                    return Some(server);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        panic!(
            "mlflow server did not answer /health within 60 s: {}",
            std::fs::read_to_string(dir.join("mlflow.log")).unwrap_or_default()
        );
    }

    /// Calls the REST API (`POST` with a body, else `GET`), asserting success.
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        let response = self.client.request(method, url).json(&body).send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "mlflow {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, body).await
    }

    /// A finished run with these metrics and parameters; its id.
    async fn run(&self, experiment: &str, metrics: &[(&str, f64)], params: &[(&str, &str)]) -> String {
        let run =
            self.post("runs/create", json!({"experiment_id": experiment, "start_time": 1_796_000_000_000i64})).await;
        let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
        for (key, value) in metrics {
            self.post(
                "runs/log-metric",
                json!({"run_id": run_id, "key": key, "value": value, "timestamp": 1_796_000_000_500i64, "step": 0}),
            )
            .await;
        }
        for (key, value) in params {
            self.post("runs/log-parameter", json!({"run_id": run_id, "key": key, "value": value})).await;
        }
        self.post("runs/update", json!({"run_id": run_id, "status": "FINISHED", "end_time": 1_796_000_060_000i64}))
            .await;
        run_id
    }

    /// A version of `model` from `run_id`; its number.
    async fn version(&self, model: &str, run_id: &str) -> String {
        let source = format!("runs:/{run_id}/model");
        let v = self.post("model-versions/create", json!({"name": model, "source": source, "run_id": run_id})).await;
        v["model_version"]["version"].as_str().unwrap().to_string()
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // The server starts worker processes: end its whole process group (by `pkill -g`, which
        // takes the group's id as it is; a negative pid given to kill(1) is easy to misread).
        let _ = Command::new("pkill").args(["-KILL", "-g", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// `driftline mlflow sync` against a real MLflow tracking server: models and versions imported
/// with their tags, runs and mapped metrics; a model the template refuses is reported, not
/// imported; a repeated sync writes nothing; changes, new versions and fixed tags are picked
/// up; each run's activity record is kept; and the scheduled mode syncs by itself.
#[tokio::test]
async fn mlflow_registries_sync_into_the_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(mlflow) = MlflowServer::start(d).await else { return };
    let store = vec!["--data-dir".to_string(), d.join("data").display().to_string()];
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::write(
        d.join("data/governance.yaml"),
        "required:\n  owner: string\noptional:\n  risk_tier: [low, high]\n  description: string\n",
    )
    .unwrap();
    std::fs::write(d.join("mapping.yaml"), "metrics:\n  val_auc: roc_auc\nmodels:\n  churn: crn:demo:model/churn\n")
        .unwrap();

    let experiment = mlflow.post("experiments/create", json!({"name": "churn"})).await["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let run1 = mlflow.run(&experiment, &[("val_auc", 0.93), ("train_loss", 0.2)], &[("max_depth", "6")]).await;
    mlflow
        .post(
            "registered-models/create",
            json!({"name": "churn", "description": "churn classifier",
               "tags": [{"key": "owner", "value": "ana"}, {"key": "risk_tier", "value": "low"}]}),
        )
        .await;
    assert_eq!(mlflow.version("churn", &run1).await, "1");
    mlflow.post("registered-models/create", json!({"name": "fraud"})).await;
    let sync = || {
        driftline(d, &store, &["mlflow", "sync", "--tracking-uri", mlflow.base.as_str(), "--mapping", "mapping.yaml"])
    };

    let out = stdout(&sync());
    assert!(
        out.starts_with(&format!("synced MLflow {}: 2 created, 0 updated, 0 skipped, 1 failed", mlflow.base)),
        "{out}"
    );
    assert!(
        out.contains("failed model fraud: the metadata does not meet the governance template: owner: missing"),
        "{out}"
    );
    let shown: Value = serde_json::from_str(&stdout(&driftline(
        d,
        &store,
        &["models", "show", "crn:demo:model/churn", "--format", "json"],
    )))
    .unwrap();
    assert_eq!(shown["metadata"], json!({"description": "churn classifier", "owner": "ana", "risk_tier": "low"}));
    assert_eq!(shown["registered_by"], "mlflow-sync");
    let build = &shown["history"][1];
    assert_eq!(
        (build["kind"].as_str(), build["subject"].as_str()),
        (Some("build.registered"), Some("crn:demo:model/churn/v1"))
    );
    assert_eq!(build["payload"]["metrics"], json!({"roc_auc": 0.93, "train_loss": 0.2}));
    assert_eq!(build["payload"]["parameters"], json!({"max_depth": "6"}));
    assert_eq!(build["payload"]["run_id"], run1.as_str());
    assert_eq!(build["payload"]["artifact"]["uri"], format!("runs:/{run1}/model"));
    // The run's metrics are aggregate metrics of the build.
    let rows = stdout(&driftline(
        d,
        &store,
        &["sql", "--format", "json", "SELECT metrics, source, start_timestamp_ms, end_timestamp_ms FROM aggregate_metrics WHERE model_deployment_crn = 'crn:demo:model/churn/v1'"],
    ));
    let rows: Value = serde_json::from_str(&rows).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    let metrics: Value = serde_json::from_str(rows[0]["metrics"].as_str().unwrap()).unwrap();
    assert_eq!(metrics, json!({"roc_auc": 0.93, "train_loss": 0.2}));
    assert_eq!(rows[0]["source"], format!("mlflow:{}", mlflow.base));
    assert_eq!(
        (rows[0]["start_timestamp_ms"].as_i64(), rows[0]["end_timestamp_ms"].as_i64()),
        (Some(1_796_000_000_000), Some(1_796_000_060_000))
    );

    // Nothing changed: nothing written, no run fetched again (the server's log counts them).
    let runs_fetched = || std::fs::read_to_string(d.join("mlflow.log")).unwrap().matches("/runs/get?").count();
    let fetched = runs_fetched();
    assert_eq!(fetched, 1);
    let out = stdout(&sync());
    assert!(out.contains(": 0 created, 0 updated, 2 skipped, 1 failed"), "{out}");
    assert_eq!(runs_fetched(), fetched);

    // A changed tag, a new version, and the refused model fixed.
    mlflow.post("registered-models/set-tag", json!({"name": "churn", "key": "owner", "value": "bo"})).await;
    let run2 = mlflow.run(&experiment, &[("val_auc", 0.95)], &[("max_depth", "8")]).await;
    assert_eq!(mlflow.version("churn", &run2).await, "2");
    mlflow.post("registered-models/set-tag", json!({"name": "fraud", "key": "owner", "value": "kim"})).await;
    let out = stdout(&sync());
    assert!(out.contains(": 2 created, 1 updated, 1 skipped, 0 failed"), "{out}");
    let listed: Value =
        serde_json::from_str(&stdout(&driftline(d, &store, &["models", "list", "--format", "json"]))).unwrap();
    let crns: Vec<&str> = listed.as_array().unwrap().iter().map(|m| m["crn"].as_str().unwrap()).collect();
    assert_eq!(crns, ["crn:demo:model/churn", "crn:mlflow:model/fraud"]);
    assert_eq!(listed[0]["metadata"]["owner"], "bo");

    // The activity records, newest first.
    let history: Value =
        serde_json::from_str(&stdout(&driftline(d, &store, &["mlflow", "history", "--format", "json"]))).unwrap();
    let counts: Vec<[i64; 4]> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| ["created", "updated", "skipped", "failed"].map(|k| r[k].as_i64().unwrap()))
        .collect();
    assert_eq!(counts, [[2, 1, 1, 0], [0, 0, 2, 1], [2, 0, 0, 1]]);
    let first = history[2]["detail"]["items"].as_array().unwrap();
    let fraud = first.iter().find(|i| i["item"] == "model fraud").unwrap();
    assert_eq!(fraud["outcome"], "failed");
    assert!(fraud["reason"].as_str().unwrap().contains("owner: missing"), "{fraud}");
    assert!(
        history[0]["detail"]["cursor_after"].as_i64().unwrap()
            >= history[1]["detail"]["cursor_after"].as_i64().unwrap()
    );

    let err = failure(&driftline(d, &store, &["mlflow", "sync", "--tracking-uri", "https://mlflow.example"]));
    assert!(err.contains("this build speaks plain HTTP only"), "{err}");

    // An unreachable registry: exit 1, said, and kept in the activity record too.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let err = failure(&driftline(d, &store, &["mlflow", "sync", "--tracking-uri", &format!("http://{closed}")]));
    assert!(err.contains(&format!("cannot reach the MLflow server at http://{closed}")), "{err}");
    let table = stdout(&driftline(d, &store, &["mlflow", "history"]));
    assert!(
        table.lines().nth(2).is_some_and(|l| l.contains(&closed.to_string()) && l.contains("cannot reach")),
        "{table}"
    );

    // On a schedule (every second, as a six-field cron): it syncs by itself until stopped.
    let run3 = mlflow.run(&experiment, &[("val_auc", 0.96)], &[]).await;
    assert_eq!(mlflow.version("churn", &run3).await, "3");
    let mut scheduled = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .current_dir(d)
        .args([
            "mlflow",
            "sync",
            "--tracking-uri",
            mlflow.base.as_str(),
            "--mapping",
            "mapping.yaml",
            "--schedule",
            "* * * * * *",
        ])
        .args(&store)
        .env("DRIFTLINE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = false;
    for _ in 0..60 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let shown = stdout(&driftline(d, &store, &["models", "show", "crn:demo:model/churn", "--format", "json"]));
        if serde_json::from_str::<Value>(&shown).unwrap()["builds"].get("crn:demo:model/churn/v3").is_some() {
            seen = true;
            break;
        }
    }
    let _ = Command::new("kill").args(["-TERM", &scheduled.id().to_string()]).status();
    let status = scheduled.wait().unwrap();
    assert!(seen, "the scheduled sync did not import version 3 within 30 s");
    assert!(status.success(), "the scheduled sync did not stop cleanly on SIGTERM: {status}");
}
