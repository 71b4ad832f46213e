//! What a remote cluster forwards to its primary, and in which batches. Only evaluation and
//! deployment activity releases a model from a cluster: its events (its registration, metadata
//! and builds) go with the first evaluation, promotion or retirement of one of its
//! deployments, and everything about it after that, its deletion included. A model only
//! registered and built (or deleted) on a remote stays there.
//!
//! Positions are the cluster's own chain positions (`cluster_seq`). Each of the cluster's
//! events is *due* at a position: its own, or the position of the event that released its
//! model, whichever is later. A sync's cursor is a position such
//! that every event due at or before it is on the primary; a batch takes the next due events in
//! order of (due position, position), so a model's registration reaches the primary before the
//! deployment that released it. The primary stores each event once by its id, so a batch sent
//! again after a crash (before the cursor was saved) adds nothing.

use std::collections::BTreeMap;

use driftline_store::{GovernanceEvent, NewGovernanceEvent};
use serde::{Deserialize, Serialize};

use crate::event::{Kind, Payload};
use crate::inventory::Owners;
use crate::Error;

/// One batch for the primary.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The events to send, in the order to append them.
    pub events: Vec<GovernanceEvent>,
    /// The cursor once the primary has them (a position in the cluster's chain).
    pub through_seq: i64,
    /// Due events left for later batches.
    pub pending: usize,
    /// When the oldest of those happened.
    pub oldest_pending_ms: Option<i64>,
}

/// Most events the primary takes in one request; a longer batch is sent in parts.
pub const MAX_SYNC_EVENTS: usize = 10_000;

/// What a remote posts to its primary (`POST /api/v1/governance/sync`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// The remote's cluster; every event must be of it.
    pub cluster: String,
    /// The remote's cursor once these events are stored.
    pub through_seq: i64,
    pub pending: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_pending_ms: Option<i64>,
    /// The events as the remote stored them (the payload's JSON text exactly as stored and
    /// hashed there), without their places in the remote's log.
    pub events: Vec<NewGovernanceEvent>,
}

/// The primary's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// Events stored now.
    pub stored: u64,
    /// Events it had already (a batch sent again).
    pub duplicates: u64,
    pub through_seq: i64,
}

/// The next batch of `cluster`'s events after `cursor` (a position in its chain): at most
/// `limit` events, except that the events due at one position (a model released with its
/// history) are never split here. `log` is the whole log in order.
pub fn next_batch(log: &[GovernanceEvent], cluster: &str, cursor: i64, limit: usize) -> Result<Batch, Error> {
    // Positions are the cluster's own (`cluster_seq`): gap-free and in commit order, as the
    // cluster's chain head is locked from numbering to commit. The log's `seq` is neither
    // across clusters on Postgres, so a cursor on it could pass an event not yet visible.
    let own = |e: &&GovernanceEvent| e.event.cluster == cluster;
    let end = log.iter().filter(own).map(|e| e.cluster_seq).max().map_or(cursor, |last| last.max(cursor));
    // Which model each of the cluster's events is about (owners learnt from every event), and
    // where each model was released.
    let mut owners = Owners::default();
    let mut models: Vec<(usize, String)> = Vec::new();
    let mut released: BTreeMap<String, i64> = BTreeMap::new();
    for (i, stored) in log.iter().enumerate() {
        let e = &stored.event;
        let corrupt = |detail: String| Error::Corrupt { seq: stored.seq, kind: e.kind.clone(), detail };
        let kind = Kind::parse(&e.kind).map_err(|err| corrupt(err.to_string()))?;
        let payload = Payload::parse(kind, &e.payload).map_err(|err| corrupt(err.to_string()))?;
        let model = owners.model_of(&e.subject, &payload).map_err(corrupt)?;
        if e.cluster != cluster {
            continue;
        }
        if matches!(kind, Kind::DeploymentEvaluated | Kind::DeploymentPromoted | Kind::DeploymentRetired) {
            released.entry(model.clone()).or_insert(stored.cluster_seq);
        }
        models.push((i, model));
    }
    // Every event due after the cursor, in sending order.
    let mut due: Vec<(i64, &GovernanceEvent)> = models
        .into_iter()
        .filter_map(|(i, model)| {
            let at = log[i].cluster_seq.max(*released.get(&model)?);
            (at > cursor).then_some((at, &log[i]))
        })
        .collect();
    due.sort_by_key(|(at, e)| (*at, e.cluster_seq));
    let mut taken = 0;
    while taken < due.len() && (taken < limit || (taken > 0 && due[taken].0 == due[taken - 1].0)) {
        taken += 1;
    }
    let through_seq = if taken == due.len() {
        end
    } else if taken == 0 {
        // A limit of 0 takes nothing and moves nothing.
        cursor
    } else {
        due[taken - 1].0
    };
    let rest = &due[taken..];
    Ok(Batch {
        events: due[..taken].iter().map(|(_, e)| (*e).clone()).collect(),
        through_seq,
        pending: rest.len(),
        oldest_pending_ms: rest.iter().map(|(_, e)| e.event.time_ms).min(),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::event::{new_event, BuildRegistered, DeploymentEvaluated, DeploymentPromoted, Ended, ModelRegistered};
    use crate::stored_for_tests as stored;
    use crate::template::Metadata;

    fn registered() -> Payload {
        Payload::ModelRegistered(ModelRegistered { metadata: Metadata::new() })
    }

    fn build(model: &str) -> Payload {
        Payload::BuildRegistered(BuildRegistered { model: model.into(), ..Default::default() })
    }

    fn promoted(model: &str, build: &str) -> Payload {
        Payload::DeploymentPromoted(DeploymentPromoted {
            model: model.into(),
            build: build.into(),
            environment: "prod".into(),
            approvals: vec![],
        })
    }

    fn evaluated(model: &str, build: &str) -> Payload {
        Payload::DeploymentEvaluated(DeploymentEvaluated {
            model: model.into(),
            build: build.into(),
            environment: None,
            metrics: BTreeMap::new(),
            evaluation_rows: None,
            attachments: vec![],
        })
    }

    /// A remote's log: model a released by its promotion at 4; model b only built; model c
    /// released by an evaluation at 8 and deleted at 9; one event of another cluster.
    fn log() -> Vec<GovernanceEvent> {
        stored(vec![
            new_event("crn:a", &registered(), "ana", "east", 1),
            new_event("crn:b", &registered(), "ana", "east", 2),
            new_event("crn:a/1", &build("crn:a"), "ana", "east", 3),
            new_event("crn:a/prod", &promoted("crn:a", "crn:a/1"), "lee", "east", 4),
            new_event("crn:b/1", &build("crn:b"), "ana", "east", 5),
            new_event("crn:c", &registered(), "ana", "east", 6),
            new_event("crn:x", &registered(), "ana", "west", 7),
            new_event("crn:c/dev", &evaluated("crn:c", "crn:c/1"), "ana", "east", 8),
            new_event("crn:c", &Payload::ModelDeleted(Ended { model: None, reason: None }), "ana", "east", 9),
            new_event(
                "crn:a/prod",
                &Payload::DeploymentRetired(Ended { model: None, reason: None }),
                "lee",
                "east",
                10,
            ),
        ])
    }

    fn subjects(batch: &Batch) -> Vec<&str> {
        batch.events.iter().map(|e| e.event.subject.as_str()).collect()
    }

    #[test]
    fn models_leave_with_their_first_deployment_activity_and_their_history() {
        let log = log();
        let all = next_batch(&log, "east", 0, 100).unwrap();
        assert_eq!(subjects(&all), ["crn:a", "crn:a/1", "crn:a/prod", "crn:c", "crn:c/dev", "crn:c", "crn:a/prod"]);
        // Positions are east's own: west's event is not one of them, so east's last is 9.
        assert_eq!((all.through_seq, all.pending, all.oldest_pending_ms), (9, 0, None));
        // Nothing is due after the end; the cursor stays.
        let none = next_batch(&log, "east", 9, 100).unwrap();
        assert!(none.events.is_empty());
        assert_eq!(none.through_seq, 9);
        // Before a's promotion nothing of the cluster is due yet, and the cursor passes it.
        let early = next_batch(&log[..3], "east", 0, 100).unwrap();
        assert!(early.events.is_empty());
        assert_eq!(early.through_seq, 3);
        // Then the promotion brings a's registration and build, behind the cursor, along.
        let later = next_batch(&log[..4], "east", 3, 100).unwrap();
        assert_eq!(subjects(&later), ["crn:a", "crn:a/1", "crn:a/prod"]);
        // West's event is not east's to send.
        assert!(next_batch(&log, "west", 0, 100).unwrap().events.is_empty());
        // A retirement that names no model is owned by the deployment's promotion, wherever
        // that happened: here west promoted, east retires.
        let log = stored(vec![
            new_event("crn:w", &registered(), "ana", "west", 1),
            new_event("crn:w/prod", &promoted("crn:w", "crn:w/1"), "lee", "west", 2),
            new_event("crn:w/prod", &Payload::DeploymentRetired(Ended { model: None, reason: None }), "lee", "east", 3),
        ]);
        let east = next_batch(&log, "east", 0, 100).unwrap();
        assert_eq!((subjects(&east), east.through_seq), (vec!["crn:w/prod"], 1));
    }

    #[test]
    fn batches_are_cut_between_due_positions_only() {
        let log = log();
        // The first three events are all due at 4 (a's release): one batch, over the limit.
        let first = next_batch(&log, "east", 0, 2).unwrap();
        assert_eq!(subjects(&first), ["crn:a", "crn:a/1", "crn:a/prod"]);
        assert_eq!((first.through_seq, first.pending, first.oldest_pending_ms), (4, 4, Some(6)));
        let second = next_batch(&log, "east", first.through_seq, 2).unwrap();
        assert_eq!(subjects(&second), ["crn:c", "crn:c/dev"]);
        assert_eq!((second.through_seq, second.pending), (7, 2));
        let third = next_batch(&log, "east", second.through_seq, 2).unwrap();
        assert_eq!(subjects(&third), ["crn:c", "crn:a/prod"]);
        assert_eq!((third.through_seq, third.pending), (9, 0));
        assert_eq!(next_batch(&log, "east", 0, 0).unwrap().through_seq, 0);
    }

    proptest! {
        /// Whatever the batch size, and wherever the log was cut while syncs ran, the batches
        /// together send every due event exactly once, each model's events in log order.
        #[test]
        fn batches_send_each_due_event_once(limit in 1usize..6, cuts in proptest::collection::vec(0usize..=10, 0..4)) {
            let log = log();
            let mut cuts = cuts;
            cuts.sort_unstable();
            cuts.push(log.len());
            let (mut cursor, mut sent) = (0, Vec::new());
            for cut in cuts {
                loop {
                    let batch = next_batch(&log[..cut], "east", cursor, limit).unwrap();
                    prop_assert!(batch.through_seq >= cursor);
                    sent.extend(batch.events.iter().map(|e| e.seq));
                    cursor = batch.through_seq;
                    if batch.pending == 0 {
                        break;
                    }
                }
            }
            let mut unique = sent.clone();
            unique.sort_unstable();
            unique.dedup();
            prop_assert_eq!(unique.len(), sent.len());
            prop_assert_eq!(unique, vec![1, 3, 4, 6, 8, 9, 10]);
            // a's events keep their order, as do c's.
            for model in [[1, 3, 4, 10].as_slice(), &[6, 8, 9]] {
                let order: Vec<i64> = sent.iter().copied().filter(|s| model.contains(s)).collect();
                prop_assert_eq!(order, model.to_vec());
            }
        }
    }
}
