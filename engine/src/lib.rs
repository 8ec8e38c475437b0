//! The pure decision engine: `(policy, samples, workload, memory, now) -> Decision`.
//!
//! No clocks, no I/O, no Kubernetes or Prometheus types, and no dependency that could bring
//! them (the crate depends on `jiff` for timestamps and `strum` for the list of action kinds
//! only), so the compiler holds the engine to its purity: an adapter maps the
//! `MemoryPolicy` spec and the cluster into [`Policy`], [`Sample`]s and a
//! [`Workload`], passes back the [`Memory`] from the previous [`Decision`],
//! and carries out [`Decision::action`].
//!
//! Choices worth knowing:
//! - **Missing data never acts.** No pods, no sample for any current pod, or
//!   any current pod's latest sample older than `stale_after`: no action, and
//!   every condition clock restarts, since evidence must be continuous.
//!   Samples of pods not in [`Workload::pods`] are ignored. A pod with no
//!   sample yet blocks the fleet rules (scale out, scale in) but not the
//!   eviction of another pod that is measured and critical.
//! - **The fleet signal is the average** ratio over the pods, as the HPA
//!   uses: scaling out helps when the load is spread, and a single hot pod
//!   is the critical rule's business. High is a hysteresis: entered at
//!   `high`, left only below `low`, and acted on after `sustain`.
//! - **Scale-in needs every pod** below `low` for `scale_in_stabilization`
//!   (the average would hide one pod that still needs its memory), one
//!   `step` at a time, never below `min_replicas`, and only under
//!   [`HighAction::ScaleOut`]: an alert-only policy never touches replicas.
//! - **Raising limits in place** (`onHigh: RaiseLimit`) acts on each pod at or above `high`
//!   for `sustain`, not on the fleet: see the `raise` module. A
//!   critical pod is raised once before `onCritical` acts on it; a resize that cannot happen
//!   falls back to `onCritical`.
//! - **Prediction** (`Policy::prediction`) reads each pod's growth over a window, projects when
//!   it reaches its limit and tells a leak from load: see the `growth` module. A leak
//!   projected to reach its limit within the horizon gets `onCritical` as a critical pod would.
//! - **Precedence**: a failed resize's fallback, critical, a predicted leak, raising limits, then high, then scale-in, then bringing the
//!   container's memory request and limit to the policy's (a rollout, so a
//!   disruptive action like the others); at most one action per evaluation,
//!   and every rule needs evidence newer than its own last action, so an alert
//!   repeats at most once per `sustain`.
//! - **Restarts** counted against `max_restarts_per_hour`: one per evicted
//!   pod, and one per rolling restart or change of limits (the Deployment
//!   paces those itself).
//! - **History is what happened.** The decision carries the entry to remember;
//!   the caller reports how the action ended with [`Decision::settle`], and
//!   only an action carried out or reported is remembered. The memory is the
//!   whole history under one cap ([`HISTORY_LIMIT`]); the operator shows it in
//!   status and reads it back after a restart.
//! - **Dry run** returns the action it would take with
//!   [`Decision::dry_run`] set, and remembers it once reported, so cooldown,
//!   budget and evidence pace the reports exactly as live mode would pace
//!   actions. Live mode ignores dry-run history, since nothing happened.
//! - **Suspend** and **a rollout in progress** hold every action back (a
//!   rollout lets alerts through); the clocks keep running meanwhile.

#![forbid(unsafe_code)]

mod action;
mod choose;
mod facts;
mod growth;
mod leak;
mod memory;
mod observe;
mod policy;
mod raise;
mod slope;
#[cfg(test)]
mod tests;
mod workload;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

pub use action::{Action, ActionKind, Alarm, Names, Outcome, Raise, Restarts};
pub use growth::{Traffic, Trend};
pub use memory::{HISTORY_LIMIT, Memory, PastAction, RESTART_WINDOW, Refusal};
pub use observe::{Sample, newest};
pub use policy::{CriticalAction, HighAction, Policy, Prediction, RaiseLimits};
pub use workload::{MemoryResources, PodLimits, Resize, ResizeState, Restarted, Workload};

use choose::choose;
use facts::{Facts, Hold, Wanted};
use memory::History;
use observe::{Observation, observe, track};

/// An action the engine wanted but did not take, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBack {
    /// What it would have done.
    pub action: Action,
    /// Why it did not.
    pub reason: String,
}

/// The outcome of one evaluation, with the memory to pass to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What to do now, if anything.
    pub action: Option<Action>,
    /// The action is only to be reported, not carried out.
    pub dry_run: bool,
    /// An action that was called for but held back.
    pub held_back: Option<HeldBack>,
    /// Set when the cooldown or the restart budget held an action back.
    pub throttled: Option<String>,
    /// The samples were usable; missing or stale data never acts.
    pub metrics_available: bool,
    /// Why the metrics are (un)usable, for the status condition.
    pub metrics_message: String,
    /// The fleet has been in the high state for `sustain`.
    pub high: bool,
    /// Some pod has been critical for `sustain`.
    pub critical: bool,
    /// The pods that have been critical for `sustain`, by name.
    pub critical_pods: Vec<String>,
    /// Each measured pod's growth over the prediction window, when the policy predicts and
    /// the samples are usable.
    pub trends: BTreeMap<String, Trend>,
    /// Human-readable explanation, in the order the engine reasoned.
    pub reasons: Vec<String>,
    /// What to pass to the next evaluation, once [`Decision::settle`] has told it how the
    /// action ended.
    pub memory: Memory,
    /// What history remembers of the action if it is carried out or reported.
    pending: Option<PastAction>,
}

impl Decision {
    /// Records how the action ended, the one place history is written: an action carried
    /// out or reported (an alert, or anything under dry run) is remembered and counts
    /// against cooldown and budget; one the cluster refused is not, since nothing happened,
    /// and one it refused for some pods is remembered for the others. A raise refused for a
    /// pod is remembered apart, so that the pod gets `onCritical` instead of the same raise
    /// again.
    pub fn settle(&mut self, outcome: &Outcome) {
        let Some(mut pending) = self.pending.take() else {
            return;
        };
        let refused = match outcome {
            Outcome::Applied | Outcome::Reported => Vec::new(),
            Outcome::Refused(_) => pending.pods.clone(),
            Outcome::Partly { refused, .. } => refused.clone(),
        };
        if let Some(why) = outcome.refusal()
            && ActionKind::RAISES.contains(&pending.kind)
        {
            for pod in &refused {
                let refusal = Refusal {
                    at: pending.at,
                    why: why.to_owned(),
                };
                self.memory.refused_raises.insert(pod.clone(), refusal);
            }
        }
        match outcome {
            Outcome::Refused(_) => {}
            Outcome::Partly { .. } => {
                pending.pods.retain(|pod| !refused.contains(pod));
                if !pending.pods.is_empty() {
                    self.memory.record(pending);
                }
            }
            Outcome::Applied | Outcome::Reported => self.memory.record(pending),
        }
    }

    /// The history entry [`Decision::settle`] records if the action is not refused.
    pub fn pending(&self) -> Option<&PastAction> {
        self.pending.as_ref()
    }
}

/// Decides what to do about one Deployment's memory right now.
#[must_use]
pub fn decide(
    policy: &Policy,
    samples: &[Sample],
    workload: &Workload,
    memory: &Memory,
    now: Timestamp,
) -> Decision {
    let observation = observe(policy, samples, workload, now);
    let mut memory = memory.clone();
    memory.forget(now, retention(policy));
    track(&mut memory, policy, &observation, now);

    let trends = match observation.unusable {
        None => growth::trends(policy, &observation, now),
        Some(_) => BTreeMap::new(),
    };
    let mut reasons = Vec::new();
    let outcome = match &observation.unusable {
        Some(why) => {
            reasons.push(format!(
                "no action: {why}; missing or stale data never acts"
            ));
            None
        }
        None => {
            reasons.push(summary(policy, &observation));
            if !observation.unobserved.is_empty() {
                reasons.push(format!(
                    "scaling waits: no sample yet for {}",
                    observation.unobserved.join(", ")
                ));
            }
            let facts = Facts {
                policy,
                workload,
                observation: &observation,
                memory: &memory,
                trends: &trends,
                history: History::new(&memory, policy.dry_run),
                now,
            };
            choose(&facts, &mut reasons).map(|wanted| (gate(&facts, &wanted), wanted))
        }
    };

    let (mut action, mut held_back, mut throttled, mut pending) = (None, None, None, None);
    match outcome {
        None => reasons.push("no action".to_owned()),
        Some((Some(hold), wanted)) => {
            reasons.push(format!("held back: {}: {}", wanted.action, hold.reason));
            throttled = hold.throttled.then(|| hold.reason.clone());
            held_back = Some(HeldBack {
                action: wanted.action,
                reason: hold.reason,
            });
        }
        Some((None, wanted)) => {
            reasons.push(if policy.dry_run {
                format!("dry run, not carried out: {}", wanted.action)
            } else {
                format!("action: {}", wanted.action)
            });
            pending = Some(PastAction {
                kind: wanted.action.kind(),
                pods: wanted.pods,
                at: now,
                dry_run: policy.dry_run,
                reason: reasons.join("; "),
            });
            action = Some(wanted.action);
        }
    }

    let critical_pods: Vec<String> = memory
        .critical_since
        .iter()
        .filter(|(_, since)| elapsed(**since, now) >= policy.sustain)
        .map(|(pod, _)| pod.clone())
        .collect();
    Decision {
        dry_run: policy.dry_run && action.is_some(),
        action,
        held_back,
        throttled,
        metrics_available: observation.unusable.is_none(),
        metrics_message: observation.message,
        high: memory
            .high_since
            .is_some_and(|since| elapsed(since, now) >= policy.sustain),
        critical: !critical_pods.is_empty(),
        critical_pods,
        trends,
        reasons,
        memory,
        pending,
    }
}

/// The holds every action shares, most fundamental first.
fn gate(facts: &Facts, wanted: &Wanted) -> Option<Hold> {
    let Facts {
        policy,
        workload,
        history,
        now,
        ..
    } = facts;
    let disruptive = wanted.action.is_disruptive();
    if policy.suspend {
        return Some(Hold::plain("the policy is suspended"));
    }
    if disruptive && workload.rollout_in_progress {
        return Some(Hold::plain(
            "a rollout is in progress; acting now would fight it",
        ));
    }
    if disruptive
        && let Some(last) = history.last_disruptive()
        && elapsed(last.at, *now) < policy.cooldown
    {
        return Some(Hold::throttled(format!(
            "cooldown: the last disruptive action ({}{}) was {} ago (cooldown {})",
            last.kind,
            if last.dry_run {
                ", only reported under dry run"
            } else {
                ""
            },
            human(elapsed(last.at, *now)),
            human(policy.cooldown)
        )));
    }
    wanted.hold.clone()
}

/// How far back memory must reach for every rule that looks back.
fn retention(policy: &Policy) -> Duration {
    [
        RESTART_WINDOW,
        policy.cooldown,
        policy.sustain,
        policy.scale_in_stabilization,
    ]
    .into_iter()
    .max()
    .unwrap_or(RESTART_WINDOW)
}

fn summary(policy: &Policy, observation: &Observation) -> String {
    let highest = observation
        .max()
        .map(|(pod, ratio)| format!(", highest {pod} {}", percent(ratio)))
        .unwrap_or_default();
    format!(
        "average {}{highest} (low {}, high {}, critical {})",
        percent(observation.mean()),
        percent(policy.low),
        percent(policy.high),
        percent(policy.critical)
    )
}

/// Time from `since` to `now`; zero when `since` is in the future (clock skew).
fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO)
}

/// A duration for humans, to the second: `5m 30s`.
fn human(duration: Duration) -> String {
    let seconds = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
    format!("{:#}", SignedDuration::from_secs(seconds))
}

/// A ratio as a whole percentage: `0.8` is `80%`.
fn percent(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

/// Bytes as a Kubernetes quantity, with the largest binary suffix that divides them
/// exactly: `134217728` is `128Mi`.
pub fn size(bytes: u64) -> String {
    [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)]
        .into_iter()
        .find(|(_, shift)| bytes != 0 && bytes.trailing_zeros() >= *shift)
        .map_or_else(
            || bytes.to_string(),
            |(suffix, shift)| format!("{}{suffix}", bytes >> shift),
        )
}
