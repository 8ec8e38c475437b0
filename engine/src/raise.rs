//! Raising a pod's memory limit in place ([`HighAction::RaiseLimit`]): each pod that stays
//! high gets `step` more, up to `max`, through its `resize` subresource, so the process keeps
//! running and its usage ratio drops. A critical pod that can still be raised is raised before
//! `onCritical` acts on it, and `onCritical` acts on it if it is still critical a full
//! `sustain` after that raise. A raise the cluster refused, a resize that can never be carried
//! out (`Infeasible`), or one still deferred or in progress `timeout` after it was asked for,
//! gets the pod `onCritical` at once, if it is still high.
//!
//! [`HighAction::RaiseLimit`]: super::HighAction::RaiseLimit

use jiff::Timestamp;

use super::facts::{Facts, ForCritical, Hold, Wanted};
use super::observe::describe;
use super::policy::RaiseLimits;
use super::workload::PodLimits;
use super::{Action, ActionKind, Raise, elapsed, human, size};

/// The high pods whose raise was refused or whose resize will not be carried out.
pub(super) fn stuck(f: &Facts, reasons: &mut Vec<String>) -> Option<ForCritical> {
    let bounds = f.policy.raise?;
    let fallback = f.policy.on_critical.kind();
    let mut pods = Vec::new();
    let mut why = Vec::new();
    for (pod, refusal) in &f.memory.refused_raises {
        // Once for each refusal, and only for a current pod.
        if !f.workload.pods.contains(pod)
            || f.history
                .last_on(&[fallback], pod)
                .is_some_and(|last| last >= refusal.at)
        {
            continue;
        }
        why.push(format!("the raise of {pod} was refused: {}", refusal.why));
        pods.push(pod.clone());
    }
    for limits in &f.workload.limits {
        let Some(resize) = &limits.resize else {
            continue;
        };
        // A pod back under its high mark no longer needs the memory it asked for.
        let Some(high_since) = f.memory.high_pods_since.get(&limits.pod) else {
            continue;
        };
        let asked = [
            resize.since,
            f.history.last_on(&ActionKind::RAISES, &limits.pod),
            Some(*high_since),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(*high_since);
        let waited = elapsed(asked, f.now);
        let to = resize.to.map_or_else(|| "more".to_owned(), size);
        let message = if resize.message.is_empty() {
            String::new()
        } else {
            format!(" ({})", resize.message)
        };
        if !resize.state.is_hopeless() && waited < bounds.timeout {
            reasons.push(format!(
                "{}: the resize to {to} is {} for {}{message}; given up after {}",
                limits.pod,
                resize.state,
                human(waited),
                human(bounds.timeout)
            ));
            continue;
        }
        // Once for each resize that failed.
        if pods.contains(&limits.pod)
            || f.history
                .last_on(&[fallback], &limits.pod)
                .is_some_and(|last| last >= asked)
        {
            continue;
        }
        why.push(format!(
            "the resize of {} to {to} is {} after {}{message}",
            limits.pod,
            resize.state,
            human(waited)
        ));
        pods.push(limits.pod.clone());
    }
    if pods.is_empty() {
        return None;
    }
    let why = why.join("; ");
    reasons.push(format!(
        "{why}: falling back to onCritical ({})",
        fallback.names().status
    ));
    Some(ForCritical {
        pods,
        alarm: format!("memory limit not raised: {why}"),
    })
}

/// Raises the limit of every pod high for `sustain` since it turned high or was last raised,
/// most urgent first. Containers that restart on a resize are raised only when no other pod
/// is due, and within the restart budget.
pub(super) fn raise(f: &Facts, reasons: &mut Vec<String>) -> Option<Wanted> {
    let bounds = f.policy.raise?;
    let mut due: Vec<(f64, Raise, bool)> = Vec::new();
    for (pod, since) in &f.memory.high_pods_since {
        let Some(reading) = f.observation.readings.get(pod) else {
            continue;
        };
        let start = f
            .history
            .last_on(&ActionKind::RAISES, pod)
            .map_or(*since, |last| last.max(*since));
        let held = elapsed(start, f.now);
        if held < f.policy.sustain {
            reasons.push(format!(
                "{}: high for {} of the {} sustain",
                describe(pod, reading),
                human(held),
                human(f.policy.sustain)
            ));
            continue;
        }
        match raisable(f, bounds, pod) {
            Ok((raise, restart)) => due.push((reading.ratio, raise, restart)),
            Err(why) => reasons.push(format!(
                "{}: high for {}, limit not raised: {why}",
                describe(pod, reading),
                human(held)
            )),
        }
    }
    due.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.pod.cmp(&b.1.pod)));
    let restart = due.iter().all(|(_, _, restart)| *restart);
    let mut raises: Vec<Raise> = due
        .into_iter()
        .filter(|(_, _, r)| *r == restart)
        .map(|(_, raise, _)| raise)
        .collect();
    if raises.is_empty() {
        return None;
    }
    let mut hold = None;
    if restart {
        let used = f.history.restarts_in_window(f.now);
        let budget = f.policy.max_restarts_per_hour.saturating_sub(used) as usize;
        if budget == 0 {
            raises.truncate(1);
            hold = Some(Hold::budget_exhausted(used, f.policy));
        } else {
            raises.truncate(budget);
        }
    }
    reasons.push(format!(
        "high for at least {}: raising in place (by {}, up to {})",
        human(f.policy.sustain),
        size(bounds.step),
        size(bounds.max)
    ));
    Some(Wanted {
        pods: raises.iter().map(|r| r.pod.clone()).collect(),
        action: Action::RaiseLimit { raises, restart },
        hold,
    })
}

/// A critical pod is raised before `onCritical` acts on it, once: when it can be raised and
/// was not since it turned critical at `since`.
pub(super) fn first(f: &Facts, pod: &str, since: Timestamp) -> bool {
    f.policy
        .raise
        .is_some_and(|bounds| raisable(f, bounds, pod).is_ok())
        && f.history
            .last_on(&ActionKind::RAISES, pod)
            .is_none_or(|last| last < since)
}

/// The raise `pod` can have now, and whether it restarts the container; or why it can have
/// none.
fn raisable(f: &Facts, bounds: RaiseLimits, pod: &str) -> Result<(Raise, bool), String> {
    let limits: &PodLimits = f
        .workload
        .limits
        .iter()
        .find(|l| l.pod == pod)
        .ok_or("the pod has no such container")?;
    if let Some(resize) = &limits.resize {
        return Err(format!("a resize is {} already", resize.state));
    }
    if let Some(refusal) = f.memory.refused_raises.get(pod) {
        return Err(format!("its last raise was refused: {}", refusal.why));
    }
    let from = limits
        .running
        .limit
        .ok_or("its container has no memory limit")?;
    if from >= bounds.max {
        return Err(format!("already at limits.raise.max {}", size(bounds.max)));
    }
    if limits.restarts_on_resize && !bounds.allow_restart {
        return Err(
            "its container restarts on a memory resize (resizePolicy RestartContainer) and limits.raise.allowRestart is off"
                .to_owned(),
        );
    }
    let to = from.saturating_add(bounds.step).min(bounds.max);
    Ok((
        Raise {
            pod: pod.to_owned(),
            from,
            to,
            request: limits.guaranteed.then_some(to),
        },
        limits.restarts_on_resize,
    ))
}
