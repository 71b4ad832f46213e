//! What the end-to-end test binaries share: the real `driftline serve` on a free loopback port,
//! with an HTTP client.
#![allow(dead_code)]

use std::path::Path;

use driftline_testkit::ServerProcess;
use reqwest::StatusCode;
use serde_json::Value;

/// The store flags of an embedded store in `dir`.
pub(crate) fn sqlite_args(dir: &tempfile::TempDir) -> Vec<String> {
    vec!["--data-dir".into(), dir.path().display().to_string()]
}

/// Runs `driftline ARGS STORE_ARGS` to the end.
pub(crate) fn cli(args: &[&str], store_args: &[String]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(args)
        .args(store_args)
        .env("DRIFTLINE_LOG", "warn,sqlx=error")
        .output()
        .unwrap()
}

/// A finished command's stdout, after asserting it succeeded.
pub(crate) fn stdout(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "driftline failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// A finished command's stderr, after asserting it failed.
pub(crate) fn failure(o: &std::process::Output) -> String {
    assert!(!o.status.success(), "expected a failure, got: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// The bootstrap admin key the tests run servers with.
pub(crate) const ADMIN: &str = "test-admin-key-0123456789";

pub(crate) struct Server {
    pub(crate) process: ServerProcess,
    pub(crate) base: String,
    /// Lines the server printed on stdout before it was ready.
    pub(crate) banner: Vec<String>,
    pub(crate) client: reqwest::Client,
}

impl Server {
    /// `driftline serve` with these store flags and extra flags, and no admin key configured.
    pub(crate) fn start(store_args: &[String], extra: &[&str]) -> Server {
        Self::start_with(store_args, extra, &[], None)
    }

    /// `driftline serve` with the admin key [`ADMIN`] (from the environment, as deployments
    /// pass it).
    pub(crate) fn start_admin(store_args: &[String], extra: &[&str]) -> Server {
        Self::start_with(store_args, extra, &[("DRIFTLINE_ADMIN_KEY", ADMIN)], None)
    }

    pub(crate) fn start_with(
        store_args: &[String],
        extra: &[&str],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Server {
        Self::start_at("127.0.0.1:0", store_args, extra, env, log)
    }

    /// Like [`Server::start_with`], listening on `listen` (for a server that must come back at
    /// an address others were given).
    pub(crate) fn start_at(
        listen: &str,
        store_args: &[String],
        extra: &[&str],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Server {
        let args: Vec<String> = store_args.iter().cloned().chain(extra.iter().map(|s| (*s).to_owned())).collect();
        // The tests' events are from 2023: with the default retention the server's rollup
        // worker would remove them (and their fine rollups) as soon as they are rolled. Tests of
        // retention pass --retain-* flags, which win over these.
        let mut env = env.to_vec();
        for keep in
            ["DRIFTLINE_RETAIN_RAW", "DRIFTLINE_RETAIN_1M", "DRIFTLINE_RETAIN_1H", "DRIFTLINE_RETAIN_DEAD_LETTERS"]
        {
            if !env.iter().any(|(k, _)| *k == keep) {
                env.push((keep, "forever"));
            }
        }
        let process = ServerProcess::start_at(Path::new(env!("CARGO_BIN_EXE_driftline")), listen, &args, &env, log);
        Server { base: process.base.clone(), banner: process.banner.clone(), process, client: reqwest::Client::new() }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `host:port` of the server.
    pub(crate) fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        key: &str,
        content_type: &str,
        body: String,
    ) -> (StatusCode, String, Value) {
        let r = self
            .client
            .post(self.url(path))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        answer(r).await
    }

    pub(crate) async fn get(&self, path: &str, key: Option<&str>) -> (StatusCode, String, Value) {
        let mut req = self.client.get(self.url(path));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        answer(req.send().await.unwrap()).await
    }

    pub(crate) fn stop(self) -> std::process::ExitStatus {
        self.process.stop()
    }
}

pub(crate) async fn answer(r: reqwest::Response) -> (StatusCode, String, Value) {
    let status = r.status();
    let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let text = r.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, content_type, value)
}
