//! Turning raw samples into what the engine may rely on, and moving the
//! condition clocks in [`Memory`] forward.
//!
//! Evidence must be continuous: a gap in the data (nothing fresh to read)
//! resets every clock, because nobody can say what happened during it.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use super::memory::Memory;
use super::policy::Policy;
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
}

/// The Deployment as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Workload {
    /// Desired replicas (`spec.replicas`).
    pub replicas: u32,
    /// Pods available to serve (`status.availableReplicas`).
    pub available_replicas: u32,
    /// A rollout has not finished yet (derived by the adapter from the Deployment's status).
    pub rollout_in_progress: bool,
    /// `spec.paused`: a rolling restart would never start.
    pub paused: bool,
    /// Names of the Deployment's current pods.
    pub pods: Vec<String>,
    /// The current pods that are not Ready (a shortener over critical fails its own readiness
    /// check): evicting one of them makes nothing less available.
    pub unready: Vec<String>,
    /// The current pods whose containers have restarted, and how the last run ended (an
    /// `OOMKilled` one is a limit the operator did not keep the pod under).
    pub restarted: Vec<Restarted>,
    /// The target container's memory request and limit in the pod template; `None` when the
    /// template has no such container.
    pub template: Option<MemoryResources>,
    /// The target container's memory in each current pod that has that container, and any
    /// resize of it not yet carried out.
    pub limits: Vec<PodLimits>,
}

/// One pod's target container: the memory it runs with and how a resize of it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLimits {
    pub pod: String,
    /// The memory request and limit the container runs with (the kubelet's report once it
    /// made one, else the pod's spec).
    pub running: MemoryResources,
    /// Its `resizePolicy` restarts the container when its memory changes.
    pub restarts_on_resize: bool,
    /// Its QoS class is Guaranteed: a resize must keep its memory request equal to its limit.
    pub guaranteed: bool,
    /// A resize asked for and not carried out yet.
    pub resize: Option<Resize>,
}

/// A resize the kubelet has not carried out yet, from the pod's conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resize {
    pub state: ResizeState,
    /// The memory limit asked for (the pod's spec), when it differs from the running one.
    pub to: Option<u64>,
    /// When the condition last changed, if the kubelet said.
    pub since: Option<Timestamp>,
    /// The kubelet's message, if any.
    pub message: String,
}

/// Where a resize stands (`PodResizePending` and `PodResizeInProgress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeState {
    /// Pending, reason `Deferred`: the Node may make room later.
    Deferred,
    /// Pending, reason `Infeasible`: the Node can never hold it.
    Infeasible,
    /// Being carried out.
    InProgress,
    /// In progress, reason `Error`: the kubelet tried and failed, and retries.
    Failed,
}

impl ResizeState {
    /// It will never complete, however long one waits.
    pub fn is_hopeless(self) -> bool {
        self == Self::Infeasible
    }
}

impl std::fmt::Display for ResizeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Deferred => "deferred",
            Self::Infeasible => "infeasible",
            Self::InProgress => "in progress",
            Self::Failed => "failing",
        })
    }
}

/// A container's memory request and limit, in bytes; `None` is unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryResources {
    pub request: Option<u64>,
    pub limit: Option<u64>,
}

#[cfg(any(test, feature = "test-support"))]
impl Workload {
    /// A settled Deployment running exactly these pods.
    pub fn test(pods: &[&str]) -> Self {
        let replicas = u32::try_from(pods.len()).expect("few pods");
        Self {
            replicas,
            available_replicas: replicas,
            rollout_in_progress: false,
            paused: false,
            pods: pods.iter().map(|pod| (*pod).to_owned()).collect(),
            unready: Vec::new(),
            restarted: Vec::new(),
            template: None,
            limits: Vec::new(),
        }
    }

    /// Every pod's container runs with `limit` MiB (and no request), and no resize is pending.
    pub fn with_pod_limits(mut self, limit: u64) -> Self {
        self.limits = self
            .pods
            .iter()
            .map(|pod| PodLimits {
                pod: pod.clone(),
                running: MemoryResources {
                    request: None,
                    limit: Some(limit << 20),
                },
                restarts_on_resize: false,
                guaranteed: false,
                resize: None,
            })
            .collect();
        self
    }

    /// `pod`'s limits, to change in a test.
    pub fn pod_limits(&mut self, pod: &str) -> &mut PodLimits {
        self.limits
            .iter_mut()
            .find(|l| l.pod == pod)
            .expect("the pod has limits; call with_pod_limits first")
    }

    /// The target container's template has this memory request and limit, in MiB.
    pub fn with_template(mut self, request: Option<u64>, limit: Option<u64>) -> Self {
        self.template = Some(MemoryResources {
            request: request.map(|mib| mib << 20),
            limit: limit.map(|mib| mib << 20),
        });
        self
    }

    /// `pods` are not Ready (and so not available).
    pub fn with_unready(mut self, pods: &[&str]) -> Self {
        self.unready = pods.iter().map(|pod| (*pod).to_owned()).collect();
        self.available_replicas = self.replicas.saturating_sub(self.unready.len() as u32);
        self
    }

    /// Only `available` of the replicas are available.
    pub fn with_available(mut self, available: u32) -> Self {
        self.available_replicas = available;
        self
    }

    /// A rollout has not finished.
    pub fn rolling_out(mut self) -> Self {
        self.rollout_in_progress = true;
        self
    }

    /// `spec.paused` is set.
    pub fn paused(mut self) -> Self {
        self.paused = true;
        self
    }
}

/// A pod whose containers have restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restarted {
    pub pod: String,
    /// Restarts of all its containers.
    pub restarts: u32,
    /// The kubelet's reason for the latest end of a container, such as `OOMKilled` or `Error`.
    pub last_reason: String,
    pub last_exit_code: i32,
    pub last_finished: Option<Timestamp>,
}

impl Workload {
    /// Desired replicas that are not available right now.
    pub fn unavailable(&self) -> u32 {
        self.replicas.saturating_sub(self.available_replicas)
    }
}

/// The latest fresh reading of one current pod.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Reading {
    pub ratio: f64,
    pub bytes: u64,
    pub limit_bytes: u64,
}

/// What the samples say about the current pods.
#[derive(Debug)]
pub(super) struct Observation {
    /// Latest reading of every current pod that has one.
    pub readings: BTreeMap<String, Reading>,
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
