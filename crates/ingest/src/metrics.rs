//! Intake counters and the Prometheus text format they are served in (`GET /metrics`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the batch write latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Counters of one intake path.
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Events received (valid or not).
    pub consumed: AtomicU64,
    /// Events newly stored.
    pub stored: AtomicU64,
    /// Events already stored, not stored again.
    pub duplicates: AtomicU64,
    /// Events refused and kept as dead letters.
    pub dead_lettered: AtomicU64,
    /// Store transactions committed.
    pub batches: AtomicU64,
    /// Store writes that failed (and were retried or abandoned).
    pub write_errors: AtomicU64,
}

impl SourceCounters {
    /// Adds a committed write.
    pub fn record(&self, stored: u64, duplicates: u64, dead_lettered: u64) {
        self.stored.fetch_add(stored, Ordering::Relaxed);
        self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        self.dead_lettered.fetch_add(dead_lettered, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
    }
}

/// A counter's name, help text and where it lives in [`SourceCounters`].
type CounterSpec = (&'static str, &'static str, fn(&SourceCounters) -> &AtomicU64);

/// Every intake metric of one process.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    /// The HTTP intake.
    pub http: SourceCounters,
    /// The Kafka consumer.
    pub kafka: SourceCounters,
    /// Dead letters forwarded to the dead-letter topic.
    pub dead_letters_forwarded: AtomicU64,
    /// Events that passed validation but that the store refused, set aside as dead letters.
    pub store_refused: AtomicU64,
    /// Kafka offsets passed without a message: deleted by the broker before they were read,
    /// compacted away, or transaction markers. Each run of them is also a dead letter.
    pub kafka_offsets_skipped: AtomicU64,
    /// Partitions this consumer is assigned now.
    pub kafka_assigned_partitions: AtomicU64,
    /// Seconds this group member has had no partitions, while that has lasted longer than a
    /// rebalance takes (0 otherwise).
    pub kafka_idle_seconds: AtomicU64,
    /// Refused events of HTTP requests over the per-request dead-letter cap: counted, not kept.
    pub dead_letters_unkept: AtomicU64,
    latency_counts: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    lag: Mutex<BTreeMap<(String, i32), i64>>,
}

impl IngestMetrics {
    /// Records the duration of one store write.
    pub fn observe_write(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&self.latency_counts) {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Sets the consumer lag (messages behind the high watermark) of a partition.
    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.lag.lock().expect("lag lock").insert((topic.to_owned(), partition), lag);
    }

    /// Forgets the lag of partitions this process no longer reads.
    pub fn clear_lag(&self) {
        self.lag.lock().expect("lag lock").clear();
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters: [CounterSpec; 6] = [
            ("driftline_events_consumed_total", "Events received, valid or not.", |c| &c.consumed),
            ("driftline_events_stored_total", "Events newly stored.", |c| &c.stored),
            ("driftline_events_duplicate_total", "Events already stored, not stored again.", |c| &c.duplicates),
            ("driftline_events_dead_lettered_total", "Events refused and kept as dead letters.", |c| &c.dead_lettered),
            ("driftline_batches_total", "Store transactions committed.", |c| &c.batches),
            ("driftline_batch_write_errors_total", "Store writes that failed.", |c| &c.write_errors),
        ];
        for (name, help, field) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (source, c) in [("http", &self.http), ("kafka", &self.kafka)] {
                let _ = writeln!(out, "{name}{{source=\"{source}\"}} {}", field(c).load(Ordering::Relaxed));
            }
        }
        let name = "driftline_dead_letters_forwarded_total";
        let _ = writeln!(out, "# HELP {name} Dead letters forwarded to the dead-letter topic.\n# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", self.dead_letters_forwarded.load(Ordering::Relaxed));
        let plain: [(&str, &str, &str, &AtomicU64); 5] = [
            (
                "driftline_store_refused_total",
                "counter",
                "Events that passed validation but the store refused; kept as dead letters.",
                &self.store_refused,
            ),
            (
                "driftline_kafka_offsets_skipped_total",
                "counter",
                "Kafka offsets passed without a message (deleted before they were read, compacted, markers).",
                &self.kafka_offsets_skipped,
            ),
            (
                "driftline_kafka_assigned_partitions",
                "gauge",
                "Partitions this consumer is assigned now.",
                &self.kafka_assigned_partitions,
            ),
            (
                "driftline_kafka_idle_seconds",
                "gauge",
                "Seconds this group member has had no partitions, once longer than a rebalance takes.",
                &self.kafka_idle_seconds,
            ),
            (
                "driftline_dead_letters_unkept_total",
                "counter",
                "Refused events over the per-request dead-letter cap: counted, not kept.",
                &self.dead_letters_unkept,
            ),
        ];
        for (name, kind, help, value) in plain {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", value.load(Ordering::Relaxed));
        }
        let name = "driftline_batch_write_seconds";
        let _ = writeln!(out, "# HELP {name} Duration of one store write transaction.\n# TYPE {name} histogram");
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&self.latency_counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", count.load(Ordering::Relaxed));
        }
        let total = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "{name}_sum {}", self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {total}");
        let name = "driftline_consumer_lag";
        let _ = writeln!(out, "# HELP {name} Messages behind the partition's high watermark.\n# TYPE {name} gauge");
        for ((topic, partition), lag) in self.lag.lock().expect("lag lock").iter() {
            let _ = writeln!(out, "{name}{{topic=\"{topic}\",partition=\"{partition}\"}} {lag}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = IngestMetrics::default();
        m.kafka.consumed.fetch_add(7, Ordering::Relaxed);
        m.kafka.record(5, 1, 1);
        m.observe_write(Duration::from_millis(30));
        m.set_lag("driftline.events", 3, 42);
        let text = m.render();
        assert!(text.contains("driftline_events_consumed_total{source=\"kafka\"} 7"), "{text}");
        assert!(text.contains("driftline_events_stored_total{source=\"kafka\"} 5"));
        assert!(text.contains("driftline_events_dead_lettered_total{source=\"http\"} 0"));
        assert!(text.contains("driftline_batch_write_seconds_bucket{le=\"0.025\"} 0"));
        assert!(text.contains("driftline_batch_write_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("driftline_batch_write_seconds_count 1"));
        assert!(text.contains("driftline_dead_letters_forwarded_total 0"));
        assert!(text.contains("driftline_consumer_lag{topic=\"driftline.events\",partition=\"3\"} 42"));
    }
}
