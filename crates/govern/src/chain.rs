//! Whether a governance log's chains are whole: in each cluster the events are numbered from 1
//! without a gap, each names the hash of the one before it (the first, the genesis hash), each
//! hash is the hash of its event and that link, and the last one is the cluster's recorded
//! head. An edited, removed, inserted or reordered event breaks the chain at that event; a
//! removed tail leaves the head pointing past the last event.

use std::collections::BTreeMap;

use driftline_store::governance::{chain_hash, GENESIS};
use driftline_store::GovernanceEvent;
use serde::Serialize;

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Events checked.
    pub events: usize,
    /// Per cluster: its events and its last hash.
    pub clusters: BTreeMap<String, ClusterChain>,
    /// Every place a chain is broken, in log order; empty when all are whole.
    pub breaks: Vec<Break>,
}

impl ChainReport {
    pub fn is_whole(&self) -> bool {
        self.breaks.is_empty()
    }
}

/// One cluster's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterChain {
    pub events: usize,
    /// The hash of its last event.
    pub last_hash: String,
}

/// Where a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    pub cluster: String,
    /// The event's position in the log, when the break is at an event.
    pub seq: Option<i64>,
    pub problem: String,
}

/// Checks every cluster's chain in `events` (the whole log, in log order) against the
/// recorded `heads` (cluster, last position, last hash).
pub fn verify(events: &[GovernanceEvent], heads: &[(String, i64, String)]) -> ChainReport {
    let mut clusters: BTreeMap<String, ClusterChain> = BTreeMap::new();
    let mut positions: BTreeMap<&str, i64> = BTreeMap::new();
    let mut breaks = Vec::new();
    for stored in events {
        let cluster = stored.event.cluster.as_str();
        let chain = clusters
            .entry(cluster.to_string())
            .or_insert_with(|| ClusterChain { events: 0, last_hash: GENESIS.to_string() });
        let position = positions.entry(cluster).or_insert(0);
        let mut problem = |text: String| {
            breaks.push(Break { cluster: cluster.to_string(), seq: Some(stored.seq), problem: text });
        };
        if stored.cluster_seq != *position + 1 {
            problem(format!(
                "is number {} of its cluster's chain where {} comes next: an event before it is missing or moved",
                stored.cluster_seq,
                *position + 1
            ));
        }
        if stored.prev_hash != chain.last_hash {
            problem(format!(
                "links to {} but the event before it hashes to {}",
                short(&stored.prev_hash),
                short(&chain.last_hash)
            ));
        }
        let recomputed = chain_hash(&stored.prev_hash, &stored.event);
        if recomputed != stored.hash {
            problem(format!(
                "was changed after it was written: its fields hash to {}, not to the stored {}",
                short(&recomputed),
                short(&stored.hash)
            ));
        }
        *position = stored.cluster_seq;
        chain.events += 1;
        chain.last_hash = stored.hash.clone();
    }
    for (cluster, last, hash) in heads {
        let (events, last_hash) = clusters.get(cluster).map_or((0, GENESIS), |c| (c.events, c.last_hash.as_str()));
        let reached = positions.get(cluster.as_str()).copied().unwrap_or(0);
        if *last != reached || hash != last_hash {
            breaks.push(Break {
                cluster: cluster.clone(),
                seq: None,
                problem: format!(
                    "its recorded head is event {last} ({}) but its chain ends at event {reached} ({}, {events} events): \
                     events at its end were removed",
                    short(hash),
                    short(last_hash)
                ),
            });
        }
    }
    ChainReport { events: events.len(), clusters, breaks }
}

/// The first twelve hex digits of a hash.
fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftline_store::NewGovernanceEvent;

    /// A well-formed log of `n` events over two clusters, and its heads.
    fn log(n: usize) -> (Vec<GovernanceEvent>, Vec<(String, i64, String)>) {
        let mut heads: BTreeMap<String, (i64, String)> = BTreeMap::new();
        let mut events = Vec::new();
        for i in 0..n {
            let cluster = if i % 3 == 0 { "west" } else { "east" };
            let event = NewGovernanceEvent {
                id: uuid::Uuid::from_u128(i as u128 + 1),
                kind: "metadata.updated".into(),
                subject: "crn:m".into(),
                actor: "ana".into(),
                cluster: cluster.into(),
                time_ms: i as i64,
                payload: format!("{{\"metadata\":{{\"n\":{i}}}}}"),
            };
            let (position, prev) = heads.get(cluster).cloned().unwrap_or((0, GENESIS.to_string()));
            let hash = chain_hash(&prev, &event);
            heads.insert(cluster.into(), (position + 1, hash.clone()));
            events.push(GovernanceEvent { seq: i as i64 + 1, cluster_seq: position + 1, event, prev_hash: prev, hash });
        }
        (events, heads.into_iter().map(|(c, (p, h))| (c, p, h)).collect())
    }

    #[test]
    fn a_whole_log_verifies() {
        let (events, heads) = log(10);
        let report = verify(&events, &heads);
        assert!(report.is_whole(), "{:?}", report.breaks);
        assert_eq!((report.events, report.clusters["east"].events, report.clusters["west"].events), (10, 6, 4));
        assert!(verify(&[], &[]).is_whole());
    }

    #[test]
    fn edits_removals_and_a_cut_tail_are_found_where_they_are() {
        let (events, heads) = log(10);
        // An edited payload: that event's hash no longer matches.
        let mut edited = events.clone();
        edited[4].event.payload = "{\"metadata\":{\"n\":40}}".into();
        let report = verify(&edited, &heads);
        assert_eq!(report.breaks.len(), 1);
        assert_eq!((report.breaks[0].seq, report.breaks[0].cluster.as_str()), (Some(5), "east"));
        assert!(report.breaks[0].problem.starts_with("was changed after it was written"));
        // An edit with its hash recomputed: the next event's link no longer matches.
        edited[4].hash = chain_hash(&edited[4].prev_hash, &edited[4].event);
        let report = verify(&edited, &heads);
        assert_eq!(report.breaks.iter().map(|b| b.seq).collect::<Vec<_>>(), [Some(6)]);
        // A removed event in the middle: a gap and a broken link at the next of its cluster.
        let mut removed = events.clone();
        removed.remove(1);
        let report = verify(&removed, &heads);
        assert_eq!(report.breaks.iter().map(|b| b.seq).collect::<Vec<_>>(), [Some(3), Some(3)]);
        assert!(report.breaks[0].problem.contains("is number 2 of its cluster's chain where 1 comes next"));
        // The last events cut off: only the head shows it.
        let cut = &events[..9];
        let report = verify(cut, &heads);
        assert_eq!(report.breaks.len(), 1);
        assert_eq!((report.breaks[0].seq, report.breaks[0].cluster.as_str()), (None, "west"));
        assert!(report.breaks[0].problem.contains("events at its end were removed"), "{}", report.breaks[0].problem);
    }
}
