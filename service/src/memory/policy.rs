//! The memory policy: given where usage stands, what the manager should do.
//! Pure: no clocks, no I/O, so every rule is tested with plain numbers.

use std::time::{Duration, Instant};

/// Water marks as ratios (0..=1) of the memory limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Watermarks {
    pub low: f64,
    pub high: f64,
    pub critical: f64,
}

impl Watermarks {
    /// Builds water marks from percentages, refusing any that are out of order.
    pub fn from_percent(low: f64, high: f64, critical: f64) -> Result<Self, String> {
        if !(low > 0.0 && low < high && high < critical && critical <= 100.0) {
            return Err(format!(
                "water marks must satisfy 0 < low ({low}) < high ({high}) < critical ({critical}) <= 100"
            ));
        }
        Ok(Watermarks {
            low: low / 100.0,
            high: high / 100.0,
            critical: critical / 100.0,
        })
    }
}

/// How close usage is to the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pressure {
    Normal,
    High,
    Critical,
}

impl Pressure {
    /// The word used in health output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Pressure::Normal => "ok",
            Pressure::High => "high",
            Pressure::Critical => "critical",
        }
    }
}

/// Why a trim happened; the `reason` label of `shortener_memory_trims_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrimReason {
    HighWater,
    Critical,
    Manual,
    /// Load dropped: what it left behind goes back, whatever the water marks say.
    Idle,
}

impl TrimReason {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TrimReason::HighWater => "high_water",
            TrimReason::Critical => "critical",
            TrimReason::Manual => "manual",
            TrimReason::Idle => "idle",
        }
    }
}

/// One memory sample as the policy sees it.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub resident: u64,
    pub limit: u64,
}

impl Usage {
    /// Resident bytes over the limit, 0 when no limit is known.
    pub fn ratio(self) -> f64 {
        if self.limit == 0 {
            0.0
        } else {
            self.resident as f64 / self.limit as f64
        }
    }

    /// Bytes to give back to come down to the low water mark.
    pub fn excess_over(self, ratio: f64) -> u64 {
        let target = (self.limit as f64 * ratio) as u64;
        self.resident.saturating_sub(target)
    }
}

/// Requests a second under which the service is quiet: health probes and scrapes, not load.
pub const QUIET_REQUESTS_PER_SECOND: f64 = 10.0;

/// What the service did between two samples.
#[derive(Clone, Copy, Debug)]
pub struct Activity {
    pub requests: u64,
    pub elapsed: Duration,
    /// Whether links nobody followed left the cache at this sample.
    pub cache_swept: bool,
}

impl Activity {
    /// Whether the requests came slower than load does.
    pub fn is_quiet(self) -> bool {
        (self.requests as f64) < QUIET_REQUESTS_PER_SECOND * self.elapsed.as_secs_f64()
    }
}

/// Whether to give back what the last load left behind (SQLite's cached pages, the
/// allocator's free pages): at the first quiet sample after a busy one, and at each quiet
/// sample that let idle links out of the cache. A service that stays busy, or stays quiet
/// with nothing new to free, is left alone.
pub fn settle(activity: Activity, was_busy: bool) -> bool {
    activity.is_quiet() && (was_busy || activity.cache_swept)
}

/// What the manager remembers between samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct ManagerState {
    pub shedding: bool,
    pub last_trim: Option<Instant>,
    /// Whether the last sample saw load.
    pub busy: bool,
    /// When the last sample was taken, and the requests answered by then.
    pub last_sample: Option<(Instant, u64)>,
}

/// What to do after one sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    pub pressure: Pressure,
    /// Trim now, freeing about `bytes` to come down to the low water mark.
    pub trim: Option<(TrimReason, u64)>,
    /// Refuse new links and fail readiness until usage is back under the high water mark.
    pub shed: bool,
}

/// Applies the water marks with hysteresis and a minimum interval between trims.
pub fn decide(
    usage: Usage,
    marks: Watermarks,
    state: ManagerState,
    min_trim_interval: Duration,
    now: Instant,
) -> Decision {
    let ratio = usage.ratio();
    let pressure = if ratio >= marks.critical {
        Pressure::Critical
    } else if ratio >= marks.high {
        Pressure::High
    } else {
        Pressure::Normal
    };
    // Shedding starts at critical and lasts until usage is back under high, so
    // a pod hovering around the critical mark does not flap in and out of service.
    let shed = match pressure {
        Pressure::Critical => true,
        Pressure::High => state.shedding,
        Pressure::Normal => false,
    };
    let may_trim = state
        .last_trim
        .is_none_or(|last| now.saturating_duration_since(last) >= min_trim_interval);
    let trim = match pressure {
        Pressure::Normal => None,
        _ if !may_trim => None,
        Pressure::High => Some(TrimReason::HighWater),
        Pressure::Critical => Some(TrimReason::Critical),
    }
    .map(|reason| (reason, usage.excess_over(marks.low)));
    Decision {
        pressure,
        trim,
        shed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const MIN_TRIM: Duration = Duration::from_secs(10);

    fn marks() -> Watermarks {
        Watermarks::from_percent(60.0, 80.0, 95.0).unwrap()
    }

    fn at(percent: u64) -> Usage {
        Usage {
            resident: percent * MIB,
            limit: 100 * MIB,
        }
    }

    #[test]
    fn below_the_high_water_mark_nothing_happens() {
        let decision = decide(
            at(79),
            marks(),
            ManagerState::default(),
            MIN_TRIM,
            Instant::now(),
        );
        assert_eq!(decision.pressure, Pressure::Normal);
        assert_eq!(decision.trim, None);
        assert!(!decision.shed);
    }

    #[test]
    fn above_the_high_water_mark_a_trim_aims_at_the_low_water_mark() {
        let decision = decide(
            at(85),
            marks(),
            ManagerState::default(),
            MIN_TRIM,
            Instant::now(),
        );
        assert_eq!(decision.trim, Some((TrimReason::HighWater, 25 * MIB)));
        assert!(!decision.shed);
    }

    #[test]
    fn critical_usage_sheds_load_and_trims() {
        let decision = decide(
            at(97),
            marks(),
            ManagerState::default(),
            MIN_TRIM,
            Instant::now(),
        );
        assert_eq!(decision.pressure, Pressure::Critical);
        assert_eq!(decision.trim, Some((TrimReason::Critical, 37 * MIB)));
        assert!(decision.shed);
    }

    #[test]
    fn shedding_lasts_until_usage_is_back_under_the_high_water_mark() {
        let shedding = ManagerState {
            shedding: true,
            ..ManagerState::default()
        };
        let now = Instant::now();
        assert!(decide(at(90), marks(), shedding, MIN_TRIM, now).shed);
        assert!(!decide(at(79), marks(), shedding, MIN_TRIM, now).shed);
    }

    #[test]
    fn trims_are_spaced_by_the_minimum_interval() {
        let now = Instant::now();
        let recent = ManagerState {
            last_trim: Some(now - Duration::from_secs(3)),
            ..ManagerState::default()
        };
        assert_eq!(decide(at(97), marks(), recent, MIN_TRIM, now).trim, None);
        let old = ManagerState {
            last_trim: Some(now - Duration::from_secs(11)),
            ..ManagerState::default()
        };
        assert!(decide(at(97), marks(), old, MIN_TRIM, now).trim.is_some());
    }

    #[test]
    fn water_marks_out_of_order_are_refused() {
        assert!(Watermarks::from_percent(80.0, 60.0, 95.0).is_err());
        assert!(Watermarks::from_percent(60.0, 80.0, 101.0).is_err());
        assert!(Watermarks::from_percent(0.0, 80.0, 95.0).is_err());
    }

    #[test]
    fn an_unknown_limit_never_counts_as_pressure() {
        let usage = Usage {
            resident: 10 * MIB,
            limit: 0,
        };
        let decision = decide(
            usage,
            marks(),
            ManagerState::default(),
            MIN_TRIM,
            Instant::now(),
        );
        assert_eq!(decision.pressure, Pressure::Normal);
    }

    fn activity(requests: u64, cache_swept: bool) -> Activity {
        Activity {
            requests,
            elapsed: Duration::from_secs(5),
            cache_swept,
        }
    }

    #[test]
    fn probes_and_scrapes_are_quiet_load_is_not() {
        assert!(activity(0, false).is_quiet());
        assert!(activity(49, false).is_quiet());
        assert!(!activity(50, false).is_quiet());
        assert!(!activity(500_000, false).is_quiet());
    }

    #[test]
    fn memory_is_given_back_once_when_load_drops() {
        assert!(settle(activity(3, false), true));
        assert!(!settle(activity(3, false), false));
        assert!(!settle(activity(500_000, false), true));
    }

    #[test]
    fn links_leaving_the_cache_of_a_quiet_service_are_given_back_too() {
        assert!(settle(activity(3, true), false));
        // Under load the sweep is part of the work, not a sign that it ended.
        assert!(!settle(activity(500_000, true), true));
    }
}
