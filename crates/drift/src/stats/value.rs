//! A statistic's value, or the reason it has none.

use serde::{Deserialize, Serialize};

/// One computed number. Undefined cases (one class only, empty input, a constant target)
/// carry no value and say why, instead of a made-up number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// The value; `null` when it is undefined for this input.
    pub value: Option<f64>,
    /// Why there is no value; absent when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Stat {
    /// A defined value. A non-finite result is turned into an undefined one, so no NaN or
    /// infinity ever reaches JSON.
    pub fn of(value: f64) -> Self {
        if value.is_finite() {
            Stat { value: Some(value), reason: None }
        } else {
            Stat::undefined("the value is not finite for this input")
        }
    }

    /// No value, for the reason given.
    pub fn undefined(reason: impl Into<String>) -> Self {
        Stat { value: None, reason: Some(reason.into()) }
    }

    /// `value` when `defined`, otherwise no value for `reason`.
    pub fn when(defined: bool, value: impl FnOnce() -> f64, reason: &str) -> Self {
        if defined {
            Stat::of(value())
        } else {
            Stat::undefined(reason)
        }
    }
}
