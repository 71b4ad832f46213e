//! What a remote cluster forwards to its primary, and in which batches. Only evaluation,
//! deployment and deletion activity leaves a cluster: a model's events (its registration,
//! metadata and builds) go with the first evaluation, promotion or retirement of one of its
//! deployments, and everything about it after that. A model only registered and built on a
//! remote stays there.
//!
//! Each of the cluster's events is *due* at a position of its log: its own, or the position of
//! the event that released its model, whichever is later. A sync's cursor is a position such
//! that every event due at or before it is on the primary; a batch takes the next due events in
//! order of (due position, position), so a model's registration reaches the primary before the
//! deployment that released it. The primary stores each event once by its id, so a batch sent
//! again after a crash (before the cursor was saved) adds nothing.

use std::collections::BTreeMap;

use driftline_store::GovernanceEvent;
use serde::{Deserialize, Serialize};

use crate::event::{Kind, Payload};
use crate::Error;

/// One batch for the primary.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The events to send, in the order to append them.
    pub events: Vec<GovernanceEvent>,
    /// The cursor once the primary has them.
    pub through_seq: i64,
    /// Due events left for later batches.
    pub pending: usize,
    /// When the oldest of those happened.
    pub oldest_pending_ms: Option<i64>,
}

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
    pub events: Vec<SyncedEvent>,
}

/// An event as synced: as the remote stored it, without its place in the remote's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncedEvent {
    pub id: uuid::Uuid,
    pub kind: String,
    pub subject: String,
    pub actor: String,
    pub cluster: String,
    pub time_ms: i64,
    /// The payload's JSON text, exactly as stored (and hashed) on the remote.
    pub payload: String,
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

impl From<&GovernanceEvent> for SyncedEvent {
    fn from(e: &GovernanceEvent) -> Self {
        let e = &e.event;
        SyncedEvent {
            id: e.id,
            kind: e.kind.clone(),
            subject: e.subject.clone(),
            actor: e.actor.clone(),
            cluster: e.cluster.clone(),
            time_ms: e.time_ms,
            payload: e.payload.clone(),
        }
    }
}

/// The next batch of `cluster`'s events after `cursor`: at most `limit` events, except that the
/// events due at one position (a model released with its history) are never split. `log` is
/// the whole log in order.
pub fn next_batch(log: &[GovernanceEvent], cluster: &str, cursor: i64, limit: usize) -> Result<Batch, Error> {
    let end = log.last().map_or(cursor, |e| e.seq.max(cursor));
    // Which model each event is about, and where each model was released.
    let mut owners: BTreeMap<&str, String> = BTreeMap::new();
    let mut models: Vec<(usize, String)> = Vec::new();
    let mut released: BTreeMap<String, i64> = BTreeMap::new();
    for (i, stored) in log.iter().enumerate() {
        let e = &stored.event;
        if e.cluster != cluster {
            continue;
        }
        let corrupt = |detail: String| Error::Corrupt { seq: stored.seq, kind: e.kind.clone(), detail };
        let kind = Kind::parse(&e.kind).map_err(|err| corrupt(err.to_string()))?;
        let payload = Payload::parse(kind, &e.payload).map_err(|err| corrupt(err.to_string()))?;
        let model = match &payload {
            Payload::ModelRegistered(_) | Payload::MetadataUpdated(_) | Payload::ModelDeleted(_) => e.subject.clone(),
            Payload::BuildRegistered(p) => p.model.clone(),
            Payload::DeploymentEvaluated(p) => p.model.clone(),
            Payload::DeploymentPromoted(p) => p.model.clone(),
            Payload::DeploymentRetired(p) => match (&p.model, owners.get(e.subject.as_str())) {
                (Some(model), _) => model.clone(),
                (None, Some(owner)) => owner.clone(),
                (None, None) => return Err(corrupt(format!("retires {}, which no event names", e.subject))),
            },
        };
        if matches!(kind, Kind::BuildRegistered | Kind::DeploymentEvaluated | Kind::DeploymentPromoted) {
            owners.insert(&e.subject, model.clone());
        }
        if matches!(kind, Kind::DeploymentEvaluated | Kind::DeploymentPromoted | Kind::DeploymentRetired) {
            released.entry(model.clone()).or_insert(stored.seq);
        }
        models.push((i, model));
    }
    // Every event due after the cursor, in sending order.
    let mut due: Vec<(i64, &GovernanceEvent)> = models
        .into_iter()
        .filter_map(|(i, model)| {
            let at = log[i].seq.max(*released.get(&model)?);
            (at > cursor).then_some((at, &log[i]))
        })
        .collect();
    due.sort_by_key(|(at, e)| (*at, e.seq));
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
        Payload::BuildRegistered(BuildRegistered {
            model: model.into(),
            artifact: None,
            input_schema: None,
            output_schema: None,
            training_data: vec![],
            training_rows: None,
            lineage: vec![],
            ..Default::default()
        })
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
        assert_eq!((all.through_seq, all.pending, all.oldest_pending_ms), (10, 0, None));
        // Nothing is due after the end; the cursor stays.
        let none = next_batch(&log, "east", 10, 100).unwrap();
        assert!(none.events.is_empty());
        assert_eq!(none.through_seq, 10);
        // Before a's promotion nothing of the cluster is due yet, and the cursor passes it.
        let early = next_batch(&log[..3], "east", 0, 100).unwrap();
        assert!(early.events.is_empty());
        assert_eq!(early.through_seq, 3);
        // Then the promotion brings a's registration and build, behind the cursor, along.
        let later = next_batch(&log[..4], "east", 3, 100).unwrap();
        assert_eq!(subjects(&later), ["crn:a", "crn:a/1", "crn:a/prod"]);
        // West's event is not east's to send.
        assert!(next_batch(&log, "west", 0, 100).unwrap().events.is_empty());
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
        assert_eq!((second.through_seq, second.pending), (8, 2));
        let third = next_batch(&log, "east", second.through_seq, 2).unwrap();
        assert_eq!(subjects(&third), ["crn:c", "crn:a/prod"]);
        assert_eq!((third.through_seq, third.pending), (10, 0));
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
