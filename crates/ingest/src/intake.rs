//! Writing a decoded request: valid events and dead letters in one store transaction, events the
//! store itself refuses set aside as dead letters, and an answer of bounded size.

use driftline_store::{DeadLetter, EventStore};
use serde::{Deserialize, Serialize};

use crate::assembly::{Assembly, Origin};
use crate::Decoded;

/// Errors listed in one answer; the rest are counted in `errors_omitted`.
pub const ERRORS_IN_ANSWER: usize = 100;
/// Dead letters kept from one request; the rest are counted in one summary dead letter.
pub const DEAD_LETTERS_PER_REQUEST: usize = 1_000;

/// The answer to an intake request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntakeReport {
    /// Events newly stored.
    pub accepted: u64,
    /// Events already stored, not stored again: predictions with a stored UUID, and delayed or
    /// aggregate metrics identical to stored ones (a retried request).
    pub duplicates: u64,
    /// Events refused.
    pub rejected: u64,
    /// Why refused events were refused: the first [`ERRORS_IN_ANSWER`] of them.
    pub errors: Vec<IntakeError>,
    /// Refused events not listed in `errors`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub errors_omitted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One refused event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntakeError {
    /// 0-based index of the event in the request.
    pub index: usize,
    /// The field and rule it broke.
    pub reason: String,
}

/// What an intake did: the answer, and what the metrics count besides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntakeOutcome {
    /// The answer to send.
    pub report: IntakeReport,
    /// Events that passed validation but the store refused (kept as dead letters).
    pub store_refused: u64,
    /// Refused events over the per-request cap of dead letters: counted, not kept.
    pub unkept: u64,
}

/// Stores the valid events of `decoded` and keeps rejected ones as dead letters with the source
/// `{source}#{index}`, all in one transaction. At most [`DEAD_LETTERS_PER_REQUEST`] dead letters
/// are kept per request; beyond that one summary dead letter counts the rest. Events the store
/// refuses although they passed validation are found and kept as dead letters too, so the valid
/// ones are stored whatever else the request holds. `delayed_deployment` limits the request's
/// delayed metrics to one deployment's predictions (those of a deployment-scoped key).
pub async fn intake(
    store: &dyn EventStore,
    decoded: Decoded,
    source: &str,
    received_at_ms: i64,
    delayed_deployment: Option<String>,
) -> Result<IntakeOutcome, crate::Error> {
    let mut assembly = Assembly::new(received_at_ms, Some(DEAD_LETTERS_PER_REQUEST));
    assembly.batch.delayed_deployment = delayed_deployment;
    let origin = |index: usize, raw| Origin { source: format!("{source}#{index}"), index, raw, key: None };
    for (index, rejection, raw) in decoded.rejected {
        assembly.refuse(&origin(index, raw), rejection.to_string());
    }
    for (index, event, raw) in decoded.events {
        assembly.accept(event, origin(index, raw));
    }
    if assembly.unkept > 0 {
        assembly.batch.dead_letters.push(DeadLetter {
            received_at_ms,
            source: format!("{source}#more"),
            reason: format!(
                "{} more refused events of this request are not kept: at most {DEAD_LETTERS_PER_REQUEST} dead letters \
                 are kept per request; fix the producer",
                assembly.unkept
            ),
            raw: Vec::new(),
            key: None,
        });
    }
    let outcome = crate::isolate::write_isolating(store, &mut assembly).await?;
    let (store_refused, unkept) = (assembly.store_refused, assembly.unkept);
    let mut refusals = assembly.refusals;
    refusals.sort_by_key(|r| r.index);
    let rejected = refusals.len() as u64;
    let omitted = refusals.len().saturating_sub(ERRORS_IN_ANSWER) as u64;
    refusals.truncate(ERRORS_IN_ANSWER);
    let report = IntakeReport {
        accepted: outcome.accepted(),
        duplicates: outcome.duplicate_events(),
        rejected,
        errors: refusals.into_iter().map(|r| IntakeError { index: r.index, reason: r.reason }).collect(),
        errors_omitted: omitted,
    };
    Ok(IntakeOutcome { report, store_refused, unkept })
}
