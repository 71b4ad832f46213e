//! API keys: generated here, shown to their owner once, stored only as a SHA-256 hash.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use sha2::{Digest, Sha256};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read windows and aggregates.
    Read,
    /// Send events.
    Write,
    /// Everything.
    Admin,
    /// Append governance events (register, evaluate, promote, retire, delete models).
    Govern,
}

impl Scope {
    /// Whether a key of this scope may do what `needed` allows.
    pub fn allows(self, needed: Scope) -> bool {
        self == Scope::Admin || self == needed
    }

    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
            Scope::Govern => "govern",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            "govern" => Ok(Scope::Govern),
            other => Err(format!("`{other}` is not a scope; use read, write, admin or govern")),
        }
    }
}

/// A key as stored (without its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKey {
    /// Short public id, also the key's prefix, used to list and revoke it.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// The one deployment it is limited to, if any.
    pub deployment: Option<String>,
    /// When it was created, ms since the epoch.
    pub created_at_ms: i64,
    /// When it was revoked, if it was.
    pub revoked_at_ms: Option<i64>,
}

/// A freshly generated key: the secret is in `secret` and nowhere else.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// What is stored.
    pub key: ApiKey,
    /// The bearer token to hand to the owner, once.
    pub secret: String,
    /// The SHA-256 of `secret`, hex: what the store keeps.
    pub hash: String,
}

impl NewKey {
    /// Generates a key with 192 random bits of secret.
    pub fn generate(name: &str, scope: Scope, deployment: Option<String>, now_ms: i64) -> NewKey {
        let mut rng = rand::rng();
        let mut id = [0u8; 4];
        let mut secret = [0u8; 24];
        rng.fill_bytes(&mut id);
        rng.fill_bytes(&mut secret);
        let id = hex::encode(id);
        let secret = format!("dl_{id}_{}", hex::encode(secret));
        let hash = hash_key(&secret);
        NewKey {
            key: ApiKey { id, name: name.to_owned(), scope, deployment, created_at_ms: now_ms, revoked_at_ms: None },
            secret,
            hash,
        }
    }
}

/// The SHA-256 of a bearer token, hex. Keys carry enough entropy that a fast hash is safe.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The key statements, one implementation for both backends (both take `$N` placeholders).
pub(crate) mod sql {
    use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};

    use super::{ApiKey, Scope};
    use crate::sql::Sql;
    use crate::Error;

    pub(crate) type KeyRow = (String, String, String, Option<String>, i64, Option<i64>);
    pub(crate) type HashedKeyRow = (String, String, String, String, Option<String>, i64, Option<i64>);

    const COLUMNS: &str = "id, name, scope, model_deployment_crn, created_at_ms, revoked_at_ms";

    fn key(row: KeyRow) -> Result<ApiKey, Error> {
        Ok(ApiKey {
            id: row.0,
            name: row.1,
            scope: row.2.parse::<Scope>().map_err(|detail| Error::Corrupt { what: "key scope", detail })?,
            deployment: row.3,
            created_at_ms: row.4,
            revoked_at_ms: row.5,
        })
    }

    impl<DB> Sql<'_, DB>
    where
        DB: Database,
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
        for<'q> &'q str: Encode<'q, DB> + Type<DB>,
        for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'r> (String,): FromRow<'r, DB::Row>,
        for<'r> KeyRow: FromRow<'r, DB::Row>,
        for<'r> HashedKeyRow: FromRow<'r, DB::Row>,
    {
        /// Stores a new key (its hash only).
        pub(crate) async fn insert_key(&self, key: &ApiKey, key_hash: &str) -> Result<(), Error> {
            sqlx::query::<DB>(
                "INSERT INTO api_keys (id, name, scope, model_deployment_crn, key_hash, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(key.id.as_str())
            .bind(key.name.as_str())
            .bind(key.scope.as_str())
            .bind(key.deployment.as_deref())
            .bind(key_hash)
            .bind(key.created_at_ms)
            .execute(self.0)
            .await
            .map_err(Error::db("insert key"))?;
            Ok(())
        }

        /// The active key with this hash.
        pub(crate) async fn find_key(&self, key_hash: &str) -> Result<Option<ApiKey>, Error> {
            let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at_ms IS NULL");
            let row = sqlx::query_as::<DB, KeyRow>(&sql)
                .bind(key_hash)
                .fetch_optional(self.0)
                .await
                .map_err(Error::db("find key"))?;
            row.map(key).transpose()
        }

        /// Every key, newest first.
        pub(crate) async fn list_keys(&self) -> Result<Vec<ApiKey>, Error> {
            let sql = format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_at_ms DESC, id");
            let rows = sqlx::query_as::<DB, KeyRow>(&sql).fetch_all(self.0).await.map_err(Error::db("list keys"))?;
            rows.into_iter().map(key).collect()
        }

        /// Every active key with its hash.
        pub(crate) async fn active_keys(&self) -> Result<Vec<(String, ApiKey)>, Error> {
            let sql = format!("SELECT key_hash, {COLUMNS} FROM api_keys WHERE revoked_at_ms IS NULL");
            let rows = sqlx::query_as::<DB, HashedKeyRow>(&sql)
                .fetch_all(self.0)
                .await
                .map_err(Error::db("list active keys"))?;
            rows.into_iter().map(|r| Ok((r.0, key((r.1, r.2, r.3, r.4, r.5, r.6))?))).collect()
        }

        /// Revokes the active key `id`; false when there is none.
        pub(crate) async fn revoke_key(&self, id: &str) -> Result<bool, Error> {
            let revoked = sqlx::query_scalar::<DB, String>(
                "UPDATE api_keys SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL RETURNING id",
            )
            .bind(driftline_core::time::now_ms())
            .bind(id)
            .fetch_optional(self.0)
            .await
            .map_err(Error::db("revoke key"))?;
            Ok(revoked.is_some())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_hashed() {
        let a = NewKey::generate("a", Scope::Write, None, 1);
        let b = NewKey::generate("b", Scope::Write, None, 1);
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(&format!("dl_{}_", a.key.id)));
        assert_eq!(a.hash, hash_key(&a.secret));
        assert_eq!(a.hash.len(), 64);
        assert!(!a.hash.contains(&a.secret));
    }

    #[test]
    fn scopes() {
        assert!(Scope::Admin.allows(Scope::Write));
        assert!(Scope::Write.allows(Scope::Write));
        assert!(!Scope::Write.allows(Scope::Read));
        assert!(!Scope::Read.allows(Scope::Write));
        assert_eq!("admin".parse::<Scope>(), Ok(Scope::Admin));
        assert!("root".parse::<Scope>().unwrap_err().contains("read, write, admin or govern"));
    }
}
