//! The Kafka consumer: exactly once from a topic into the store.
//!
//! One thread polls a consumer group (`enable.auto.commit=false`). Messages are buffered per write
//! lane (partition `p` belongs to lane `p % writers`) until the lane's batch is full or has
//! lingered long enough; then the lane's writer thread decodes it and writes it in one store
//! transaction together with the next offset of every partition the batch covers. Lanes write in
//! parallel; one lane writes its batches in order, so each partition's offsets only move forward.
//! The position update is conditional on the offset this consumer found stored (see
//! [`driftline_store::SourcePosition`]), so a stalled consumer whose partitions were handed to
//! another one cannot store a message twice. On assignment the consumer seeks to the stored
//! offsets (falling back to `auto.offset.reset`); on revocation the pending batch is written, or
//! dropped when the store is unreachable, before the partitions go. Kafka offset commits are
//! advisory only (lag dashboards).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftline_core::time::now_ms;
use driftline_core::{parse_event, Limits};
use driftline_store::{DeadLetter, SourcePosition, Store, WriteBatch};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::runtime::Handle;

use crate::metrics::IngestMetrics;

/// Where to start a partition that has no stored position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// From the oldest message still in the topic.
    Earliest,
    /// From new messages only.
    Latest,
}

/// Which partitions a consumer reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitions {
    /// The consumer group hands out partitions (and moves them when consumers come and go).
    Group,
    /// Every partition of the topic, assigned by this consumer itself, no group membership.
    All,
    /// These partitions, assigned by this consumer itself, no group membership.
    Only(Vec<i32>),
}

/// How to consume.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// The topic of v1 events.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// Most messages in one store transaction.
    pub batch_size: usize,
    /// Longest time a message waits in a batch before it is written.
    pub linger: Duration,
    /// Where partitions with no stored position start.
    pub offset_reset: OffsetReset,
    /// Event limits.
    pub limits: Limits,
    /// Extra librdkafka settings, applied last.
    pub overrides: Vec<(String, String)>,
    /// Group-managed or self-assigned partitions. Self-assigned consumers do not depend on the
    /// broker's group coordination; exactly-once holds either way, because the store refuses a
    /// position that moved under a writer.
    pub partitions: Partitions,
    /// Store transactions in flight at once (write lanes).
    pub writers: usize,
    /// Also forward every dead letter to this topic (raw bytes and key as received, the reason
    /// and the source position in headers), before its batch is stored.
    pub dead_letter_topic: Option<String>,
}

/// Header of a forwarded dead letter that says why it was refused.
pub const REASON_HEADER: &str = "driftline-reason";
/// Header of a forwarded dead letter that says where it was read: `kafka:<topic>/<partition>@<offset>`.
/// The same message forwarded twice (after a crash between forwarding and storing) has the
/// same source, so readers of the dead-letter topic can drop repeats by it.
pub const SOURCE_HEADER: &str = "driftline-source";

impl KafkaConfig {
    /// The defaults for `brokers`: topic `driftline.events`, group `driftline-ingest`, batches of
    /// 5,000 messages or 200 ms, earliest.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            topic: "driftline.events".into(),
            group: "driftline-ingest".into(),
            batch_size: 5_000,
            linger: Duration::from_millis(200),
            offset_reset: OffsetReset::Earliest,
            limits: Limits::default(),
            overrides: Vec::new(),
            partitions: Partitions::Group,
            writers: 4,
            dead_letter_topic: None,
        }
    }
}

/// One message as consumed, owned.
struct Raw {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
}

/// Messages of one lane waiting to be written.
#[derive(Default)]
struct Pending {
    raws: Vec<Raw>,
    /// Per partition: the offset after the last pending message.
    next: HashMap<i32, i64>,
    /// When the oldest pending message arrived.
    oldest: Option<Instant>,
}

/// What a lane's writer thread is given.
enum LaneMsg {
    /// Decode and write these messages with these positions.
    Write(Vec<Raw>, Vec<SourcePosition>),
    /// Answer once everything sent before has been written (or dropped).
    Barrier(std::sync::mpsc::Sender<()>),
}

/// Where a partition's consumption stands on the polling thread.
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    /// The only offset accepted next (`None`: nothing stored yet, accept what comes first).
    next: Option<i64>,
    /// A seek back was issued: messages above `next` are left over from before it.
    rereading: bool,
    /// Re-reads of the partition since it was last positioned.
    rereads: u32,
}

/// What the polling thread and its rebalance callback share.
#[derive(Default)]
struct State {
    /// One pending batch per lane.
    lanes: Vec<Pending>,
    /// The lanes' writer threads.
    writers: Vec<SyncSender<LaneMsg>>,
    /// Per assigned partition: the next offset the store will hold once every batch handed to
    /// the writers is written (the `previous` of the partition's next batch).
    stored: HashMap<i32, Option<i64>>,
    /// Per assigned partition: which offset is accepted next.
    cursors: HashMap<i32, Cursor>,
}

impl State {
    /// Notes that `partition` was positioned at its stored next offset (or at the reset point).
    fn position(&mut self, partition: i32, stored: Option<i64>) {
        self.stored.insert(partition, stored);
        self.cursors.insert(partition, Cursor { next: stored, ..Cursor::default() });
    }

    fn pending_messages(&self) -> usize {
        self.lanes.iter().map(|l| l.raws.len()).sum()
    }
}

/// How far before the expected offset a partition is first re-read when the broker skipped
/// messages after a seek; each further re-read goes ten times further back, in case a record
/// batch is longer than that. Messages below the expected offset are dropped on arrival.
const GAP_LOOKBACK: i64 = 10_000;
/// Re-reads of a partition before a gap is taken as real.
const GAP_REREADS: u32 = 3;

struct Shared {
    config: KafkaConfig,
    store: Arc<dyn Store>,
    runtime: Handle,
    metrics: Arc<IngestMetrics>,
    stop: Arc<AtomicBool>,
    /// Set while partitions are being revoked: writers give up on a failing batch sooner.
    releasing: AtomicBool,
    /// Set by a writer whose batch met a moved position: the poller re-reads the stored offsets.
    reseek: AtomicBool,
    /// Positions written since the last advisory Kafka commit.
    committed: Mutex<HashMap<i32, i64>>,
    /// The producer of the dead-letter topic, when there is one.
    dead_letter_producer: Option<FutureProducer>,
    state: Mutex<State>,
}

/// The consumer's librdkafka context: rebalances and statistics come through here.
struct IngestContext {
    shared: Arc<Shared>,
}

impl ClientContext for IngestContext {
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.shared.config.topic) {
            for (partition, p) in &topic.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.shared.metrics.set_lag(&self.shared.config.topic, *partition, p.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client error; retrying");
    }
}

impl ConsumerContext for IngestContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let shared = &self.shared;
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let stored = shared.stored_positions();
                let mut state = shared.state.lock().expect("consumer state lock");
                let topic = shared.config.topic.clone();
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                for &partition in &partitions {
                    let known = stored.get(&partition).copied();
                    state.position(partition, known);
                    if let Err(e) = tpl.set_partition_offset(&topic, partition, shared.start_offset(known)) {
                        tracing::error!(partition, error = %e, "cannot set the start offset");
                    }
                }
                tracing::info!(?partitions, "partitions assigned; reading from the stored offsets");
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(error = %e, "cannot take the assigned partitions");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let mut state = shared.state.lock().expect("consumer state lock");
                // Write what is pending while the partitions are still ours, or drop it after a
                // few tries: another consumer will read it again from the stored offsets.
                shared.releasing.store(true, Ordering::SeqCst);
                shared.drain(&mut state);
                shared.releasing.store(false, Ordering::SeqCst);
                state.stored.clear();
                state.cursors.clear();
                shared.metrics.clear_lag();
                tracing::info!("partitions revoked");
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "cannot release the revoked partitions");
                }
            }
            other => tracing::warn!(error = ?other, "rebalance error"),
        }
    }
}

/// Longest pause between two tries of a failed store write.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Tries of a write before a revocation or shutdown drops the batch.
const TRIES_BEFORE_DROP: u32 = 3;

impl Shared {
    /// Decides whether a message is the next one of its partition, so that each offset is
    /// accepted exactly once, in order. Lower offsets were accepted already. A higher offset is
    /// a gap: a Kafka broker answers a fetch from the middle of a record batch with that whole
    /// batch, but a broker that answers with the next batch (tansu 0.6 does) would make the rest
    /// of the batch vanish. So the partition is re-read from earlier (up to [`GAP_REREADS`]
    /// times per positioning, each further back), and messages left over from before that seek
    /// are ignored. A gap that is still there afterwards is real (compacted topics have them):
    /// it is logged and accepted.
    fn admit(&self, state: &mut State, consumer: &BaseConsumer<IngestContext>, partition: i32, offset: i64) -> bool {
        let Some(cursor) = state.cursors.get_mut(&partition) else { return false };
        let Some(next) = cursor.next else {
            cursor.next = Some(offset + 1);
            return true;
        };
        if offset < next {
            cursor.rereading = false; // the re-read has reached us
            return false;
        }
        if offset == next {
            cursor.next = Some(offset + 1);
            cursor.rereading = false;
            return true;
        }
        if cursor.rereading {
            return false; // fetched before the seek back
        }
        if cursor.rereads < GAP_REREADS {
            let from = (next - GAP_LOOKBACK * 10_i64.pow(cursor.rereads)).max(0);
            cursor.rereads += 1;
            tracing::warn!(
                partition,
                expected = next,
                got = offset,
                "the broker skipped offsets; re-reading the partition from {from}"
            );
            match consumer.seek(&self.config.topic, partition, Offset::Offset(from), Duration::from_secs(10)) {
                Ok(()) => {
                    cursor.rereading = true;
                    return false;
                }
                Err(e) => tracing::warn!(partition, error = %e, "cannot seek back"),
            }
        }
        tracing::warn!(
            partition,
            expected = next,
            got = offset,
            "offsets {next}..{offset} are not in the topic; continuing"
        );
        cursor.next = Some(offset + 1);
        true
    }

    /// Where a partition starts: its stored next offset, or `auto.offset.reset` without one.
    fn start_offset(&self, stored: Option<i64>) -> Offset {
        match stored {
            Some(next) => Offset::Offset(next),
            None if self.config.offset_reset == OffsetReset::Earliest => Offset::Beginning,
            None => Offset::End,
        }
    }

    /// The stored position of every partition of the topic, retried until the store answers.
    fn stored_positions(&self) -> HashMap<i32, i64> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let read = self.runtime.block_on(self.store.source_positions(&self.config.group, &self.config.topic));
            match read {
                Ok(positions) => return positions.into_iter().map(|p| (p.partition, p.next_offset)).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot read the stored offsets");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Hands lane `lane`'s pending messages to its writer, with the positions they move. Blocks
    /// while the writer already has a batch queued: backpressure, not buffering.
    fn hand_off(&self, state: &mut State, lane: usize) {
        let pending = std::mem::take(&mut state.lanes[lane]);
        if pending.raws.is_empty() {
            return;
        }
        let mut positions: Vec<SourcePosition> = pending
            .next
            .iter()
            .map(|(&partition, &next_offset)| SourcePosition {
                group: self.config.group.clone(),
                topic: self.config.topic.clone(),
                partition,
                next_offset,
                previous: state.stored.get(&partition).copied().flatten(),
            })
            .collect();
        positions.sort_by_key(|p| p.partition);
        for pos in &positions {
            state.stored.insert(pos.partition, Some(pos.next_offset));
        }
        if state.writers[lane].send(LaneMsg::Write(pending.raws, positions)).is_err() {
            tracing::error!(lane, "a writer thread is gone; its batch is dropped and will be read again");
            self.reseek.store(true, Ordering::SeqCst);
        }
    }

    /// Hands off every pending batch and waits until every writer is done with what it has.
    fn drain(&self, state: &mut State) {
        for lane in 0..state.lanes.len() {
            self.hand_off(state, lane);
        }
        let (ack, acks) = std::sync::mpsc::channel();
        let mut waiting = 0;
        for writer in &state.writers {
            if writer.send(LaneMsg::Barrier(ack.clone())).is_ok() {
                waiting += 1;
            }
        }
        for _ in 0..waiting {
            let _ = acks.recv();
        }
    }

    /// After a batch met a moved position: waits for the writers, then seeks every assigned
    /// partition back to its stored position.
    fn reseek(&self, state: &mut State, consumer: &BaseConsumer<IngestContext>) {
        self.drain(state);
        // What the writers had queued has failed or been written; the store says which.
        for lane in state.lanes.iter_mut() {
            *lane = Pending::default();
        }
        self.reseek.store(false, Ordering::SeqCst);
        let stored = self.stored_positions();
        let partitions: Vec<i32> = state.stored.keys().copied().collect();
        for partition in partitions {
            let known = stored.get(&partition).copied();
            state.position(partition, known);
            if let Err(e) =
                consumer.seek(&self.config.topic, partition, self.start_offset(known), Duration::from_secs(10))
            {
                tracing::warn!(partition, error = %e, "cannot seek to the stored offset");
            }
        }
    }

    /// Decodes messages into one write.
    fn build_batch(&self, raws: &[Raw], positions: Vec<SourcePosition>) -> WriteBatch {
        let at = now_ms();
        let topic = &self.config.topic;
        let mut batch = WriteBatch::new(at);
        for m in raws {
            let decoded = match m.payload.as_deref() {
                None => Err(driftline_core::Rejection::new("event", "the message has no payload; send one JSON event")),
                Some(payload) => parse_event(payload, &self.config.limits),
            };
            match decoded {
                Ok(event) => batch.push(event),
                Err(rejection) => batch.dead_letters.push(DeadLetter {
                    received_at_ms: at,
                    source: format!("kafka:{topic}/{}@{}", m.partition, m.offset),
                    reason: rejection.to_string(),
                    raw: m.payload.clone().unwrap_or_default(),
                    key: m.key.clone(),
                }),
            }
        }
        batch.positions = positions;
        batch
    }

    /// Writes one batch, retrying with capped backoff. Gives up after a few tries while the
    /// consumer stops or releases its partitions; the messages are then read again later.
    fn write(&self, raws: Vec<Raw>, positions: Vec<SourcePosition>) {
        let batch = self.build_batch(&raws, positions);
        drop(raws);
        if !self.forward_dead_letters(&batch.dead_letters) {
            self.reseek.store(true, Ordering::SeqCst);
            return;
        }
        let mut retry = Retry::new();
        loop {
            let started = Instant::now();
            match self.runtime.block_on(self.store.write(&batch)) {
                Ok(outcome) => {
                    self.metrics.observe_write(started.elapsed());
                    self.metrics.kafka.record(outcome.accepted(), outcome.duplicate_events(), outcome.dead_letters);
                    let mut committed = self.committed.lock().expect("commit lock");
                    for pos in &batch.positions {
                        committed.insert(pos.partition, pos.next_offset);
                    }
                    return;
                }
                Err(driftline_store::Error::PositionMoved { partition, stored, .. }) => {
                    tracing::warn!(
                        partition,
                        ?stored,
                        "the stored position moved; dropping the batch and resuming from the store"
                    );
                    self.reseek.store(true, Ordering::SeqCst);
                    return;
                }
                Err(e) => {
                    self.metrics.kafka.write_errors.fetch_add(1, Ordering::Relaxed);
                    if !retry.again(self, &e, "store write failed") {
                        tracing::warn!(error = %e, "cannot write the batch before giving up the partitions; dropping it, it will be read again from the stored offsets");
                        self.reseek.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            }
        }
    }

    /// Forwards dead letters to the dead-letter topic, if there is one, and waits until the
    /// broker has them all, retrying with capped backoff. This happens before the batch is
    /// stored, so a dead letter is never stored without being forwarded; a crash in between
    /// forwards it again (at least once on the topic, exactly once in the store). Returns false
    /// when it gave up because the consumer is stopping or releasing its partitions: the batch
    /// is then not stored and is read again.
    fn forward_dead_letters(&self, letters: &[DeadLetter]) -> bool {
        let (Some(producer), Some(topic)) = (&self.dead_letter_producer, &self.config.dead_letter_topic) else {
            return true;
        };
        if letters.is_empty() {
            return true;
        }
        let mut retry = Retry::new();
        loop {
            match self.runtime.block_on(forward(producer, topic, letters)) {
                Ok(()) => {
                    self.metrics.dead_letters_forwarded.fetch_add(letters.len() as u64, Ordering::Relaxed);
                    return true;
                }
                Err(e) => {
                    if !retry.again(self, &e, &format!("cannot forward dead letters to {topic}")) {
                        tracing::warn!(error = %e, topic, "cannot forward dead letters before giving up the partitions; the batch will be read again");
                        return false;
                    }
                }
            }
        }
    }
}

/// Capped exponential backoff between the tries of a failing batch write or dead-letter delivery.
struct Retry {
    wait: Duration,
    tries: u32,
}

impl Retry {
    fn new() -> Self {
        Retry { wait: Duration::from_millis(100), tries: 0 }
    }

    /// After a failed try: whether to try again. While the consumer stops or releases its
    /// partitions it gives up after [`TRIES_BEFORE_DROP`] tries; otherwise it logs the failure
    /// at WARN, sleeps, and doubles the next wait up to [`MAX_BACKOFF`].
    fn again(&mut self, shared: &Shared, error: &dyn std::fmt::Display, what: &str) -> bool {
        self.tries += 1;
        let giving_up = shared.stop.load(Ordering::SeqCst) || shared.releasing.load(Ordering::SeqCst);
        if giving_up && self.tries >= TRIES_BEFORE_DROP {
            return false;
        }
        tracing::warn!(error = %error, retry_in = ?self.wait, "{what}; retrying");
        std::thread::sleep(self.wait);
        self.wait = (self.wait * 2).min(MAX_BACKOFF);
        true
    }
}

/// Produces each dead letter to `topic` (its key and raw bytes as received, reason and source in
/// headers) and waits for every delivery.
async fn forward(producer: &FutureProducer, topic: &str, letters: &[DeadLetter]) -> Result<(), KafkaError> {
    let mut deliveries = Vec::with_capacity(letters.len());
    for letter in letters {
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header { key: REASON_HEADER, value: Some(letter.reason.as_bytes()) })
            .insert(Header { key: SOURCE_HEADER, value: Some(letter.source.as_bytes()) });
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(&letter.raw).headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key);
        }
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e),
            Err(_) => return Err(KafkaError::Canceled),
        }
    }
    Ok(())
}

/// The producer of the dead-letter topic: the consumer's brokers and settings, deliveries
/// acknowledged by all in-sync replicas, and a bounded wait so a broker outage shows up as a
/// retried error instead of a silent stall.
fn dead_letter_producer(config: &KafkaConfig) -> Result<Option<FutureProducer>, crate::Error> {
    let Some(topic) = &config.dead_letter_topic else { return Ok(None) };
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers).set("acks", "all").set("message.timeout.ms", "30000");
    for (key, value) in &config.overrides {
        c.set(key, value);
    }
    c.create()
        .map(Some)
        .map_err(|e| crate::Error::Kafka(format!("cannot create the producer of dead-letter topic {topic}: {e}")))
}

/// A lane's writer thread: writes batches in the order they come.
fn writer(shared: &Shared, batches: Receiver<LaneMsg>) {
    for msg in batches {
        match msg {
            LaneMsg::Write(raws, positions) => shared.write(raws, positions),
            LaneMsg::Barrier(ack) => {
                let _ = ack.send(());
            }
        }
    }
}

/// A running consumer; [`Ingest::stop`] finishes the pending batches and leaves the group.
pub struct Ingest {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), crate::Error>>>,
}

impl Ingest {
    /// Starts consuming on threads of its own. `runtime` runs the store's futures.
    pub fn start(
        config: KafkaConfig,
        store: Arc<dyn Store>,
        runtime: Handle,
        metrics: Arc<IngestMetrics>,
    ) -> Result<Ingest, crate::Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let lanes = config.writers.max(1);
        let dead_letter_producer = dead_letter_producer(&config)?;
        let shared = Arc::new(Shared {
            config,
            store,
            runtime,
            metrics,
            stop: stop.clone(),
            releasing: AtomicBool::new(false),
            reseek: AtomicBool::new(false),
            committed: Mutex::new(HashMap::new()),
            dead_letter_producer,
            state: Mutex::new(State::default()),
        });
        // Everything that blocks on the store (reading positions to assign partitions) happens
        // on the consumer's own threads, never on the caller's runtime. Set-up errors end the
        // thread and come back from `stop`.
        let thread = std::thread::Builder::new()
            .name("driftline-kafka".into())
            .spawn(move || {
                let mut writers = Vec::with_capacity(lanes);
                {
                    let mut state = shared.state.lock().expect("consumer state lock");
                    for lane in 0..lanes {
                        // One batch queued per lane at most: the poller waits beyond that.
                        let (tx, rx) = sync_channel(1);
                        let shared = shared.clone();
                        let handle = std::thread::Builder::new()
                            .name(format!("driftline-write-{lane}"))
                            .spawn(move || writer(&shared, rx))
                            .map_err(|e| crate::Error::Kafka(format!("cannot start a writer thread: {e}")))?;
                        state.writers.push(tx);
                        state.lanes.push(Pending::default());
                        writers.push(handle);
                    }
                }
                let result = consumer(&shared).and_then(|consumer| run(&shared, &consumer));
                // Closing the lanes ends the writers once they have written what they hold.
                shared.state.lock().expect("consumer state lock").writers.clear();
                for handle in writers {
                    let _ = handle.join();
                }
                result
            })
            .map_err(|e| crate::Error::Kafka(format!("cannot start the consumer thread: {e}")))?;
        Ok(Ingest { stop, thread: Some(thread) })
    }

    /// Whether the consumer thread has ended (after a stop or a fatal error).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops consuming: the pending batches are written (or dropped if the store is
    /// unreachable), the consumer leaves its group, and the threads end.
    pub fn stop(mut self) -> Result<(), crate::Error> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(crate::Error::Kafka("the consumer thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn consumer(shared: &Arc<Shared>) -> Result<BaseConsumer<IngestContext>, crate::Error> {
    let c = &shared.config;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &c.brokers)
        .set("group.id", &c.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", if c.offset_reset == OffsetReset::Earliest { "earliest" } else { "latest" })
        .set("enable.partition.eof", "false")
        // Bounded prefetch: memory stays flat however large the backlog.
        .set("queued.max.messages.kbytes", "32768")
        .set("fetch.max.bytes", "16777216")
        .set("max.poll.interval.ms", "600000")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("statistics.interval.ms", "5000");
    for (key, value) in &c.overrides {
        config.set(key, value);
    }
    let consumer: BaseConsumer<IngestContext> = config
        .create_with_context(IngestContext { shared: shared.clone() })
        .map_err(|e| crate::Error::Kafka(format!("cannot create the consumer for {}: {e}", c.brokers)))?;
    match &c.partitions {
        Partitions::Group => consumer
            .subscribe(&[&c.topic])
            .map_err(|e| crate::Error::Kafka(format!("cannot subscribe to {}: {e}", c.topic)))?,
        Partitions::All | Partitions::Only(_) => assign(shared, &consumer)?,
    }
    Ok(consumer)
}

/// Assigns the configured partitions at their stored offsets, without a consumer group.
fn assign(shared: &Shared, consumer: &BaseConsumer<IngestContext>) -> Result<(), crate::Error> {
    let c = &shared.config;
    let partitions: Vec<i32> = match &c.partitions {
        Partitions::Only(list) => list.clone(),
        _ => {
            // The topic's partitions, from the broker's metadata (retried while it starts).
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let found = consumer
                    .fetch_metadata(Some(&c.topic), Duration::from_secs(5))
                    .ok()
                    .and_then(|m| m.topics().first().map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>()))
                    .filter(|p| !p.is_empty());
                match found {
                    Some(p) => break p,
                    None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(500)),
                    None => {
                        return Err(crate::Error::Kafka(format!(
                            "topic {} has no partitions at {}; create it first",
                            c.topic, c.brokers
                        )))
                    }
                }
            }
        }
    };
    let stored = shared.stored_positions();
    let mut tpl = TopicPartitionList::new();
    let mut state = shared.state.lock().expect("consumer state lock");
    for &partition in &partitions {
        let known = stored.get(&partition).copied();
        state.position(partition, known);
        let offset = shared.start_offset(known);
        tpl.add_partition_offset(&c.topic, partition, offset)
            .map_err(|e| crate::Error::Kafka(format!("partition {partition}: {e}")))?;
    }
    consumer.assign(&tpl).map_err(|e| crate::Error::Kafka(format!("cannot assign {partitions:?}: {e}")))?;
    tracing::info!(?partitions, "partitions assigned by this consumer; reading from the stored offsets");
    Ok(())
}

fn run(shared: &Arc<Shared>, consumer: &BaseConsumer<IngestContext>) -> Result<(), crate::Error> {
    let config = &shared.config;
    let lanes = config.writers.max(1);
    let mut last_error: Option<Instant> = None;
    let mut last_commit = Instant::now();
    while !shared.stop.load(Ordering::SeqCst) {
        let wait = {
            let state = shared.state.lock().expect("consumer state lock");
            state
                .lanes
                .iter()
                .filter_map(|l| l.oldest)
                .map(|t| config.linger.saturating_sub(t.elapsed()))
                .min()
                .unwrap_or(Duration::from_millis(100))
        };
        // The rebalance callback runs inside poll; no lock is held across it.
        match consumer.poll(wait) {
            Some(Ok(message)) => {
                shared.metrics.kafka.consumed.fetch_add(1, Ordering::Relaxed);
                let mut state = shared.state.lock().expect("consumer state lock");
                let (partition, offset) = (message.partition(), message.offset());
                if shared.admit(&mut state, consumer, partition, offset) {
                    let lane = partition.unsigned_abs() as usize % lanes;
                    let pending = &mut state.lanes[lane];
                    pending.raws.push(Raw {
                        partition,
                        offset,
                        key: message.key().map(<[u8]>::to_vec),
                        payload: message.payload().map(<[u8]>::to_vec),
                    });
                    pending.next.insert(partition, offset + 1);
                    pending.oldest.get_or_insert_with(Instant::now);
                    if pending.raws.len() >= config.batch_size {
                        shared.hand_off(&mut state, lane);
                    }
                }
            }
            // librdkafka reconnects by itself; say so at most every 10 s.
            Some(Err(e)) if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) => {
                tracing::warn!(error = %e, "kafka consumer error; retrying");
                last_error = Some(Instant::now());
            }
            Some(Err(_)) => {}
            None => {}
        }
        let mut state = shared.state.lock().expect("consumer state lock");
        for lane in 0..lanes {
            if state.lanes[lane].oldest.is_some_and(|t| t.elapsed() >= config.linger) {
                shared.hand_off(&mut state, lane);
            }
        }
        if shared.reseek.load(Ordering::SeqCst) {
            shared.reseek(&mut state, consumer);
        }
        drop(state);
        if last_commit.elapsed() >= Duration::from_secs(1) {
            advisory_commit(shared, consumer);
            last_commit = Instant::now();
        }
    }
    {
        let mut state = shared.state.lock().expect("consumer state lock");
        shared.drain(&mut state);
        debug_assert_eq!(state.pending_messages(), 0);
    }
    advisory_commit(shared, consumer);
    if config.partitions == Partitions::Group {
        consumer.unsubscribe();
        // Serve the revocation callback so the group learns we are gone.
        let _ = consumer.poll(Duration::from_millis(100));
    }
    tracing::info!("kafka consumer stopped");
    Ok(())
}

/// Commits the written positions to Kafka, for lag dashboards only: the offsets that count are
/// in the store.
fn advisory_commit(shared: &Shared, consumer: &BaseConsumer<IngestContext>) {
    let written = std::mem::take(&mut *shared.committed.lock().expect("commit lock"));
    if written.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (partition, next) in written {
        let _ = tpl.add_partition_offset(&shared.config.topic, partition, Offset::Offset(next));
    }
    let _ = consumer.commit(&tpl, CommitMode::Async);
}
