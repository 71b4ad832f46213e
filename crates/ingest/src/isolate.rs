//! Writing an assembled batch so that no single event can stop it: when the store refuses the
//! data itself (a constraint or a value it cannot hold, never a lost connection or a timeout),
//! the events are bisected with probes (writes that are rolled back) until the ones the store
//! refuses are isolated. They go to `dead_letters` with the store's error as the reason, and the
//! rest of the batch, with its source positions, is written in one transaction.

use driftline_store::{EventStore, WriteOutcome};

use crate::assembly::Assembly;

/// Rounds of isolation before a batch that keeps failing is given back as failed: each round
/// sets aside the events the store refused, and a new round only happens when the write without
/// them fails again (a refusal that depends on a combination of events).
const ROUNDS: usize = 3;

/// Writes `assembly`, setting aside (as refused, and as dead letters) the events the store
/// refuses. Fails only with errors that are not about the data (the caller retries those) or when
/// the refused events cannot be isolated.
pub async fn write_isolating(
    store: &dyn EventStore,
    assembly: &mut Assembly,
) -> Result<WriteOutcome, driftline_store::Error> {
    let mut round = 0;
    loop {
        let error = match store.write(&assembly.batch).await {
            Ok(outcome) => return Ok(outcome),
            Err(e) if e.is_data_error() && round < ROUNDS && assembly.events() > 0 => e,
            Err(e) => return Err(e),
        };
        round += 1;
        let all: Vec<usize> = (0..assembly.events()).collect();
        let refused = isolate(store, assembly, all, error.to_string()).await?;
        if refused.is_empty() {
            // Every part alone is fine: the refusal needs the whole batch. Nothing to set aside.
            return Err(error);
        }
        tracing::warn!(
            events = refused.len(),
            reason = %refused[0].1,
            "the store refused events that passed validation; they are kept as dead letters"
        );
        assembly.set_aside(
            refused
                .into_iter()
                .map(|(i, cause)| {
                    (i, format!("the store refused this event: {cause}; it passed validation, so report it as a bug"))
                })
                .collect(),
        );
    }
}

/// The events among `indices` that the store refuses, each with its error: halves are probed,
/// and a half the store refuses is split again, down to single events. `error` is what the
/// store said about `indices` as a whole.
async fn isolate(
    store: &dyn EventStore,
    assembly: &Assembly,
    indices: Vec<usize>,
    error: String,
) -> Result<Vec<(usize, String)>, driftline_store::Error> {
    let mut refused = Vec::new();
    // Depth first, with an explicit stack: (events, what the store said about them).
    let mut stack = vec![(indices, error)];
    while let Some((part, error)) = stack.pop() {
        if part.len() == 1 {
            refused.push((part[0], error));
            continue;
        }
        let (left, right) = part.split_at(part.len() / 2);
        for half in [right, left] {
            match store.probe(&assembly.subset(half)).await {
                Ok(()) => {}
                Err(e) if e.is_data_error() => stack.push((half.to_vec(), e.to_string())),
                Err(e) => return Err(e),
            }
        }
    }
    refused.sort_by_key(|(i, _)| *i);
    Ok(refused)
}
