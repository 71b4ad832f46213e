//! How the consumer is configured: the one home of its defaults and of the librdkafka settings it
//! runs with.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use driftline_core::Limits;
use rdkafka::config::ClientConfig;

/// Where to start a partition that has no stored position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// From the oldest message still in the topic.
    Earliest,
    /// From new messages only.
    Latest,
}

impl FromStr for OffsetReset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "earliest" => Ok(OffsetReset::Earliest),
            "latest" => Ok(OffsetReset::Latest),
            other => Err(format!("`{other}` is not an offset reset; use earliest or latest")),
        }
    }
}

impl fmt::Display for OffsetReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        })
    }
}

/// Which partitions a consumer reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitions {
    /// The consumer group hands out partitions (and moves them when consumers come and go).
    Group,
    /// Every partition of the topic, assigned by this consumer itself, no group membership.
    All,
    /// These partitions, assigned by this consumer itself, no group membership.
    Only(Vec<i32>),
}

impl FromStr for Partitions {
    type Err = String;

    /// `group`, `all`, or a list of partition numbers such as `0,1,2`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" | "group" => Ok(Partitions::Group),
            "all" => Ok(Partitions::All),
            list => list
                .split(',')
                .map(|p| p.trim().parse::<i32>().ok().filter(|p| *p >= 0))
                .collect::<Option<Vec<_>>>()
                .filter(|l| !l.is_empty())
                .map(Partitions::Only)
                .ok_or_else(|| format!("`{list}` is not `group`, `all` or a list of partition numbers like 0,1,2")),
        }
    }
}

/// How to consume.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// The topic of v1 events.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// Most messages in one store transaction.
    pub batch_size: usize,
    /// Longest time a message waits in a batch before it is written.
    pub linger: Duration,
    /// Where partitions with no stored position start.
    pub offset_reset: OffsetReset,
    /// Event limits.
    pub limits: Limits,
    /// Extra librdkafka settings, applied last.
    pub overrides: Vec<(String, String)>,
    /// Group-managed or self-assigned partitions. Exactly-once holds either way, because the
    /// store moves a partition's offset only from where the batch's coverage starts.
    pub partitions: Partitions,
    /// Store transactions in flight at once (write lanes).
    pub writers: usize,
    /// Also forward every dead letter to this topic (raw bytes and key as received, the reason
    /// and the source position in headers), before its batch is stored.
    pub dead_letter_topic: Option<String>,
}

/// The defaults, in one place.
pub mod defaults {
    use std::time::Duration;

    /// The topic of v1 events.
    pub const TOPIC: &str = "driftline.events";
    /// The consumer group.
    pub const GROUP: &str = "driftline-ingest";
    /// Most messages per store transaction.
    pub const BATCH_SIZE: usize = 5_000;
    /// Longest wait of a message in a batch.
    pub const LINGER: Duration = Duration::from_millis(200);
    /// Write lanes.
    pub const WRITERS: usize = 4;
    /// librdkafka's group session timeout, unless overridden.
    pub const SESSION_TIMEOUT_MS: u64 = 10_000;
}

impl KafkaConfig {
    /// The defaults for `brokers`: topic `driftline.events`, group `driftline-ingest`, batches of
    /// 5,000 messages or 200 ms, four write lanes, earliest, group-managed partitions.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            topic: defaults::TOPIC.into(),
            group: defaults::GROUP.into(),
            batch_size: defaults::BATCH_SIZE,
            linger: defaults::LINGER,
            offset_reset: OffsetReset::Earliest,
            limits: Limits::default(),
            overrides: Vec::new(),
            partitions: Partitions::Group,
            writers: defaults::WRITERS,
            dead_letter_topic: None,
        }
    }

    /// The consumer's librdkafka settings: no auto commit and no offset store (the offsets that
    /// count are in driftline's store), bounded prefetch so memory stays flat under any backlog,
    /// then the overrides.
    pub(crate) fn consumer_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", self.offset_reset.to_string())
            .set("enable.partition.eof", "false")
            .set("queued.max.messages.kbytes", "32768")
            .set("fetch.max.bytes", "16777216")
            .set("max.poll.interval.ms", "600000")
            .set("session.timeout.ms", defaults::SESSION_TIMEOUT_MS.to_string())
            .set("heartbeat.interval.ms", "1000")
            .set("statistics.interval.ms", "5000");
        for (key, value) in &self.overrides {
            config.set(key, value);
        }
        config
    }

    /// The dead-letter producer's settings: the consumer's brokers and overrides, deliveries
    /// acknowledged by all in-sync replicas, and a bounded wait so that a broker outage shows as
    /// a retried error instead of a silent stall.
    pub(crate) fn producer_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers).set("acks", "all").set("message.timeout.ms", "30000");
        for (key, value) in &self.overrides {
            config.set(key, value);
        }
        config
    }

    /// How long a group rebalance may take: twice the session timeout (a dead member is noticed
    /// after one, and a coordinator may wait about one more), plus five seconds.
    pub(crate) fn rebalance_bound(&self) -> Duration {
        let session_ms = self
            .overrides
            .iter()
            .rev()
            .find(|(k, _)| k == "session.timeout.ms")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(defaults::SESSION_TIMEOUT_MS);
        Duration::from_millis(2 * session_ms) + Duration::from_secs(5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_and_resets_parse() {
        assert_eq!("all".parse::<Partitions>(), Ok(Partitions::All));
        assert_eq!("group".parse::<Partitions>(), Ok(Partitions::Group));
        assert_eq!(" 0, 2 ".parse::<Partitions>(), Ok(Partitions::Only(vec![0, 2])));
        assert!("0,x".parse::<Partitions>().unwrap_err().contains("`0,x`"));
        assert!("-1".parse::<Partitions>().is_err());
        assert_eq!("latest".parse::<OffsetReset>(), Ok(OffsetReset::Latest));
        assert!("newest".parse::<OffsetReset>().is_err());
    }

    #[test]
    fn rebalance_bound_follows_the_session_timeout() {
        let mut c = KafkaConfig::new("b");
        assert_eq!(c.rebalance_bound(), Duration::from_secs(25));
        c.overrides.push(("session.timeout.ms".into(), "6000".into()));
        assert_eq!(c.rebalance_bound(), Duration::from_secs(17));
        assert_eq!(c.consumer_config().get("session.timeout.ms"), Some("6000"));
    }
}
