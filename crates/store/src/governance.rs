//! The governance log: who registered, evaluated, promoted, retired or deleted which model,
//! build or deployment, in which cluster. One append-only table for both backends (both accept
//! `$N` placeholders); each event is chained to the previous event of its cluster by a SHA-256
//! hash over both, so an edited, removed or reordered event breaks the chain where it is. The
//! payload is opaque JSON here; driftline-govern owns the kinds and their shapes.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Error;

/// The hash a cluster's first event is chained to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A governance event to append (and as a remote cluster sends it to its primary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGovernanceEvent {
    /// Unique across clusters: an event synced twice is stored once.
    pub id: uuid::Uuid,
    /// What happened (`model.registered`, `deployment.promoted`, …).
    pub kind: String,
    /// The CRN of the model, build or deployment it happened to.
    pub subject: String,
    /// Who did it (a person, a key's name, `mlflow-sync`).
    pub actor: String,
    /// Where it happened.
    pub cluster: String,
    /// When it happened, ms since the epoch.
    pub time_ms: i64,
    /// Its details, a JSON object, stored and hashed as given.
    pub payload: String,
}

/// A stored governance event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GovernanceEvent {
    /// Its position in this store's log, from 1.
    pub seq: i64,
    /// Its position in its cluster's chain, from 1.
    pub cluster_seq: i64,
    #[serde(flatten)]
    pub event: NewGovernanceEvent,
    /// The hash of the cluster's previous event ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// [`chain_hash`] of `prev_hash` and this event.
    pub hash: String,
}

/// What became of each appended event, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored at this position of the log.
    New { seq: i64 },
    /// An event with its id was stored already; nothing was written.
    Duplicate,
}

/// A deployment seen in the stored predictions, with the build and model they name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeenDeployment {
    pub deployment: String,
    pub build: String,
    pub model: String,
    /// When the first such prediction was stored, ms since the epoch.
    pub first_seen_ms: i64,
}

/// What a primary knows of a remote cluster's sync, as its last batch said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteSync {
    pub cluster: String,
    /// The position in the remote's own log its syncs have reached.
    pub remote_seq: i64,
    /// Events the remote still had to send after that batch.
    pub pending: i64,
    /// When the oldest of those happened, ms since the epoch.
    pub oldest_pending_ms: Option<i64>,
    /// When the newest event received from it happened.
    pub last_event_ms: Option<i64>,
    /// When it last reached the primary.
    pub contacted_at_ms: i64,
}

/// One run of a sync from another system, and what it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncRun {
    /// Set by the store.
    pub id: i64,
    /// The sync (`mlflow http://…`).
    pub name: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub created: i64,
    pub updated: i64,
    pub skipped: i64,
    pub failed: i64,
    /// A JSON document of what was created, updated or failed, and why.
    pub detail: String,
}

/// The chain's hash of an event after `prev_hash`: SHA-256 (lowercase hex) over the previous
/// hash and each field of the event, every one prefixed by its length in bytes, so no two
/// different events (or links) give the same input.
pub fn chain_hash(prev_hash: &str, event: &NewGovernanceEvent) -> String {
    let mut hasher = Sha256::new();
    let id = event.id.to_string();
    let time = event.time_ms.to_string();
    for field in [prev_hash, &id, &event.kind, &event.subject, &event.actor, &event.cluster, &time, &event.payload] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The columns of a stored event, in [`GovernanceRow`]'s order.
const EVENT_COLUMNS: &str = "seq, cluster_seq, id, kind, subject, actor, cluster, time_ms, payload, prev_hash, hash";

/// A sync run as the database gives it.
type SyncRunRow = (i64, String, i64, i64, i64, i64, i64, i64, String);

/// A stored event as the database gives it.
type GovernanceRow = (i64, i64, String, String, String, String, String, i64, String, String, String);

fn event_from_row(row: GovernanceRow) -> Result<GovernanceEvent, Error> {
    let (seq, cluster_seq, id, kind, subject, actor, cluster, time_ms, payload, prev_hash, hash) = row;
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|e| Error::Corrupt { what: "governance event id", detail: format!("{id:?}: {e}") })?;
    Ok(GovernanceEvent {
        seq,
        cluster_seq,
        event: NewGovernanceEvent { id, kind, subject, actor, cluster, time_ms, payload },
        prev_hash,
        hash,
    })
}

mod statements {
    use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};

    use super::*;
    use crate::sql::Sql;

    impl<DB> Sql<'_, DB>
    where
        DB: Database,
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
        for<'q> &'q str: Encode<'q, DB> + Type<DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'r> (i64,): FromRow<'r, DB::Row>,
        for<'r> (i64, String): FromRow<'r, DB::Row>,
        for<'r> GovernanceRow: FromRow<'r, DB::Row>,
        for<'r> (String, String, String, i64): FromRow<'r, DB::Row>,
        for<'r> (String, i64, String): FromRow<'r, DB::Row>,
        for<'r> (Option<i64>,): FromRow<'r, DB::Row>,
        for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
        for<'r> (String, i64, i64, Option<i64>, Option<i64>, i64): FromRow<'r, DB::Row>,
        for<'r> SyncRunRow: FromRow<'r, DB::Row>,
    {
        /// Appends `events` in one transaction, each chained to the head of its cluster, which
        /// is locked (by updating its row) until the transaction ends, so two writers never
        /// chain to the same event. An event whose id is stored already is skipped.
        pub(crate) async fn append_governance(&self, events: &[NewGovernanceEvent]) -> Result<Vec<Appended>, Error> {
            let mut tx = self.0.begin().await.map_err(Error::db("begin governance append"))?;
            let mut outcomes = Vec::with_capacity(events.len());
            for event in events {
                // The cluster's head, locked; a cluster's first event starts its chain.
                let mut head = None;
                for attempt in 0..2 {
                    head = sqlx::query_as::<DB, (i64, String)>(
                        "UPDATE governance_heads SET cluster_seq = cluster_seq WHERE cluster = $1 \
                         RETURNING cluster_seq, hash",
                    )
                    .bind(event.cluster.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(Error::db("lock governance chain"))?;
                    if head.is_some() || attempt == 1 {
                        break;
                    }
                    sqlx::query::<DB>(
                        "INSERT INTO governance_heads (cluster, cluster_seq, hash) VALUES ($1, 0, $2) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(event.cluster.as_str())
                    .bind(GENESIS)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db("start governance chain"))?;
                }
                let (cluster_seq, prev_hash) =
                    head.ok_or(Error::Corrupt { what: "governance chain", detail: "its head vanished".into() })?;
                let id = event.id.to_string();
                let stored = sqlx::query_as::<DB, (i64,)>("SELECT seq FROM governance_events WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(Error::db("find governance event"))?;
                if stored.is_some() {
                    outcomes.push(Appended::Duplicate);
                    continue;
                }
                let hash = chain_hash(&prev_hash, event);
                let (seq,) = sqlx::query_as::<DB, (i64,)>(
                    "INSERT INTO governance_events \
                     (cluster_seq, id, kind, subject, actor, cluster, time_ms, payload, prev_hash, hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING seq",
                )
                .bind(cluster_seq + 1)
                .bind(id.as_str())
                .bind(event.kind.as_str())
                .bind(event.subject.as_str())
                .bind(event.actor.as_str())
                .bind(event.cluster.as_str())
                .bind(event.time_ms)
                .bind(event.payload.as_str())
                .bind(prev_hash.as_str())
                .bind(hash.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(Error::db("append governance event"))?;
                sqlx::query::<DB>("UPDATE governance_heads SET cluster_seq = $1, hash = $2 WHERE cluster = $3")
                    .bind(cluster_seq + 1)
                    .bind(hash.as_str())
                    .bind(event.cluster.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db("advance governance chain"))?;
                outcomes.push(Appended::New { seq });
            }
            tx.commit().await.map_err(Error::db("commit governance append"))?;
            Ok(outcomes)
        }

        /// At most `limit` events after position `after_seq`, in log order.
        pub(crate) async fn governance_events(
            &self,
            after_seq: i64,
            limit: i64,
        ) -> Result<Vec<GovernanceEvent>, Error> {
            let sql = format!("SELECT {EVENT_COLUMNS} FROM governance_events WHERE seq > $1 ORDER BY seq LIMIT $2");
            let rows = sqlx::query_as::<DB, GovernanceRow>(&sql)
                .bind(after_seq)
                .bind(limit)
                .fetch_all(self.0)
                .await
                .map_err(Error::db("read governance events"))?;
            rows.into_iter().map(event_from_row).collect()
        }

        /// Each cluster's head: name, last position, last hash.
        pub(crate) async fn governance_heads(&self) -> Result<Vec<(String, i64, String)>, Error> {
            sqlx::query_as::<DB, (String, i64, String)>(
                "SELECT cluster, cluster_seq, hash FROM governance_heads ORDER BY cluster",
            )
            .fetch_all(self.0)
            .await
            .map_err(Error::db("read governance heads"))
        }

        /// The position a named sync has reached, if it ever ran.
        pub(crate) async fn sync_cursor(&self, name: &str) -> Result<Option<i64>, Error> {
            let row = sqlx::query_as::<DB, (i64,)>("SELECT position FROM sync_cursors WHERE name = $1")
                .bind(name)
                .fetch_optional(self.0)
                .await
                .map_err(Error::db("read a sync cursor"))?;
            Ok(row.map(|(position,)| position))
        }

        /// Records the position a named sync has reached.
        pub(crate) async fn set_sync_cursor(&self, name: &str, position: i64, at_ms: i64) -> Result<(), Error> {
            sqlx::query::<DB>(
                "INSERT INTO sync_cursors (name, position, updated_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(name)
            .bind(position)
            .bind(at_ms)
            .execute(self.0)
            .await
            .map_err(Error::db("write a sync cursor"))?;
            Ok(())
        }

        /// Records what a remote cluster's sync said; its position, and what it has pending, never
        /// go back (a batch retried after a later one landed does not undo it).
        pub(crate) async fn record_remote(&self, remote: &RemoteSync) -> Result<(), Error> {
            sqlx::query::<DB>(
                "INSERT INTO governance_remotes \
                 (cluster, remote_seq, pending, oldest_pending_ms, last_event_ms, contacted_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (cluster) DO UPDATE SET \
                 remote_seq = CASE WHEN excluded.remote_seq >= governance_remotes.remote_seq \
                     THEN excluded.remote_seq ELSE governance_remotes.remote_seq END, \
                 pending = CASE WHEN excluded.remote_seq >= governance_remotes.remote_seq \
                     THEN excluded.pending ELSE governance_remotes.pending END, \
                 oldest_pending_ms = CASE WHEN excluded.remote_seq >= governance_remotes.remote_seq \
                     THEN excluded.oldest_pending_ms ELSE governance_remotes.oldest_pending_ms END, \
                 last_event_ms = COALESCE(excluded.last_event_ms, governance_remotes.last_event_ms), \
                 contacted_at_ms = excluded.contacted_at_ms",
            )
            .bind(remote.cluster.as_str())
            .bind(remote.remote_seq)
            .bind(remote.pending)
            .bind(remote.oldest_pending_ms)
            .bind(remote.last_event_ms)
            .bind(remote.contacted_at_ms)
            .execute(self.0)
            .await
            .map_err(Error::db("record a remote cluster's sync"))?;
            Ok(())
        }

        /// Records a sync run; returns its id.
        pub(crate) async fn record_sync_run(&self, run: &SyncRun) -> Result<i64, Error> {
            let (id,) = sqlx::query_as::<DB, (i64,)>(
                "INSERT INTO sync_runs (name, started_at_ms, finished_at_ms, created, updated, skipped, failed, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(run.name.as_str())
            .bind(run.started_at_ms)
            .bind(run.finished_at_ms)
            .bind(run.created)
            .bind(run.updated)
            .bind(run.skipped)
            .bind(run.failed)
            .bind(run.detail.as_str())
            .fetch_one(self.0)
            .await
            .map_err(Error::db("record a sync run"))?;
            Ok(id)
        }

        /// The latest `limit` runs of the syncs whose name starts with `prefix`, newest first.
        pub(crate) async fn sync_runs(&self, prefix: &str, limit: i64) -> Result<Vec<SyncRun>, Error> {
            let rows = sqlx::query_as::<DB, SyncRunRow>(
                "SELECT id, name, started_at_ms, finished_at_ms, created, updated, skipped, failed, detail \
                 FROM sync_runs WHERE substr(name, 1, length($1)) = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(prefix)
            .bind(limit)
            .fetch_all(self.0)
            .await
            .map_err(Error::db("read sync runs"))?;
            Ok(rows
                .into_iter()
                .map(|(id, name, started_at_ms, finished_at_ms, created, updated, skipped, failed, detail)| SyncRun {
                    id,
                    name,
                    started_at_ms,
                    finished_at_ms,
                    created,
                    updated,
                    skipped,
                    failed,
                    detail,
                })
                .collect())
        }

        /// Every remote cluster that has synced here, by name.
        pub(crate) async fn remotes(&self) -> Result<Vec<RemoteSync>, Error> {
            let rows = sqlx::query_as::<DB, (String, i64, i64, Option<i64>, Option<i64>, i64)>(
                "SELECT cluster, remote_seq, pending, oldest_pending_ms, last_event_ms, contacted_at_ms \
                 FROM governance_remotes ORDER BY cluster",
            )
            .fetch_all(self.0)
            .await
            .map_err(Error::db("read remote clusters"))?;
            Ok(rows
                .into_iter()
                .map(|(cluster, remote_seq, pending, oldest_pending_ms, last_event_ms, contacted_at_ms)| RemoteSync {
                    cluster,
                    remote_seq,
                    pending,
                    oldest_pending_ms,
                    last_event_ms,
                    contacted_at_ms,
                })
                .collect())
        }

        /// The start of a deployment's latest prediction (the deployment-and-time index serves it).
        pub(crate) async fn last_prediction_ms(&self, deployment: &str) -> Result<Option<i64>, Error> {
            let (last,) = sqlx::query_as::<DB, (Option<i64>,)>(
                "SELECT max(start_timestamp_ms) FROM predictions WHERE model_deployment_crn = $1",
            )
            .bind(deployment)
            .fetch_one(self.0)
            .await
            .map_err(Error::db("read a deployment's latest prediction"))?;
            Ok(last)
        }

        /// Every deployment, build and model triple the stored predictions name.
        pub(crate) async fn seen_deployments(&self) -> Result<Vec<SeenDeployment>, Error> {
            let rows = sqlx::query_as::<DB, (String, String, String, i64)>(
                "SELECT model_deployment_crn, model_build_crn, model_crn, first_seen_ms FROM deployment_lineage \
                 ORDER BY model_crn, model_build_crn, model_deployment_crn",
            )
            .fetch_all(self.0)
            .await
            .map_err(Error::db("read seen deployments"))?;
            Ok(rows
                .into_iter()
                .map(|(deployment, build, model, first_seen_ms)| SeenDeployment {
                    deployment,
                    build,
                    model,
                    first_seen_ms,
                })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: &str) -> NewGovernanceEvent {
        NewGovernanceEvent {
            id: uuid::Uuid::from_u128(7),
            kind: "model.registered".into(),
            subject: "crn:m".into(),
            actor: "ana".into(),
            cluster: "east".into(),
            time_ms: 1,
            payload: payload.into(),
        }
    }

    #[test]
    fn every_field_and_the_link_change_the_hash() {
        let base = event("{}");
        let hash = chain_hash(GENESIS, &base);
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, chain_hash(GENESIS, &base.clone()));
        let mut changed = vec![chain_hash(&hash, &base)];
        for edit in 0..7 {
            let mut e = base.clone();
            match edit {
                0 => e.id = uuid::Uuid::from_u128(8),
                1 => e.kind.push('x'),
                2 => e.subject.push('x'),
                3 => e.actor.push('x'),
                4 => e.cluster.push('x'),
                5 => e.time_ms += 1,
                _ => e.payload = "{ }".into(),
            }
            changed.push(chain_hash(GENESIS, &e));
        }
        // Moving text from one field to the next is a different event too.
        let (mut a, mut b) = (base.clone(), base.clone());
        a.subject = "crn:mx".into();
        a.actor = "na".into();
        b.actor = "xana".into();
        b.subject = "crn:".into();
        changed.push(chain_hash(GENESIS, &a));
        changed.push(chain_hash(GENESIS, &b));
        let distinct: std::collections::BTreeSet<&String> = changed.iter().chain([&hash]).collect();
        assert_eq!(distinct.len(), changed.len() + 1);
    }
}
