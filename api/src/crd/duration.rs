//! [`Duration`]: the Go-style duration strings policies are written in.

use std::{fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::parsed;
use crate::Error;

/// A Go-style duration (`500ms`, `15s`, `1m30s`, `1h`); whole numbers only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

/// Largest unit first, as Go prints them.
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Matches what [`Duration::from_str`] accepts; the apiserver checks it too.
pub const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h))+$";

impl Duration {
    /// Whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    /// Whole milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self(std::time::Duration::from_millis(millis))
    }

    /// The standard library's duration.
    pub const fn as_std(self) -> std::time::Duration {
        self.0
    }

    /// True for `0s` (and `0ms`, `0m`, ...).
    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::Duration(s.to_owned());
        let mut rest = s;
        let mut millis: u64 = 0;
        if rest.is_empty() {
            return Err(invalid());
        }
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(invalid)?;
            let value: u64 = rest[..digits].parse().map_err(|_| invalid())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let (_, scale) = UNITS
                .iter()
                .find(|(unit, _)| *unit == &rest[..unit_len])
                .ok_or_else(invalid)?;
            millis = value
                .checked_mul(*scale)
                .and_then(|m| m.checked_add(millis))
                .ok_or_else(invalid)?;
            rest = &rest[unit_len..];
        }
        Ok(Self::from_millis(millis))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut millis = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        if millis == 0 {
            return f.write_str("0s");
        }
        for (unit, scale) in UNITS {
            if millis >= scale {
                write!(f, "{}{unit}", millis / scale)?;
                millis %= scale;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parsed(
            deserializer,
            "a duration string such as 15s, 1m30s or 500ms",
        )
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration such as 500ms, 15s, 1m30s or 1h.",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> std::time::Duration {
        s.parse::<Duration>().unwrap().into()
    }

    #[test]
    fn durations_parse_each_unit_and_combinations() {
        assert_eq!(parse("500ms"), std::time::Duration::from_millis(500));
        assert_eq!(parse("15s"), std::time::Duration::from_secs(15));
        assert_eq!(parse("10m"), std::time::Duration::from_secs(600));
        assert_eq!(parse("1h"), std::time::Duration::from_secs(3600));
        assert_eq!(parse("1m30s"), std::time::Duration::from_secs(90));
        assert_eq!(
            parse("1h0m1s250ms"),
            std::time::Duration::from_millis(3_601_250)
        );
    }

    #[test]
    fn durations_without_units_or_with_unknown_ones_are_refused() {
        for bad in [
            "",
            "15",
            "s",
            "1.5s",
            "-1s",
            "1d",
            "1 m",
            "15sec",
            "99999999999999999999h",
        ] {
            let err = bad.parse::<Duration>().unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }

    #[test]
    fn durations_print_in_go_form_and_round_trip() {
        for (text, printed) in [
            ("90s", "1m30s"),
            ("0ms", "0s"),
            ("1h", "1h"),
            ("1500ms", "1s500ms"),
        ] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.to_string(), printed);
            assert_eq!(printed.parse::<Duration>().unwrap(), d);
        }
    }

    #[test]
    fn a_duration_that_is_not_a_string_names_what_is_expected() {
        let err = serde_json::from_str::<Duration>("15")
            .unwrap_err()
            .to_string();
        assert!(err.contains("a duration string such as 15s"), "{err}");
    }
}
