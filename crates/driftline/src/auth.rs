//! Bearer-key authentication from an in-memory cache of the keys, and authorization by scope and
//! deployment as an extractor per scope.
//!
//! Authentication never waits on the store: the active keys are loaded into memory at start and
//! reloaded every `--key-refresh-ms` over a connection of their own, so a key created or revoked
//! by `driftline keys` in another process takes effect within that time, and busy readers cannot
//! make authentication (or anyone's request) wait.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use driftline_store::keys::hash_key;
use driftline_store::{ApiKey, KeyStore, Scope, Store};

use crate::problem::Problem;
use crate::server::AppState;

/// Who is calling, once their key is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    /// The key's name (`admin` for the admin key): who acts, as the governance log records it.
    pub(crate) name: String,
    pub(crate) scope: Scope,
    /// The one deployment the key is limited to, if any.
    pub(crate) deployment: Option<String>,
}

impl Principal {
    /// Refuses access to a deployment other than the key's own.
    pub(crate) fn check_deployment(&self, crn: &str) -> Result<(), Problem> {
        match &self.deployment {
            Some(own) if own != crn => Err(Problem::forbidden(format!(
                "this key is limited to deployment `{own}` and cannot reach `{crn}`; use a key for that deployment"
            ))),
            _ => Ok(()),
        }
    }

    /// Whether the key is limited to one deployment.
    pub(crate) fn is_scoped(&self) -> bool {
        self.deployment.is_some()
    }

    /// Refuses a key whose scope does not allow `needed`.
    pub(crate) fn require(&self, needed: Scope) -> Result<(), Problem> {
        if self.scope.allows(needed) {
            return Ok(());
        }
        Err(Problem::forbidden(format!(
            "this key has scope `{}` but this call needs `{needed}`; use a {needed} key",
            self.scope
        )))
    }
}

/// The active API keys by hash, kept in memory.
#[derive(Clone)]
pub(crate) struct KeyCache {
    keys: Arc<RwLock<HashMap<String, ApiKey>>>,
    /// SHA-256 of the bootstrap admin key, if one was given; never stored.
    admin_key_hash: Option<String>,
    store: Arc<dyn Store>,
}

impl KeyCache {
    /// Loads the active keys.
    pub(crate) async fn load(
        store: Arc<dyn Store>,
        admin_key_hash: Option<String>,
    ) -> Result<Self, driftline_store::Error> {
        let cache = KeyCache { keys: Arc::default(), admin_key_hash, store };
        cache.reload().await?;
        Ok(cache)
    }

    async fn reload(&self) -> Result<(), driftline_store::Error> {
        let fresh: HashMap<String, ApiKey> = KeyStore::active_keys(&*self.store).await?.into_iter().collect();
        *self.keys.write().expect("key cache lock") = fresh;
        Ok(())
    }

    /// Reloads the keys every `every` until the task is aborted.
    pub(crate) fn spawn_refresh(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(every).await;
                match cache.reload().await {
                    Ok(()) if failing => {
                        tracing::info!("API keys are reloaded again");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        tracing::warn!(error = %e, "cannot reload the API keys; the keys loaded before stay in effect");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
        })
    }

    /// Who the bearer key in `headers` belongs to.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Problem> {
        let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
            Problem::unauthorized(
                "no API key; send `Authorization: Bearer <key>` (create one with `driftline keys create`)",
            )
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Problem::unauthorized("the Authorization header must be `Bearer <key>`"))?;
        let hash = hash_key(token);
        if self.admin_key_hash.as_deref() == Some(hash.as_str()) {
            return Ok(Principal { name: "admin".into(), scope: Scope::Admin, deployment: None });
        }
        match self.keys.read().expect("key cache lock").get(&hash) {
            Some(key) => Ok(Principal { name: key.name.clone(), scope: key.scope, deployment: key.deployment.clone() }),
            None => Err(Problem::unauthorized("the API key is unknown or revoked; ask an admin for a key")),
        }
    }
}

/// A scope a route needs, as a type.
pub(crate) trait Needs {
    const SCOPE: Scope;
}

/// Read windows, aggregates, jobs and metrics.
pub(crate) struct Read;
/// Send events.
pub(crate) struct Write;
/// Everything.
pub(crate) struct Admin;
/// Append governance events.
pub(crate) struct Govern;

impl Needs for Read {
    const SCOPE: Scope = Scope::Read;
}
impl Needs for Write {
    const SCOPE: Scope = Scope::Write;
}
impl Needs for Admin {
    const SCOPE: Scope = Scope::Admin;
}
impl Needs for Govern {
    const SCOPE: Scope = Scope::Govern;
}

/// The caller, authorized for scope `S`. Taken from the headers only, so as an argument before
/// the body it refuses a caller before a byte of the body is read.
pub(crate) struct Auth<S: Needs>(pub(crate) Principal, pub(crate) PhantomData<S>);

impl<S: Needs + Send> FromRequestParts<AppState> for Auth<S> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        // The guard in front of every route authenticated the caller already.
        let principal = match parts.extensions.get::<Principal>() {
            Some(p) => p.clone(),
            None => state.keys.authenticate(&parts.headers)?,
        };
        principal.require(S::SCOPE)?;
        Ok(Auth(principal, PhantomData))
    }
}
