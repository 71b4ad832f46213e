//! driftline-govern: model governance as events on an append-only, hash-chained log (stored by
//! driftline-store's `governance_events`). This crate owns what the events mean: their kinds
//! and payloads ([`event`]), the tables builds were trained from ([`lineage`]), the metadata a
//! template makes mandatory ([`template`]), the model inventory folded from the log and the
//! predictions seen ([`inventory`]), the audit report ([`audit`]), the checks before a
//! promotion ([`promote`]), what an MLflow registry becomes ([`mlflow`]), what a remote
//! cluster forwards to its primary ([`sync`]), and the check that a log's chains are whole
//! ([`chain`]).

pub mod audit;
pub mod chain;
pub mod event;
pub mod inventory;
pub mod lineage;
pub mod log;
pub mod mlflow;
pub mod promote;
pub mod sync;
pub mod template;

/// What went wrong, naming the input and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input was refused; `field` names it.
    #[error("{field}: {message}")]
    Invalid {
        /// The field or file at fault.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// Metadata did not meet the governance template: every missing or invalid field.
    #[error("the metadata does not meet the governance template: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Template {
        /// Each field at fault.
        problems: Vec<template::FieldProblem>,
    },
    /// The event contradicts the log (a model registered twice, an update of a model never
    /// registered).
    #[error("{message}")]
    Conflict { message: String },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] driftline_store::Error),
    /// A stored event's payload is not what its kind needs.
    #[error("governance event {seq} ({kind}) is not valid: {detail}")]
    Corrupt { seq: i64, kind: String, detail: String },
}

/// Events numbered as an append would number them (in the log, and in each cluster's chain),
/// for tests of what is folded from a log (the hashes are not their concern).
#[cfg(test)]
pub(crate) fn stored_for_tests(
    events: Vec<driftline_store::NewGovernanceEvent>,
) -> Vec<driftline_store::GovernanceEvent> {
    let mut chains: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            let cluster_seq = chains.entry(event.cluster.clone()).or_default();
            *cluster_seq += 1;
            driftline_store::GovernanceEvent {
                seq: i as i64 + 1,
                cluster_seq: *cluster_seq,
                event,
                prev_hash: String::new(),
                hash: String::new(),
            }
        })
        .collect()
}
