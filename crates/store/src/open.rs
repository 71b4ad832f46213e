//! Opening a store from a URL or a data directory.

use std::path::PathBuf;
use std::sync::Arc;

use crate::{postgres::PostgresStore, sqlite::SqliteStore, Error, Store};

/// Where the store lives.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `postgres://…` or `sqlite://PATH`; when absent, the SQLite file in `data_dir`.
    pub database_url: Option<String>,
    /// Directory of the embedded SQLite file `driftline.sqlite`.
    pub data_dir: PathBuf,
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
            Ok(Arc::new(SqliteStore::open(&config.data_dir.join(SQLITE_FILE)).await?))
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Arc::new(PostgresStore::connect(url).await?))
        }
        Some(url) if url.starts_with("sqlite:") => {
            let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            let path = PathBuf::from(path.split('?').next().unwrap_or(path));
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::Open { location: parent.display().to_string(), cause: sqlx::Error::Io(e) })?;
            }
            Ok(Arc::new(SqliteStore::open(&path).await?))
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
