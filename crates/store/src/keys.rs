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
            other => Err(format!("`{other}` is not a scope; use read, write or admin")),
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
        assert!("root".parse::<Scope>().unwrap_err().contains("read, write or admin"));
    }
}
