//! `spec.prediction`: acting on a pod's growth before it reaches a mark, and [`Growth`], the
//! memory-per-time rates it is written in (`1Mi/min`).

use std::{fmt, str::FromStr};

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Duration, Thresholds, parsed, positive, quantity_bytes};
use crate::Error;

/// Predicting each pod's growth: a leak projected to reach its limit within `horizon` is
/// acted on (with `onCritical`) before it reaches a mark. Off unless the section is present;
/// `prediction: {}` turns it on with the defaults.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Prediction {
    /// How much recent history each pod's growth is measured over; a pod must have been
    /// measured for all of it. Longer than `thresholds.staleAfter`.
    #[schemars(extend("x-kubernetes-validations" = [positive("prediction.window")]))]
    pub window: Duration,
    /// A leak suspect projected to reach its memory limit within this is treated like a
    /// critical pod.
    #[schemars(extend("x-kubernetes-validations" = [positive("prediction.horizon")]))]
    pub horizon: Duration,
    /// Slower growth than this is not growth (scrape noise, a cache warming up): a memory
    /// quantity per `s`, `min` or `h`, such as `1Mi/min`.
    pub min_growth: Growth,
}

impl Default for Prediction {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(600),
            horizon: Duration::from_secs(900),
            min_growth: Growth {
                text: "1Mi/min".to_owned(),
                bytes_per_minute: 1 << 20,
            },
        }
    }
}

/// Why a prediction window no longer than `staleAfter` is refused, by the apiserver and `check`.
pub const WINDOW_TOO_SHORT: &str = "spec.prediction.window must be longer than thresholds.staleAfter: a window holds the samples a trend is read from, and staleAfter is the longest gap allowed between two of them";

/// The CEL rule of [`WINDOW_TOO_SHORT`], reading an omitted window or `staleAfter` as its
/// default.
pub(super) fn window_rule() -> String {
    format!(
        "!has(self.prediction) || duration(has(self.prediction.window) ? self.prediction.window : '{}') > duration(has(self.thresholds) && has(self.thresholds.staleAfter) ? self.thresholds.staleAfter : '{}')",
        Prediction::default().window,
        Thresholds::default().stale_after
    )
}

/// A rate of memory growth, such as `1Mi/min`, `512Ki/s` or `64Mi/h`; written as it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Growth {
    text: String,
    bytes_per_minute: u64,
}

/// Matches what [`Growth::from_str`] accepts; the apiserver checks it too.
/// Either the whole part or the fraction has a digit other than zero: no growth is not a rate.
pub const GROWTH_PATTERN: &str = r"^([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)(k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?/(s|min|h)$";

impl Growth {
    /// Bytes a minute, more than zero.
    pub fn bytes_per_minute(&self) -> u64 {
        self.bytes_per_minute
    }
}

impl FromStr for Growth {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::Growth(s.to_owned());
        let (amount, per) = s.split_once('/').ok_or_else(invalid)?;
        // Digits, and digits after a point if there is one, as the pattern has them.
        let number = amount.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !digits(fraction) {
            return Err(invalid());
        }
        let bytes = quantity_bytes(&Quantity(amount.to_owned()))
            .filter(|bytes| *bytes > 0)
            .ok_or_else(invalid)?;
        let bytes_per_minute = match per {
            "s" => bytes.checked_mul(60).ok_or_else(invalid)?,
            "min" => bytes,
            "h" => bytes.div_ceil(60),
            _ => return Err(invalid()),
        };
        Ok(Self {
            text: s.to_owned(),
            bytes_per_minute,
        })
    }
}

impl fmt::Display for Growth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Growth {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Growth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parsed(
            deserializer,
            "a growth rate such as 1Mi/min, 512Ki/s or 64Mi/h",
        )
    }
}

impl JsonSchema for Growth {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Growth".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": GROWTH_PATTERN,
            "description": "A memory growth rate: a quantity per s, min or h, such as 1Mi/min.",
            // kube's CEL checker reads no `pattern`: the rule says it again.
            "x-kubernetes-validations": [{
                "rule": format!("self.matches('{}')", GROWTH_PATTERN.replace('\\', "\\\\")),
                "message": "prediction.minGrowth must be a memory quantity per s, min or h, such as 1Mi/min",
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn growth(s: &str) -> Option<u64> {
        s.parse::<Growth>().ok().map(|g| g.bytes_per_minute())
    }

    #[test]
    fn a_growth_rate_is_a_quantity_per_second_minute_or_hour() {
        assert_eq!(growth("1Mi/min"), Some(1 << 20));
        assert_eq!(growth("512Ki/s"), Some(512 * 1024 * 60));
        assert_eq!(growth("60Mi/h"), Some(1 << 20));
        assert_eq!(growth("1.5M/min"), Some(1_500_000));
        assert_eq!(growth("100/min"), Some(100));
        assert_eq!(growth("1/h"), Some(1), "rounded up: never no growth");
        assert_eq!(growth("0.5Ki/min"), Some(512));
    }

    #[test]
    fn a_rate_without_a_unit_of_time_or_amount_is_refused_with_examples() {
        for bad in [
            "1Mi",
            "/min",
            "1Mi/day",
            "-1Mi/min",
            "1Mi/min/s",
            "Mi/min",
            "",
            ".5Mi/min",
            "1.Mi/s",
            "1mi/min",
            "0Mi/min",
            "0.0/s",
        ] {
            let error = bad.parse::<Growth>().unwrap_err().to_string();
            assert!(error.contains("1Mi/min"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_growth_rate_prints_as_it_was_written() {
        let g: Growth = serde_json::from_str("\"2Mi/min\"").unwrap();
        assert_eq!(serde_json::to_string(&g).unwrap(), "\"2Mi/min\"");
    }
}
