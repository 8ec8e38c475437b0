//! Which action the conditions call for, in precedence order: `onCritical` for a
//! pod whose raise in place will not happen, a critical pod, a leak projected to reach its
//! limit within the horizon (see `leak`), raising limits in
//! place (see `raise`), a high fleet, scale-in, then the container's memory
//! request and limit when they differ from the policy's. The first rule that wants to act
//! decides; its own limits (max replicas, max unavailable, restart budget, a
//! paused Deployment) may hold it back. The gates every action shares
//! (suspend, rollout, cooldown) live in the parent module.
//!
//! Every rule needs evidence newer than its own last action: after an
//! eviction, a scale-out or an alert, the condition has to hold for another
//! full `sustain` (or stabilization window) before the rule fires again.

use super::facts::{Facts, ForCritical, Hold, Wanted};
use super::observe::describe;
use super::policy::{CriticalAction, HighAction};
use super::{Action, ActionKind, Alarm, elapsed, human, leak, percent, raise, size};

/// The action the conditions call for, if any; explanations go to `reasons`.
pub(super) fn choose(facts: &Facts, reasons: &mut Vec<String>) -> Option<Wanted> {
    let for_critical = |due: ForCritical, reasons: &mut Vec<String>| {
        on_critical(facts, due.pods, due.alarm, reasons)
    };
    raise::stuck(facts, reasons)
        .map(|due| for_critical(due, reasons))
        .or_else(|| critical(facts, reasons))
        .or_else(|| leak::due(facts, reasons).map(|due| for_critical(due, reasons)))
        .or_else(|| raise::raise(facts, reasons))
        .or_else(|| high(facts, reasons))
        .or_else(|| scale_in(facts, reasons))
        .or_else(|| limits(facts, reasons))
}

fn critical(f: &Facts, reasons: &mut Vec<String>) -> Option<Wanted> {
    let p = f.policy;
    // A raise in place counts as acting on a critical pod: it must stay critical for another
    // sustain after one before `onCritical` acts on it.
    let [raise, raise_restarting] = ActionKind::RAISES;
    let acted = [p.on_critical.kind(), raise, raise_restarting];
    let mut due = Vec::new();
    for (pod, since) in &f.memory.critical_since {
        let Some(reading) = f.observation.readings.get(pod) else {
            continue;
        };
        if raise::first(f, pod, *since) {
            reasons.push(format!(
                "{}: critical, and its limit can still be raised: raised first",
                describe(pod, reading)
            ));
            continue;
        }
        let after_action = f.history.last_on(&acted, pod).filter(|last| last > since);
        let held = elapsed(after_action.unwrap_or(*since), f.now);
        if held >= p.sustain {
            due.push((pod.as_str(), reading));
            continue;
        }
        let clock = match after_action {
            Some(_) => format!("still critical {} after the last action on it", human(held)),
            None => format!("critical for {}", human(held)),
        };
        reasons.push(format!(
            "{}: {clock} (>= {}); acts after the {} sustain",
            describe(pod, reading),
            percent(p.critical),
            human(p.sustain)
        ));
    }
    if due.is_empty() {
        return None;
    }
    // Most urgent first, so a limited eviction takes the pod closest to its limit.
    due.sort_by(|a, b| b.1.ratio.total_cmp(&a.1.ratio).then(a.0.cmp(b.0)));
    let list = due
        .iter()
        .map(|(pod, reading)| describe(pod, reading))
        .collect::<Vec<_>>()
        .join(", ");
    reasons.push(format!(
        "critical (>= {}) for at least {}: {list}",
        percent(p.critical),
        human(p.sustain)
    ));
    let pods: Vec<String> = due.iter().map(|(pod, _)| (*pod).to_owned()).collect();
    let alarm = format!("memory critical (>= {}): {list}", percent(p.critical));
    Some(on_critical(f, pods, alarm, reasons))
}

/// The policy's `onCritical` action on `pods`; `alarm` is what an alert says.
fn on_critical(f: &Facts, pods: Vec<String>, alarm: String, reasons: &mut Vec<String>) -> Wanted {
    match f.policy.on_critical {
        CriticalAction::RestartPod => evict(f, pods, reasons),
        CriticalAction::RollingRestart => rolling_restart(f, pods),
        CriticalAction::AlertOnly => Wanted {
            action: Action::Alert {
                about: Alarm::Critical,
                message: alarm,
            },
            pods,
            hold: None,
        },
    }
}

fn evict(f: &Facts, mut pods: Vec<String>, reasons: &mut Vec<String>) -> Wanted {
    let p = f.policy;
    let unavailable = f.workload.unavailable();
    // Pods already unavailable cost no room: evicting them makes nothing less available. They
    // go first.
    pods.sort_by_key(|pod| !f.workload.unready.contains(pod));
    let free = pods
        .iter()
        .filter(|pod| f.workload.unready.contains(pod))
        .count() as u32;
    let room = p.max_unavailable.saturating_sub(unavailable) + free;
    let used = f.history.restarts_in_window(f.now);
    let budget = p.max_restarts_per_hour.saturating_sub(used);
    let allowed = room.min(budget) as usize;
    let due = pods.len();
    let hold = if allowed == 0 {
        // Show what would be evicted once there is room.
        pods.truncate(p.max_unavailable.max(1) as usize);
        // An exhausted budget is the standing reason: room comes and goes as pods turn ready
        // and unready (and the Deployment's count and the pods' conditions arrive apart), the
        // budget only as the hour passes.
        Some(if budget == 0 {
            Hold::budget_exhausted(used, p)
        } else {
            Hold::plain(format!(
                "{unavailable} of {} pods already unavailable; maxUnavailable {} leaves no room to evict",
                f.workload.replicas, p.max_unavailable
            ))
        })
    } else {
        pods.truncate(allowed);
        if pods.len() < due {
            reasons.push(format!(
                "evicting {} of {due} critical pods now: room for {room} more unavailable (maxUnavailable {}), {budget} restarts left this hour",
                pods.len(),
                p.max_unavailable
            ));
        }
        None
    };
    Wanted {
        action: Action::Evict { pods: pods.clone() },
        pods,
        hold,
    }
}

fn rolling_restart(f: &Facts, pods: Vec<String>) -> Wanted {
    let used = f.history.restarts_in_window(f.now);
    let hold = if f.workload.paused {
        Some(Hold::plain(
            "the Deployment is paused, so a rolling restart would never start",
        ))
    } else if used >= f.policy.max_restarts_per_hour {
        Some(Hold::budget_exhausted(used, f.policy))
    } else {
        None
    };
    Wanted {
        action: Action::RollingRestart,
        pods,
        hold,
    }
}

fn high(f: &Facts, reasons: &mut Vec<String>) -> Option<Wanted> {
    let p = f.policy;
    // Raising limits acts on each high pod of its own, not on the fleet.
    if p.on_high == HighAction::RaiseLimit || !f.observation.covers_fleet() {
        return None;
    }
    let since = f.memory.high_since?;
    let kind = p.on_high.kind();
    let start = f
        .history
        .last(&[kind])
        .map_or(since, |last| last.max(since));
    let held = elapsed(start, f.now);
    let mean = percent(f.observation.mean());
    if held < p.sustain {
        reasons.push(format!(
            "fleet high (average {mean}, clears below {}) for {} of the {} sustain",
            percent(p.low),
            human(held),
            human(p.sustain)
        ));
        return None;
    }
    reasons.push(format!(
        "fleet high for {}: average {mean} reached {} and has not fallen below {}",
        human(held),
        percent(p.high),
        percent(p.low)
    ));
    let from = f.workload.replicas;
    Some(match p.on_high {
        HighAction::ScaleOut => {
            let at_max = from >= p.max_replicas;
            let hold =
                at_max.then(|| Hold::plain(format!("already at maxReplicas {}", p.max_replicas)));
            // A held-back scale-out shows the target it wanted.
            let to = if at_max {
                from.saturating_add(p.step)
            } else {
                from.saturating_add(p.step).min(p.max_replicas)
            };
            Wanted {
                action: Action::ScaleTo { from, to },
                pods: Vec::new(),
                hold,
            }
        }
        HighAction::AlertOnly => Wanted {
            action: Action::Alert {
                about: Alarm::High,
                message: format!(
                    "fleet memory high: average {mean} of the limit for {} (high {}, {from} replicas)",
                    human(held),
                    percent(p.high)
                ),
            },
            pods: Vec::new(),
            hold: None,
        },
        HighAction::RaiseLimit => return None,
    })
}

fn scale_in(f: &Facts, reasons: &mut Vec<String>) -> Option<Wanted> {
    let p = f.policy;
    // Only a policy allowed to scale out manages the replica count at all.
    if p.on_high != HighAction::ScaleOut || !f.observation.covers_fleet() {
        return None;
    }
    let since = f.memory.all_low_since?;
    let last_scale = f.history.last(&[ActionKind::ScaleOut, ActionKind::ScaleIn]);
    let start = last_scale.map_or(since, |last| last.max(since));
    let held = elapsed(start, f.now);
    let highest = f.observation.max().map_or(0.0, |(_, ratio)| ratio);
    let low = percent(p.low);
    if held < p.scale_in_stabilization {
        reasons.push(format!(
            "every pod below {low} (highest {}) for {} of the {} scale-in stabilization window",
            percent(highest),
            human(held),
            human(p.scale_in_stabilization)
        ));
        return None;
    }
    let from = f.workload.replicas;
    if from <= p.min_replicas {
        reasons.push(format!(
            "every pod below {low} for {}, already at minReplicas {}",
            human(held),
            p.min_replicas
        ));
        return None;
    }
    reasons.push(format!(
        "every pod below {low} (highest {}) for {}",
        percent(highest),
        human(held)
    ));
    Some(Wanted {
        action: Action::ScaleTo {
            from,
            to: from.saturating_sub(p.step).max(p.min_replicas),
        },
        pods: Vec::new(),
        hold: None,
    })
}

/// Brings the target container's memory request and limit to the policy's: a change of the
/// pod template, which the Deployment rolls out, so it costs one restart like a rolling
/// restart and waits for the budget. Only the values the policy sets are compared.
fn limits(f: &Facts, reasons: &mut Vec<String>) -> Option<Wanted> {
    let wanted = f.policy.limits;
    if wanted.request.is_none() && wanted.limit.is_none() {
        return None;
    }
    let Some(current) = f.workload.template else {
        reasons.push("limits: the pod template has no such container; nothing to set".into());
        return None;
    };
    let differs =
        |wanted: Option<u64>, current: Option<u64>| wanted.is_some_and(|w| Some(w) != current);
    if !differs(wanted.request, current.request) && !differs(wanted.limit, current.limit) {
        return None;
    }
    let shown = |bytes: Option<u64>| bytes.map_or_else(|| "unset".to_owned(), size);
    reasons.push(format!(
        "the container's memory request {} and limit {} differ from the policy's",
        shown(current.request),
        shown(current.limit)
    ));
    let used = f.history.restarts_in_window(f.now);
    let hold =
        (used >= f.policy.max_restarts_per_hour).then(|| Hold::budget_exhausted(used, f.policy));
    Some(Wanted {
        action: Action::SetLimits {
            request: wanted.request,
            limit: wanted.limit,
        },
        pods: Vec::new(),
        hold,
    })
}
