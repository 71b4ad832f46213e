//! Replay: rebuilds the derived state (rollups, the invalidation log, path admissions) from the
//! event tables, with the worker's own code, so the result is what the incremental worker makes.
//!
//! When retention has removed raw events, the rollups before the first whole day still held
//! raw are kept as they are (they can no longer be rebuilt) and everything from that day on is
//! rebuilt.

use std::sync::Arc;

use driftline_store::{Resolution, Store};

use crate::worker::{Progress, Step, Worker, WorkerOptions};
use crate::Error;

/// What a replay rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Replayed {
    /// Rollups were rebuilt from here on; `None`: all of them.
    pub from_ms: Option<i64>,
    /// Predictions there were to roll.
    pub total: u64,
    /// What the worker did.
    pub progress: Progress,
}

/// Rebuilds the rollups as of `now_ms`. `on_start` gets the number of predictions to roll,
/// `on_step` the predictions each step read.
pub async fn replay(
    store: Arc<dyn Store>,
    options: WorkerOptions,
    now_ms: i64,
    on_start: impl FnOnce(u64),
    mut on_step: impl FnMut(u64),
) -> Result<Replayed, Error> {
    let state = store.rollup_state().await?;
    // The first whole day still held raw, or the watermark if the worker has not got there:
    // what lies between was never rolled and is rolled now.
    let from_ms = state.raw_kept_from_ms.map(|kept| {
        let day = Resolution::Day.floor(kept - 1) + Resolution::Day.ms();
        state.rolled_to_ms.map_or(day, |rolled| day.min(rolled))
    });
    let total = store.count_predictions_from(from_ms.unwrap_or(i64::MIN)).await?;
    store.reset_rollups(from_ms).await?;
    on_start(total);
    let mut worker = Worker::new(store, options);
    let progress = worker
        .catch_up(now_ms, |step| {
            if let Step::Rolled { predictions, .. } | Step::Rerolled { predictions, .. } = step {
                on_step(*predictions);
            }
        })
        .await?;
    Ok(Replayed { from_ms, total, progress })
}
