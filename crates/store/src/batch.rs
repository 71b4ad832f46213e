//! What one store write holds and what it reports.

use driftline_core::{AggregateMetrics, DelayedMetrics, Event, Prediction, ReplicaStats};
use uuid::Uuid;

/// What a write covers of one source partition (for Kafka: a range of offsets), stored in the
/// same transaction as the events it covers.
///
/// The store moves a partition's position only from `from` to `next_offset`: the stored next
/// offset must be exactly `from` (or nothing may be stored yet for the partition), or the whole
/// write fails with [`crate::Error::PositionMoved`]. The writer derives `from` from the messages
/// themselves, so a position can never pass a message that is neither stored nor kept as a dead
/// letter, and two consumers of one partition cannot both store the same messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The first offset the write covers.
    pub from: i64,
    /// The next offset to read after the write: one past the last offset it covers.
    pub next_offset: i64,
}

/// An event that was refused, kept with its raw bytes, where it came from and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// When it was received, ms since the epoch.
    pub received_at_ms: i64,
    /// Where it came from: `http:<request id>#<index>` or `kafka:<topic>/<partition>@<offset>`.
    pub source: String,
    /// Why it was refused.
    pub reason: String,
    /// The bytes exactly as received.
    pub raw: Vec<u8>,
    /// The Kafka message key, when there was one.
    pub key: Option<Vec<u8>>,
}

impl DeadLetter {
    /// The deployment the raw bytes name in a top-level `model_deployment_crn` string, if they
    /// are a JSON object that does: refused events are counted per deployment (`@rejected`).
    pub fn named_deployment(&self) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Named {
            model_deployment_crn: Option<String>,
        }
        let named: Named = serde_json::from_slice(&self.raw).ok()?;
        named.model_deployment_crn.filter(|c| !c.is_empty() && c.len() <= 1024 && !c.contains('\0'))
    }
}

/// One transaction's worth of writes.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    /// Predictions, idempotent on their UUID.
    pub predictions: Vec<Prediction>,
    /// Delayed metrics.
    pub delayed_metrics: Vec<DelayedMetrics>,
    /// Aggregate metrics.
    pub aggregate_metrics: Vec<AggregateMetrics>,
    /// Replica resource figures.
    pub replica_stats: Vec<ReplicaStats>,
    /// Refused events.
    pub dead_letters: Vec<DeadLetter>,
    /// Source positions committed with the events.
    pub positions: Vec<SourcePosition>,
    /// The deployment the delayed metrics of this batch are limited to (those of a
    /// deployment-scoped key): they join only that deployment's predictions. `None`: any.
    pub delayed_deployment: Option<String>,
    /// Receive time stamped on every row, ms since the epoch.
    pub received_at_ms: i64,
}

impl WriteBatch {
    /// An empty batch received at `received_at_ms`.
    pub fn new(received_at_ms: i64) -> Self {
        WriteBatch { received_at_ms, ..WriteBatch::default() }
    }

    /// Adds an event to the table it belongs to.
    pub fn push(&mut self, event: Event) {
        match event {
            Event::Prediction(p) => self.predictions.push(p),
            Event::DelayedMetrics(d) => self.delayed_metrics.push(d),
            Event::AggregateMetrics(a) => self.aggregate_metrics.push(a),
            Event::ReplicaStats(r) => self.replica_stats.push(r),
        }
    }

    /// Number of events (dead letters not counted).
    pub fn events(&self) -> usize {
        self.predictions.len() + self.delayed_metrics.len() + self.aggregate_metrics.len() + self.replica_stats.len()
    }

    /// Whether there is nothing to write at all.
    pub fn is_empty(&self) -> bool {
        self.events() == 0 && self.dead_letters.is_empty() && self.positions.is_empty()
    }

    /// For each prediction, whether it is the first in the batch with its UUID and its UUID is
    /// among the `inserted` ones. Both backends use this to pick the rows to write.
    pub(crate) fn first_of(&self, inserted: &std::collections::HashSet<Uuid>) -> Vec<bool> {
        let mut seen = std::collections::HashSet::with_capacity(inserted.len());
        self.predictions.iter().map(|p| inserted.contains(&p.uuid) && seen.insert(p.uuid)).collect()
    }
}

/// Identity of a metrics payload: the first 16 bytes of the SHA-256 of its canonical JSON
/// (keys sorted at every level, as `serde_json` writes them).
pub(crate) fn digest(metrics_json: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(metrics_json.as_bytes())[..16].to_vec()
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Predictions newly stored.
    pub predictions: u64,
    /// UUIDs of predictions not stored because that UUID was already stored (or repeated in the
    /// batch), in batch order.
    pub duplicates: Vec<Uuid>,
    /// Delayed metrics stored.
    pub delayed_metrics: u64,
    /// Delayed metrics not stored because the same metrics for the same prediction and time
    /// were already stored.
    pub delayed_duplicates: u64,
    /// Aggregate metrics stored.
    pub aggregate_metrics: u64,
    /// Aggregate metrics not stored because the same metrics for the same deployment, range and
    /// source were already stored.
    pub aggregate_duplicates: u64,
    /// Replica figures stored.
    pub replica_stats: u64,
    /// Replica figures not stored because the same replica's figures at the same moment were
    /// already stored.
    pub replica_duplicates: u64,
    /// Dead letters stored.
    pub dead_letters: u64,
}

impl WriteOutcome {
    /// Events stored (duplicates and dead letters not counted).
    pub fn accepted(&self) -> u64 {
        self.predictions + self.delayed_metrics + self.aggregate_metrics + self.replica_stats
    }

    /// Events not stored because they were already stored: predictions, delayed and aggregate
    /// metrics.
    pub fn duplicate_events(&self) -> u64 {
        self.duplicates.len() as u64 + self.delayed_duplicates + self.aggregate_duplicates + self.replica_duplicates
    }

    /// Marks every prediction whose flag is false as a duplicate.
    pub(crate) fn record_predictions(&mut self, batch: &WriteBatch, keep: &[bool]) {
        for (p, &kept) in batch.predictions.iter().zip(keep) {
            if kept {
                self.predictions += 1;
            } else {
                self.duplicates.push(p.uuid);
            }
        }
    }
}
