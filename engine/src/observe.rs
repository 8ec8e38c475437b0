//! Turning raw samples into what the engine may rely on, and moving the
//! condition clocks in [`Memory`] forward.
//!
//! Evidence must be continuous: a gap in the data (nothing fresh to read)
//! resets every clock, because nobody can say what happened during it.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use super::memory::Memory;
use super::policy::Policy;
use super::workload::Workload;
use super::{elapsed, human, percent};

/// One memory reading of one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The pod's name.
    pub pod: String,
    /// Working set divided by the memory limit, 0..1 (above 1 is possible just before an OOM kill).
    pub usage_ratio: f64,
    /// Working set in bytes, for the humans reading the reasons.
    pub bytes: u64,
    /// The pod's memory limit in bytes.
    pub limit_bytes: u64,
    /// When the reading was taken.
    pub at: Timestamp,
    /// The pod's count of requests served so far, read at the same scrape, when the source
    /// exports one (the service's `shortener_http_requests_total`): what tells load from a
    /// leak.
    pub requests: Option<f64>,
}

/// Each pod's newest sample whose ratio is a number, as the levels judge them.
pub fn newest(samples: &[Sample]) -> Vec<&Sample> {
    let mut newest: BTreeMap<&str, &Sample> = BTreeMap::new();
    for sample in samples.iter().filter(|s| s.usage_ratio.is_finite()) {
        let slot = newest.entry(sample.pod.as_str()).or_insert(sample);
        if sample.at > slot.at {
            *slot = sample;
        }
    }
    newest.into_values().collect()
}

/// The latest fresh reading of one current pod.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Reading {
    pub ratio: f64,
    pub bytes: u64,
    pub limit_bytes: u64,
}

/// One reading in a pod's series, for the growth over a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Point {
    pub at: Timestamp,
    pub bytes: u64,
    pub requests: Option<f64>,
}

/// What the samples say about the current pods.
#[derive(Debug)]
pub(super) struct Observation {
    /// Latest reading of every current pod that has one.
    pub readings: BTreeMap<String, Reading>,
    /// Every reading of each current pod's running container, oldest first; kept only when the
    /// policy predicts growth, which looks back over a window.
    pub series: BTreeMap<String, Vec<Point>>,
    /// Current pods without any sample (typically just started).
    pub unobserved: Vec<String>,
    /// Why the data cannot be used at all; `None` when it can.
    pub unusable: Option<String>,
    /// Summary for the metrics condition.
    pub message: String,
}

impl Observation {
    /// Average ratio over the observed pods; HPA-style, the fleet's signal.
    pub fn mean(&self) -> f64 {
        let sum: f64 = self.readings.values().map(|r| r.ratio).sum();
        sum / self.readings.len().max(1) as f64
    }

    /// The highest observed ratio and its pod.
    pub fn max(&self) -> Option<(&str, f64)> {
        self.readings
            .iter()
            .map(|(pod, r)| (pod.as_str(), r.ratio))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// True when every current pod has a fresh reading.
    pub fn covers_fleet(&self) -> bool {
        self.unusable.is_none() && self.unobserved.is_empty()
    }
}

/// Picks each current pod's latest sample and judges whether the data can be used.
pub(super) fn observe(
    policy: &Policy,
    samples: &[Sample],
    workload: &Workload,
    now: Timestamp,
) -> Observation {
    let current: BTreeSet<&str> = workload.pods.iter().map(String::as_str).collect();
    // A sample taken before a pod's container last ended is of the run that ended (say, one
    // the OOM killer ended): it says nothing about the container running now. The API gives
    // that end in whole seconds, so only samples from the next second on are sure to be newer.
    let restarted: BTreeMap<&str, Timestamp> = workload
        .restarted
        .iter()
        .filter_map(|r| Some((r.pod.as_str(), r.last_finished?)))
        .collect();
    let of_this_run = |s: &Sample| {
        restarted
            .get(s.pod.as_str())
            .is_none_or(|ended| s.at >= *ended + std::time::Duration::from_secs(1))
    };
    let mut latest: BTreeMap<&str, &Sample> = BTreeMap::new();
    let mut series: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    // Samples for pods that are gone (or not ours) are ignored; so is a
    // reading that is not a number, which no threshold can judge.
    for sample in samples
        .iter()
        .filter(|s| current.contains(s.pod.as_str()) && s.usage_ratio.is_finite() && of_this_run(s))
    {
        let slot = latest.entry(sample.pod.as_str()).or_insert(sample);
        if sample.at > slot.at {
            *slot = sample;
        }
        if policy.prediction.is_some() {
            series.entry(sample.pod.clone()).or_default().push(Point {
                at: sample.at,
                bytes: sample.bytes,
                requests: sample.requests,
            });
        }
    }
    for points in series.values_mut() {
        points.sort_by_key(|p| p.at);
        points.dedup_by_key(|p| p.at);
    }
    let unobserved: Vec<String> = current
        .iter()
        .filter(|pod| !latest.contains_key(*pod))
        .map(|pod| (*pod).to_owned())
        .collect();
    let stalest = latest
        .values()
        .map(|s| (s.pod.as_str(), elapsed(s.at, now)))
        .max_by_key(|(_, age)| *age);

    let unusable = if current.is_empty() {
        Some("the Deployment has no pods to measure".to_owned())
    } else if latest.is_empty() {
        Some(format!(
            "no memory samples for any of the {} current pods",
            current.len()
        ))
    } else {
        stalest
            .filter(|(_, age)| *age > policy.stale_after)
            .map(|(pod, age)| {
                format!(
                    "the latest sample of pod {pod} is {} old (staleAfter {})",
                    human(age),
                    human(policy.stale_after)
                )
            })
    };
    let readings: BTreeMap<String, Reading> = latest
        .into_iter()
        .map(|(pod, s)| {
            let reading = Reading {
                ratio: s.usage_ratio,
                bytes: s.bytes,
                limit_bytes: s.limit_bytes,
            };
            (pod.to_owned(), reading)
        })
        .collect();
    let oldest = stalest.map(|(_, age)| age).unwrap_or_default();
    let message = unusable.clone().unwrap_or_else(|| {
        format!(
            "{} of {} pods measured, oldest sample {} old",
            readings.len(),
            current.len(),
            human(oldest)
        )
    });
    Observation {
        readings,
        series,
        unobserved,
        unusable,
        message,
    }
}

/// Moves the condition clocks forward (or resets them) from this observation.
pub(super) fn track(
    memory: &mut Memory,
    policy: &Policy,
    observation: &Observation,
    now: Timestamp,
) {
    if observation.unusable.is_some() {
        memory.critical_since.clear();
        memory.high_pods_since.clear();
        memory.refused_raises.clear();
        memory.high_since = None;
        memory.all_low_since = None;
        return;
    }
    let critical = |pod: &str| {
        observation
            .readings
            .get(pod)
            .is_some_and(|r| r.ratio >= policy.critical)
    };
    memory.critical_since.retain(|pod, _| critical(pod));
    for pod in observation.readings.keys().filter(|pod| critical(pod)) {
        memory.critical_since.entry(pod.clone()).or_insert(now);
    }
    // A pod's own high state, like its critical one: at or above high, without a gap (no
    // hysteresis: a pod raised to below high has been helped).
    memory.high_pods_since.retain(|pod, _| {
        observation
            .readings
            .get(pod)
            .is_some_and(|r| r.ratio >= policy.high)
    });
    for (pod, reading) in &observation.readings {
        if reading.ratio >= policy.high {
            memory.high_pods_since.entry(pod.clone()).or_insert(now);
        }
    }
    // A refused raise matters while its pod stays high; once it is under, a later raise may
    // be granted.
    let high = &memory.high_pods_since;
    memory
        .refused_raises
        .retain(|pod, _| high.contains_key(pod));

    if !observation.unobserved.is_empty() {
        // A pod without a sample cannot prove it is low, so the scale-in
        // window starts over. The high state is neither entered nor left:
        // the missing pod is usually a new one whose data is a scrape away.
        memory.all_low_since = None;
        return;
    }
    let mean = observation.mean();
    if mean >= policy.high {
        memory.high_since.get_or_insert(now);
    } else if mean < policy.low {
        memory.high_since = None;
    }
    let all_low = observation.max().is_some_and(|(_, max)| max < policy.low);
    if all_low {
        memory.all_low_since.get_or_insert(now);
    } else {
        memory.all_low_since = None;
    }
}

/// One line describing a pod's reading.
pub(super) fn describe(pod: &str, reading: &Reading) -> String {
    // Memory limits are written in Mi, so MiB reads like the manifest.
    const MIB: u64 = 1024 * 1024;
    format!(
        "{pod} {} ({} MiB of {} MiB)",
        percent(reading.ratio),
        reading.bytes / MIB,
        reading.limit_bytes / MIB
    )
}
