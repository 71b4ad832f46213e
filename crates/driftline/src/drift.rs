//! `driftline drift …`: drift and performance of files, and drift jobs over the store.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use driftline_core::time::now_ms;
use driftline_drift::chunk::{Chunking, Period};
use driftline_drift::chunked::{ChunkMethod, ChunkThreshold};
use driftline_drift::compare::{Method, Options};
use driftline_drift::estimate::{Basis, Calibrate, Estimate, EstimateMetric, EstimateOptions};
use driftline_drift::format::time;
use driftline_drift::job::estimates;
use driftline_drift::job::persist::write_reports;
use driftline_drift::job::run::{run_job, Finished};
use driftline_drift::job::schedule::{Schedule, ScheduleSpec};
use driftline_drift::job::scheduler::{self, SchedulerConfig};
use driftline_drift::job::spec::{parse_time, Alert, ChunksSpec, EstimateSpec, JobSpec, Reference};
use driftline_drift::report::{html, text};
use driftline_drift::stats::categories::DEFAULT_KEEP;
use driftline_drift::stats::drift::Chi2Correction;
use driftline_drift::stats::performance::{Metrics, Task};
use driftline_drift::table::files::{self, ChunkRequest, EstimateRequest, PerformanceRequest, RealizedRequest};
use driftline_drift::table::references::ReferenceFiles;
use driftline_drift::Error;
use driftline_store::Store;

use crate::drift_api::DriftSettings;
use crate::StoreArgs;

/// The statistics per chunk when none are named, in `drift compare` and in jobs: drift and
/// the two data-quality measures.
const DEFAULT_CHUNK_METHODS: &str = "jensen_shannon,missing_values,unseen_values";

/// Where the reference files of drift jobs are (`file:` references).
#[derive(Debug, Clone, Args)]
pub(crate) struct ReferencesArgs {
    /// Directory of the reference files drift jobs may read (`--reference file:PATH`, with PATH
    /// relative to it); `<data-dir>/references` by default. Files elsewhere, and links out of
    /// it, are refused.
    #[arg(long, env = "DRIFTLINE_REFERENCES_DIR")]
    references_dir: Option<PathBuf>,
}

impl ReferencesArgs {
    fn files(&self, store: &StoreArgs) -> ReferenceFiles {
        ReferenceFiles::new(self.references_dir.clone().unwrap_or_else(|| store.data_dir.join("references")))
    }
}

/// The drift flags of `driftline serve`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DriftServeArgs {
    /// Do not run drift jobs on their schedules in this process.
    #[arg(long, env = "DRIFTLINE_NO_DRIFT_SCHEDULER")]
    no_drift_scheduler: bool,
    /// How often the drift scheduler looks for due jobs, in seconds.
    #[arg(long, env = "DRIFTLINE_DRIFT_TICK_SECS", default_value_t = 15)]
    drift_tick_secs: u64,
    /// After the server was down, run every scheduled run a job missed (oldest first, at most
    /// the newest 1,000 per job), not only the latest one.
    #[arg(long, env = "DRIFTLINE_DRIFT_BACKFILL")]
    drift_backfill: bool,
    /// Also write each scheduled run's JSON and HTML report into this directory (they are
    /// always stored and served at /api/v1/drift/jobs/{name}/runs/{id}/report).
    #[arg(long, env = "DRIFTLINE_REPORTS_DIR")]
    reports_dir: Option<PathBuf>,
    #[command(flatten)]
    references: ReferencesArgs,
}

impl DriftServeArgs {
    /// What the drift jobs API needs.
    pub(crate) fn settings(&self, store: &StoreArgs) -> DriftSettings {
        DriftSettings { references: self.references.files(store) }
    }

    /// The scheduler's settings; `None` with --no-drift-scheduler.
    pub(crate) fn scheduler(&self, store: &StoreArgs) -> anyhow::Result<Option<SchedulerConfig>> {
        if self.no_drift_scheduler {
            return Ok(None);
        }
        anyhow::ensure!(self.drift_tick_secs > 0, "--drift-tick-secs must be at least 1");
        Ok(Some(SchedulerConfig {
            tick: std::time::Duration::from_secs(self.drift_tick_secs),
            backfill: self.drift_backfill,
            reports_dir: self.reports_dir.clone(),
            references: self.references.files(store),
        }))
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum DriftCommand {
    /// Compare the distribution of each column of a current file with a reference file.
    Compare(CompareArgs),
    /// Score a file's predictions against its labels.
    Performance(PerformanceArgs),
    /// Estimate a binary classifier's performance per chunk from its scores, before labels
    /// arrive (confidence-based performance estimation, as NannyML's CBPE).
    Estimate(Box<EstimateArgs>),
    /// Create, list, show, delete and run drift jobs over the store.
    Job {
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Run a job for every scheduled time in a past period, oldest first.
    Backfill(BackfillArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum JobCommand {
    /// Store a new drift job.
    Create(Box<CreateJobArgs>),
    /// List the drift jobs.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show a job's settings and its recent runs.
    Show {
        name: String,
        /// How many recent runs to show.
        #[arg(long, env = "DRIFTLINE_JOB_RUNS", default_value_t = 10)]
        runs: u32,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete a job and its runs (the aggregate metrics it wrote stay).
    Delete {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Run a job now (or for the window ending at --at) and write its reports.
    Run {
        name: String,
        /// End of the window: ms since the epoch or RFC 3339; now by default.
        #[arg(long, env = "DRIFTLINE_JOB_AT")]
        at: Option<String>,
        /// Directory for the report files (JSON and HTML).
        #[arg(long, env = "DRIFTLINE_REPORTS_DIR", default_value = "./driftline-reports")]
        output_dir: PathBuf,
        #[command(flatten)]
        references: ReferencesArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Check a job's performance estimates against the labels that have arrived since: each
    /// recent run's estimate beside its window's realised performance now.
    Estimates {
        name: String,
        /// How many recent runs to check.
        #[arg(long, env = "DRIFTLINE_JOB_RUNS", default_value_t = 30)]
        runs: u32,
        /// table, json or html (each metric over the runs: estimate, band, realised now).
        #[arg(long, value_enum, env = "DRIFTLINE_DRIFT_FORMAT", default_value = "table")]
        format: Format,
        /// Write to this file instead of standard output.
        #[arg(long, env = "DRIFTLINE_DRIFT_OUTPUT")]
        output: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CreateJobArgs {
    /// Unique name: letters, digits, `.`, `_` and `-`.
    name: String,
    /// The model deployment's CRN.
    #[arg(long, env = "DRIFTLINE_JOB_DEPLOYMENT")]
    deployment: String,
    /// Length of the current window, ending at each scheduled time: 30m, 24h, 7d, 1w.
    #[arg(long, env = "DRIFTLINE_JOB_WINDOW", default_value = "24h")]
    window: String,
    /// What to compare with: previous:7d (the same window earlier), baseline:START..END (ms or
    /// RFC 3339), or file:PATH (CSV or Parquet with one column per feature path).
    #[arg(long, env = "DRIFTLINE_JOB_REFERENCE", default_value = "previous:7d")]
    reference: String,
    /// Dotted paths of the features in the prediction's metrics (comma-separated).
    #[arg(long, env = "DRIFTLINE_JOB_FEATURES", value_delimiter = ',', required = true)]
    features: Vec<String>,
    /// Dotted path of the score in the prediction's metrics.
    #[arg(long, env = "DRIFTLINE_JOB_SCORE", default_value = "prediction")]
    score: String,
    /// Dotted path of the ground truth in the delayed metrics.
    #[arg(long, env = "DRIFTLINE_JOB_LABEL", default_value = "label")]
    label: String,
    /// binary, multiclass or regression.
    #[arg(long, env = "DRIFTLINE_JOB_TASK", default_value = "binary")]
    task: Task,
    /// Multiclass: each class's score (its probability) as CLASS=PATH pairs (comma-separated,
    /// dotted paths in the prediction's metrics), for one-vs-rest ROC AUC per class, macro and
    /// weighted.
    #[arg(long, env = "DRIFTLINE_JOB_CLASS_SCORES", value_delimiter = ',')]
    class_scores: Vec<String>,
    /// auto, psi, ks, chi2, js or wasserstein.
    #[arg(long, env = "DRIFTLINE_JOB_METHOD", default_value = "auto")]
    method: Method,
    /// Drift threshold; the method's default when not given.
    #[arg(long, env = "DRIFTLINE_JOB_THRESHOLD")]
    threshold: Option<f64>,
    /// Share of drifted features from which the run's status is drift.
    #[arg(long, env = "DRIFTLINE_JOB_DRIFT_SHARE", default_value_t = 0.5)]
    drift_share: f64,
    /// Reference-quantile bins.
    #[arg(long, env = "DRIFTLINE_JOB_BINS", default_value_t = 10)]
    bins: usize,
    /// Categories of a categorical feature kept by name in statistics and reports; the others
    /// are compared as one, "other".
    #[arg(long, env = "DRIFTLINE_JOB_MAX_CATEGORIES", default_value_t = DEFAULT_KEEP)]
    max_categories: usize,
    /// Continuity correction of the chi-square test: none, or yates (with two categories).
    #[arg(long, env = "DRIFTLINE_JOB_CHI2_CORRECTION", default_value = "none")]
    chi2_correction: Chi2Correction,
    /// Warn when a metric crosses a bound: `roc_auc<0.75`, `rmse>3`.
    #[arg(long, env = "DRIFTLINE_JOB_ALERT")]
    alert: Option<String>,
    /// Also estimate performance from the scores before labels arrive (binary task; CBPE):
    /// the reference's labels calibrate the scores and set the thresholds.
    #[arg(long, env = "DRIFTLINE_JOB_ESTIMATE")]
    estimate: bool,
    /// With --estimate: the dotted path of the predicted class in the prediction's metrics;
    /// without it a score at or above 0.5 predicts class 1.
    #[arg(long, env = "DRIFTLINE_JOB_ESTIMATE_PREDICTION", requires = "estimate")]
    estimate_prediction: Option<String>,
    /// With --estimate: calibrate the scores with isotonic regression: auto, always or never.
    #[arg(long, env = "DRIFTLINE_JOB_CALIBRATION", default_value = "auto")]
    calibration: Calibrate,
    /// Also judge each feature against thresholds from the reference's own chunks, as NannyML
    /// does: the window is one chunk against the whole reference, and the reference, cut into
    /// chunks of the window's size, sets how far a statistic may go.
    #[arg(long, env = "DRIFTLINE_JOB_CHUNKS")]
    chunks: bool,
    /// With --chunks: the statistics (comma-separated), as for `drift compare --chunk-methods`.
    #[arg(
        long,
        env = "DRIFTLINE_JOB_CHUNK_METHODS",
        value_delimiter = ',',
        default_value = DEFAULT_CHUNK_METHODS
    )]
    chunk_methods: Vec<ChunkMethod>,
    /// With --chunks: thresholds at the mean of the reference chunks' values plus (and, for
    /// the data-quality measures, minus) this many standard deviations.
    #[arg(long, env = "DRIFTLINE_JOB_CHUNK_THRESHOLD_SD", default_value_t = 3.0)]
    chunk_threshold_sd: f64,
    /// With --chunks: a constant upper threshold instead of --chunk-threshold-sd.
    #[arg(long, env = "DRIFTLINE_JOB_CHUNK_THRESHOLD")]
    chunk_threshold: Option<f64>,
    /// With --chunks: cut the window into chunks of this many predictions (in time order),
    /// each judged, and the reference into chunks of the same size.
    #[arg(long, env = "DRIFTLINE_JOB_CHUNK_SIZE", group = "job_split", requires = "chunks")]
    chunk_size: Option<usize>,
    /// With --chunks: cut the window into this many chunks, and the reference into as many.
    #[arg(long, env = "DRIFTLINE_JOB_CHUNK_NUMBER", group = "job_split", requires = "chunks")]
    chunk_number: Option<usize>,
    /// With --chunks: one chunk per calendar period of the predictions' start times (UTC):
    /// 1h, 1d, 1w or 1mo, in the window and in the reference window alike.
    #[arg(long, env = "DRIFTLINE_JOB_CHUNK_PERIOD", group = "job_split", requires = "chunks")]
    chunk_period: Option<Period>,
    /// daily@HH:MM, weekly:mon@HH:MM, monthly:first-mon@HH:MM, hourly, or a cron expression.
    #[arg(long, env = "DRIFTLINE_JOB_SCHEDULE", default_value = "daily@00:00")]
    schedule: String,
    /// IANA time zone of the schedule.
    #[arg(long, env = "DRIFTLINE_JOB_TIMEZONE", default_value = "UTC")]
    timezone: String,
    #[command(flatten)]
    references: ReferencesArgs,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Args)]
pub(crate) struct BackfillArgs {
    /// The job.
    name: String,
    /// First window end to compute: ms since the epoch or RFC 3339.
    #[arg(long, env = "DRIFTLINE_BACKFILL_FROM")]
    from: String,
    /// Last window end to compute.
    #[arg(long, env = "DRIFTLINE_BACKFILL_TO")]
    to: String,
    /// Directory for the report files of the last run.
    #[arg(long, env = "DRIFTLINE_REPORTS_DIR", default_value = "./driftline-reports")]
    output_dir: PathBuf,
    #[command(flatten)]
    references: ReferencesArgs,
    #[command(flatten)]
    store: StoreArgs,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
    Html,
    /// One row per chunk, column and statistic (chunked comparisons).
    Csv,
}

#[derive(Debug, Args)]
pub(crate) struct CompareArgs {
    /// The reference file (CSV with a header row, or Parquet).
    #[arg(long, env = "DRIFTLINE_DRIFT_REFERENCE")]
    reference: PathBuf,
    /// The current file, with the same column names.
    #[arg(long, env = "DRIFTLINE_DRIFT_CURRENT")]
    current: PathBuf,
    /// Columns to compare (comma-separated); all columns the files share by default.
    #[arg(long, env = "DRIFTLINE_DRIFT_COLUMNS", value_delimiter = ',')]
    columns: Vec<String>,
    /// Columns to leave out (comma-separated): ids, timestamps, anything that differs by
    /// construction.
    #[arg(long, env = "DRIFTLINE_DRIFT_EXCLUDE", value_delimiter = ',')]
    exclude: Vec<String>,
    /// The test: auto (chosen per column by type, cardinality and size), psi, ks, chi2, js or
    /// wasserstein.
    #[arg(long, env = "DRIFTLINE_DRIFT_METHOD", default_value = "auto")]
    method: Method,
    /// Drift threshold; the method's default when not given (p < 0.05 for ks and chi2,
    /// ≥ 0.1 for psi, js and the normalised Wasserstein distance).
    #[arg(long, env = "DRIFTLINE_DRIFT_THRESHOLD")]
    threshold: Option<f64>,
    /// Reference-quantile bins for PSI, JS on numbers and the histograms.
    #[arg(long, env = "DRIFTLINE_DRIFT_BINS", default_value_t = 10)]
    bins: usize,
    /// Share of drifted columns from which the dataset counts as drifted.
    #[arg(long, env = "DRIFTLINE_DRIFT_SHARE", default_value_t = 0.5)]
    drift_share: f64,
    /// Categories of a categorical column kept by name; the others are compared as one,
    /// "other".
    #[arg(long, env = "DRIFTLINE_DRIFT_MAX_CATEGORIES", default_value_t = DEFAULT_KEEP)]
    max_categories: usize,
    /// Continuity correction of the chi-square test: none, or yates (applied with two
    /// categories, as SciPy's chi2_contingency does by default and NannyML's chi-square is
    /// defined).
    #[arg(long, env = "DRIFTLINE_DRIFT_CHI2_CORRECTION", default_value = "none")]
    chi2_correction: Chi2Correction,
    #[arg(long, value_enum, env = "DRIFTLINE_DRIFT_FORMAT", default_value = "table")]
    format: Format,
    /// Write to this file instead of standard output.
    #[arg(long, env = "DRIFTLINE_DRIFT_OUTPUT")]
    output: Option<PathBuf>,
    /// Exit with status 3 when any column drifts (with chunks: when any analysis chunk
    /// alerts), after writing the result, so a pipeline step fails on drift.
    #[arg(long, env = "DRIFTLINE_DRIFT_FAIL_ON_DRIFT")]
    fail_on_drift: bool,
    #[command(flatten)]
    chunks: ChunkArgs,
    /// The statistics per chunk (comma-separated): kolmogorov_smirnov (ks), jensen_shannon
    /// (js), wasserstein, hellinger, l_infinity, chi2, and the data-quality measures
    /// missing_values and unseen_values; each column gets those for its type.
    #[arg(
        long,
        env = "DRIFTLINE_DRIFT_CHUNK_METHODS",
        value_delimiter = ',',
        default_value = DEFAULT_CHUNK_METHODS
    )]
    chunk_methods: Vec<ChunkMethod>,
    /// With chunks: the upper threshold is the mean of the reference chunks' values plus this
    /// many of their standard deviations (unless --threshold gives a constant).
    #[arg(long, env = "DRIFTLINE_DRIFT_THRESHOLD_SD", default_value_t = 3.0)]
    threshold_sd: f64,
}

/// How rows are cut into chunks.
#[derive(Debug, Args)]
pub(crate) struct ChunkArgs {
    /// Chunks of this many consecutive rows (in time order with --timestamp-column), each
    /// against the whole reference, with thresholds from the reference's own chunks.
    #[arg(long, env = "DRIFTLINE_DRIFT_CHUNK_SIZE", group = "chunks")]
    chunk_size: Option<usize>,
    /// This many chunks of equal size (a remainder makes one more, smaller, chunk).
    #[arg(long, env = "DRIFTLINE_DRIFT_CHUNK_NUMBER", group = "chunks")]
    chunk_number: Option<usize>,
    /// One chunk per calendar period (UTC): 1h, 1d, 1w (Monday to Sunday) or 1mo; needs
    /// --timestamp-column.
    #[arg(long, env = "DRIFTLINE_DRIFT_CHUNK_PERIOD", group = "chunks")]
    chunk_period: Option<Period>,
    /// The column of times that orders the rows for chunks (date-times, or milliseconds since
    /// the epoch); it is not compared.
    #[arg(long, env = "DRIFTLINE_DRIFT_TIMESTAMP_COLUMN")]
    timestamp_column: Option<String>,
}

impl ChunkArgs {
    /// The chunking asked for, if any.
    fn chunking(&self) -> Option<Chunking> {
        chunking(self.chunk_size, self.chunk_number, self.chunk_period)
    }
}

/// `--class-scores` pairs `CLASS=WHAT` (`what` names the right side in the error, `example`
/// shows one), in order, empty ones skipped.
fn class_pairs(pairs: &[String], what: &str, example: &str) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((class, right)) if !class.trim().is_empty() && !right.trim().is_empty() => {
                Ok((class.trim().to_string(), right.trim().to_string()))
            }
            _ => Err(anyhow::anyhow!("--class-scores: `{pair}` is not CLASS={what}, e.g. cat={example}")),
        })
        .collect()
}

/// The chunking of one of `--chunk-size`, `--chunk-number` and `--chunk-period` (clap lets one
/// through at most).
fn chunking(size: Option<usize>, number: Option<usize>, period: Option<Period>) -> Option<Chunking> {
    match (size, number, period) {
        (Some(n), ..) => Some(Chunking::Size(n)),
        (_, Some(n), _) => Some(Chunking::Number(n)),
        (.., Some(p)) => Some(Chunking::Period(p)),
        _ => None,
    }
}

/// A chunking error in the flags' words.
fn chunk_flags(e: Error) -> anyhow::Error {
    match e {
        Error::Invalid { field, message } if field == "chunk_period" => {
            anyhow::anyhow!("--chunk-period: {message} with --timestamp-column")
        }
        Error::Invalid { field, message } if field == "chunk_number" => anyhow::anyhow!("--chunk-number: {message}"),
        Error::Invalid { field, message } if field == "chunk_size" => anyhow::anyhow!("--chunk-size: {message}"),
        other => flag_names(other),
    }
}

#[derive(Debug, Args)]
pub(crate) struct EstimateArgs {
    /// The reference file (CSV with a header row, or Parquet): scores, predicted classes and
    /// labels of a period whose performance is known.
    #[arg(long, env = "DRIFTLINE_DRIFT_REFERENCE")]
    reference: PathBuf,
    /// The analysis file: scores and predicted classes; labels where known (the column may be
    /// missing or partly empty).
    #[arg(long, visible_alias = "current", env = "DRIFTLINE_DRIFT_ANALYSIS")]
    analysis: PathBuf,
    /// The column of scores: probabilities of class 1.
    #[arg(long, visible_alias = "score-column", env = "DRIFTLINE_DRIFT_SCORE")]
    score: String,
    /// The column of predicted classes (0/1 or true/false); without it a score at or above
    /// --decision-threshold predicts class 1.
    #[arg(long, visible_alias = "prediction-column", env = "DRIFTLINE_DRIFT_PREDICTION")]
    prediction: Option<String>,
    /// The column of ground truth.
    #[arg(long, visible_alias = "label-column", env = "DRIFTLINE_DRIFT_LABEL")]
    label: String,
    /// Without --prediction: a score at or above it predicts class 1.
    #[arg(long, env = "DRIFTLINE_DRIFT_DECISION_THRESHOLD", default_value_t = 0.5)]
    decision_threshold: f64,
    #[command(flatten)]
    chunks: ChunkArgs,
    #[command(flatten)]
    per_chunk: PerChunkArgs,
    /// Calibrate the scores on the reference with isotonic regression: auto (when that lowers
    /// the calibration error out of sample), always or never.
    #[arg(long, env = "DRIFTLINE_DRIFT_CALIBRATION", default_value = "auto")]
    calibration: Calibrate,
    /// A constant threshold instead of --threshold-sd: a chunk alerts when its estimate is
    /// below it.
    #[arg(long, env = "DRIFTLINE_DRIFT_ALERT_BELOW")]
    alert_below: Option<f64>,
    /// table, json, csv (one line per chunk and metric) or html (each metric over the chunks
    /// with its band, realised values and thresholds).
    #[arg(long, value_enum, env = "DRIFTLINE_DRIFT_FORMAT", default_value = "table")]
    format: Format,
    /// Write to this file instead of standard output.
    #[arg(long, env = "DRIFTLINE_DRIFT_OUTPUT")]
    output: Option<PathBuf>,
}

/// The metrics per chunk, their thresholds and what an alert does (`drift estimate`, and
/// `drift performance` with a reference).
#[derive(Debug, Args)]
pub(crate) struct PerChunkArgs {
    /// The metrics (comma-separated). A classifier's: roc_auc, f1, precision, recall,
    /// specificity, accuracy (all by default; multiclass: macro averages, and roc_auc only with
    /// --class-scores). A regression model's: mae, mape, mse, msle, rmse, rmsle (all by default).
    #[arg(long, env = "DRIFTLINE_DRIFT_METRICS", value_delimiter = ',')]
    metrics: Vec<EstimateMetric>,
    /// Thresholds are the mean of the realised metric over the reference chunks plus and minus
    /// this many of its standard deviations, within [0, 1].
    #[arg(long, env = "DRIFTLINE_DRIFT_THRESHOLD_SD", default_value_t = 3.0)]
    threshold_sd: f64,
    /// Exit with status 3 when any analysis chunk alerts, after writing the result.
    #[arg(long, visible_alias = "fail-on-drift", env = "DRIFTLINE_DRIFT_FAIL_ON_ALERT")]
    fail_on_alert: bool,
}

impl PerChunkArgs {
    /// The metrics asked for, or the task's own: every one of them, but a multiclass model's
    /// ROC AUC without the classes' scores.
    fn metrics_for(&self, task: Task, class_scores: bool) -> Vec<EstimateMetric> {
        if !self.metrics.is_empty() {
            return self.metrics.clone();
        }
        match task {
            Task::Binary => EstimateMetric::CLASSIFICATION.to_vec(),
            Task::Multiclass => EstimateMetric::CLASSIFICATION
                .into_iter()
                .filter(|m| *m != EstimateMetric::RocAuc || class_scores)
                .collect(),
            Task::Regression => EstimateMetric::REGRESSION.to_vec(),
        }
    }

    fn checked_threshold_sd(&self) -> anyhow::Result<f64> {
        anyhow::ensure!(
            self.threshold_sd.is_finite() && self.threshold_sd >= 0.0,
            "--threshold-sd must be a non-negative number (got {})",
            self.threshold_sd
        );
        Ok(self.threshold_sd)
    }
}

#[derive(Debug, Args)]
pub(crate) struct PerformanceArgs {
    /// The file of predictions and labels (CSV with a header row, or Parquet).
    #[arg(long, env = "DRIFTLINE_DRIFT_INPUT")]
    input: PathBuf,
    /// The column of scores: probabilities of class 1 (binary), class names (multiclass) or
    /// predicted values (regression).
    #[arg(long, visible_alias = "score-column", env = "DRIFTLINE_DRIFT_SCORE")]
    score: String,
    /// The column of predicted classes of a binary model (0/1 or true/false): accuracy,
    /// precision, recall and F1 count these instead of scores at or above --threshold.
    #[arg(long, visible_alias = "prediction-column", env = "DRIFTLINE_DRIFT_PREDICTION")]
    prediction: Option<String>,
    /// The column of ground truth.
    #[arg(long, visible_alias = "label-column", env = "DRIFTLINE_DRIFT_LABEL")]
    label: String,
    /// binary, multiclass or regression.
    #[arg(long, env = "DRIFTLINE_DRIFT_TASK", default_value = "binary")]
    task: Task,
    /// Multiclass: each class's column of scores (probabilities), as CLASS=COLUMN pairs
    /// (comma-separated), for one-vs-rest ROC AUC per class, macro and weighted.
    #[arg(long, env = "DRIFTLINE_DRIFT_CLASS_SCORES", value_delimiter = ',')]
    class_scores: Vec<String>,
    /// A binary score at or above it predicts class 1.
    #[arg(long, env = "DRIFTLINE_DRIFT_THRESHOLD", default_value_t = 0.5)]
    threshold: f64,
    /// table, json or html (metrics, confusion matrix and ROC curve on one page); with chunks
    /// also csv.
    #[arg(long, value_enum, env = "DRIFTLINE_DRIFT_FORMAT", default_value = "table")]
    format: Format,
    /// Write to this file instead of standard output.
    #[arg(long, env = "DRIFTLINE_DRIFT_OUTPUT")]
    output: Option<PathBuf>,
    /// Performance per chunk: the reference file (predictions and labels, as the input has them)
    /// whose chunks set each metric's thresholds; ten chunks unless a chunking is given.
    #[arg(long, env = "DRIFTLINE_DRIFT_REFERENCE")]
    reference: Option<PathBuf>,
    #[command(flatten)]
    chunks: ChunkArgs,
    #[command(flatten)]
    per_chunk: PerChunkArgs,
}

pub(crate) async fn run(command: DriftCommand) -> anyhow::Result<()> {
    match command {
        DriftCommand::Compare(args) => tokio::task::spawn_blocking(move || compare(args)).await?,
        DriftCommand::Performance(args) => tokio::task::spawn_blocking(move || performance(args)).await?,
        DriftCommand::Estimate(args) => tokio::task::spawn_blocking(move || estimate(*args)).await?,
        DriftCommand::Job { command } => job(command).await,
        DriftCommand::Backfill(args) => backfill(args).await,
    }
}

impl CreateJobArgs {
    fn spec(&self) -> anyhow::Result<JobSpec> {
        let alert = match self.alert.as_deref() {
            None => None,
            Some(text) => {
                let (metric, below, above) = if let Some((m, v)) = text.split_once('<') {
                    (m, Some(v), None)
                } else if let Some((m, v)) = text.split_once('>') {
                    (m, None, Some(v))
                } else {
                    anyhow::bail!("--alert `{text}` is not METRIC<VALUE or METRIC>VALUE, e.g. roc_auc<0.75");
                };
                let number = |v: Option<&str>| -> anyhow::Result<Option<f64>> {
                    v.map(|v| {
                        v.trim().parse::<f64>().with_context(|| format!("--alert `{text}`: `{v}` is not a number"))
                    })
                    .transpose()
                };
                Some(Alert { metric: metric.trim().to_string(), below: number(below)?, above: number(above)? })
            }
        };
        let spec = JobSpec {
            name: self.name.clone(),
            deployment: self.deployment.clone(),
            window: self.window.parse().map_err(|e: String| anyhow::anyhow!("--window: {e}"))?,
            reference: Reference::parse(&self.reference)?,
            features: self.features.iter().map(|f| f.trim().to_string()).filter(|f| !f.is_empty()).collect(),
            score: self.score.clone(),
            label: self.label.clone(),
            task: self.task,
            class_scores: class_pairs(&self.class_scores, "PATH", "scores.cat")?.into_iter().collect(),
            method: self.method,
            threshold: self.threshold,
            drift_share: self.drift_share,
            bins: self.bins,
            max_categories: self.max_categories,
            chi2_correction: self.chi2_correction,
            alert,
            estimate: self.estimate.then(|| EstimateSpec {
                prediction: self.estimate_prediction.clone(),
                calibration: self.calibration,
                ..EstimateSpec::default()
            }),
            chunks: self.chunks.then(|| ChunksSpec {
                methods: self.chunk_methods.clone(),
                threshold: match self.chunk_threshold {
                    Some(c) => ChunkThreshold::Constant(c),
                    None => ChunkThreshold::StandardDeviations(self.chunk_threshold_sd),
                },
                split: chunking(self.chunk_size, self.chunk_number, self.chunk_period),
            }),
            schedule: ScheduleSpec { expression: self.schedule.clone(), timezone: self.timezone.clone() },
        };
        spec.validate().map_err(flag_names)?;
        let references = self.references.files(&self.store);
        spec.check_reference(&references).map_err(|e| in_references(e, &references))?;
        Ok(spec)
    }
}

/// A library error with the command-line flags of the fields it names.
fn flag_names(e: Error) -> anyhow::Error {
    match e {
        Error::Invalid { field, message } => {
            let flag = match field.as_str() {
                "bins" => "--bins",
                "drift_share" => "--drift-share",
                "threshold" => "--threshold",
                "max_categories" => "--max-categories",
                "columns" => "--columns",
                "exclude" => "--exclude",
                "prediction" => "--prediction",
                "label" => "--label",
                "metrics" => "--metrics",
                "class_scores" => "--class-scores",
                "features" => "--features",
                "from" => "--from",
                "period" => "--from/--to",
                "alert" | "alert.metric" => "--alert",
                "estimate" => "--estimate",
                "estimate.prediction" => "--estimate-prediction",
                "chunks.methods" => "--chunk-methods",
                "chunks.threshold" => "--chunk-threshold-sd or --chunk-threshold",
                "chunks.split.size" => "--chunk-size",
                "chunks.split.number" => "--chunk-number",
                "chunks.split.period" => "--chunk-period",
                _ => return anyhow::anyhow!("{field}: {message}"),
            };
            anyhow::anyhow!("{flag}: {message}")
        }
        other => other.into(),
    }
}

/// A refused reference file, with the directory it must be in.
fn in_references(e: Error, references: &ReferenceFiles) -> anyhow::Error {
    match e {
        Error::Reference { .. } => anyhow::anyhow!(
            "{e} (the references directory is {}; choose another with --references-dir)",
            references.dir().display()
        ),
        other => other.into(),
    }
}

async fn job(command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::Create(args) => {
            let spec = args.spec()?;
            let store = args.store.open().await?;
            let now = now_ms();
            let created = store.create_job(&spec.stored(now)).await?;
            store.close().await;
            anyhow::ensure!(
                created,
                "a drift job named `{}` exists; delete it first or choose another name",
                spec.name
            );
            let next = Schedule::parse(&spec.schedule)?.next_after(now);
            println!(
                "created drift job `{}` on {} ({} window, {}); next run {}",
                spec.name,
                spec.deployment,
                spec.window,
                spec.schedule.expression,
                next.map(time).unwrap_or_else(|| "never".into())
            );
            Ok(())
        }
        JobCommand::List { store } => {
            let store = store.open().await?;
            let jobs = store.jobs().await?;
            let mut rows =
                vec![["name".to_string(), "deployment".into(), "window".into(), "schedule".into(), "last run".into()]];
            for job in &jobs {
                let spec = JobSpec::from_stored(job)?;
                let last = store.runs(&job.name, 1).await?;
                let last = last
                    .first()
                    .map(|r| format!("{} {}", time(r.scheduled_ms), r.status.as_str()))
                    .unwrap_or_else(|| "—".into());
                rows.push([
                    job.name.clone(),
                    spec.deployment,
                    spec.window.to_string(),
                    format!("{} ({})", spec.schedule.expression, spec.schedule.timezone),
                    last,
                ]);
            }
            store.close().await;
            if jobs.is_empty() {
                println!("no drift jobs; create one with `driftline drift job create`");
            } else {
                print!("{}", text::text_table(&rows));
            }
            Ok(())
        }
        JobCommand::Show { name, runs, store } => {
            let store = store.open().await?;
            let spec = find_job(store.as_ref(), &name).await?;
            let history = store.runs(&name, runs).await?;
            store.close().await;
            println!("{}", serde_json::to_string_pretty(&spec)?);
            let mut rows = vec![["run".to_string(), "window".into(), "status".into(), "summary".into()]];
            for r in &history {
                rows.push([
                    r.id.to_string(),
                    format!("{} .. {}", time(r.window_start_ms), time(r.window_end_ms)),
                    r.status.as_str().into(),
                    r.summary.clone().unwrap_or_default().chars().take(100).collect(),
                ]);
            }
            println!();
            print!("{}", text::text_table(&rows));
            Ok(())
        }
        JobCommand::Estimates { name, runs, format, output, store } => {
            anyhow::ensure!(format != Format::Csv, "--format csv is not offered here; use table, json or html");
            let store = store.open().await?;
            let spec = find_job(store.as_ref(), &name).await?;
            let checks = estimates::check(store.as_ref(), &spec, runs).await.map_err(flag_names);
            store.close().await;
            let checks = checks?;
            let text = match format {
                Format::Json => serde_json::to_string_pretty(&checks)? + "\n",
                Format::Html => estimates::page(&name, &checks),
                Format::Table | Format::Csv => estimates::table(&checks),
            };
            emit(&text, output.as_ref())
        }
        JobCommand::Delete { name, store } => {
            let store = store.open().await?;
            let deleted = store.delete_job(&name).await?;
            store.close().await;
            anyhow::ensure!(deleted, "no drift job `{name}`; `driftline drift job list` lists them");
            println!("deleted drift job `{name}` and its runs");
            Ok(())
        }
        JobCommand::Run { name, at, output_dir, references, store: store_args } => {
            let at = match at.as_deref() {
                Some(t) => parse_time(t, "--at")?,
                None => now_ms(),
            };
            let references = references.files(&store_args);
            let store = store_args.open().await?;
            let spec = find_job(store.as_ref(), &name).await?;
            let finished = run_job(store.as_ref(), &references, &spec, at).await?;
            let written = write_reports(store.as_ref(), &finished.run, &output_dir).await?;
            store.close().await;
            print_run(&finished);
            if let Some((json, html)) = written {
                println!("  report  {}\n          {}", html.display(), json.display());
            }
            Ok(())
        }
    }
}

async fn backfill(args: BackfillArgs) -> anyhow::Result<()> {
    let from = parse_time(&args.from, "--from")?;
    let to = parse_time(&args.to, "--to")?;
    anyhow::ensure!(from <= to, "--from ({}) is after --to ({}); give the period's start first", args.from, args.to);
    let references = args.references.files(&args.store);
    let store = args.store.open().await?;
    let spec = find_job(store.as_ref(), &args.name).await?;
    let runs = scheduler::backfill(store.as_ref(), &references, &spec, from, to, |done, total, finished| {
        let width = 30;
        let filled = done * width / total.max(1);
        eprint!(
            "\r[{}{}] {done}/{total} {} {}   ",
            "#".repeat(filled),
            " ".repeat(width - filled),
            time(finished.run.scheduled_ms),
            finished.run.status.as_str()
        );
    })
    .await
    .map_err(flag_names)?;
    eprintln!();
    let mut last = None;
    for finished in &runs {
        print_run(finished);
        last = Some(&finished.run);
    }
    if let Some(run) = last {
        if let Some((json, html)) = write_reports(store.as_ref(), run, &args.output_dir).await? {
            println!("  last report  {}\n               {}", html.display(), json.display());
        }
    } else {
        println!("no scheduled time of `{}` falls in {} .. {}", spec.name, time(from), time(to));
    }
    store.close().await;
    Ok(())
}

/// The settings of the job named `name`.
async fn find_job(store: &dyn Store, name: &str) -> anyhow::Result<JobSpec> {
    JobSpec::find(store, name).await.map_err(|e| match e {
        Error::NoJob { .. } => anyhow::anyhow!("{e}; `driftline drift job list` lists them"),
        other => other.into(),
    })
}

fn print_run(finished: &Finished) {
    let r = &finished.run;
    let detail = match &finished.report {
        Some(report) => format!(
            "{} rows, {} labelled, {} of {} features drifted{}{}",
            report.rows,
            report.labelled,
            report.drift.drifted_columns,
            report.drift.columns.len(),
            report
                .aggregate
                .get("performance")
                .and_then(|p| p.as_object())
                .and_then(|p| p.iter().find(|(_, v)| v.is_number()))
                .map(|(k, v)| format!(", {k} {:.4}", v.as_f64().unwrap_or_default()))
                .unwrap_or_default(),
            if report.from_rollups.is_empty() {
                String::new()
            } else {
                let reads: Vec<String> = report
                    .from_rollups
                    .iter()
                    .map(|r| format!("{} from {} rollups", r.window, r.resolutions))
                    .collect();
                format!(" (approximate: raw rows gone, {})", reads.join(", "))
            }
        ),
        None => r.summary.clone().unwrap_or_default(),
    };
    println!(
        "run {:>4}  {} .. {}  {:<8} {detail}",
        r.id,
        time(r.window_start_ms),
        time(r.window_end_ms),
        r.status.as_str()
    );
}

fn compare(args: CompareArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.bins >= 2, "--bins must be at least 2 (got {})", args.bins);
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.drift_share),
        "--drift-share must be between 0 and 1 (got {})",
        args.drift_share
    );
    if let Some(t) = args.threshold {
        anyhow::ensure!(t.is_finite() && t >= 0.0, "--threshold must be a non-negative number (got {t})");
    }
    let names = |list: &[String]| -> Vec<String> {
        list.iter().map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect()
    };
    let (columns, exclude) = (names(&args.columns), names(&args.exclude));
    if let Some(chunking) = args.chunks.chunking() {
        return compare_chunks(&args, chunking, &columns, &exclude);
    }
    anyhow::ensure!(
        args.chunks.timestamp_column.is_none(),
        "--timestamp-column orders rows for chunks; add --chunk-size, --chunk-number or --chunk-period"
    );
    anyhow::ensure!(args.format != Format::Csv, "--format csv is for chunked comparisons; use table, json or html");
    let options = Options {
        method: args.method,
        threshold: args.threshold,
        bins: args.bins,
        drift_share: args.drift_share,
        max_categories: args.max_categories,
        chi2_correction: args.chi2_correction,
    };
    let result =
        files::compare_files(&args.reference, &args.current, &columns, &exclude, &options).map_err(|e| match e {
            Error::Column { .. } if args.method != Method::Auto => anyhow::anyhow!("{e} (choose it with --method)"),
            other => flag_names(other),
        })?;
    for column in &result.unique_columns {
        eprintln!(
            "note: `{column}` holds a different value in every row of both files (an id or a timestamp?); it drifts \
             by construction: leave it out with --exclude {column}"
        );
    }
    let text = match args.format {
        Format::Table | Format::Csv => text::comparison_table(&result.comparison),
        Format::Json => serde_json::to_string_pretty(&result)? + "\n",
        Format::Html => html::comparison_page(
            &result.comparison,
            "driftline drift report",
            &format!(
                "reference {} ({} rows) · current {} ({} rows) · method {}",
                result.reference.path,
                result.reference.rows,
                result.current.path,
                result.current.rows,
                result.comparison.method
            ),
        ),
    };
    emit(&text, args.output.as_ref())?;
    if args.fail_on_drift && result.comparison.drifted_columns > 0 {
        let (drifted, of) = (result.comparison.drifted_columns, result.comparison.columns.len());
        return Err(DriftFound { drifted, of, what: "columns drifted" }.into());
    }
    Ok(())
}

/// `drift compare` in chunks.
fn compare_chunks(
    args: &CompareArgs,
    chunking: Chunking,
    columns: &[String],
    exclude: &[String],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.threshold_sd.is_finite() && args.threshold_sd >= 0.0,
        "--threshold-sd must be a non-negative number (got {})",
        args.threshold_sd
    );
    let request = ChunkRequest {
        chunking,
        timestamp_column: args.chunks.timestamp_column.clone(),
        methods: args.chunk_methods.clone(),
        threshold: match args.threshold {
            Some(t) => ChunkThreshold::Constant(t),
            None => ChunkThreshold::StandardDeviations(args.threshold_sd),
        },
    };
    let result = files::chunked_compare_files(&args.reference, &args.current, columns, exclude, &request).map_err(
        |e| match e {
            Error::Column { .. } => anyhow::anyhow!("{e} (choose the statistics with --chunk-methods)"),
            other => chunk_flags(other),
        },
    )?;
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&result)? + "\n",
        Format::Table => text::chunks_table(&result.drift),
        Format::Csv => text::chunks_csv(&result.drift),
        Format::Html => html::chunks_page(
            &result.drift,
            "driftline drift report, by chunk",
            &format!(
                "reference {} ({} rows) · analysis {} ({} rows)",
                result.reference.path, result.reference.rows, result.current.path, result.current.rows
            ),
        ),
    };
    emit(&text, args.output.as_ref())?;
    if args.fail_on_drift && result.drift.alerting_chunks > 0 {
        let analysis = result.drift.chunks.iter().filter(|c| !c.chunk.is_reference()).count();
        let drifted = result.drift.alerting_chunks;
        return Err(DriftFound { drifted, of: analysis, what: "analysis chunks alerted" }.into());
    }
    Ok(())
}

/// Drift found with `--fail-on-drift`: the process exits with [`DriftFound::EXIT_CODE`].
#[derive(Debug)]
pub(crate) struct DriftFound {
    drifted: usize,
    of: usize,
    what: &'static str,
}

impl DriftFound {
    /// The exit status of a run that found drift with `--fail-on-drift`.
    pub(crate) const EXIT_CODE: u8 = 3;
}

impl std::fmt::Display for DriftFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {} {} (--fail-on-drift)", self.drifted, self.of, self.what)
    }
}

impl std::error::Error for DriftFound {}

fn performance(args: PerformanceArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.threshold.is_finite(), "--threshold must be a number (got {})", args.threshold);
    if args.reference.is_some() || args.chunks.chunking().is_some() {
        return chunked_performance(&args);
    }
    anyhow::ensure!(args.format != Format::Csv, "--format csv is for chunked comparisons; use table, json or html");
    anyhow::ensure!(
        args.chunks.timestamp_column.is_none(),
        "--timestamp-column orders rows for chunks; add --reference and --chunk-size, --chunk-number or --chunk-period"
    );
    let class_scores = class_pairs(&args.class_scores, "COLUMN", "p_cat")?;
    let request = PerformanceRequest {
        class_scores,
        score: args.score.clone(),
        prediction: args.prediction.clone(),
        label: args.label.clone(),
        task: args.task,
        threshold: args.threshold,
        roc_curve: args.format == Format::Html,
    };
    let result = files::performance_of_file(&args.input, &request).map_err(|e| match e {
        Error::Column { .. } => anyhow::anyhow!("{e} (choose the task with --task)"),
        other => flag_names(other),
    })?;
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&result)? + "\n",
        Format::Html => html::performance_page(&result, "driftline performance report"),
        Format::Table | Format::Csv => {
            let mut t = text::performance_heading(&result) + "\n\n";
            t.push_str(&match &result.metrics {
                Metrics::Binary(b) => text::binary_table(b),
                Metrics::Multiclass(m) => text::multiclass_table(m),
                Metrics::Regression(r) => text::regression_table(r),
            });
            t
        }
    };
    emit(&text, args.output.as_ref())
}

/// `drift performance` per chunk: realised performance of each chunk of the input against
/// thresholds from the reference's chunks.
fn chunked_performance(args: &PerformanceArgs) -> anyhow::Result<()> {
    let reference = args.reference.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "--reference: performance per chunk sets its thresholds from a reference's chunks; name the reference file"
        )
    })?;
    let threshold_sd = args.per_chunk.checked_threshold_sd()?;
    let chunking = args.chunks.chunking().unwrap_or(Chunking::Number(10));
    let threshold = ChunkThreshold::StandardDeviations(threshold_sd);
    // The binary task scores its chunks as an estimate does, from the labels; the others
    // through their own realised metrics, the score column holding the predictions.
    let (result, scored) = if args.task == Task::Binary {
        let request = EstimateRequest {
            chunking,
            timestamp_column: args.chunks.timestamp_column.clone(),
            score: args.score.clone(),
            prediction: args.prediction.clone(),
            decision_threshold: args.threshold,
            label: args.label.clone(),
            options: EstimateOptions {
                metrics: args.per_chunk.metrics_for(Task::Binary, false),
                calibrate: Calibrate::Never,
                threshold,
                basis: Basis::Realized,
            },
        };
        (files::estimate_files(reference, &args.input, &request).map_err(chunk_flags)?, "score")
    } else {
        anyhow::ensure!(
            args.prediction.is_none(),
            "--prediction is for the binary task; with the {} task the --score column holds the predictions",
            args.task.name()
        );
        let request = RealizedRequest {
            task: args.task,
            chunking,
            timestamp_column: args.chunks.timestamp_column.clone(),
            prediction: args.score.clone(),
            label: args.label.clone(),
            class_scores: class_pairs(&args.class_scores, "COLUMN", "p_cat")?,
            metrics: args.per_chunk.metrics_for(args.task, !args.class_scores.is_empty()),
            threshold,
        };
        (files::realized_files(reference, &args.input, &request).map_err(chunk_flags)?, "prediction")
    };
    let subtitle = format!(
        "{} model · reference {} ({} rows) · input {} ({} rows) · {scored} {} · label {}",
        args.task.name(),
        result.reference.path,
        result.reference.rows,
        result.current.path,
        result.current.rows,
        result.score,
        result.label
    );
    chunked_output(&result, args.format, args.output.as_ref(), "driftline performance, by chunk", &subtitle)?;
    fail_on_alerts(args.per_chunk.fail_on_alert, &result.estimate)
}

/// Writes performance per chunk (estimated or realised) in the format asked for.
fn chunked_output(
    result: &files::FileEstimate,
    format: Format,
    output: Option<&PathBuf>,
    title: &str,
    subtitle: &str,
) -> anyhow::Result<()> {
    let text = match format {
        Format::Json => serde_json::to_string_pretty(result)? + "\n",
        Format::Table => text::estimate_table(&result.estimate),
        Format::Csv => text::estimate_csv(&result.estimate),
        Format::Html => html::estimate_page(&result.estimate, title, subtitle),
    };
    emit(&text, output)
}

/// With `--fail-on-alert`: the error that exits with status 3 when an analysis chunk alerted.
fn fail_on_alerts(asked: bool, e: &Estimate) -> anyhow::Result<()> {
    if asked && e.alerting_chunks > 0 {
        let analysis = e.chunks.iter().filter(|c| !c.chunk.is_reference()).count();
        return Err(DriftFound { drifted: e.alerting_chunks, of: analysis, what: "analysis chunks alerted" }.into());
    }
    Ok(())
}

fn estimate(args: EstimateArgs) -> anyhow::Result<()> {
    let threshold_sd = args.per_chunk.checked_threshold_sd()?;
    if let Some(t) = args.alert_below {
        anyhow::ensure!((0.0..=1.0).contains(&t), "--alert-below must be between 0 and 1 (got {t})");
    }
    anyhow::ensure!(
        args.decision_threshold.is_finite(),
        "--decision-threshold must be a number (got {})",
        args.decision_threshold
    );
    let request = EstimateRequest {
        // NannyML's default: ten chunks.
        chunking: args.chunks.chunking().unwrap_or(Chunking::Number(10)),
        timestamp_column: args.chunks.timestamp_column.clone(),
        score: args.score.clone(),
        prediction: args.prediction.clone(),
        decision_threshold: args.decision_threshold,
        label: args.label.clone(),
        options: EstimateOptions {
            metrics: args.per_chunk.metrics_for(Task::Binary, false),
            calibrate: args.calibration,
            threshold: match args.alert_below {
                Some(t) => ChunkThreshold::Constant(t),
                None => ChunkThreshold::StandardDeviations(threshold_sd),
            },
            basis: Basis::Estimated,
        },
    };
    let result = files::estimate_files(&args.reference, &args.analysis, &request).map_err(chunk_flags)?;
    let subtitle = format!(
        "reference {} ({} rows) · analysis {} ({} rows) · score {}",
        result.reference.path, result.reference.rows, result.current.path, result.current.rows, result.score
    );
    chunked_output(&result, args.format, args.output.as_ref(), "driftline performance estimate, by chunk", &subtitle)?;
    fail_on_alerts(args.per_chunk.fail_on_alert, &result.estimate)
}

fn emit(text: &str, output: Option<&PathBuf>) -> anyhow::Result<()> {
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write --output {}", path.display()))?;
            eprintln!("wrote {}", path.display());
            Ok(())
        }
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            Ok(())
        }
    }
}
