//! One store write being put together, by the HTTP intake and the Kafka consumer alike: the valid
//! events, each with where it came from, and the refused ones as dead letters.

use bytes::Bytes;
use driftline_core::Event;
use driftline_store::{DeadLetter, SourcePosition, WriteBatch};

/// Where an event came from: enough to keep it as a dead letter, should the store refuse it.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `http:<request id>#<index>` or `kafka:<topic>/<partition>@<offset>`.
    pub source: String,
    /// Its position in its request (HTTP) or batch (Kafka).
    pub index: usize,
    /// The bytes exactly as received.
    pub raw: Bytes,
    /// The Kafka message key, when there was one.
    pub key: Option<Bytes>,
}

impl Origin {
    /// This origin as a dead letter with `reason`.
    pub fn dead_letter(&self, reason: String, received_at_ms: i64) -> DeadLetter {
        DeadLetter {
            received_at_ms,
            source: self.source.clone(),
            reason,
            raw: self.raw.to_vec(),
            key: self.key.as_ref().map(|k| k.to_vec()),
        }
    }
}

/// A refused event: where it came from and why, as its sender is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its position in its request or batch.
    pub index: usize,
    /// What is wrong and what to do.
    pub reason: String,
}

/// A write being put together. The events live in the batch, each table in the order they were
/// added; `origins` holds their origins in the same order per table.
#[derive(Debug, Default)]
pub struct Assembly {
    /// What goes to the store.
    pub batch: WriteBatch,
    /// Origins of `batch.predictions`, `batch.delayed_metrics` and `batch.aggregate_metrics`.
    origins: [Vec<Origin>; 4],
    /// Every event refused so far, in the order refused.
    pub refusals: Vec<Refusal>,
    /// Refusals beyond the cap of dead letters kept for one write: counted, not kept.
    pub unkept: u64,
    /// Events that passed validation but the store refused (set aside by isolation).
    pub store_refused: u64,
    /// Most dead letters kept for one write (`None`: all).
    dead_letter_cap: Option<usize>,
}

impl Assembly {
    /// An empty write received at `received_at_ms`, keeping at most `dead_letter_cap` dead
    /// letters (`None`: all of them; a Kafka batch keeps all, since each message is a position).
    pub fn new(received_at_ms: i64, dead_letter_cap: Option<usize>) -> Self {
        Assembly { batch: WriteBatch::new(received_at_ms), dead_letter_cap, ..Assembly::default() }
    }

    /// Adds a valid event.
    pub fn accept(&mut self, event: Event, origin: Origin) {
        let table = match &event {
            Event::Prediction(_) => 0,
            Event::DelayedMetrics(_) => 1,
            Event::AggregateMetrics(_) => 2,
            Event::ReplicaStats(_) => 3,
        };
        self.batch.push(event);
        self.origins[table].push(origin);
    }

    /// Refuses an event: it becomes a dead letter (up to the cap) and a refusal.
    pub fn refuse(&mut self, origin: &Origin, reason: String) {
        if self.dead_letter_cap.is_some_and(|cap| self.batch.dead_letters.len() >= cap) {
            self.unkept += 1;
        } else {
            self.batch.dead_letters.push(origin.dead_letter(reason.clone(), self.batch.received_at_ms));
        }
        self.refusals.push(Refusal { index: origin.index, reason });
    }

    /// Sets the source positions the write covers.
    pub fn set_positions(&mut self, positions: Vec<SourcePosition>) {
        self.batch.positions = positions;
    }

    /// Valid events in the write.
    pub fn events(&self) -> usize {
        self.origins.iter().map(Vec::len).sum()
    }

    /// The events at these flat indices (predictions first, then delayed metrics, aggregate
    /// metrics, replica figures), as a batch of their own, for probing.
    pub(crate) fn subset(&self, flat: &[usize]) -> WriteBatch {
        let mut batch = WriteBatch::new(self.batch.received_at_ms);
        for &i in flat {
            let (table, at) = self.locate(i);
            match table {
                0 => batch.predictions.push(self.batch.predictions[at].clone()),
                1 => batch.delayed_metrics.push(self.batch.delayed_metrics[at].clone()),
                2 => batch.aggregate_metrics.push(self.batch.aggregate_metrics[at].clone()),
                _ => batch.replica_stats.push(self.batch.replica_stats[at].clone()),
            }
        }
        batch
    }

    /// Moves the events at these flat indices out of the write and refuses each with its
    /// reason (kept as dead letters whatever the cap: these are few and were valid to a point).
    pub(crate) fn set_aside(&mut self, mut refused: Vec<(usize, String)>) {
        refused.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        for (i, reason) in refused {
            let (table, at) = self.locate(i);
            let origin = self.origins[table].remove(at);
            match table {
                0 => drop(self.batch.predictions.remove(at)),
                1 => drop(self.batch.delayed_metrics.remove(at)),
                2 => drop(self.batch.aggregate_metrics.remove(at)),
                _ => drop(self.batch.replica_stats.remove(at)),
            }
            self.batch.dead_letters.push(origin.dead_letter(reason.clone(), self.batch.received_at_ms));
            self.refusals.push(Refusal { index: origin.index, reason });
            self.store_refused += 1;
        }
    }

    /// Which table and row a flat index names.
    fn locate(&self, flat: usize) -> (usize, usize) {
        let mut at = flat;
        for (table, origins) in self.origins.iter().enumerate() {
            if at < origins.len() {
                return (table, at);
            }
            at -= origins.len();
        }
        (self.origins.len() - 1, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftline_core::{parse_event, Limits};

    fn origin(index: usize) -> Origin {
        Origin { source: format!("http:r#{index}"), index, raw: Bytes::from(format!("raw{index}")), key: None }
    }

    fn event(kind: &str, i: u32) -> Event {
        let text = match kind {
            "p" => format!(
                r#"{{"v":1,"type":"prediction","uuid":"00000000-0000-4000-8000-{i:012}","model_crn":"m","model_build_crn":"b","model_deployment_crn":"d","start_timestamp_ms":1700000000000,"end_timestamp_ms":1700000000000,"metrics":{{}}}}"#
            ),
            _ => format!(
                r#"{{"v":1,"type":"delayed_metrics","uuid":"00000000-0000-4000-8000-{i:012}","timestamp_ms":1700000000000,"metrics":{{"label":1}}}}"#
            ),
        };
        parse_event(text.as_bytes(), &Limits::default()).unwrap()
    }

    #[test]
    fn set_aside_moves_events_to_dead_letters_and_keeps_the_rest_in_order() {
        let mut a = Assembly::new(5, None);
        a.accept(event("d", 0), origin(0));
        a.accept(event("p", 1), origin(1));
        a.accept(event("p", 2), origin(2));
        a.accept(event("d", 3), origin(3));
        // Flat order: predictions 1, 2, then delayed 0, 3.
        assert_eq!(a.subset(&[1, 3]).predictions.len(), 1);
        a.set_aside(vec![(1, "two".into()), (3, "three".into())]);
        assert_eq!(a.events(), 2);
        assert_eq!(a.batch.predictions.len(), 1);
        assert_eq!(a.batch.delayed_metrics.len(), 1);
        let sources: Vec<&str> = a.batch.dead_letters.iter().map(|d| d.source.as_str()).collect();
        assert_eq!(sources, vec!["http:r#3", "http:r#2"]);
        assert_eq!(a.refusals.iter().map(|r| r.index).collect::<Vec<_>>(), vec![3, 2]);
        assert_eq!(a.batch.dead_letters[0].raw, b"raw3".to_vec());
    }

    #[test]
    fn dead_letters_beyond_the_cap_are_counted_not_kept() {
        let mut a = Assembly::new(5, Some(2));
        for i in 0..5 {
            a.refuse(&origin(i), format!("bad {i}"));
        }
        assert_eq!((a.batch.dead_letters.len(), a.unkept, a.refusals.len()), (2, 3, 5));
    }
}
