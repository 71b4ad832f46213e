//! Which offset of a partition is taken next: the consumer's one policy about offsets, as a pure
//! function of the offsets it sees, so it can be tested without a broker.
//!
//! A partition is positioned at a concrete offset (the stored next offset, or the partition's
//! start resolved from the broker's watermarks when nothing is stored). From there each offset is
//! taken exactly once and in order: lower offsets were taken already, and a higher one is a gap.
//! A Kafka broker answers a fetch from inside a record batch with that whole batch, but some
//! brokers (tansu 0.6) answer with the next batch, so the rest of a batch would silently vanish.
//! A gap is therefore re-read from further back ([`GAP_REREADS`] times, each ten times further
//! back than the last) before it is believed; a gap that is still there afterwards is real
//! (compacted topics and transaction markers leave them) and the offsets in it are covered by the
//! next message taken. Every message taken says from which offset the consumer's coverage of the
//! partition runs up to it, so a batch of messages covers an unbroken range of offsets.
//!
//! Asked from inside the partition's last record batch, the same broker answers with nothing at
//! all: no later message ever shows the gap. So a partition that stays quiet while the log holds
//! offsets from `next` on has stalled, and is re-read from further back in the same way
//! ([`Cursor::stalled`]); when that does not bring them either (transaction markers at the end of
//! the log have offsets and no message), the cursor waits for the next message.

/// How far before the expected offset a gap is first re-read; each further re-read goes ten
/// times further back, in case a record batch is longer than that.
pub const GAP_LOOKBACK: i64 = 10_000;
/// Re-reads of one gap before it is taken as real.
pub const GAP_REREADS: u32 = 3;

/// What to do with a message the broker delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Take it. Together with the messages taken before it, coverage of the partition runs
    /// without a break from `covers_from` through this message: `covers_from` is this message's
    /// offset, or lower when the offsets in between were verified not to exist (`gap`).
    Accept {
        /// The first offset this message accounts for.
        covers_from: i64,
        /// Whether offsets `covers_from..offset` were skipped as verified gaps.
        gap: bool,
    },
    /// Ignore it: it was taken already, or it was fetched before a seek back.
    Drop,
    /// Offsets were skipped: seek the partition back to `to` and ignore this message.
    SeekBack {
        /// Where to read again from.
        to: i64,
    },
}

/// What to do about a partition that stays quiet although the log holds offsets from the one
/// taken next on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Seek the partition back to `to` and read again from there.
    Reread {
        /// Where to read again from.
        to: i64,
    },
    /// Re-reading did not bring those offsets: say so (once) and wait for the next message.
    GiveUp,
    /// Given up already; waiting.
    Waiting,
}

/// Where one partition's consumption stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The only offset taken next.
    next: i64,
    /// The first offset the next message taken accounts for: `next`, or lower when the offsets
    /// before `next` were found deleted from the log.
    covers: i64,
    /// A seek back is under way: until it shows, messages above `gap_at` were fetched before it.
    rereading: Option<Rereading>,
    /// Seeks back for the current gap.
    rereads: u32,
    /// Seeks back since the last message taken because nothing at all arrived.
    stalls: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rereading {
    /// The offset that showed the gap.
    gap_at: i64,
}

impl Cursor {
    /// A cursor that takes `next` first.
    pub fn at(next: i64) -> Self {
        Cursor { next, covers: next, rereading: None, rereads: 0, stalls: 0 }
    }

    /// The only offset taken next.
    pub fn next(&self) -> i64 {
        self.next
    }

    /// Whether a seek back was asked for and its re-read has not shown yet.
    pub fn is_rereading(&self) -> bool {
        self.rereading.is_some()
    }

    /// The log now starts at `start` (its low watermark). When that is past the offset taken
    /// next, the offsets in between were deleted by the broker before they were read: there is
    /// nothing to re-read, the next message taken accounts for them, and they are returned.
    pub fn log_starts_at(&mut self, start: i64) -> Option<std::ops::Range<i64>> {
        if start <= self.next {
            return None;
        }
        let deleted = self.next..start;
        self.next = start;
        self.rereading = None;
        self.rereads = 0;
        self.stalls = 0;
        Some(deleted)
    }

    /// Decides about the message at `offset`.
    pub fn admit(&mut self, offset: i64) -> Admit {
        if offset == self.next {
            let covers_from = self.covers;
            self.take(offset);
            return Admit::Accept { covers_from, gap: covers_from < offset };
        }
        if offset < self.next {
            // Taken already; if a seek back is under way, this is the re-read arriving.
            self.rereading = None;
            return Admit::Drop;
        }
        match self.rereading {
            // Fetched before the seek back took effect: the re-read has not started yet.
            Some(r) if offset > r.gap_at => Admit::Drop,
            // A gap, seen for the first time or again after a re-read.
            _ => self.gap(offset),
        }
    }

    /// Nothing arrived for a while although the log holds offsets from [`Cursor::next`] on (the
    /// caller knows from the partition's watermark). Re-reads from further back each time, as for
    /// a gap, [`GAP_REREADS`] times; then gives up until a message is taken.
    pub fn stalled(&mut self) -> Stall {
        if self.stalls > GAP_REREADS {
            return Stall::Waiting;
        }
        if self.stalls == GAP_REREADS {
            self.stalls += 1;
            return Stall::GiveUp;
        }
        let to = Self::lookback(self.next, self.stalls);
        self.stalls += 1;
        // Nothing was fetched before this seek: a message above `next` arriving before the
        // lower ones would be the broker skipping again, seen once the re-read shows.
        self.rereading = Some(Rereading { gap_at: self.next });
        Stall::Reread { to }
    }

    /// Where the `attempt`th re-read (from 0) before `next` starts.
    fn lookback(next: i64, attempt: u32) -> i64 {
        (next - GAP_LOOKBACK.saturating_mul(10_i64.pow(attempt))).max(0)
    }

    fn gap(&mut self, offset: i64) -> Admit {
        let to = Self::lookback(self.next, self.rereads);
        if self.rereads < GAP_REREADS {
            self.rereads += 1;
            self.rereading = Some(Rereading { gap_at: offset });
            return Admit::SeekBack { to };
        }
        let covers_from = self.covers;
        self.take(offset);
        Admit::Accept { covers_from, gap: true }
    }

    fn take(&mut self, offset: i64) {
        self.next = offset + 1;
        self.covers = offset + 1;
        self.rereading = None;
        self.rereads = 0;
        self.stalls = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn accept(covers_from: i64) -> Admit {
        Admit::Accept { covers_from, gap: false }
    }

    #[test]
    fn takes_each_offset_once_in_order() {
        let mut c = Cursor::at(5);
        assert_eq!(c.admit(3), Admit::Drop);
        assert_eq!(c.admit(5), accept(5));
        assert_eq!(c.admit(5), Admit::Drop);
        assert_eq!(c.admit(6), accept(6));
        assert_eq!(c.next(), 7);
    }

    #[test]
    fn a_gap_is_reread_then_believed() {
        let mut c = Cursor::at(20_000);
        // The broker skipped 20,000..20,100.
        assert_eq!(c.admit(20_100), Admit::SeekBack { to: 10_000 });
        // Messages fetched before the seek took effect are ignored.
        assert_eq!(c.admit(20_101), Admit::Drop);
        // The re-read arrives from below and reaches the missing offsets: taken in order.
        assert_eq!(c.admit(10_000), Admit::Drop);
        assert_eq!(c.admit(20_000), accept(20_000));

        // A real gap (compaction): three re-reads, each further back, then believed.
        let mut c = Cursor::at(200_000);
        assert_eq!(c.admit(200_050), Admit::SeekBack { to: 190_000 });
        assert_eq!(c.admit(190_000), Admit::Drop);
        assert_eq!(c.admit(200_050), Admit::SeekBack { to: 100_000 });
        assert_eq!(c.admit(100_000), Admit::Drop);
        assert_eq!(c.admit(200_050), Admit::SeekBack { to: 0 });
        assert_eq!(c.admit(0), Admit::Drop);
        assert_eq!(c.admit(200_050), Admit::Accept { covers_from: 200_000, gap: true });
        assert_eq!(c.next(), 200_051);
        // A later gap gets its own re-reads.
        assert_eq!(c.admit(200_060), Admit::SeekBack { to: 190_051 });
    }

    #[test]
    fn a_gap_seen_again_without_lower_offsets_counts_as_a_reread() {
        // The re-read started beyond what was asked: the same gap again, a further re-read, and
        // after the last one the gap is believed.
        let mut c = Cursor::at(50);
        assert_eq!(c.admit(60), Admit::SeekBack { to: 0 });
        assert!(c.is_rereading());
        assert_eq!(c.admit(61), Admit::Drop, "fetched before the seek");
        assert_eq!(c.admit(55), Admit::SeekBack { to: 0 });
        assert_eq!(c.admit(55), Admit::SeekBack { to: 0 });
        assert_eq!(c.admit(55), Admit::Accept { covers_from: 50, gap: true });
        assert!(!c.is_rereading());
    }

    #[test]
    fn offsets_deleted_before_they_were_read_are_covered_by_the_next_message() {
        let mut c = Cursor::at(100);
        assert_eq!(c.admit(500), Admit::SeekBack { to: 0 });
        assert_eq!(c.log_starts_at(450), Some(100..450));
        assert_eq!(c.admit(450), Admit::Accept { covers_from: 100, gap: true });
        assert_eq!(c.admit(451), accept(451));
        assert_eq!(c.log_starts_at(300), None, "a log start behind the cursor changes nothing");
    }

    #[test]
    fn at_the_start_of_the_log_a_gap_is_read_again_from_there() {
        let mut c = Cursor::at(0);
        assert_eq!(c.admit(3), Admit::SeekBack { to: 0 });
        assert_eq!(c.admit(0), accept(0), "the re-read brought it");
    }

    #[test]
    fn a_quiet_partition_with_offsets_left_is_reread_then_left_waiting() {
        // Positioned inside the last record batch: the broker answers with nothing.
        let mut c = Cursor::at(25_000);
        assert_eq!(c.stalled(), Stall::Reread { to: 15_000 });
        assert!(c.is_rereading());
        assert_eq!(c.admit(15_000), Admit::Drop, "the re-read shows");
        assert!(!c.is_rereading());
        assert_eq!(c.admit(25_000), accept(25_000), "read from the batch's start, the offset comes");

        // Offsets with no message at the end of the log (transaction markers): re-read from
        // further back each time, then given up once, then left waiting for the next message.
        let mut c = Cursor::at(300_000);
        assert_eq!(c.stalled(), Stall::Reread { to: 290_000 });
        assert_eq!(c.admit(290_000), Admit::Drop);
        assert_eq!(c.stalled(), Stall::Reread { to: 200_000 });
        assert_eq!(c.admit(200_000), Admit::Drop);
        assert_eq!(c.stalled(), Stall::Reread { to: 0 });
        assert_eq!(c.admit(0), Admit::Drop);
        assert_eq!(c.stalled(), Stall::GiveUp);
        assert_eq!(c.stalled(), Stall::Waiting);
        assert_eq!(c.stalled(), Stall::Waiting);
        // The producer writes again after the markers: a gap, re-read and then believed as usual.
        for to in [290_000, 200_000, 0] {
            assert_eq!(c.admit(300_002), Admit::SeekBack { to });
            assert_eq!(c.admit(to), Admit::Drop);
        }
        assert_eq!(c.admit(300_002), Admit::Accept { covers_from: 300_000, gap: true });
        // Taking a message starts the stall count afresh.
        assert_eq!(c.stalled(), Stall::Reread { to: 290_003 });
    }

    /// What a broker does to delivery, at a given offset of a partition's log.
    #[derive(Debug, Clone)]
    enum Fault {
        /// Skip this many offsets (the rest of a record batch, as tansu does after a seek).
        Skip(i64),
        /// Deliver again from this far back (a re-delivery after a rebalance).
        Repeat(i64),
    }

    fn fault() -> impl Strategy<Value = Fault> {
        prop_oneof![(1_i64..50).prop_map(Fault::Skip), (1_i64..80).prop_map(Fault::Repeat)]
    }

    proptest! {
        /// Whatever a faulty broker does to delivery (skipped offsets, repeats, messages fetched
        /// before a seek arriving after it), the offsets taken are exactly the log's offsets from
        /// the start, each once and in order, and coverage never breaks.
        #[test]
        fn takes_every_offset_of_the_log_exactly_once(
            len in 1_i64..400,
            start in 0_i64..100,
            faults in proptest::collection::vec((0_i64..500, fault()), 0..12),
            stale_after_seek in 0_i64..5,
        ) {
            // A skip may recur at one offset, but fewer times than the cursor re-reads a gap:
            // more would be a real gap, which this log does not have.
            let mut seen = std::collections::HashMap::new();
            let faults: Vec<(i64, Fault)> = faults
                .into_iter()
                .filter(|(at, _)| {
                    let n = seen.entry(*at).or_insert(0u32);
                    *n += 1;
                    *n <= GAP_REREADS
                })
                .collect();
            let end = start + len;
            let mut cursor = Cursor::at(start);
            let mut taken = Vec::new();
            let mut covered = start;
            // The broker: where it reads next, messages fetched before a seek still to be
            // delivered, and faults still to happen (each once, when it reads that offset).
            let mut position = start;
            let mut stale: std::collections::VecDeque<i64> = Default::default();
            let mut faults = faults;
            let mut steps = 0;
            while cursor.next() < end {
                steps += 1;
                prop_assert!(steps < 100_000, "no progress");
                let offset = if let Some(o) = stale.pop_front() {
                    o
                } else {
                    if position >= end {
                        prop_assert!(false, "the broker ran out of log at {} with {} taken next", position, cursor.next());
                    }
                    match faults.iter().position(|(at, _)| *at == position).map(|i| faults.remove(i).1) {
                        Some(Fault::Skip(n)) => {
                            let o = (position + n).min(end - 1);
                            position = o + 1;
                            o
                        }
                        Some(Fault::Repeat(n)) => {
                            position = (position - n).max(start);
                            continue;
                        }
                        None => {
                            position += 1;
                            position - 1
                        }
                    }
                };
                match cursor.admit(offset) {
                    Admit::Accept { covers_from, gap } => {
                        prop_assert_eq!(covers_from, covered, "coverage is unbroken");
                        prop_assert!(!gap, "this log has no real gaps");
                        taken.push(offset);
                        covered = offset + 1;
                    }
                    Admit::Drop => {}
                    Admit::SeekBack { to } => {
                        prop_assert!(to <= cursor.next());
                        stale = (position..(position + stale_after_seek).min(end)).collect();
                        position = to.max(start);
                    }
                }
            }
            prop_assert_eq!(taken, (start..end).collect::<Vec<_>>());
        }

        /// A broker that answers a fetch from inside a record batch with the batches after it,
        /// and from inside the last one with nothing (tansu 0.6): from any starting offset, every
        /// offset from there to the log's end is taken once, in order, with the stalls at the end
        /// noticed by the caller (the consumer asks when a partition stays quiet below the end).
        #[test]
        fn a_broker_that_skips_to_the_next_batch_loses_nothing(
            sizes in proptest::collection::vec(1_i64..40, 1..30),
            start_at in 0.0f64..1.0,
        ) {
            let bases: Vec<i64> = sizes.iter().scan(0, |at, n| { let b = *at; *at += n; Some(b) }).collect();
            let end: i64 = sizes.iter().sum();
            let start = ((end as f64) * start_at) as i64;
            let mut cursor = Cursor::at(start);
            // Where the broker was asked to fetch, and what it delivers from there, in order.
            let deliver_from = |at: i64| -> Vec<i64> {
                let first = bases.iter().position(|&b| b >= at).unwrap_or(bases.len());
                (first..bases.len()).flat_map(|i| bases[i]..bases[i] + sizes[i]).collect()
            };
            let mut queue: std::collections::VecDeque<i64> = deliver_from(start).into();
            let mut taken = Vec::new();
            let mut steps = 0;
            while cursor.next() < end {
                steps += 1;
                prop_assert!(steps < 100_000, "no progress");
                let Some(offset) = queue.pop_front() else {
                    // Quiet below the log's end: the consumer's stall check.
                    match cursor.stalled() {
                        Stall::Reread { to } => queue = deliver_from(to).into(),
                        other => prop_assert!(false, "gave up at {} of {}: {:?}", cursor.next(), end, other),
                    }
                    continue;
                };
                match cursor.admit(offset) {
                    Admit::Accept { covers_from, gap } => {
                        prop_assert!(!gap, "this log has no holes");
                        prop_assert_eq!(covers_from, offset);
                        taken.push(offset);
                    }
                    Admit::Drop => {}
                    Admit::SeekBack { to } => queue = deliver_from(to).into(),
                }
            }
            prop_assert_eq!(taken, (start..end).collect::<Vec<_>>());
        }

        /// A log with real holes: every existing offset is taken once, in order, and the holes
        /// are covered by the message after them.
        #[test]
        fn real_gaps_are_covered_after_rereads(holes in proptest::collection::btree_set(1_i64..300, 0..30)) {
            let log: Vec<i64> = (0..300).filter(|o| !holes.contains(o)).collect();
            let mut cursor = Cursor::at(0);
            let mut taken = Vec::new();
            let mut covered = 0;
            let mut i = 0;
            let mut steps = 0;
            while i < log.len() {
                steps += 1;
                prop_assert!(steps < 100_000, "no progress");
                match cursor.admit(log[i]) {
                    Admit::Accept { covers_from, .. } => {
                        prop_assert_eq!(covers_from, covered);
                        taken.push(log[i]);
                        covered = log[i] + 1;
                        i += 1;
                    }
                    Admit::Drop => i += 1,
                    Admit::SeekBack { to } => i = log.partition_point(|&o| o < to),
                }
            }
            prop_assert_eq!(taken, log);
        }
    }
}
