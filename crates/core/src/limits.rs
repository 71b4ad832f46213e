//! Limits on what one event and one request may hold.

/// 2000-01-01T00:00:00Z in milliseconds: the earliest timestamp accepted by default.
pub const DEFAULT_MIN_TIMESTAMP_MS: i64 = 946_684_800_000;
/// 2100-01-01T00:00:00Z in milliseconds: the first timestamp refused by default.
pub const DEFAULT_MAX_TIMESTAMP_MS: i64 = 4_102_444_800_000;

/// Configurable limits, checked by [`crate::parse_event`] and by the HTTP intake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded event, in bytes (default 100 KiB).
    pub max_event_bytes: usize,
    /// Largest HTTP request body, in bytes (default 5 MiB).
    pub max_request_bytes: usize,
    /// Most events in one HTTP request (default 100,000): a body with more is refused before
    /// any of them is parsed.
    pub max_request_events: usize,
    /// Most object keys in one event's `metrics`, counted at every level (default 1,000).
    pub max_metric_keys: usize,
    /// Deepest nesting of `metrics`; the `metrics` object itself is level 1 (default 64).
    pub max_depth: usize,
    /// Earliest accepted timestamp, inclusive, in ms since the epoch (default 2000-01-01).
    pub min_timestamp_ms: i64,
    /// First refused timestamp, in ms since the epoch (default 2100-01-01).
    pub max_timestamp_ms: i64,
    /// Test hook, never set in production: lets NUL and other control characters through to
    /// the store, to exercise what happens when the store itself refuses an event.
    pub unchecked_text_for_tests: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 100 * 1024,
            max_request_bytes: 5 * 1024 * 1024,
            max_request_events: 100_000,
            max_metric_keys: 1_000,
            max_depth: 64,
            min_timestamp_ms: DEFAULT_MIN_TIMESTAMP_MS,
            max_timestamp_ms: DEFAULT_MAX_TIMESTAMP_MS,
            unchecked_text_for_tests: false,
        }
    }
}
