//! A simulated Deployment that obeys the engine, and the shape of the
//! inputs that drive it.

use super::*;
use crate::{Action, MemoryResources, Outcome, PodLimits};

/// The memory limit every simulated pod starts with.
pub(super) const POD_LIMIT: u64 = 1 << 30;

/// Usage values per step; more than any generated `max_replicas` (3 + 4).
pub(super) const MAX_PODS: usize = 8;

/// How the samples of one evaluation look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Data {
    /// Every pod sampled just now.
    Fresh,
    /// Only every other pod sampled.
    Partial,
    /// No samples at all.
    Missing,
    /// Every pod sampled, one of them too long ago.
    Stale,
    /// Samples only for pods that are not the Deployment's.
    Foreign,
}

#[derive(Debug, Clone)]
pub(super) struct Step {
    pub(super) after: u64,
    pub(super) usage: Vec<f64>,
    pub(super) data: Data,
    pub(super) external_rollout: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Scenario {
    pub(super) policy: Policy,
    pub(super) replicas: u32,
    pub(super) paused: bool,
    pub(super) steps: Vec<Step>,
}

/// One evaluation as the engine saw it.
pub(super) struct Evaluated {
    pub(super) now: Timestamp,
    pub(super) data: Data,
    pub(super) before: Workload,
    pub(super) samples: Vec<Sample>,
    pub(super) decision: Decision,
}

/// A Deployment that obeys the engine: an evicted pod is replaced at once
/// under a new name and stays unavailable for one evaluation; a rolling
/// restart stays in progress for two, then replaces every pod.
pub(super) struct Sim {
    policy: Policy,
    pub(super) workload: Workload,
    memory: Memory,
    now: Timestamp,
    born: u32,
    /// Evaluations left until each evicted pod's replacement is available.
    recovering: Vec<u32>,
    /// Evaluations left until the current rollout finishes.
    rollout: u32,
    /// The samples of the prediction window, which a predicting policy's query returns.
    window: Vec<Sample>,
}

impl Sim {
    pub(super) fn new(scenario: &Scenario) -> Self {
        let mut sim = Self {
            policy: scenario.policy.clone(),
            workload: Workload {
                paused: scenario.paused,
                ..Workload::default()
            },
            memory: Memory::default(),
            now: at(0),
            born: 0,
            recovering: Vec::new(),
            rollout: 0,
            window: Vec::new(),
        };
        sim.resize(scenario.replicas);
        sim
    }

    pub(super) fn run(scenario: &Scenario) -> (Self, Vec<Evaluated>) {
        let mut sim = Self::new(scenario);
        let log = scenario.steps.iter().map(|step| sim.step(step)).collect();
        (sim, log)
    }

    fn pod(&mut self) -> String {
        self.born += 1;
        format!("pod-{}", self.born)
    }

    fn resize(&mut self, replicas: u32) {
        while self.workload.pods.len() < replicas as usize {
            let pod = self.pod();
            self.workload.pods.push(pod);
        }
        self.workload.pods.truncate(replicas as usize);
        self.workload.replicas = replicas;
    }

    pub(super) fn step(&mut self, step: &Step) -> Evaluated {
        self.now += Duration::from_secs(step.after);
        if step.external_rollout && self.rollout == 0 {
            self.rollout = 2;
        }
        self.workload.rollout_in_progress = self.rollout > 0;
        let down = u32::try_from(self.recovering.len()).expect("few pods");
        self.workload.available_replicas = self.workload.replicas.saturating_sub(down);

        self.track_limits();
        let samples = self.samples(step);
        let before = self.workload.clone();
        let mut decision = decide(
            &self.policy,
            &samples,
            &self.workload,
            &self.memory,
            self.now,
        );
        decision.settle(&Outcome::Applied);
        self.memory = decision.memory.clone();
        if !decision.dry_run
            && let Some(action) = &decision.action
        {
            self.apply(action);
        }
        self.tick();
        Evaluated {
            now: self.now,
            data: step.data,
            before,
            samples,
            decision,
        }
    }

    /// New pods start at [`POD_LIMIT`]; gone pods' limits are forgotten.
    fn track_limits(&mut self) {
        let pods = &self.workload.pods;
        self.workload.limits.retain(|l| pods.contains(&l.pod));
        for pod in pods {
            if !self.workload.limits.iter().any(|l| &l.pod == pod) {
                self.workload.limits.push(PodLimits {
                    pod: pod.clone(),
                    running: MemoryResources {
                        request: None,
                        limit: Some(POD_LIMIT),
                    },
                    restarts_on_resize: false,
                    guaranteed: false,
                    resize: None,
                });
            }
        }
    }

    /// This step's samples and, for a predicting policy, the earlier ones of its window (unless
    /// the data is missing, or not the Deployment's, when the query has nothing of it).
    fn samples(&mut self, step: &Step) -> Vec<Sample> {
        let now = self.fresh_samples(step);
        let Some(prediction) = self.policy.prediction else {
            return now;
        };
        if matches!(step.data, Data::Missing | Data::Foreign) {
            return now;
        }
        let start = self.now - prediction.window;
        self.window.retain(|s| s.at >= start);
        if step.data == Data::Stale {
            // The stale pod's query has nothing newer than its stale sample.
            let (pod, stale) = (&self.workload.pods[0], self.stale());
            self.window.retain(|s| &s.pod != pod || s.at <= stale);
        }
        self.window.extend(now);
        self.window.clone()
    }

    fn fresh_samples(&self, step: &Step) -> Vec<Sample> {
        let pods = &self.workload.pods;
        let usage = |i: usize| step.usage[i % MAX_PODS] * 100.0;
        let stale = self.stale();
        match step.data {
            Data::Fresh => pods
                .iter()
                .enumerate()
                .map(|(i, pod)| sample(pod, usage(i), self.now))
                .collect(),
            Data::Partial => pods
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == 0)
                .map(|(i, pod)| sample(pod, usage(i), self.now))
                .collect(),
            Data::Missing => Vec::new(),
            Data::Stale => pods
                .iter()
                .enumerate()
                .map(|(i, pod)| sample(pod, usage(i), if i == 0 { stale } else { self.now }))
                .collect(),
            Data::Foreign => (0..MAX_PODS)
                .map(|i| sample(&format!("ghost-{i}"), usage(i), self.now))
                .collect(),
        }
    }

    /// Too old to use now.
    fn stale(&self) -> Timestamp {
        self.now - self.policy.stale_after - Duration::from_secs(1)
    }

    fn apply(&mut self, action: &Action) {
        match action {
            Action::ScaleTo { to, .. } => self.resize(*to),
            Action::Evict { pods } => {
                for evicted in pods {
                    let replacement = self.pod();
                    if let Some(slot) = self.workload.pods.iter_mut().find(|pod| *pod == evicted) {
                        *slot = replacement;
                        // Unavailable during the next evaluation.
                        self.recovering.push(2);
                    }
                }
            }
            Action::RollingRestart => self.rollout = 3,
            Action::SetLimits { request, limit } => {
                self.workload.template = Some(MemoryResources {
                    request: *request,
                    limit: *limit,
                });
                self.rollout = 3;
            }
            Action::RaiseLimit { raises, .. } => {
                for raise in raises {
                    if let Some(limits) =
                        self.workload.limits.iter_mut().find(|l| l.pod == raise.pod)
                    {
                        limits.running.limit = Some(raise.to);
                    }
                }
            }
            Action::Alert { .. } => {}
        }
    }

    fn tick(&mut self) {
        for left in &mut self.recovering {
            *left -= 1;
        }
        self.recovering.retain(|left| *left > 0);
        if self.rollout > 0 {
            self.rollout -= 1;
            if self.rollout == 0 {
                let replicas = self.workload.replicas;
                self.workload.pods.clear();
                self.resize(replicas);
            }
        }
    }
}

pub(super) fn restarts(action: &Action) -> u32 {
    match action {
        Action::Evict { pods } => u32::try_from(pods.len()).expect("few pods"),
        Action::RollingRestart | Action::SetLimits { .. } => 1,
        Action::RaiseLimit { raises, restart } => {
            if *restart {
                u32::try_from(raises.len()).expect("few pods")
            } else {
                0
            }
        }
        Action::ScaleTo { .. } | Action::Alert { .. } => 0,
    }
}
