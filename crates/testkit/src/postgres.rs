//! Tests that need a real database: a fresh Postgres database per test, dropped
//! afterwards. The server is the one named by `DRIFTLINE_TEST_DATABASE_URL`; without it, the
//! local server at `postgres://postgres@127.0.0.1:5432/postgres`, and when that does not answer,
//! a throwaway cluster started from the installed PostgreSQL binaries (`initdb`, `pg_ctl`) and
//! stopped with the test. When none of these works the test is skipped, unless
//! `DRIFTLINE_REQUIRE_POSTGRES=1`, in which case it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, PgConnection};

/// The server used when `DRIFTLINE_TEST_DATABASE_URL` is not set.
pub const DEFAULT_TEST_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test; dropped (with its connections, and its throwaway cluster
/// if it has one) when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// URL of the fresh database.
    pub url: String,
    admin_url: String,
    name: String,
    cluster: Option<Cluster>,
}

fn required() -> bool {
    std::env::var("DRIFTLINE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// Skips (returns `None`) or, when Postgres is required, fails with `why`.
fn unavailable(why: String) -> Option<TestDatabase> {
    if required() {
        panic!("DRIFTLINE_REQUIRE_POSTGRES=1 but {why}");
    }
    eprintln!("skipping: {why}; set DRIFTLINE_TEST_DATABASE_URL");
    None
}

impl TestDatabase {
    /// Creates a fresh database, or returns `None` (after saying why on stderr) when no
    /// Postgres can be had and it is not required. Panics when it is required.
    pub async fn create() -> Option<TestDatabase> {
        if let Ok(url) = std::env::var("DRIFTLINE_TEST_DATABASE_URL") {
            return match PgConnection::connect(&url).await {
                Ok(admin) => Some(Self::create_in(admin, url, None).await),
                Err(e) => unavailable(format!("the Postgres named by DRIFTLINE_TEST_DATABASE_URL is unreachable: {e}")),
            };
        }
        if let Ok(admin) = PgConnection::connect(DEFAULT_TEST_SERVER).await {
            return Some(Self::create_in(admin, DEFAULT_TEST_SERVER.to_owned(), None).await);
        }
        Self::throwaway().await
    }

    /// Creates a fresh database in a throwaway cluster of its own, started from the installed
    /// PostgreSQL binaries.
    pub async fn throwaway() -> Option<TestDatabase> {
        let cluster = match Cluster::start() {
            Ok(c) => c,
            Err(why) => {
                return unavailable(format!("no Postgres server answers and no throwaway cluster started: {why}"))
            }
        };
        let url = cluster.url();
        match PgConnection::connect(&url).await {
            Ok(admin) => Some(Self::create_in(admin, url, Some(cluster)).await),
            Err(e) => unavailable(format!("the throwaway cluster does not answer: {e}")),
        }
    }

    /// Stops the database's throwaway cluster for `down` and starts it again on the same port,
    /// as a Postgres restart in production would. Panics for a database on a shared server.
    pub fn restart_server(&self, down: std::time::Duration) {
        let cluster =
            self.cluster.as_ref().expect("restart_server needs a throwaway cluster (TestDatabase::throwaway)");
        cluster.stop().expect("stop the cluster");
        std::thread::sleep(down);
        cluster.start_server().expect("start the cluster again");
    }

    async fn create_in(mut admin: PgConnection, admin_url: String, cluster: Option<Cluster>) -> TestDatabase {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "driftline_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        TestDatabase { url, admin_url, name, cluster }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.cluster.is_some() {
            // The cluster goes, and the database with it.
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside or outside a runtime; a thread with its own runtime works in both.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await.ok()
            })
        })
        .join();
    }
}

/// A PostgreSQL cluster in a temporary directory, listening on a free loopback port; stopped
/// and deleted when dropped.
#[derive(Debug)]
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The user the server runs as when this process is root (PostgreSQL refuses root).
    user: Option<&'static str>,
}

impl Cluster {
    fn start() -> Result<Cluster, String> {
        let bin = postgres_bin().ok_or("no initdb/pg_ctl on PATH or under /usr/lib/postgresql/*/bin")?;
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        let user = is_root().then_some("postgres");
        if let Some(user) = user {
            run(Command::new("chown").args(["-R", user]).arg(dir.path()))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let cluster = Cluster { dir, bin, port, user };
        let data = cluster.data();
        cluster.run_pg("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])?;
        if let Err(e) = cluster.start_server() {
            let log = std::fs::read_to_string(cluster.dir.path().join("postgres.log")).unwrap_or_default();
            return Err(format!("{e}\n{log}"));
        }
        Ok(cluster)
    }

    fn start_server(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.run_pg("pg_ctl", &["-D", &self.data(), "-o", &options, "-l", &log, "-w", "-t", "60", "start"])
    }

    fn stop(&self) -> Result<(), String> {
        self.run_pg("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"])
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run_pg(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(tool);
        let mut command = match self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        run(command.args(args).current_dir(self.dir.path()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run_pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// The directory holding `initdb` and `pg_ctl`: from PATH, else the newest Debian install.
fn postgres_bin() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let from_path = std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).find(|d| has_tools(d)));
    from_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|d| has_tools(d))
            .collect();
        versions.sort_by_key(|d| d.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()).unwrap_or(0));
        versions.pop()
    })
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("postgres://u@h/postgres?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
