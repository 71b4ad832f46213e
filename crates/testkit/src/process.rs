//! The real `driftline` processes, started by tests: `driftline ingest` and `driftline serve`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Sends `signal` (`KILL`, `TERM`) to a process.
fn signal(child: &Child, signal: &str) {
    let _ = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status();
}

/// Where a child's log (stderr) goes: appended to `log`, or to the test's stderr.
fn log_to(log: Option<&Path>) -> Stdio {
    match log {
        Some(path) => {
            Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open the process log"))
        }
        None => Stdio::inherit(),
    }
}

/// Reads a child's stdout on a thread of its own and hands each line over, so the child never
/// blocks on a full pipe.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (at most 30 s) for the stdout line starting with `prefix`; returns the rest of it and
/// the lines before it.
fn wait_for_line(lines: &mpsc::Receiver<String>, prefix: &str) -> (String, Vec<String>) {
    let mut before = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).unwrap_or_else(|_| panic!("no line `{prefix}…` within 30 s"));
        if let Some(rest) = line.strip_prefix(prefix) {
            return (rest.trim().to_owned(), before);
        }
        before.push(line);
    }
}

/// A `driftline ingest` process serving its metrics on a loopback port. Killed when dropped.
pub struct IngestProcess {
    child: Child,
    /// `http://127.0.0.1:PORT/metrics`.
    pub metrics_url: String,
}

impl IngestProcess {
    /// Starts `bin ingest ARGS --metrics-listen 127.0.0.1:0`. Its log (stderr) goes to `log`
    /// (appended) when given, else to the test's stderr.
    pub fn start(bin: &Path, args: &[String], log: Option<&Path>) -> IngestProcess {
        let stderr = log_to(log);
        let mut child = Command::new(bin)
            .arg("ingest")
            .args(args)
            .args(["--metrics-listen", "127.0.0.1:0"])
            .env("DRIFTLINE_LOG", std::env::var("DRIFTLINE_TEST_LOG").unwrap_or_else(|_| "warn,sqlx=error".into()))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start driftline ingest");
        let lines = lines_of(&mut child);
        let (metrics_url, _) = wait_for_line(&lines, "driftline metrics on ");
        std::thread::spawn(move || for _ in lines {});
        IngestProcess { child, metrics_url }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(mut self) {
        signal(&self.child, "KILL");
        let _ = self.child.wait();
    }

    /// The value of a metric line (`name{labels}`) at `/metrics`, or `None` when it cannot be read.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let out = Command::new("curl").args(["-fsS", "--max-time", "5", &self.metrics_url]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// Stops the process with SIGTERM and waits (at most 60 s) for it to exit; returns whether it
    /// exited successfully.
    pub fn stop(mut self) -> bool {
        signal(&self.child, "TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for ingest") {
                return status.success();
            }
            assert!(Instant::now() < deadline, "ingest did not stop within 60 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for IngestProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `driftline serve` process on a free loopback port. Killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Lines the server printed on stdout before it was ready.
    pub banner: Vec<String>,
    lines: mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Starts `bin serve --listen 127.0.0.1:0 ARGS` with these extra environment variables and
    /// waits until it listens. Its log (stderr) goes to `log` (appended) when given, else to the
    /// test's stderr.
    pub fn start(bin: &Path, args: &[String], env: &[(&str, &str)], log: Option<&Path>) -> ServerProcess {
        Self::start_at(bin, "127.0.0.1:0", args, env, log)
    }

    /// Like [`ServerProcess::start`], listening on `listen` (a loopback address chosen by the
    /// test, for a server that must come back at the address others were given).
    pub fn start_at(
        bin: &Path,
        listen: &str,
        args: &[String],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> ServerProcess {
        let stderr = log_to(log);
        let mut child = Command::new(bin)
            .arg("serve")
            .args(["--listen", listen])
            .args(args)
            .env("DRIFTLINE_LOG", std::env::var("DRIFTLINE_TEST_LOG").unwrap_or_else(|_| "warn,sqlx=error".into()))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start driftline serve");
        let lines = lines_of(&mut child);
        let (rest, banner) = wait_for_line(&lines, "driftline listening on ");
        let base = rest.split_whitespace().next().expect("an address").to_owned();
        ServerProcess { child, base, banner, lines }
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the server prints on stdout, waiting at most `wait`.
    pub fn next_line(&self, wait: Duration) -> Option<String> {
        self.lines.recv_timeout(wait).ok()
    }

    /// Kills the server with SIGKILL and reaps it.
    pub fn kill(mut self) {
        signal(&self.child, "KILL");
        let _ = self.child.wait();
    }

    /// Stops the server with SIGTERM and waits (at most 15 s) for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        signal(&self.child, "TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for serve") {
                return status;
            }
            assert!(Instant::now() < deadline, "driftline did not stop within 15 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory for a test's files (logs, SQLite stores); kept when the test fails so
/// its logs can be read, and the path printed.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("driftline-{name}-{}-{}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}
