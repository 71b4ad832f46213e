//! What the end-to-end test binaries share: the real `driftline serve` on a free loopback port.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
    /// Lines the server printed on stdout before it was ready.
    pub(crate) banner: Vec<String>,
    pub(crate) client: reqwest::Client,
}

impl Server {
    pub(crate) fn start(store_args: &[String], extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_driftline"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(store_args)
            .args(extra)
            .env("DRIFTLINE_LOG", "warn,sqlx=error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start driftline serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut banner = Vec::new();
        let base = loop {
            let line = rx.recv_timeout(Duration::from_secs(30)).expect("server printed its address within 30 s");
            if let Some(rest) = line.strip_prefix("driftline listening on ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            banner.push(line);
        };
        Server { child, base, banner, client: reqwest::Client::new() }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
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

    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        // SIGTERM, then wait (bounded) for a clean exit.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("driftline did not stop within 15 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn answer(r: reqwest::Response) -> (StatusCode, String, Value) {
    let status = r.status();
    let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let text = r.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, content_type, value)
}
