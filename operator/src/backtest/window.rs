//! The stretch of history a backtest replays: `--start`, `--end`, `--step`.

use std::{fmt, str::FromStr, time::Duration};

use jiff::{SignedDuration, Span, SpanRelativeTo, Timestamp};

use crate::{Error, Result};

/// Prometheus refuses range queries of more points than this per series.
pub const MAX_POINTS: u64 = 11_000;

/// A moment as written on the command line: `now`, an offset from now such
/// as `-1h`, `-2d` or `90m ago`, or an RFC 3339 timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// The moment the backtest starts.
    Now,
    /// This far from now (negative is the past).
    Offset(SignedDuration),
    /// This instant.
    At(Timestamp),
}

impl When {
    /// The instant this names, given the moment the backtest starts.
    pub fn resolve(self, now: Timestamp) -> Result<Timestamp> {
        match self {
            When::Now => Ok(now),
            When::Offset(offset) => now
                .checked_add(offset)
                .map_err(|_| Error::Time(format!("{now} {offset:+}"))),
            When::At(at) => Ok(at),
        }
    }
}

impl FromStr for When {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("now") {
            return Ok(When::Now);
        }
        if let Ok(at) = text.parse::<Timestamp>() {
            return Ok(When::At(at));
        }
        // Through `Span`, so that days and weeks count as 24 hours and 7 days.
        text.parse::<Span>()
            .ok()
            .and_then(|span| span.to_duration(SpanRelativeTo::days_are_24_hours()).ok())
            .map(When::Offset)
            .ok_or_else(|| Error::Time(text.to_owned()))
    }
}

/// The evaluation times of a backtest: `start`, then every `step` up to `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// The first evaluation, on a whole second (range queries take whole seconds).
    pub start: Timestamp,
    /// No evaluation after this, on a whole second.
    pub end: Timestamp,
    /// Time between evaluations.
    pub step: Duration,
}

impl Window {
    /// A window of at most [`MAX_POINTS`] evaluations, its ends rounded down to the second.
    pub fn new(start: Timestamp, end: Timestamp, step: Duration) -> Result<Self> {
        let second = |at: Timestamp| Timestamp::from_second(at.as_second()).unwrap_or(at);
        let (start, end) = (second(start), second(end));
        let invalid = |why: String| Err(Error::Window(why));
        if step.is_zero() {
            return invalid("--step must be positive".to_owned());
        }
        if end <= start {
            return invalid(format!("--end ({end}) must be after --start ({start})"));
        }
        let window = Window { start, end, step };
        let points = window.length().as_millis() / step.as_millis().max(1) + 1;
        if points > u128::from(MAX_POINTS) {
            return invalid(format!(
                "{points} steps of {:#} is more than the {MAX_POINTS} points Prometheus answers \
                 per series: use a longer --step or a shorter window",
                SignedDuration::try_from(step).unwrap_or_default()
            ));
        }
        Ok(window)
    }

    /// Every evaluation time, oldest first.
    pub fn times(&self) -> Vec<Timestamp> {
        let mut times = Vec::new();
        let mut at = self.start;
        while at <= self.end {
            times.push(at);
            match at.checked_add(self.step) {
                Ok(next) => at = next,
                Err(_) => break,
            }
        }
        times
    }

    fn length(&self) -> Duration {
        Duration::try_from(self.end.duration_since(self.start)).unwrap_or_default()
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let length = self.length().as_secs();
        let step = SignedDuration::try_from(self.step).unwrap_or_default();
        let length = SignedDuration::from_secs(i64::try_from(length).unwrap_or(i64::MAX));
        write!(
            f,
            "{} .. {} ({length:#}), step {step:#}",
            self.start, self.end
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-22T10:00:00.700Z".parse().unwrap()
    }

    #[test]
    fn moments_are_now_offsets_or_rfc3339_timestamps() {
        let at = |text: &str| text.parse::<When>().unwrap().resolve(now()).unwrap();
        assert_eq!(at("now"), now());
        assert_eq!(at("-1h").to_string(), "2026-11-22T09:00:00.7Z");
        assert_eq!(at("-2d").to_string(), "2026-11-20T10:00:00.7Z");
        assert_eq!(at("90m ago").to_string(), "2026-11-22T08:30:00.7Z");
        assert_eq!(
            at("2026-11-21T08:00:00+01:00").to_string(),
            "2026-11-21T07:00:00Z"
        );
        let error = "yesterday".parse::<When>().unwrap_err().to_string();
        assert!(error.contains("`yesterday`"), "{error}");
    }

    #[test]
    fn a_window_steps_between_whole_seconds() {
        let end = now();
        let start = end - Duration::from_secs(3);
        let window = Window::new(start, end, Duration::from_secs(1)).unwrap();
        let times: Vec<String> = window.times().iter().map(|t| t.to_string()).collect();
        assert_eq!(
            times,
            [
                "2026-11-22T09:59:57Z",
                "2026-11-22T09:59:58Z",
                "2026-11-22T09:59:59Z",
                "2026-11-22T10:00:00Z"
            ]
        );
    }

    #[test]
    fn windows_that_are_backwards_or_too_fine_are_refused() {
        let step = Duration::from_secs(1);
        assert!(Window::new(now(), now() - step, step).is_err());
        let day = now() - Duration::from_secs(86_400);
        let error = Window::new(day, now(), step).unwrap_err().to_string();
        assert!(error.contains("use a longer --step"), "{error}");
    }
}
