//! Writing a decoded request: valid events and dead letters in one store transaction.

use driftline_core::Rejection;
use driftline_store::{DeadLetter, Store, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::Decoded;

/// The answer to an intake request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntakeReport {
    /// Events newly stored.
    pub accepted: u64,
    /// Events already stored, not stored again: predictions with a stored UUID, and delayed or
    /// aggregate metrics identical to stored ones (a retried request).
    pub duplicates: u64,
    /// Events refused (each kept as a dead letter).
    pub rejected: u64,
    /// Why each refused event was refused.
    pub errors: Vec<IntakeError>,
}

/// One refused event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntakeError {
    /// 0-based index of the event in the request.
    pub index: usize,
    /// The field and rule it broke.
    pub reason: String,
}

/// Stores the valid events of `decoded` and keeps every rejected one as a dead letter with the
/// source `{source}#{index}`, all in one transaction.
pub async fn intake(
    store: &dyn Store,
    decoded: Decoded,
    source: &str,
    received_at_ms: i64,
) -> Result<IntakeReport, crate::Error> {
    let mut batch = WriteBatch::new(received_at_ms);
    let mut errors = Vec::with_capacity(decoded.rejected.len());
    for (index, rejection, raw) in decoded.rejected {
        errors.push(IntakeError { index, reason: rejection.to_string() });
        batch.dead_letters.push(dead_letter(source, index, &rejection, raw, received_at_ms));
    }
    for (_, event) in decoded.events {
        batch.push(event);
    }
    let outcome = store.write(&batch).await?;
    Ok(IntakeReport {
        accepted: outcome.accepted(),
        duplicates: outcome.duplicate_events(),
        rejected: errors.len() as u64,
        errors,
    })
}

fn dead_letter(source: &str, index: usize, rejection: &Rejection, raw: Vec<u8>, received_at_ms: i64) -> DeadLetter {
    DeadLetter { received_at_ms, source: format!("{source}#{index}"), reason: rejection.to_string(), raw, key: None }
}
