//! Each pod's growth over the policy's prediction `window`, when it will reach its limit at
//! that pace, and whether the growth is a leak or load.
//!
//! **Growth.** A pod grows when, over its samples of the last `window` (of its running
//! container only), the Theil–Sen slope is at least `minGrowth` and the samples rise steadily
//! (Kendall's tau at least [`STEADY`]). The pod must have been measured for the whole window
//! (its first sample no later after the window's start than its longest gap between samples)
//! with no gap longer than `staleAfter`: a pod measured for two minutes has no ten-minute
//! trend, and evidence must be continuous. A single spike moves neither the slope nor the
//! steadiness; a sawtooth around a level is not steady; a flat or falling pod never grows.
//! The projection is the fitted line's crossing of the pod's current limit.
//!
//! **Leak or load.** A growing pod is a leak suspect when its own request rate (the counter
//! the samples carry, in the same query) is flat or falling over the window: memory that grows
//! while the work does not is held by something other than the work. Memory that follows the
//! work is a base plus a share per request, so it rises, relatively, no faster than the request
//! rate: a rate that rose (from the window's first third to its last) by at least half the
//! memory's relative rise carries the growth, and the pod is under load. A pod whose request
//! rate rises with its memory is under load, whatever its siblings do (a load balancer may
//! favour it). Only when the source exports no request counter do the siblings decide: the pod
//! is a suspect when at least one sibling is measured and none of them grows; a fleet growing
//! together without a request rate to read could be either, and is left to the levels.
//!
//! What is done about a leak is the `leak` rule's business; load is not restarted: a fleet under
//! load is the high rule's, which scales out.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use super::observe::{Observation, Point};
use super::policy::{Policy, Prediction};
use super::slope::{Fit, fit, median};
use super::{elapsed, human};

/// Kendall's tau at or above which samples rise steadily: a leak with scrape noise stays well
/// above it (0.8 to 1), a sawtooth or noise around a level well below (about 0).
const STEADY: f64 = 0.5;
/// Fewer samples in the window than this make no trend.
const MIN_POINTS: usize = 5;
/// A request rate that fell by more than this share of itself, from the window's first third
/// to its last, is falling.
const RATE_FALL: f64 = 0.2;
/// Changes of the request rate smaller than this (requests a second) are flat, however large
/// a share of a nearly idle pod's rate they are.
const RATE_NOISE: f64 = 0.1;

/// How a pod's request rate moved over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// Up, from the window's first third to its last, by more than noise and by at least half
    /// the memory's rise (relatively): the work carries the memory.
    Rising,
    /// Neither.
    Flat,
    /// Down by more than a fifth.
    Falling,
    /// The samples carry no request counter, or too few readings of it.
    Unknown,
}

impl std::fmt::Display for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rising => "request rate rising",
            Self::Flat => "request rate flat",
            Self::Falling => "request rate falling",
            Self::Unknown => "request rate unknown",
        })
    }
}

/// One pod's growth over the prediction window.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    /// The fitted growth, in bytes a minute (negative when shrinking).
    pub bytes_per_minute: f64,
    /// How steadily it rose: Kendall's tau, from -1 to 1.
    pub steadiness: f64,
    /// Measured for the whole window without a gap, at `minGrowth` or faster, steadily.
    pub growing: bool,
    /// When a growing pod reaches its limit at this pace.
    pub limit_at: Option<Timestamp>,
    /// The limit it is projected against.
    pub limit_bytes: u64,
    /// How its request rate moved over the window.
    pub traffic: Traffic,
    /// Growing, and not because of load (see the module note).
    pub leak_suspected: bool,
}

impl Trend {
    /// `web-1 projected to reach its 256 MiB limit in 6m at +2.1 MiB/min (request rate flat)`.
    pub fn describe(&self, pod: &str, now: Timestamp) -> String {
        const MIB: f64 = (1u64 << 20) as f64;
        let when = self.limit_at.map_or_else(
            || "not projected to reach its limit".to_owned(),
            |at| {
                format!(
                    "projected to reach its {:.0} MiB limit in {}",
                    self.limit_bytes as f64 / MIB,
                    human(elapsed(now, at))
                )
            },
        );
        format!(
            "{pod} {when} at {:+.1} MiB/min ({})",
            self.bytes_per_minute / MIB,
            self.traffic
        )
    }
}

/// The trend of every current pod with enough samples in the window; empty when the policy does
/// not predict.
pub(super) fn trends(
    policy: &Policy,
    observation: &Observation,
    now: Timestamp,
) -> BTreeMap<String, Trend> {
    let Some(prediction) = policy.prediction else {
        return BTreeMap::new();
    };
    let mut trends: BTreeMap<String, Trend> = observation
        .series
        .iter()
        .filter_map(|(pod, points)| {
            let limit = observation.readings.get(pod)?.limit_bytes;
            let trend = trend(policy, &prediction, points, limit, now)?;
            Some((pod.clone(), trend))
        })
        .collect();
    let min_growth = prediction.min_growth_per_minute as f64;
    let siblings_flat: Vec<(String, bool)> = trends
        .keys()
        .map(|pod| {
            let mut siblings = trends.iter().filter(|(other, _)| *other != pod).peekable();
            let measured = siblings.peek().is_some();
            let flat = measured && siblings.all(|(_, t)| t.bytes_per_minute < min_growth);
            (pod.clone(), flat)
        })
        .collect();
    for (pod, flat) in siblings_flat {
        let trend = trends.get_mut(&pod).expect("a pod of the trends");
        trend.leak_suspected = trend.growing
            && match trend.traffic {
                Traffic::Rising => false,
                Traffic::Flat | Traffic::Falling => true,
                Traffic::Unknown => flat,
            };
    }
    trends
}

/// One pod's trend from its series, against its current limit.
fn trend(
    policy: &Policy,
    prediction: &Prediction,
    points: &[Point],
    limit_bytes: u64,
    now: Timestamp,
) -> Option<Trend> {
    let start = now - prediction.window;
    let points: Vec<&Point> = points
        .iter()
        .filter(|p| p.at >= start && p.at <= now)
        .collect();
    if points.len() < MIN_POINTS {
        return None;
    }
    let x = |at: Timestamp| seconds(start, at);
    let line: Vec<(f64, f64)> = points.iter().map(|p| (x(p.at), p.bytes as f64)).collect();
    let fitted = fit(&line)?;
    let Fit {
        slope, steadiness, ..
    } = fitted;
    // Measured for the whole window: it begins no further before the first sample than the
    // longest gap between two samples, and no gap is longer than `staleAfter`.
    let longest_gap = points
        .windows(2)
        .map(|pair| elapsed(pair[0].at, pair[1].at))
        .max()
        .unwrap_or_default();
    let covered = elapsed(start, points.first()?.at) <= longest_gap;
    let continuous = longest_gap <= policy.stale_after;
    let bytes_per_minute = slope * 60.0;
    let growing = covered
        && continuous
        && bytes_per_minute >= prediction.min_growth_per_minute.max(1) as f64
        && steadiness >= STEADY;
    let limit_at = growing.then(|| {
        let left = (limit_bytes as f64 - fitted.at(x(now))).max(0.0);
        now + Duration::from_secs_f64((left / slope).min(MAX_PROJECTION))
    });
    Some(Trend {
        bytes_per_minute,
        steadiness,
        growing,
        limit_at,
        limit_bytes,
        traffic: traffic(&points),
        leak_suspected: false,
    })
}

/// Projections are capped at a year: further than any horizon, and a valid timestamp.
const MAX_PROJECTION: f64 = 365.0 * 24.0 * 3600.0;

/// How the request rate moved against the memory, from the window's first third to its last.
fn traffic(points: &[&Point]) -> Traffic {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Traffic::Unknown;
    };
    let third = seconds(first.at, last.at) / 3.0;
    let early = |at: Timestamp| seconds(first.at, at) <= third;
    let late = |at: Timestamp| seconds(first.at, at) >= 2.0 * third;
    // The rate between consecutive readings, stamped with the later; a counter that went back
    // (a restart the samples did not reveal) gives none.
    let rates: Vec<(Timestamp, f64)> = points
        .windows(2)
        .filter_map(|pair| {
            let (a, b) = (pair[0], pair[1]);
            let served = b.requests? - a.requests?;
            let took = seconds(a.at, b.at);
            (served >= 0.0 && took > 0.0).then(|| (b.at, served / took))
        })
        .collect();
    let middle = |keep: &dyn Fn(Timestamp) -> bool,
                  values: &mut dyn Iterator<Item = (Timestamp, f64)>| {
        let mut kept: Vec<f64> = values.filter(|(at, _)| keep(*at)).map(|(_, v)| v).collect();
        (kept.len() >= 2).then(|| median(&mut kept)).flatten()
    };
    let memory = |keep: &dyn Fn(Timestamp) -> bool| {
        middle(keep, &mut points.iter().map(|p| (p.at, p.bytes as f64)))
    };
    let rate = |keep: &dyn Fn(Timestamp) -> bool| middle(keep, &mut rates.iter().copied());
    let (Some(m1), Some(m3), Some(r1), Some(r3)) =
        (memory(&early), memory(&late), rate(&early), rate(&late))
    else {
        return Traffic::Unknown;
    };
    let change = r3 - r1;
    if change.abs() <= RATE_NOISE {
        return Traffic::Flat;
    }
    // Memory that follows the work grows, relatively, no faster than the work: a base plus a
    // share per request in flight. A rate that rose by at least half the memory's relative
    // rise carries it.
    let rate_rise = change / r1.max(RATE_NOISE);
    let memory_rise = (m3 - m1) / m1.max(1.0);
    if rate_rise >= memory_rise / 2.0 && change > 0.0 {
        Traffic::Rising
    } else if -rate_rise >= RATE_FALL {
        Traffic::Falling
    } else {
        Traffic::Flat
    }
}

/// Seconds from `from` to `to`, negative when `to` is earlier.
fn seconds(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64()
}
