//! Bearer-key authentication and authorization by scope and deployment.

use axum::http::{header, HeaderMap};
use driftline_store::keys::hash_key;
use driftline_store::{Scope, Store};

use crate::problem::Problem;

/// Who is calling, once their key is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
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
}

/// Resolves the bearer key in `headers` and checks that it allows `needed`.
pub(crate) async fn authorize(
    store: &dyn Store,
    admin_key_hash: Option<&str>,
    headers: &HeaderMap,
    needed: Scope,
) -> Result<Principal, Problem> {
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
    let principal = if admin_key_hash == Some(hash.as_str()) {
        Principal { scope: Scope::Admin, deployment: None }
    } else {
        match store.find_key(&hash).await? {
            Some(key) => Principal { scope: key.scope, deployment: key.deployment },
            None => return Err(Problem::unauthorized("the API key is unknown or revoked; ask an admin for a key")),
        }
    };
    if !principal.scope.allows(needed) {
        return Err(Problem::forbidden(format!(
            "this key has scope `{}` but this call needs `{needed}`; use a {needed} key",
            principal.scope
        )));
    }
    Ok(principal)
}
