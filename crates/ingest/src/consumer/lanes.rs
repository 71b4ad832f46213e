//! Messages waiting to be written, one pending batch per write lane, and the coverage of a
//! batch: which offsets of each partition it accounts for.

use std::time::Instant;

use bytes::Bytes;
use driftline_store::SourcePosition;

/// One message as consumed, owned, with what the cursor said it covers.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// The first offset this message accounts for: `offset`, or lower after a gap.
    pub(crate) covers_from: i64,
    /// Why offsets `covers_from..offset` have no message, when they have none.
    pub(crate) gap: Option<GapKind>,
    pub(crate) key: Option<Bytes>,
    pub(crate) payload: Option<Bytes>,
}

/// Why offsets had no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GapKind {
    /// Below the log's start: deleted by the broker (retention) before they were read.
    Deleted,
    /// Inside the log, but not delivered however often re-read: compacted away, or transaction
    /// markers.
    Missing,
}

impl GapKind {
    /// What a dead letter recording the gap says.
    pub(crate) fn reason(self, from: i64, to: i64) -> String {
        match self {
            GapKind::Deleted => format!(
                "offsets {from}..{to} were deleted by the broker (retention) before they were read; their messages \
                 are lost, make the topic's retention longer than ingest can fall behind"
            ),
            GapKind::Missing => format!(
                "offsets {from}..{to} have no message (compacted away, or transaction markers); nothing was stored \
                 for them"
            ),
        }
    }
}

/// One lane's pending batch.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    pub(crate) messages: Vec<Message>,
    /// When the oldest pending message arrived.
    pub(crate) oldest: Option<Instant>,
}

impl Lane {
    pub(crate) fn push(&mut self, message: Message) {
        self.messages.push(message);
        self.oldest.get_or_insert_with(Instant::now);
    }

    /// Takes the pending messages, leaving the lane empty.
    pub(crate) fn take(&mut self) -> Vec<Message> {
        self.oldest = None;
        std::mem::take(&mut self.messages)
    }
}

/// A batch whose coverage is broken: a message does not start where the one before it in its
/// partition ended. The consumer's cursor makes this impossible; seeing it means a bug, and the
/// batch is never written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("partition {partition}: a message covers from offset {covers_from}, but the batch covered up to {expected}")]
pub(crate) struct BrokenCoverage {
    pub(crate) partition: i32,
    pub(crate) expected: i64,
    pub(crate) covers_from: i64,
}

/// The positions a batch moves: per partition, from the first message's coverage to one past the
/// last message, checking that each message starts where the one before it ended.
pub(crate) fn coverage(group: &str, topic: &str, messages: &[Message]) -> Result<Vec<SourcePosition>, BrokenCoverage> {
    let mut positions: Vec<SourcePosition> = Vec::new();
    for m in messages {
        match positions.iter_mut().find(|p| p.partition == m.partition) {
            Some(p) if p.next_offset == m.covers_from && m.covers_from <= m.offset => p.next_offset = m.offset + 1,
            Some(p) => {
                return Err(BrokenCoverage {
                    partition: m.partition,
                    expected: p.next_offset,
                    covers_from: m.covers_from,
                })
            }
            None => positions.push(SourcePosition {
                group: group.to_owned(),
                topic: topic.to_owned(),
                partition: m.partition,
                from: m.covers_from,
                next_offset: m.offset + 1,
            }),
        }
    }
    positions.sort_by_key(|p| p.partition);
    Ok(positions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(partition: i32, covers_from: i64, offset: i64) -> Message {
        Message { partition, offset, covers_from, gap: None, key: None, payload: None }
    }

    #[test]
    fn coverage_runs_from_the_first_message_to_past_the_last() {
        let batch = [m(1, 10, 10), m(0, 3, 5), m(1, 11, 11), m(0, 6, 6)];
        let positions = coverage("g", "t", &batch).unwrap();
        assert_eq!(
            positions.iter().map(|p| (p.partition, p.from, p.next_offset)).collect::<Vec<_>>(),
            vec![(0, 3, 7), (1, 10, 12)]
        );
    }

    #[test]
    fn a_hole_in_coverage_is_refused() {
        let e = coverage("g", "t", &[m(0, 3, 3), m(0, 5, 5)]).unwrap_err();
        assert_eq!(e, BrokenCoverage { partition: 0, expected: 4, covers_from: 5 });
        assert!(coverage("g", "t", &[m(0, 3, 3), m(0, 3, 4)]).is_err(), "an overlap is refused too");
    }
}
