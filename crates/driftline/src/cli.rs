//! The command line: every command's flags, each with its `DRIFTLINE_…` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};
use driftline_core::Limits;
use driftline_ingest::{KafkaConfig, OffsetReset, Partitions};
use driftline_store::{Scope, Store, StoreConfig, StoreOptions};

/// Event-sourced metrics store and drift engine for ML models in production.
#[derive(Debug, Parser)]
#[command(name = "driftline", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the HTTP API on the embedded SQLite store, or on Postgres with --database-url.
    Serve(Box<crate::serve::ServeArgs>),
    /// Consume v1 events from Kafka into the store, exactly once.
    Ingest(Box<crate::ingest::IngestArgs>),
    /// Generate a realistic prediction stream with drift and late labels, send it through the
    /// HTTP API into a fresh embedded store, and summarise what happened.
    Demo(crate::demo::DemoArgs),
    /// Drift and performance: compare files, score predictions, run drift jobs.
    Drift {
        #[command(subcommand)]
        command: crate::drift::DriftCommand,
    },
    /// Roll raw events up into 1-minute, 1-hour and 1-day summaries (the worker `serve` runs
    /// too), once with --once or until interrupted.
    Rollup(Box<crate::rollup::RollupCommandArgs>),
    /// Rebuild the rollups and the invalidation log from the events still stored.
    Replay(Box<crate::rollup::ReplayArgs>),
    /// One metric of one deployment over time, one row per bucket, from rollups and raw rows.
    Series(Box<crate::rollup::SeriesArgs>),
    /// SQL over the store's tables (predictions, labelled_predictions, rollups_1h, …): one
    /// statement, or an interactive prompt without one.
    Sql(Box<crate::sql::SqlArgs>),
    /// Create, list and revoke API keys.
    Keys {
        #[command(subcommand)]
        command: crate::keys::KeysCommand,
    },
    /// The model inventory: register models with their metadata, list and show them.
    Models {
        #[command(subcommand)]
        command: crate::models::ModelsCommand,
    },
    /// The governance log: check that its hash chains are whole; on a primary, see how far
    /// behind each remote cluster is.
    Governance {
        #[command(subcommand)]
        command: crate::models::GovernanceCommand,
    },
    /// Forward this cluster's evaluation, deployment and deletion activity (with the models it
    /// concerns) to a primary driftline, exactly once, resuming where it stopped.
    Sync(Box<crate::sync::SyncArgs>),
    /// Import an MLflow model registry into the governance log, once or on a schedule, and
    /// read the activity records of past imports.
    Mlflow {
        #[command(subcommand)]
        command: crate::mlflow::MlflowCommand,
    },
}

/// Where the store lives, and its time budgets.
#[derive(Debug, Clone, Args)]
pub(crate) struct StoreArgs {
    /// Directory of the embedded SQLite store (used when --database-url is not given).
    #[arg(long, env = "DRIFTLINE_DATA_DIR", default_value = "./driftline-data")]
    pub(crate) data_dir: PathBuf,
    /// Database URL: postgres://USER@HOST/DB for production, or sqlite://PATH.
    #[arg(long, env = "DRIFTLINE_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    /// Longest one store statement may run, in milliseconds (Postgres `statement_timeout`).
    #[arg(long, env = "DRIFTLINE_STATEMENT_TIMEOUT_MS", default_value_t = StoreOptions::default().statement_timeout.as_millis() as u64)]
    statement_timeout_ms: u64,
    /// Longest a statement waits for a lock, in milliseconds (Postgres `lock_timeout`, SQLite's
    /// busy timeout).
    #[arg(long, env = "DRIFTLINE_LOCK_TIMEOUT_MS", default_value_t = StoreOptions::default().lock_timeout.as_millis() as u64)]
    lock_timeout_ms: u64,
    /// Longest one read may take from start to end, streaming included, in seconds.
    #[arg(long, env = "DRIFTLINE_READ_TIMEOUT_SECS", default_value_t = StoreOptions::default().read_timeout.as_secs())]
    read_timeout_secs: u64,
    /// Day partitions of `predictions` made ahead of today (Postgres).
    #[arg(long, env = "DRIFTLINE_PARTITION_DAYS_AHEAD", default_value_t = StoreOptions::default().partition_days_ahead)]
    partition_days_ahead: u32,
}

impl StoreArgs {
    pub(crate) fn config(&self) -> StoreConfig {
        StoreConfig {
            database_url: self.database_url.clone(),
            data_dir: self.data_dir.clone(),
            options: StoreOptions {
                statement_timeout: Duration::from_millis(self.statement_timeout_ms.max(1)),
                lock_timeout: Duration::from_millis(self.lock_timeout_ms.max(1)),
                read_timeout: Duration::from_secs(self.read_timeout_secs.max(1)),
                partition_days_ahead: self.partition_days_ahead,
            },
        }
    }

    pub(crate) async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        // The store's errors name the file or URL already.
        Ok(driftline_store::open(&self.config()).await?)
    }
}

/// Limits on events and requests.
#[derive(Debug, Clone, Args)]
pub(crate) struct LimitArgs {
    /// Largest event, in bytes.
    #[arg(long, env = "DRIFTLINE_MAX_EVENT_BYTES", default_value_t = Limits::default().max_event_bytes)]
    max_event_bytes: usize,
    /// Largest HTTP request body, in bytes (compressed or not).
    #[arg(long, env = "DRIFTLINE_MAX_REQUEST_BYTES", default_value_t = Limits::default().max_request_bytes)]
    max_request_bytes: usize,
    /// Most events in one HTTP request; a body with more is refused (413) before it is parsed.
    #[arg(long, env = "DRIFTLINE_MAX_REQUEST_EVENTS", default_value_t = Limits::default().max_request_events)]
    max_request_events: usize,
    /// Most keys in one event's metrics, counted at every level.
    #[arg(long, env = "DRIFTLINE_MAX_METRIC_KEYS", default_value_t = Limits::default().max_metric_keys)]
    max_metric_keys: usize,
    /// Deepest nesting of one event's metrics.
    #[arg(long, env = "DRIFTLINE_MAX_DEPTH", default_value_t = Limits::default().max_depth)]
    max_depth: usize,
    /// Test hook, never for production: let NUL and other control characters through
    /// validation, to exercise how the store's own refusals are handled.
    #[arg(long, env = "DRIFTLINE_TEST_ONLY_UNCHECKED_TEXT", hide = true, value_parser = BoolishValueParser::new())]
    test_only_unchecked_text: bool,
}

impl LimitArgs {
    pub(crate) fn limits(&self) -> anyhow::Result<Limits> {
        anyhow::ensure!(self.max_request_events > 0, "--max-request-events must be at least 1");
        if self.test_only_unchecked_text {
            tracing::warn!("the test hook DRIFTLINE_TEST_ONLY_UNCHECKED_TEXT is on: text is not checked for NUL");
        }
        Ok(Limits {
            max_event_bytes: self.max_event_bytes,
            max_request_bytes: self.max_request_bytes,
            max_request_events: self.max_request_events,
            max_metric_keys: self.max_metric_keys,
            max_depth: self.max_depth,
            unchecked_text_for_tests: self.test_only_unchecked_text,
            ..Limits::default()
        })
    }
}

/// Kafka intake.
#[derive(Debug, Clone, Args)]
pub(crate) struct KafkaArgs {
    /// The topic of v1 events.
    #[arg(long, env = "DRIFTLINE_KAFKA_TOPIC", default_value = driftline_ingest::consumer::defaults::TOPIC)]
    topic: String,
    /// The consumer group; consumers of one group share the topic's partitions.
    #[arg(long, env = "DRIFTLINE_KAFKA_GROUP", default_value = driftline_ingest::consumer::defaults::GROUP)]
    group: String,
    /// Most messages in one store transaction.
    #[arg(long, env = "DRIFTLINE_BATCH_SIZE", default_value_t = driftline_ingest::consumer::defaults::BATCH_SIZE)]
    batch_size: usize,
    /// Store transactions in flight at once; partitions are spread over this many writers.
    #[arg(long, env = "DRIFTLINE_WRITERS", default_value_t = driftline_ingest::consumer::defaults::WRITERS)]
    writers: usize,
    /// Longest time a message waits in a batch, in milliseconds.
    #[arg(long, env = "DRIFTLINE_LINGER_MS", default_value_t = driftline_ingest::consumer::defaults::LINGER.as_millis() as u64)]
    linger_ms: u64,
    /// Where partitions without a stored offset start: earliest or latest.
    #[arg(long, env = "DRIFTLINE_AUTO_OFFSET_RESET", default_value = "earliest", value_parser = str::parse::<OffsetReset>)]
    auto_offset_reset: OffsetReset,
    /// Read these partitions (`all`, or a list such as `0,1,2`) without a consumer group, instead
    /// of letting the group assign them (`group`, the default). Exactly once either way.
    #[arg(long, env = "DRIFTLINE_KAFKA_PARTITIONS", default_value = "group", value_parser = str::parse::<Partitions>)]
    partitions: Partitions,
    /// Extra librdkafka setting as KEY=VALUE (repeatable, or comma-separated in the env var).
    #[arg(long = "kafka-option", env = "DRIFTLINE_KAFKA_OPTIONS", value_delimiter = ',')]
    kafka_options: Vec<String>,
    /// Also forward every refused message to this topic: key and bytes as received, the reason
    /// in header `driftline-reason`, where it was read in `driftline-source`. At least once on
    /// the topic; the store's dead_letters table holds each exactly once.
    #[arg(long, env = "DRIFTLINE_DEAD_LETTER_TOPIC")]
    dead_letter_topic: Option<String>,
}

impl KafkaArgs {
    pub(crate) fn config(&self, brokers: &str, limits: Limits) -> anyhow::Result<KafkaConfig> {
        anyhow::ensure!(self.batch_size > 0, "--batch-size must be at least 1");
        anyhow::ensure!(self.writers > 0, "--writers must be at least 1");
        let mut c = KafkaConfig::new(brokers);
        c.topic = self.topic.clone();
        c.group = self.group.clone();
        c.batch_size = self.batch_size;
        c.writers = self.writers;
        c.linger = Duration::from_millis(self.linger_ms);
        c.offset_reset = self.auto_offset_reset;
        c.limits = limits;
        c.partitions = self.partitions.clone();
        c.dead_letter_topic = match self.dead_letter_topic.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(topic) if topic == c.topic => {
                anyhow::bail!("--dead-letter-topic `{topic}` is the topic being consumed; name another topic")
            }
            Some(topic) => Some(topic.to_owned()),
        };
        for option in &self.kafka_options {
            let (key, value) = option
                .split_once('=')
                .with_context(|| format!("--kafka-option `{option}` is not KEY=VALUE, e.g. fetch.min.bytes=1"))?;
            c.overrides.push((key.trim().to_owned(), value.trim().to_owned()));
        }
        Ok(c)
    }
}

/// How the HTTP server protects itself.
#[derive(Debug, Clone, Args)]
pub(crate) struct HttpArgs {
    /// Longest wait for a request's headers (and for the next request on an idle connection),
    /// in seconds; slower clients are disconnected.
    #[arg(long, env = "DRIFTLINE_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    header_timeout_secs: u64,
    /// Longest time to receive a whole request body, in seconds (408 past it).
    #[arg(long, env = "DRIFTLINE_BODY_TIMEOUT_SECS", default_value_t = 60)]
    body_timeout_secs: u64,
    /// Most requests served at once; past it, 503 with Retry-After.
    #[arg(long, env = "DRIFTLINE_MAX_CONCURRENT_REQUESTS", default_value_t = 256)]
    max_concurrent_requests: usize,
    /// Most request body bytes being received at once, server-wide; past it, 503 with
    /// Retry-After.
    #[arg(long, env = "DRIFTLINE_MAX_INFLIGHT_BODY_BYTES", default_value_t = 256 * 1024 * 1024)]
    max_inflight_body_bytes: usize,
    /// Serve GET /metrics without a key (by default it needs a read key).
    #[arg(long, env = "DRIFTLINE_PUBLIC_METRICS", value_parser = BoolishValueParser::new())]
    public_metrics: bool,
    /// How often API keys are reloaded from the store, in milliseconds: a key created or revoked
    /// by another process takes effect within this time.
    #[arg(long, env = "DRIFTLINE_KEY_REFRESH_MS", default_value_t = 2_000)]
    key_refresh_ms: u64,
}

impl HttpArgs {
    pub(crate) fn settings(&self, limits: &Limits) -> anyhow::Result<crate::server::HttpSettings> {
        anyhow::ensure!(self.max_concurrent_requests > 0, "--max-concurrent-requests must be at least 1");
        anyhow::ensure!(
            self.max_inflight_body_bytes >= limits.max_request_bytes,
            "--max-inflight-body-bytes ({}) must be at least --max-request-bytes ({})",
            self.max_inflight_body_bytes,
            limits.max_request_bytes
        );
        Ok(crate::server::HttpSettings {
            header_timeout: Duration::from_secs(self.header_timeout_secs.max(1)),
            body_timeout: Duration::from_secs(self.body_timeout_secs.max(1)),
            max_concurrent_requests: self.max_concurrent_requests,
            max_inflight_body_bytes: self.max_inflight_body_bytes,
            public_metrics: self.public_metrics,
            key_refresh: Duration::from_millis(self.key_refresh_ms.max(100)),
        })
    }
}

/// The bootstrap admin key: from a file, or from the environment, never from the command line
/// (where `ps` would show it).
#[derive(Debug, Clone, Args)]
pub(crate) struct AdminKeyArgs {
    /// A file holding the bootstrap admin key (at least 16 characters; surrounding whitespace is
    /// ignored). The key can also come from the environment variable DRIFTLINE_ADMIN_KEY, never
    /// from the command line. Without either, and with no key stored, serve creates an admin key
    /// and prints it once.
    #[arg(long, env = "DRIFTLINE_ADMIN_KEY_FILE")]
    admin_key_file: Option<PathBuf>,
}

impl AdminKeyArgs {
    /// The key, if one is configured.
    pub(crate) fn key(&self) -> anyhow::Result<Option<String>> {
        let key = match &self.admin_key_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the admin key file {}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => std::env::var("DRIFTLINE_ADMIN_KEY").ok().filter(|k| !k.is_empty()),
        };
        if let Some(key) = &key {
            anyhow::ensure!(key.len() >= 16, "the admin key must be at least 16 characters; use a long random value");
        }
        Ok(key)
    }
}

pub(crate) fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse()
}

/// Listening address of `serve`.
pub(crate) fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7878))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Kafka settings `driftline ingest` would run with for these flags.
    fn ingest_config(flags: &[&str]) -> anyhow::Result<KafkaConfig> {
        let argv = ["driftline", "ingest", "--kafka-brokers", "127.0.0.1:9092"].iter().chain(flags);
        let Command::Ingest(args) = Cli::try_parse_from(argv)?.command else { unreachable!("parsed as ingest") };
        args.kafka.config(&args.kafka_brokers, args.limits.limits()?)
    }

    #[test]
    fn dead_letter_topic_flag() {
        assert_eq!(ingest_config(&[]).unwrap().dead_letter_topic, None);
        let c = ingest_config(&["--dead-letter-topic", "driftline.dead"]).unwrap();
        assert_eq!(c.dead_letter_topic.as_deref(), Some("driftline.dead"));
        // The consumed topic itself would feed refused messages back in.
        let e = ingest_config(&["--topic", "events", "--dead-letter-topic", "events"]).unwrap_err().to_string();
        assert!(e.contains("--dead-letter-topic `events` is the topic being consumed"), "{e}");
    }

    #[test]
    fn partitions_flag() {
        assert_eq!(ingest_config(&["--partitions", "0, 2"]).unwrap().partitions, Partitions::Only(vec![0, 2]));
        assert_eq!(ingest_config(&[]).unwrap().partitions, Partitions::Group);
        let e = ingest_config(&["--partitions", "0,x"]).unwrap_err().to_string();
        assert!(e.contains("`0,x`"), "{e}");
    }

    #[test]
    fn the_admin_key_never_comes_from_the_command_line() {
        let e = Cli::try_parse_from(["driftline", "serve", "--admin-key", "0123456789abcdef"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin.key");
        std::fs::write(&file, "  0123456789abcdefXYZ\n").unwrap();
        let args = AdminKeyArgs { admin_key_file: Some(file.clone()) };
        assert_eq!(args.key().unwrap().as_deref(), Some("0123456789abcdefXYZ"));
        std::fs::write(&file, "short").unwrap();
        assert!(args.key().unwrap_err().to_string().contains("at least 16 characters"));
    }
}
