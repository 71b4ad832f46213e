//! Rolling: raw predictions into minute summaries, and finer summaries into coarser ones.
//!
//! Both the worker and series reads of raw rows go through here, in the same order (predictions
//! by start then UUID, buckets by start), so a series computed from raw rows and one read from
//! rollups hold the same numbers.

use std::collections::{BTreeMap, HashMap};

use driftline_store::rollups::{PathEntry, RollupRow};
use driftline_store::{Resolution, Store, Window};
use futures::StreamExt;

use crate::leaves::{is_technical, ClassScores, Leaf, Point};
use crate::rows::Rows;
use crate::summary::{Summary, SummaryOptions};
use crate::Error;

/// A summary with where it belongs: deployment, path, bucket start.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucketed {
    /// The deployment.
    pub deployment: String,
    /// The metric path.
    pub path: String,
    /// Start of the bucket.
    pub start_ms: i64,
    /// What the bucket holds.
    pub summary: Summary,
}

impl Bucketed {
    /// The stored row.
    pub fn to_row(&self) -> RollupRow {
        self.summary.to_row(&self.deployment, &self.path, self.start_ms)
    }

    /// From a stored row.
    pub fn from_row(row: &RollupRow, options: SummaryOptions) -> Result<Self, Error> {
        Ok(Bucketed {
            deployment: row.model_deployment_crn.clone(),
            path: row.path.clone(),
            start_ms: row.bucket_start_ms,
            summary: Summary::from_row(row, options)?,
        })
    }
}

/// Which paths are rolled up: at most `max_paths` per deployment (technical `@` paths not
/// counted), first come first admitted; values of refused paths are counted.
#[derive(Debug, Default)]
pub struct PathGuard {
    max_paths: usize,
    /// Whether values of refused paths are counted (not while minutes are re-rolled).
    quiet: bool,
    known: HashMap<String, HashMap<String, bool>>,
    /// Admissions and refused-value counts not yet committed.
    pending: HashMap<(String, String), PathEntry>,
}

impl PathGuard {
    /// A guard admitting `max_paths` paths per deployment.
    pub fn new(max_paths: usize) -> Self {
        PathGuard { max_paths, ..PathGuard::default() }
    }

    /// Loads what the store knows of a deployment's paths, once.
    pub async fn load(&mut self, store: &dyn Store, deployment: &str) -> Result<(), Error> {
        if !self.known.contains_key(deployment) {
            let paths = store.rollup_paths(deployment).await?;
            self.known.insert(deployment.to_owned(), paths.into_iter().map(|p| (p.path, p.admitted)).collect());
        }
        Ok(())
    }

    /// Counts values of refused paths (the default) or not.
    pub fn count_refused(&mut self, count: bool) {
        self.quiet = !count;
    }

    /// Whether values of `path` are rolled up; counts them otherwise.
    fn admit(&mut self, deployment: &str, path: &str) -> bool {
        if is_technical(path) {
            return true;
        }
        let known = self.known.entry(deployment.to_owned()).or_default();
        let admitted = match known.get(path) {
            Some(&a) => a,
            None => {
                let a = known.values().filter(|&&a| a).count() < self.max_paths;
                known.insert(path.to_owned(), a);
                self.pending.insert(
                    (deployment.to_owned(), path.to_owned()),
                    PathEntry {
                        model_deployment_crn: deployment.to_owned(),
                        path: path.to_owned(),
                        admitted: a,
                        refused_values: 0,
                    },
                );
                if !a {
                    tracing::warn!(
                        deployment,
                        path,
                        limit = self.max_paths,
                        "metric path over the per-deployment limit is not rolled up"
                    );
                }
                a
            }
        };
        if !admitted && !self.quiet {
            let entry = self.pending.entry((deployment.to_owned(), path.to_owned())).or_insert_with(|| PathEntry {
                model_deployment_crn: deployment.to_owned(),
                path: path.to_owned(),
                admitted: false,
                refused_values: 0,
            });
            entry.refused_values += 1;
        }
        admitted
    }

    /// The admissions and refused counts to commit; the guard forgets them.
    pub fn take_pending(&mut self) -> Vec<PathEntry> {
        let mut out: Vec<PathEntry> = self.pending.drain().map(|(_, e)| e).collect();
        out.sort_by(|a, b| (&a.model_deployment_crn, &a.path).cmp(&(&b.model_deployment_crn, &b.path)));
        out
    }

    /// Forgets everything (after a failed commit, what is known is re-read from the store).
    pub fn reset(&mut self) {
        self.known.clear();
        self.pending.clear();
    }
}

/// The class scores each deployment's rollups keep: the score and label paths of every binary
/// drift job of it.
pub async fn class_scores(store: &dyn Store) -> Result<HashMap<String, Vec<ClassScores>>, Error> {
    /// The fields of a stored job spec that matter here (every stored spec has them).
    #[derive(serde::Deserialize)]
    struct Spec {
        deployment: String,
        score: String,
        label: String,
        task: String,
    }
    let mut out: HashMap<String, Vec<ClassScores>> = HashMap::new();
    for job in store.jobs().await? {
        // A spec that does not read is the drift scheduler's to report; it keeps no class scores.
        let Ok(spec) = serde_json::from_str::<Spec>(&job.spec) else { continue };
        if spec.task == "binary" {
            let classes = ClassScores { score: spec.score, label: spec.label };
            let kept = out.entry(spec.deployment).or_default();
            if !kept.contains(&classes) {
                kept.push(classes);
            }
        }
    }
    Ok(out)
}

/// Which leaves a roll keeps.
pub enum Paths<'a> {
    /// Every admitted path, and the class scores of these binary classifiers.
    Guarded(&'a mut PathGuard, &'a [ClassScores]),
    /// One path only (series reads).
    Only(&'a str),
}

/// Rolls the predictions of `deployment` starting in `window` into minute summaries, in
/// (path, minute) order. Returns them and the number of predictions read.
pub async fn roll_minutes(
    source: &dyn Rows,
    deployment: &str,
    window: Window,
    options: SummaryOptions,
    mut paths: Paths<'_>,
) -> Result<(Vec<Bucketed>, u64), Error> {
    let mut rows = source.predictions(deployment, window);
    let mut out = Vec::new();
    let mut minute = i64::MIN;
    let mut current: HashMap<String, Summary> = HashMap::new();
    let mut scratch = String::new();
    let mut read = 0u64;
    let only_classes = match &paths {
        Paths::Only(only) => ClassScores::parse(only),
        Paths::Guarded(..) => None,
    };
    let classes: Vec<(ClassScores, [String; 2])> = match &paths {
        Paths::Guarded(_, classes) => classes.to_vec(),
        Paths::Only(_) => only_classes.into_iter().map(|(c, _)| c).collect(),
    }
    .into_iter()
    .map(|c| {
        let names = [c.path(false), c.path(true)];
        (c, names)
    })
    .collect();
    while let Some(row) = rows.next().await {
        let point = Point::from_source(&row?)?;
        read += 1;
        let m = Resolution::Minute.floor(point.start_ms);
        if m != minute {
            finish_minute(deployment, minute, &mut current, &mut out);
            minute = m;
        }
        point.for_each_leaf(&mut scratch, |path, leaf| {
            let keep = match &mut paths {
                Paths::Guarded(guard, _) => guard.admit(deployment, path),
                Paths::Only(only) => *only == path,
            };
            if !keep {
                return Ok(());
            }
            let summary = match current.get_mut(path) {
                Some(s) => s,
                None => current.entry(path.to_owned()).or_insert_with(|| Summary::new(options)),
            };
            match leaf {
                Leaf::Number(x) => summary.push_number(x),
                Leaf::Category(v) => {
                    summary.push_category(v);
                    Ok(())
                }
            }
        })?;
        for (c, names) in &classes {
            if let Some((score, positive)) = point.class_score(c) {
                let path = &names[usize::from(positive)];
                if matches!(&paths, Paths::Only(only) if only != path) {
                    continue;
                }
                match current.get_mut(path) {
                    Some(s) => s.push_number(score)?,
                    None => current.entry(path.clone()).or_insert_with(|| Summary::new(options)).push_number(score)?,
                }
            }
        }
    }
    finish_minute(deployment, minute, &mut current, &mut out);
    let (want_replicas, want_rejected) = match &paths {
        Paths::Guarded(..) => (true, true),
        Paths::Only(only) => (only.starts_with("@replica."), *only == crate::leaves::REJECTED),
    };
    // The store's own series from other tables: replica figures and refused events.
    let mut other: BTreeMap<(i64, String), Summary> = BTreeMap::new();
    if want_replicas {
        for r in source.replicas(deployment, window).await? {
            let m = Resolution::Minute.floor(r.timestamp_ms);
            for (figure, value) in [("cpu_percent", r.cpu_percent), ("memory_bytes", r.memory_bytes as f64)] {
                let path = crate::leaves::replica_path(&r.replica_id, figure);
                let keep = match &mut paths {
                    Paths::Guarded(guard, _) => guard.admit(deployment, &path),
                    Paths::Only(only) => *only == path,
                };
                if !keep {
                    continue;
                }
                other.entry((m, path)).or_insert_with(|| Summary::new(options)).push_number(value)?;
            }
        }
    }
    if want_rejected {
        for at in source.rejected(deployment, window).await? {
            let key = (Resolution::Minute.floor(at), crate::leaves::REJECTED.to_owned());
            other.entry(key).or_insert_with(|| Summary::new(options)).push_number(1.0)?;
        }
    }
    out.extend(other.into_iter().map(|((start_ms, path), summary)| Bucketed {
        deployment: deployment.to_owned(),
        path,
        start_ms,
        summary,
    }));
    sort(&mut out);
    Ok((out, read))
}

fn finish_minute(deployment: &str, minute: i64, current: &mut HashMap<String, Summary>, out: &mut Vec<Bucketed>) {
    for (path, mut summary) in current.drain() {
        summary.keep_top();
        out.push(Bucketed { deployment: deployment.to_owned(), path, start_ms: minute, summary });
    }
}

/// Sorts by deployment, path, bucket start: the order buckets are merged in.
pub fn sort(buckets: &mut [Bucketed]) {
    buckets.sort_by(|a, b| (&a.deployment, &a.path, a.start_ms).cmp(&(&b.deployment, &b.path, b.start_ms)));
}

/// Merges finer buckets (sorted by deployment, path, start) into buckets of `coarser`, in
/// order; the result is sorted the same way.
pub fn merge_up(finer: &[Bucketed], coarser: Resolution, options: SummaryOptions) -> Result<Vec<Bucketed>, Error> {
    let mut out: Vec<Bucketed> = Vec::new();
    for b in finer {
        let start = coarser.floor(b.start_ms);
        match out.last_mut() {
            Some(last) if last.deployment == b.deployment && last.path == b.path && last.start_ms == start => {
                last.summary.merge(&b.summary)?;
            }
            _ => {
                let mut summary = Summary::new(options);
                summary.merge(&b.summary)?;
                out.push(Bucketed { deployment: b.deployment.clone(), path: b.path.clone(), start_ms: start, summary });
            }
        }
    }
    for b in &mut out {
        b.summary.keep_top();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(path: &str, start: i64, values: &[f64]) -> Bucketed {
        let mut summary = Summary::new(SummaryOptions::default());
        for &v in values {
            summary.push_number(v).unwrap();
        }
        Bucketed { deployment: "d".into(), path: path.into(), start_ms: start, summary }
    }

    #[test]
    fn minutes_merge_into_their_hours_per_path() {
        let h = Resolution::Hour.ms();
        let minutes = vec![
            bucket("a", 0, &[1.0]),
            bucket("a", 60_000, &[2.0, 3.0]),
            bucket("a", h, &[4.0]),
            bucket("b", 0, &[5.0]),
        ];
        let hours = merge_up(&minutes, Resolution::Hour, SummaryOptions::default()).unwrap();
        let got: Vec<(&str, i64, u64)> =
            hours.iter().map(|b| (b.path.as_str(), b.start_ms, b.summary.count())).collect();
        assert_eq!(got, vec![("a", 0, 3), ("a", h, 1), ("b", 0, 1)]);
        assert_eq!(hours[0].summary.numeric.as_ref().unwrap().sum, 6.0);
    }

    #[test]
    fn the_guard_admits_up_to_the_limit_and_counts_the_rest() {
        let mut g = PathGuard::new(2);
        assert!(g.admit("d", "a") && g.admit("d", "b") && g.admit("d", "@latency_ms"));
        assert!(!g.admit("d", "c") && !g.admit("d", "c"));
        assert!(g.admit("e", "c"), "the limit is per deployment");
        let pending = g.take_pending();
        let c = pending.iter().find(|p| p.model_deployment_crn == "d" && p.path == "c").unwrap();
        assert_eq!((c.admitted, c.refused_values), (false, 2));
        assert_eq!(pending.iter().filter(|p| p.admitted).count(), 3);
    }
}
