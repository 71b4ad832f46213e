//! Opening a store from a URL or a data directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::{postgres::PostgresStore, sqlite::SqliteStore, Error, Store};

/// Where the store lives.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `postgres://…` or `sqlite://PATH`; when absent, the SQLite file in `data_dir`.
    pub database_url: Option<String>,
    /// Directory of the embedded SQLite file `driftline.sqlite`.
    pub data_dir: PathBuf,
    /// Time budgets and partitioning.
    pub options: StoreOptions,
}

/// How long the store lets things take, and how far ahead it partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Longest one statement may run (Postgres `statement_timeout`); reads have their own budget.
    pub statement_timeout: Duration,
    /// Longest a statement waits for a lock (Postgres `lock_timeout`, SQLite's busy timeout).
    pub lock_timeout: Duration,
    /// Longest one read may take from start to end, streaming included.
    pub read_timeout: Duration,
    /// Day partitions of `predictions` made ahead of today (Postgres).
    pub partition_days_ahead: u32,
}

impl Default for StoreOptions {
    /// 30 s per statement, 10 s for a lock, 10 minutes per read, partitions 7 days ahead.
    fn default() -> Self {
        StoreOptions {
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(600),
            partition_days_ahead: 7,
        }
    }
}

impl StoreConfig {
    /// A human-readable location without any password.
    pub fn location(&self) -> String {
        match &self.database_url {
            Some(url) => redact(url),
            None => self.data_dir.join(SQLITE_FILE).display().to_string(),
        }
    }
}

/// The embedded database's file name inside the data directory.
pub const SQLITE_FILE: &str = "driftline.sqlite";

/// Opens the configured store and applies its migrations.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, Error> {
    match config.database_url.as_deref() {
        None => {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| Error::Open {
                location: config.data_dir.display().to_string(),
                cause: sqlx::Error::Io(e),
            })?;
            Ok(Arc::new(SqliteStore::open_with(&config.data_dir.join(SQLITE_FILE), config.options).await?))
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Arc::new(PostgresStore::connect_with(url, config.options).await?))
        }
        Some(url) if url.starts_with("sqlite:") => {
            let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            let path = PathBuf::from(path.split('?').next().unwrap_or(path));
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::Open { location: parent.display().to_string(), cause: sqlx::Error::Io(e) })?;
            }
            Ok(Arc::new(SqliteStore::open_with(&path, config.options).await?))
        }
        Some(other) => Err(Error::UnsupportedUrl(redact(other))),
    }
}

/// The URL with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((userinfo, host)) = rest.split_once('@') else { return url.to_owned() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }
}
