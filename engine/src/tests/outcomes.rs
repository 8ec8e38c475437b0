//! History holds what happened: the action the caller settles as carried out or reported,
//! never one the cluster refused; and the limits rule, which acts under the same rules.

use super::*;
use crate::{Action, ActionKind, Outcome};

const HEALTHY: f64 = 50.0;
const MIB: u64 = 1 << 20;

#[test]
fn a_refused_action_is_not_remembered_and_costs_nothing() {
    let policy = Policy::test()
        .with_sustain(Duration::ZERO)
        .with_max_restarts_per_hour(1);
    let mut run = Run::new(policy, Workload::test(&["a", "b"]));
    let refused = Outcome::Refused("a PodDisruptionBudget said no".into());

    let first = run.eval_ending(
        &[sample("a", 99.0, at(0)), sample("b", HEALTHY, at(0))],
        at(0),
        &refused,
    );
    assert!(matches!(first.action, Some(Action::Evict { .. })));
    assert!(first.memory.history.is_empty());

    // Neither the cooldown nor the budget of one restart holds the next attempt back.
    let second = run.at(60, &[("a", 99.0), ("b", HEALTHY)]);
    assert_eq!(
        second.action,
        Some(Action::Evict {
            pods: vec!["a".into()]
        })
    );
    let remembered = &second.memory.history;
    assert_eq!(remembered.len(), 1);
    assert_eq!(remembered[0].kind, ActionKind::Evict);
    assert!(
        remembered[0].reason.contains("action: evict a"),
        "{}",
        remembered[0].reason
    );
}

#[test]
fn a_reported_alert_is_remembered_and_paces_the_next_one() {
    let policy = Policy::test()
        .with_sustain(Duration::from_secs(60))
        .on_critical(crate::CriticalAction::AlertOnly);
    let mut run = Run::new(policy, Workload::test(&["a", "b"]));
    let usage = |seconds| {
        [
            sample("a", 99.0, at(seconds)),
            sample("b", 10.0, at(seconds)),
        ]
    };
    run.eval_ending(&usage(0), at(0), &Outcome::Reported);
    let alert = run.eval_ending(&usage(60), at(60), &Outcome::Reported);
    assert_eq!(
        alert.action.as_ref().map(Action::kind),
        Some(ActionKind::CriticalAlert)
    );
    assert_eq!(alert.memory.history.len(), 1);
    let again = run.eval_ending(&usage(90), at(90), &Outcome::Reported);
    assert_eq!(again.action, None, "{:?}", again.reasons);
}

#[test]
fn limits_that_differ_from_the_policy_are_set() {
    let policy = Policy::test().with_limits(Some(32), Some(128));
    let workload = Workload::test(&["a", "b"]).with_template(Some(64), Some(512));
    let mut run = Run::new(policy, workload);

    let decision = run.all_at(0, HEALTHY);

    assert_eq!(
        decision.action,
        Some(Action::SetLimits {
            request: Some(32 * MIB),
            limit: Some(128 * MIB),
        })
    );
    assert!(
        decision
            .reasons
            .iter()
            .any(|r| r
                == "the container's memory request 64Mi and limit 512Mi differ from the policy's"),
        "{:?}",
        decision.reasons
    );
    let remembered = &decision.memory.history;
    assert_eq!(remembered[0].kind, ActionKind::SetLimits);
    assert_eq!(remembered[0].restarts(), 1);
}

#[test]
fn limits_that_match_or_a_missing_container_ask_for_nothing() {
    let policy = Policy::test().with_limits(None, Some(128));
    let matching = Workload::test(&["a"]).with_template(Some(64), Some(128));
    assert_eq!(
        Run::new(policy.clone(), matching).all_at(0, HEALTHY).action,
        None
    );

    let missing = Run::new(policy, Workload::test(&["a"])).all_at(0, HEALTHY);
    assert_eq!(missing.action, None);
    assert!(
        missing
            .reasons
            .iter()
            .any(|r| r.contains("no such container")),
        "{:?}",
        missing.reasons
    );
}

#[test]
fn setting_limits_waits_for_cooldown_budget_rollouts_and_suspend_and_yields_to_critical() {
    let base = Policy::test()
        .with_sustain(Duration::ZERO)
        .with_limits(None, Some(128));
    let workload = Workload::test(&["a", "b"]).with_template(None, Some(512));

    // A critical pod comes first; the limits wait for the cooldown after it.
    let mut run = Run::new(base.clone(), workload.clone());
    let first = run.at(0, &[("a", 99.0), ("b", HEALTHY)]);
    assert!(matches!(first.action, Some(Action::Evict { .. })));
    let held = run.all_at(60, HEALTHY);
    assert_eq!(held.action, None);
    assert!(
        held.throttled
            .as_deref()
            .is_some_and(|t| t.starts_with("cooldown: the last disruptive action (eviction)")),
        "{held:?}"
    );
    assert!(matches!(
        run.all_at(300, HEALTHY).action,
        Some(Action::SetLimits { .. })
    ));

    // The restart budget counts it, and holds it back once spent.
    let spent = base.clone().with_max_restarts_per_hour(0);
    let throttled = Run::new(spent, workload.clone()).all_at(0, HEALTHY);
    assert_eq!(throttled.action, None);
    assert_eq!(
        throttled.throttled.as_deref(),
        Some("restart budget exhausted: 0 restarts in the last hour (maxRestartsPerHour 0)")
    );

    let rolling = Run::new(base.clone(), workload.clone().rolling_out()).all_at(0, HEALTHY);
    assert_eq!(rolling.action, None);
    let suspended = Run::new(base.clone().suspended(), workload.clone()).all_at(0, HEALTHY);
    assert_eq!(suspended.action, None);

    let dry = Run::new(base.dry_run(), workload).all_at(0, HEALTHY);
    assert!(dry.dry_run && matches!(dry.action, Some(Action::SetLimits { .. })));
    assert!(dry.memory.history[0].dry_run);
}
