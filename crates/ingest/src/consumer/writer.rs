//! A write lane's thread: decodes each batch it is handed, forwards its dead letters, and writes
//! it with the positions it covers, retrying transient failures with capped backoff and setting
//! aside events the store refuses. It reports back whether the batch was stored.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use driftline_core::parse_event;
use driftline_core::time::now_ms;
use driftline_store::DeadLetter;

use super::lanes::{coverage, Message};
use super::Shared;
use crate::assembly::{Assembly, Origin};

/// What became of a batch handed to a writer.
#[derive(Debug)]
pub(crate) enum Written {
    /// Stored, with these next offsets per partition.
    Stored(Vec<(i32, i64)>),
    /// Not stored: another consumer moved a position, the batch's coverage was broken, or the
    /// writer gave up while the consumer stopped or released its partitions. The poller
    /// repositions every partition from the store.
    NotStored,
}

/// Longest pause between two tries of a failed write or delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Tries of a write before a revocation or shutdown gives up on it.
const TRIES_BEFORE_GIVING_UP: u32 = 3;

/// Capped exponential backoff between the tries of a failing write or dead-letter delivery.
pub(crate) struct Retry {
    wait: Duration,
    tries: u32,
}

impl Retry {
    pub(crate) fn new() -> Self {
        Retry { wait: Duration::from_millis(100), tries: 0 }
    }

    /// After a failed try: whether to try again. While the consumer stops or releases its
    /// partitions it gives up after [`TRIES_BEFORE_GIVING_UP`] tries; otherwise it logs the
    /// failure at WARN, sleeps, and doubles the next wait up to [`MAX_BACKOFF`].
    pub(crate) fn again(&mut self, shared: &Shared, error: &dyn std::fmt::Display, what: &str) -> bool {
        self.tries += 1;
        let giving_up = shared.stop.load(Ordering::SeqCst) || shared.releasing.load(Ordering::SeqCst);
        if giving_up && self.tries >= TRIES_BEFORE_GIVING_UP {
            return false;
        }
        tracing::warn!(error = %error, retry_in = ?self.wait, "{what}; retrying");
        std::thread::sleep(self.wait);
        self.wait = (self.wait * 2).min(MAX_BACKOFF);
        true
    }
}

/// The thread body: writes batches in the order they come, reporting each.
pub(crate) fn run(shared: &Shared, batches: Receiver<Vec<Message>>, results: Sender<Written>) {
    for batch in batches {
        let written = write(shared, batch);
        if results.send(written).is_err() {
            break;
        }
    }
}

/// Decodes, forwards and writes one batch.
fn write(shared: &Shared, messages: Vec<Message>) -> Written {
    let config = &shared.config;
    let positions = match coverage(&config.group, &config.topic, &messages) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "a batch does not cover its offsets without a break; it is not written and the partitions are read again from the store");
            return Written::NotStored;
        }
    };
    let at = now_ms();
    let mut assembly = Assembly::new(at, None);
    let mut gaps = Vec::new();
    for (index, m) in messages.into_iter().enumerate() {
        if let (Some(kind), true) = (m.gap, m.covers_from < m.offset) {
            shared.metrics.kafka_offsets_skipped.fetch_add((m.offset - m.covers_from) as u64, Ordering::Relaxed);
            gaps.push(DeadLetter {
                received_at_ms: at,
                source: format!("kafka:{}/{}@{}..{}", config.topic, m.partition, m.covers_from, m.offset),
                reason: kind.reason(m.covers_from, m.offset),
                raw: Vec::new(),
                key: None,
            });
        }
        let origin = Origin {
            source: format!("kafka:{}/{}@{}", config.topic, m.partition, m.offset),
            index,
            raw: m.payload.clone().unwrap_or_default(),
            key: m.key,
        };
        match m.payload.as_deref() {
            None => assembly.refuse(&origin, "field `event`: the message has no payload; send one JSON event".into()),
            Some(payload) => match parse_event(payload, &config.limits) {
                Ok(event) => assembly.accept(event, origin),
                Err(rejection) => assembly.refuse(&origin, rejection.to_string()),
            },
        }
    }
    if !forward_dead_letters(shared, &assembly.batch.dead_letters) {
        return Written::NotStored;
    }
    assembly.batch.dead_letters.extend(gaps);
    assembly.set_positions(positions);
    let mut retry = Retry::new();
    loop {
        let started = Instant::now();
        match shared.runtime.block_on(crate::isolate::write_isolating(&*shared.store, &mut assembly)) {
            Ok(outcome) => {
                shared.metrics.observe_write(started.elapsed());
                shared.metrics.kafka.record(
                    outcome.accepted(),
                    outcome.duplicate_events(),
                    assembly.refusals.len() as u64,
                );
                shared.metrics.store_refused.fetch_add(assembly.store_refused, Ordering::Relaxed);
                return Written::Stored(
                    assembly.batch.positions.iter().map(|p| (p.partition, p.next_offset)).collect(),
                );
            }
            Err(driftline_store::Error::PositionMoved { partition, from, stored, .. }) => {
                tracing::warn!(
                    partition,
                    from,
                    ?stored,
                    "the stored position is elsewhere; the batch is not written and the partitions are read again from the store"
                );
                return Written::NotStored;
            }
            Err(e) => {
                shared.metrics.kafka.write_errors.fetch_add(1, Ordering::Relaxed);
                if !retry.again(shared, &e, "store write failed") {
                    tracing::warn!(error = %e, "cannot write the batch before giving up the partitions; it will be read again from the stored offsets");
                    return Written::NotStored;
                }
            }
        }
    }
}

/// Forwards dead letters to the dead-letter topic, if there is one, and waits until the broker
/// has them all, retrying with capped backoff. This happens before the batch is stored, so a
/// dead letter is never stored without being forwarded; a crash in between forwards it again
/// (at least once on the topic, exactly once in the store). Returns false when it gave up
/// because the consumer is stopping or releasing its partitions: the batch is then not stored
/// and is read again.
fn forward_dead_letters(shared: &Shared, letters: &[DeadLetter]) -> bool {
    let (Some(producer), Some(topic)) = (&shared.dead_letter_producer, &shared.config.dead_letter_topic) else {
        return true;
    };
    if letters.is_empty() {
        return true;
    }
    let letters: Vec<&DeadLetter> = letters.iter().collect();
    let mut retry = Retry::new();
    loop {
        match shared.runtime.block_on(super::forward::forward(producer, topic, &letters)) {
            Ok(()) => {
                shared.metrics.dead_letters_forwarded.fetch_add(letters.len() as u64, Ordering::Relaxed);
                return true;
            }
            Err(e) => {
                if !retry.again(shared, &e, &format!("cannot forward dead letters to {topic}")) {
                    tracing::warn!(error = %e, topic, "cannot forward dead letters before giving up the partitions; the batch will be read again");
                    return false;
                }
            }
        }
    }
}
