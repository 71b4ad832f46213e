//! The Kafka consumer: exactly once from a topic into the store.
//!
//! One thread polls (a consumer group member, or partitions it assigns itself). Each message
//! goes through its partition's [`cursor::Cursor`], which takes every offset exactly once and in
//! order and says which offsets each message accounts for; a partition that stays quiet while
//! its watermark says the log holds more is read again from further back, as a gap is. Taken
//! messages wait in their write lane (partition `p` belongs to lane `p % writers`) until the
//! lane's batch is full or has lingered long enough; then the lane's writer thread decodes the
//! batch and writes it in one store transaction together with, per partition, the range of
//! offsets it covers. The store moves a partition's position only from where that range starts,
//! so a stored offset can never pass a message that is neither stored nor kept as a dead letter,
//! and two consumers of one partition cannot both store it.
//!
//! The poller is a small state machine. `Running`: messages are taken and batches handed off.
//! When a writer reports a batch not stored (another consumer moved a position, or the writer
//! gave up), it turns to `Resync`: messages are ignored and nothing is handed off until every
//! batch in flight has come back; then every partition is positioned at its stored offset again
//! and it is `Running` once more. On revocation the pending batches are written (or given up
//! after a few tries) before the partitions go; on assignment each partition starts at its
//! stored offset, or, with nothing stored, at the log's start or end as `auto.offset.reset`
//! says, resolved to a concrete offset from the broker's watermarks.

mod config;
pub mod cursor;
mod forward;
mod lanes;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use driftline_store::EventStore;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tokio::runtime::Handle;

pub use self::config::{defaults, KafkaConfig, OffsetReset, Partitions};
use self::cursor::{Admit, Cursor, Stall};
pub use self::forward::{REASON_HEADER, SOURCE_HEADER};
use self::lanes::{GapKind, Lane, Message};
use self::writer::Written;
use crate::metrics::IngestMetrics;

/// How long a seek back may take to show before it is made again, and how long a partition
/// with offsets left may stay quiet before it is read again.
const REREAD_PATIENCE: Duration = Duration::from_secs(5);

/// What the polling thread, its rebalance callback and the writer threads share.
pub(crate) struct Shared {
    config: KafkaConfig,
    store: Arc<dyn EventStore>,
    runtime: Handle,
    metrics: Arc<IngestMetrics>,
    stop: Arc<AtomicBool>,
    /// Set while partitions are being revoked: writers give up on a failing batch sooner.
    releasing: AtomicBool,
    /// The producer of the dead-letter topic, when there is one.
    dead_letter_producer: Option<FutureProducer>,
    /// The partitions whose client, at its last statistics, had nothing queued and was fetching
    /// below the log's end (the last stable offset, or the high watermark), with that end.
    fetching_below_end: Mutex<HashMap<i32, i64>>,
    poller: Mutex<Poller>,
}

/// The poller's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Taking messages and handing off batches.
    Running,
    /// A batch was not stored: waiting for the batches in flight, then positioning every
    /// partition at its stored offset again.
    Resync,
}

/// What the polling thread owns; the rebalance callback, which runs inside `poll` on the same
/// thread, works on it too.
struct Poller {
    phase: Phase,
    /// One pending batch per lane.
    lanes: Vec<Lane>,
    /// The lanes' writer threads (one batch queued at most each).
    senders: Vec<SyncSender<Vec<Message>>>,
    /// What the writers report, one answer per batch.
    results: Receiver<Written>,
    /// Batches handed off and not answered yet.
    in_flight: usize,
    /// Per assigned partition: which offset is taken next.
    cursors: HashMap<i32, Cursor>,
    /// Next offsets stored since the last advisory Kafka commit.
    written: HashMap<i32, i64>,
    /// Partitions re-read after a gap: since when, from where, and how often the seek was made.
    rereads: HashMap<i32, (Instant, i64, u32)>,
    /// Per assigned partition, since when nothing has arrived from it.
    quiet_since: HashMap<i32, Instant>,
    /// Since when this group member has had no partitions.
    idle_since: Option<Instant>,
    /// When it last said so.
    idle_warned: Option<Instant>,
}

/// The consumer's librdkafka context: rebalances and statistics come through here.
struct IngestContext {
    shared: Arc<Shared>,
}

impl ClientContext for IngestContext {
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.shared.config.topic) {
            let mut below_end = self.shared.fetching_below_end.lock().expect("fetch state lock");
            for (partition, p) in &topic.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.shared.metrics.set_lag(&self.shared.config.topic, *partition, p.consumer_lag);
                }
                // A read_committed consumer is delivered nothing past the last stable offset.
                let end = if p.ls_offset >= 0 { p.ls_offset.min(p.hi_offset) } else { p.hi_offset };
                if p.fetchq_cnt == 0 && p.next_offset >= 0 && p.next_offset < end {
                    below_end.insert(*partition, end);
                } else {
                    below_end.remove(partition);
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
        let mut poller = shared.poller.lock().expect("poller lock");
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                let starts = poller.position(shared, consumer, &partitions);
                for (&partition, &start) in &starts {
                    if let Err(e) = tpl.set_partition_offset(&shared.config.topic, partition, Offset::Offset(start)) {
                        tracing::error!(partition, error = %e, "cannot set the start offset");
                    }
                }
                tracing::info!(?starts, "partitions assigned; reading from the stored offsets");
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(error = %e, "cannot take the assigned partitions");
                }
                poller.assigned(shared, partitions.len());
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Write what is pending while the partitions are still ours, or give up after a
                // few tries: the next owner reads it again from the stored offsets.
                shared.releasing.store(true, Ordering::SeqCst);
                poller.release();
                shared.releasing.store(false, Ordering::SeqCst);
                poller.cursors.clear();
                poller.rereads.clear();
                poller.quiet_since.clear();
                shared.metrics.clear_lag();
                tracing::info!("partitions revoked");
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "cannot release the revoked partitions");
                }
                poller.assigned(shared, 0);
            }
            other => tracing::warn!(error = ?other, "rebalance error"),
        }
    }
}

impl Poller {
    fn new(senders: Vec<SyncSender<Vec<Message>>>, results: Receiver<Written>) -> Self {
        let lanes = senders.iter().map(|_| Lane::default()).collect();
        Poller {
            phase: Phase::Running,
            lanes,
            senders,
            results,
            in_flight: 0,
            cursors: HashMap::new(),
            written: HashMap::new(),
            rereads: HashMap::new(),
            quiet_since: HashMap::new(),
            idle_since: None,
            idle_warned: None,
        }
    }

    /// Positions `partitions` at their stored offsets (or, with none stored, at the offset
    /// `auto.offset.reset` resolves to) and returns where each starts.
    fn position(
        &mut self,
        shared: &Shared,
        consumer: &BaseConsumer<IngestContext>,
        partitions: &[i32],
    ) -> BTreeMap<i32, i64> {
        let stored = shared.stored_positions();
        let mut starts = BTreeMap::new();
        for &partition in partitions {
            let start = match stored.get(&partition) {
                Some(&next) => next,
                None => shared.resolve_start(consumer, partition),
            };
            self.cursors.insert(partition, Cursor::at(start));
            self.quiet_since.insert(partition, Instant::now());
            starts.insert(partition, start);
        }
        starts
    }

    /// Notes how many partitions this member has now.
    fn assigned(&mut self, shared: &Shared, partitions: usize) {
        shared.metrics.kafka_assigned_partitions.store(partitions as u64, Ordering::Relaxed);
        if partitions == 0 {
            self.idle_since.get_or_insert_with(Instant::now);
        } else {
            self.idle_since = None;
            self.idle_warned = None;
            shared.metrics.kafka_idle_seconds.store(0, Ordering::Relaxed);
        }
    }

    /// Says so, loudly and in a metric, when this group member has had no partitions for longer
    /// than a rebalance takes.
    fn check_idle(&mut self, shared: &Shared) {
        let Some(since) = self.idle_since else { return };
        let idle = since.elapsed();
        if idle < shared.config.rebalance_bound() {
            return;
        }
        shared.metrics.kafka_idle_seconds.store(idle.as_secs(), Ordering::Relaxed);
        if self.idle_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(300)) {
            tracing::warn!(
                idle_secs = idle.as_secs(),
                group = %shared.config.group,
                "this member of the consumer group has had no partitions for longer than a rebalance takes: the \
                 group has more members than the topic has partitions, or the broker does not hand partitions to \
                 it (then run with --partitions all)"
            );
            self.idle_warned = Some(Instant::now());
        }
    }

    /// Decides about one message and, when taken, adds it to its lane's batch.
    fn take(&mut self, shared: &Shared, consumer: &BaseConsumer<IngestContext>, message: Message) {
        if self.phase == Phase::Resync {
            return;
        }
        let partition = message.partition;
        let Some(cursor) = self.cursors.get_mut(&partition) else { return };
        self.quiet_since.insert(partition, Instant::now());
        let mut message = message;
        let mut verdict = cursor.admit(message.offset);
        let mut start_checked = false;
        while let Admit::SeekBack { to } = verdict {
            // Offsets below the log's start were deleted by the broker: nothing to re-read.
            let deleted = if start_checked {
                None
            } else {
                start_checked = true;
                shared.log_start(consumer, partition).and_then(|start| cursor.log_starts_at(start))
            };
            match deleted {
                Some(deleted) => {
                    tracing::error!(
                        partition,
                        from = deleted.start,
                        to = deleted.end,
                        "offsets were deleted by the broker before they were read; their messages are lost (kept as a \
                         dead letter that says so)"
                    );
                    message.gap = Some(GapKind::Deleted);
                    verdict = cursor.admit(message.offset);
                }
                None => {
                    tracing::warn!(
                        partition,
                        expected = cursor.next(),
                        got = message.offset,
                        "the broker skipped offsets; re-reading the partition from {to}"
                    );
                    if let Err(e) =
                        consumer.seek(&shared.config.topic, partition, Offset::Offset(to), Duration::from_secs(10))
                    {
                        tracing::warn!(partition, error = %e, "cannot seek back; repositioning every partition");
                        self.phase = Phase::Resync;
                    }
                    self.rereads.insert(partition, (Instant::now(), to, 0));
                    return;
                }
            }
        }
        match verdict {
            Admit::Accept { covers_from, gap } => {
                if gap && message.gap.is_none() {
                    tracing::warn!(
                        partition,
                        from = covers_from,
                        to = message.offset,
                        "offsets have no message after re-reading; taking them as a real gap"
                    );
                    message.gap = Some(GapKind::Missing);
                }
                message.covers_from = covers_from;
                let lane = partition.unsigned_abs() as usize % self.lanes.len();
                self.lanes[lane].push(message);
                if self.lanes[lane].messages.len() >= shared.config.batch_size {
                    self.hand_off(lane);
                }
            }
            Admit::Drop | Admit::SeekBack { .. } => {}
        }
    }

    /// A re-read that does not show within [`REREAD_PATIENCE`] (the seek did not take, and
    /// nothing more arrives) is asked for again, up to three times, and then every partition is
    /// repositioned from the store: a partition never waits silently.
    fn check_rereads(&mut self, shared: &Shared, consumer: &BaseConsumer<IngestContext>) {
        let cursors = &self.cursors;
        self.rereads.retain(|p, _| cursors.get(p).is_some_and(Cursor::is_rereading));
        let mut resync = false;
        for (&partition, (since, to, attempts)) in self.rereads.iter_mut() {
            if since.elapsed() < REREAD_PATIENCE {
                continue;
            }
            *attempts += 1;
            *since = Instant::now();
            if *attempts > 3 {
                resync = true;
                continue;
            }
            tracing::warn!(partition, from = *to, "the re-read of a partition has not begun; seeking again");
            if let Err(e) = consumer.seek(&shared.config.topic, partition, Offset::Offset(*to), Duration::from_secs(10))
            {
                tracing::warn!(partition, error = %e, "cannot seek back");
            }
        }
        if resync {
            tracing::warn!("a partition's re-read never began; repositioning every partition from the store");
            self.rereads.clear();
            self.phase = Phase::Resync;
        }
    }

    /// A partition has stalled when nothing has come from it for [`REREAD_PATIENCE`] while its
    /// client has nothing queued, fetches below the log's end, and the cursor has offsets left
    /// before that end: some brokers (tansu 0.6) answer a fetch from inside the partition's
    /// last record batch with nothing, so no later message ever shows the gap. It is read again
    /// from further back, as a gap is; when that does not bring the offsets either, it is said
    /// once and the partition waits for its next message.
    fn check_stalls(&mut self, shared: &Shared, consumer: &BaseConsumer<IngestContext>) {
        if self.phase != Phase::Running {
            return;
        }
        // Usually empty (a client that keeps up has messages queued or stands at the end): then
        // nothing is copied, and the lock is not held across the seeks below.
        let below_end = {
            let below_end = shared.fetching_below_end.lock().expect("fetch state lock");
            if below_end.is_empty() {
                return;
            }
            below_end.clone()
        };
        for (&partition, cursor) in self.cursors.iter_mut() {
            let Some(&end) = below_end.get(&partition) else { continue };
            let quiet = self.quiet_since.entry(partition).or_insert_with(Instant::now);
            if cursor.is_rereading() || end <= cursor.next() || quiet.elapsed() < REREAD_PATIENCE {
                continue;
            }
            *quiet = Instant::now();
            match cursor.stalled() {
                Stall::Reread { to } => {
                    tracing::warn!(
                        partition,
                        next = cursor.next(),
                        log_end = end,
                        "nothing arrives although the log holds more; re-reading the partition from {to}"
                    );
                    if let Err(e) =
                        consumer.seek(&shared.config.topic, partition, Offset::Offset(to), Duration::from_secs(10))
                    {
                        tracing::warn!(partition, error = %e, "cannot seek back");
                    }
                    self.rereads.insert(partition, (Instant::now(), to, 0));
                }
                Stall::GiveUp => tracing::warn!(
                    partition,
                    from = cursor.next(),
                    to = end,
                    "these offsets are in the log but no message comes for them however often re-read; waiting for \
                     the partition's next message"
                ),
                Stall::Waiting => {}
            }
        }
    }

    /// Hands lane `lane`'s pending batch to its writer. Blocks while the writer already has a
    /// batch queued: backpressure, not buffering.
    fn hand_off(&mut self, lane: usize) {
        let messages = self.lanes[lane].take();
        if messages.is_empty() {
            return;
        }
        if self.senders[lane].send(messages).is_err() {
            tracing::error!(lane, "a writer thread is gone; its batch is read again from the store");
            self.phase = Phase::Resync;
            return;
        }
        self.in_flight += 1;
    }

    /// Hands off the batches that have waited long enough.
    fn hand_off_lingering(&mut self, linger: Duration) {
        if self.phase != Phase::Running {
            return;
        }
        for lane in 0..self.lanes.len() {
            if self.lanes[lane].oldest.is_some_and(|t| t.elapsed() >= linger) {
                self.hand_off(lane);
            }
        }
    }

    /// Takes in what the writers reported, waiting for every batch in flight when `all`.
    fn collect(&mut self, all: bool) {
        while self.in_flight > 0 {
            let written = if all {
                match self.results.recv() {
                    Ok(w) => w,
                    Err(_) => {
                        self.in_flight = 0;
                        break;
                    }
                }
            } else {
                match self.results.try_recv() {
                    Ok(w) => w,
                    Err(_) => break,
                }
            };
            self.in_flight -= 1;
            match written {
                Written::Stored(positions) => self.written.extend(positions),
                Written::NotStored => self.phase = Phase::Resync,
            }
        }
    }

    /// Writes every pending batch and waits until the writers are done with them.
    fn release(&mut self) {
        if self.phase == Phase::Running {
            for lane in 0..self.lanes.len() {
                self.hand_off(lane);
            }
        }
        self.collect(true);
        for lane in &mut self.lanes {
            lane.take();
        }
        // Whatever did not get stored is read again by the partitions' next owner, or by this
        // consumer from the stored offsets when the partitions come back.
        self.phase = Phase::Running;
    }

    /// In `Resync`, once nothing is in flight: drops the pending batches and positions every
    /// assigned partition at its stored offset again.
    fn resync_if_due(&mut self, shared: &Shared, consumer: &BaseConsumer<IngestContext>) {
        if self.phase != Phase::Resync || self.in_flight > 0 {
            return;
        }
        for lane in &mut self.lanes {
            lane.take();
        }
        self.rereads.clear();
        let partitions: Vec<i32> = self.cursors.keys().copied().collect();
        let starts = self.position(shared, consumer, &partitions);
        for (partition, start) in starts {
            if let Err(e) =
                consumer.seek(&shared.config.topic, partition, Offset::Offset(start), Duration::from_secs(10))
            {
                tracing::warn!(partition, error = %e, "cannot seek to the stored offset; trying again");
                return;
            }
        }
        tracing::info!("every partition repositioned at its stored offset");
        self.phase = Phase::Running;
    }
}

impl Shared {
    /// The stored position of every partition of the topic, retried until the store answers.
    /// When the consumer is stopping and the store does not answer, it gives up with nothing:
    /// a batch read from a wrong start is then refused by the store's position check.
    fn stored_positions(&self) -> BTreeMap<i32, i64> {
        let mut retry = writer::Retry::new();
        loop {
            match self.runtime.block_on(self.store.source_positions(&self.config.group, &self.config.topic)) {
                Ok(positions) => return positions,
                Err(e) => {
                    if !retry.again(self, &e, "cannot read the stored offsets") {
                        return BTreeMap::new();
                    }
                }
            }
        }
    }

    /// Where a partition with nothing stored starts: the log's first or next offset, as
    /// `auto.offset.reset` says, asked of the broker until it answers.
    fn resolve_start(&self, consumer: &BaseConsumer<IngestContext>, partition: i32) -> i64 {
        let mut retry = writer::Retry::new();
        loop {
            match consumer.fetch_watermarks(&self.config.topic, partition, Duration::from_secs(10)) {
                Ok((low, high)) => {
                    return if self.config.offset_reset == OffsetReset::Earliest { low } else { high };
                }
                Err(e) => {
                    if !retry.again(self, &e, "cannot read the partition's watermarks") {
                        return 0;
                    }
                }
            }
        }
    }

    /// The partition's first offset still in the log, when the broker answers.
    fn log_start(&self, consumer: &BaseConsumer<IngestContext>, partition: i32) -> Option<i64> {
        consumer.fetch_watermarks(&self.config.topic, partition, Duration::from_secs(10)).ok().map(|(low, _)| low)
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
        store: Arc<dyn EventStore>,
        runtime: Handle,
        metrics: Arc<IngestMetrics>,
    ) -> Result<Ingest, crate::Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let lanes = config.writers.max(1);
        let dead_letter_producer = forward::producer(&config)?;
        let (results_tx, results) = channel();
        let mut senders = Vec::with_capacity(lanes);
        let mut receivers = Vec::with_capacity(lanes);
        for _ in 0..lanes {
            // One batch queued per lane at most: the poller waits beyond that.
            let (tx, rx) = sync_channel(1);
            senders.push(tx);
            receivers.push(rx);
        }
        let shared = Arc::new(Shared {
            config,
            store,
            runtime,
            metrics,
            stop: stop.clone(),
            releasing: AtomicBool::new(false),
            dead_letter_producer,
            fetching_below_end: Mutex::new(HashMap::new()),
            poller: Mutex::new(Poller::new(senders, results)),
        });
        // Everything that blocks on the store or the broker happens on the consumer's own
        // threads, never on the caller's runtime. Set-up errors end the thread and come back
        // from `stop`.
        let thread = std::thread::Builder::new()
            .name("driftline-kafka".into())
            .spawn(move || {
                let mut writers = Vec::with_capacity(lanes);
                for (lane, batches) in receivers.into_iter().enumerate() {
                    let (shared, results) = (shared.clone(), results_tx.clone());
                    let handle = std::thread::Builder::new()
                        .name(format!("driftline-write-{lane}"))
                        .spawn(move || writer::run(&shared, batches, results))
                        .map_err(|e| crate::Error::Kafka(format!("cannot start a writer thread: {e}")))?;
                    writers.push(handle);
                }
                drop(results_tx);
                let result = consumer(&shared).and_then(|consumer| run(&shared, &consumer));
                // Closing the lanes ends the writers once they have written what they hold.
                shared.poller.lock().expect("poller lock").senders.clear();
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

    /// Stops consuming: the pending batches are written (or given up if the store is
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
    let consumer: BaseConsumer<IngestContext> = c
        .consumer_config()
        .create_with_context(IngestContext { shared: shared.clone() })
        .map_err(|e| crate::Error::Kafka(format!("cannot create the consumer for {}: {e}", c.brokers)))?;
    match &c.partitions {
        Partitions::Group => {
            consumer
                .subscribe(&[&c.topic])
                .map_err(|e| crate::Error::Kafka(format!("cannot subscribe to {}: {e}", c.topic)))?;
            shared.poller.lock().expect("poller lock").assigned(shared, 0);
        }
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
    let mut poller = shared.poller.lock().expect("poller lock");
    let starts = poller.position(shared, consumer, &partitions);
    let mut tpl = TopicPartitionList::new();
    for (&partition, &start) in &starts {
        tpl.add_partition_offset(&c.topic, partition, Offset::Offset(start))
            .map_err(|e| crate::Error::Kafka(format!("partition {partition}: {e}")))?;
    }
    consumer.assign(&tpl).map_err(|e| crate::Error::Kafka(format!("cannot assign {partitions:?}: {e}")))?;
    poller.assigned(shared, partitions.len());
    tracing::info!(?starts, "partitions assigned by this consumer; reading from the stored offsets");
    Ok(())
}

fn run(shared: &Arc<Shared>, consumer: &BaseConsumer<IngestContext>) -> Result<(), crate::Error> {
    let config = &shared.config;
    let mut last_error: Option<Instant> = None;
    let mut last_commit = Instant::now();
    while !shared.stop.load(Ordering::SeqCst) {
        let wait = {
            let poller = shared.poller.lock().expect("poller lock");
            poller
                .lanes
                .iter()
                .filter_map(|l| l.oldest)
                .map(|t| config.linger.saturating_sub(t.elapsed()))
                .min()
                .unwrap_or(Duration::from_millis(100))
                .max(Duration::from_millis(1))
        };
        // The rebalance callback runs inside poll; no lock is held across it.
        let polled = consumer.poll(wait);
        let mut poller = shared.poller.lock().expect("poller lock");
        // Acknowledgements before new input.
        poller.collect(false);
        match polled {
            Some(Ok(m)) => {
                shared.metrics.kafka.consumed.fetch_add(1, Ordering::Relaxed);
                let message = Message {
                    partition: m.partition(),
                    offset: m.offset(),
                    covers_from: m.offset(),
                    gap: None,
                    key: m.key().map(Bytes::copy_from_slice),
                    payload: m.payload().map(Bytes::copy_from_slice),
                };
                poller.take(shared, consumer, message);
            }
            // librdkafka reconnects by itself; say so at most every 10 s.
            Some(Err(e)) if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) => {
                tracing::warn!(error = %e, "kafka consumer error; retrying");
                last_error = Some(Instant::now());
            }
            Some(Err(_)) | None => {}
        }
        poller.hand_off_lingering(config.linger);
        poller.check_rereads(shared, consumer);
        poller.check_stalls(shared, consumer);
        poller.resync_if_due(shared, consumer);
        if config.partitions == Partitions::Group {
            poller.check_idle(shared);
        }
        if last_commit.elapsed() >= Duration::from_secs(1) {
            advisory_commit(shared, consumer, &mut poller.written);
            last_commit = Instant::now();
        }
    }
    {
        let mut poller = shared.poller.lock().expect("poller lock");
        poller.release();
        advisory_commit(shared, consumer, &mut poller.written);
    }
    if config.partitions == Partitions::Group {
        consumer.unsubscribe();
        // Serve the revocation callback so the group learns we are gone.
        let _ = consumer.poll(Duration::from_millis(100));
    }
    tracing::info!("kafka consumer stopped");
    Ok(())
}

/// Commits the stored positions to Kafka, for lag dashboards only: the offsets that count are
/// in the store.
fn advisory_commit(shared: &Shared, consumer: &BaseConsumer<IngestContext>, written: &mut HashMap<i32, i64>) {
    if written.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (partition, next) in written.drain() {
        let _ = tpl.add_partition_offset(&shared.config.topic, partition, Offset::Offset(next));
    }
    let _ = consumer.commit(&tpl, CommitMode::Async);
}
