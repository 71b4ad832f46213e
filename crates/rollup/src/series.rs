//! Series reads: one metric path of one deployment over a window, one point per bucket.
//!
//! With [`Source::Auto`], complete buckets come from the rollups and the rest from raw rows:
//! the tail the worker has not rolled yet, and buckets holding a minute the invalidation log
//! names (late events not re-rolled yet). Raw rows are summarised exactly as the worker does
//! it, minutes first, then merged, so the answer is the same before and after the worker runs.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use driftline_store::{Resolution, Store, Window};
use serde::Serialize;

use crate::roll::{merge_up, roll_minutes, Bucketed, Paths};
use crate::rows::{Rows, StoreRows};
use crate::summary::{Summary, SummaryOptions};
use crate::Error;

/// Where a series is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// Rollups for complete buckets, raw rows for the rest.
    #[default]
    Auto,
    /// Rollups only (buckets the worker has not reached are absent).
    Rollup,
    /// Raw rows only (for checking, and to measure what rollups save).
    Raw,
}

impl std::str::FromStr for Source {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Source::Auto),
            "rollup" => Ok(Source::Rollup),
            "raw" => Ok(Source::Raw),
            other => Err(format!("`{other}` is not a series source; use auto, rollup or raw")),
        }
    }
}

/// A series query.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesQuery {
    /// The deployment.
    pub deployment: String,
    /// The metric path (`input.tenure`, `label`, `@latency_ms`).
    pub path: String,
    /// Buckets whose start lies in `[step.floor(start), end)`; each bucket is whole.
    pub window: Window,
    /// Bucket length.
    pub step: Resolution,
    /// Where to read.
    pub source: Source,
    /// Quantiles to estimate, each in [0, 1].
    pub quantiles: Vec<f64>,
    /// Whether to include each bucket's sketch.
    pub include_sketch: bool,
}

/// A series answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// The step, `1m`, `1h` or `1d`.
    pub resolution: &'static str,
    /// One point per bucket with values, by bucket start.
    pub series: Vec<SeriesPoint>,
}

/// One bucket of a series.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesPoint {
    /// Start of the bucket, ms since the epoch.
    pub bucket_start_ms: i64,
    /// Values seen, numeric and categorical.
    pub count: u64,
    /// Sum of the numeric values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum: Option<f64>,
    /// Smallest numeric value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest numeric value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Mean of the numeric values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// Sample standard deviation (n − 1), with two values or more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stddev: Option<f64>,
    /// Estimated quantiles, keyed by the asked rank as written.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub quantiles: BTreeMap<String, f64>,
    /// Counts of the most frequent categorical values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
    /// Categorical values counted but not among the kept ones.
    #[serde(skip_serializing_if = "is_zero")]
    pub other_count: u64,
    /// The KLL sketch, base64 of the DataSketches serialization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sketch: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl SeriesPoint {
    fn new(start: i64, summary: &Summary, query: &SeriesQuery) -> Self {
        let n = summary.numeric.as_ref();
        SeriesPoint {
            bucket_start_ms: start,
            count: summary.count(),
            sum: n.map(|n| n.sum),
            min: n.map(|n| n.min),
            max: n.map(|n| n.max),
            mean: n.and_then(|n| n.mean_value()),
            stddev: n.and_then(|n| n.stddev()),
            quantiles: query.quantiles.iter().filter_map(|&q| Some((rank_key(q), n?.sketch.quantile(q)?))).collect(),
            counts: summary.counts.clone(),
            other_count: summary.other,
            sketch: n
                .filter(|_| query.include_sketch)
                .map(|n| base64::engine::general_purpose::STANDARD.encode(n.sketch.to_bytes())),
        }
    }
}

/// `0.5` for 0.5, `0.99` for 0.99: the rank as a user writes it.
fn rank_key(q: f64) -> String {
    format!("{q}")
}

/// What summaries are read from: rows, and the store's record of how far they are rolled up
/// and which minutes are stale.
#[derive(Clone, Copy)]
pub(crate) struct Readers<'a> {
    pub(crate) store: &'a dyn Store,
    pub(crate) rows: &'a dyn Rows,
}

/// Most buckets one series answer may span.
pub const MAX_BUCKETS: i64 = 100_000;

/// Reads a series with the store's own queries.
pub async fn series(store: &dyn Store, query: &SeriesQuery, options: SummaryOptions) -> Result<Series, Error> {
    series_from(store, &StoreRows(store), query, options).await
}

/// Reads a series, its rows from `rows` (the store's own queries, or the query layer's plans);
/// what is rolled up so far, and which minutes are stale, comes from `store`.
pub async fn series_from(
    store: &dyn Store,
    rows: &dyn Rows,
    query: &SeriesQuery,
    options: SummaryOptions,
) -> Result<Series, Error> {
    if query.window.end_ms <= query.window.start_ms {
        return Err(Error::Query(format!(
            "the window is empty: end_timestamp_ms ({}) must be after start_timestamp_ms ({})",
            query.window.end_ms, query.window.start_ms
        )));
    }
    if let Some(q) = query.quantiles.iter().find(|q| !(0.0..=1.0).contains(*q)) {
        return Err(Error::Query(format!("quantile {q} is outside [0, 1]; ask for ranks such as 0.5,0.9,0.99")));
    }
    let step = query.step;
    let first = step.floor(query.window.start_ms);
    let last = step.floor(query.window.end_ms - 1) + step.ms();
    let buckets = (last - first) / step.ms();
    if buckets > MAX_BUCKETS {
        return Err(Error::Query(format!(
            "the window holds {buckets} buckets of {}, more than {MAX_BUCKETS}; ask for a coarser step or a shorter window",
            step.name()
        )));
    }
    let buckets = bucket_summaries(
        Readers { store, rows },
        &query.deployment,
        &query.path,
        (first, last),
        step,
        query.source,
        options,
    )
    .await?;
    Ok(Series {
        resolution: step.name(),
        series: buckets.iter().map(|(start, s)| SeriesPoint::new(*start, s, query)).collect(),
    })
}

/// The summaries of one path of a deployment over the buckets of `step` starting in
/// `[range.0, range.1)` (both bucket starts), read from `source`, by bucket start.
pub(crate) async fn bucket_summaries(
    Readers { store, rows }: Readers<'_>,
    deployment: &str,
    path: &str,
    range: (i64, i64),
    step: Resolution,
    source: Source,
    options: SummaryOptions,
) -> Result<BTreeMap<i64, Summary>, Error> {
    let (first, last) = range;
    let state = store.rollup_state().await?;
    // A path over the deployment's limit has no rollups: read it from raw rows.
    let refused = store.rollup_paths(deployment).await?.iter().any(|p| p.path == path && !p.admitted);
    if refused && source == Source::Rollup {
        return Err(Error::Query(format!(
            "metric {} of {} is not rolled up: the deployment reached its limit of metric paths (--rollup-max-paths); \
             read it with source=raw or source=auto",
            path, deployment
        )));
    }
    let rolled = match (source, state.rolled_to_ms) {
        (Source::Raw, _) | (_, None) => first,
        _ if refused => first,
        (_, Some(r)) => step.floor(r).clamp(first, last),
    };

    let mut buckets: BTreeMap<i64, Summary> = BTreeMap::new();
    let mut raw_ranges: Vec<Window> = Vec::new();
    if rolled > first {
        let rolled_window = Window { start_ms: first, end_ms: rolled };
        let stale: BTreeSet<i64> = if source == Source::Auto {
            let kept_from = state.raw_kept_from_ms.unwrap_or(i64::MIN);
            store
                .dirty_minutes(deployment, rolled_window)
                .await?
                .into_iter()
                .map(|m| step.floor(m))
                // A bucket partly removed by retention stays as rolled until the worker re-rolls
                // its minute (raw rows would give only part of it).
                .filter(|&bucket| bucket >= kept_from)
                .collect()
        } else {
            BTreeSet::new()
        };
        for row in rows.rollups(step, deployment, path, rolled_window).await? {
            if !stale.contains(&row.bucket_start_ms) {
                buckets.insert(row.bucket_start_ms, Summary::from_row(&row, options)?);
            }
        }
        raw_ranges.extend(stale.iter().map(|&s| Window { start_ms: s, end_ms: s + step.ms() }));
    }
    if source != Source::Rollup && rolled < last {
        raw_ranges.push(Window { start_ms: rolled, end_ms: last });
    }
    for range in raw_ranges {
        for b in from_raw(rows, deployment, path, range, step, options).await? {
            buckets.insert(b.start_ms, b.summary);
        }
    }
    Ok(buckets)
}

/// Summaries of one path over `range` at `step`, from raw rows, as the worker would make them.
/// The range is read a day (or one step, if longer) at a time, so memory holds at most a day
/// of minute summaries whatever the range.
async fn from_raw(
    rows: &dyn Rows,
    deployment: &str,
    path: &str,
    range: Window,
    step: Resolution,
    options: SummaryOptions,
) -> Result<Vec<Bucketed>, Error> {
    let piece = step.ms().max(Resolution::Day.ms());
    let mut out = Vec::new();
    let mut from = range.start_ms;
    while from < range.end_ms {
        let to = (step.floor(from) + piece).min(range.end_ms);
        let window = Window { start_ms: from, end_ms: to };
        let (mut buckets, _) = roll_minutes(rows, deployment, window, options, Paths::Only(path)).await?;
        let mut resolution = Resolution::Minute;
        while resolution != step {
            let coarser = resolution.coarser().expect("a step coarser than a minute is an hour or a day");
            buckets = merge_up(&buckets, coarser, options)?;
            resolution = coarser;
        }
        out.extend(buckets);
        from = to;
    }
    Ok(out)
}
