//! Scaling out on a high fleet, hysteresis, and the scale-in that
//! memory-based HPAs never do.

use super::*;
use crate::{Action, HighAction};

fn three_pods() -> Workload {
    Workload::test(&["a", "b", "c"])
}

#[test]
fn a_high_fleet_scales_out_by_step_after_sustain() {
    let mut run = Run::new(Policy::test().with_replicas(2, 6, 2), three_pods());

    assert_eq!(run.all_at(0, 85.0).action, None);
    assert_eq!(run.all_at(299, 85.0).action, None);
    let decision = run.all_at(300, 85.0);

    assert!(decision.high);
    assert_eq!(decision.action, Some(Action::ScaleTo { from: 3, to: 5 }));
}

#[test]
fn scale_out_never_passes_max_replicas() {
    let policy = Policy::test()
        .with_sustain(Duration::ZERO)
        .with_replicas(2, 4, 3);
    let mut run = Run::new(policy, three_pods());

    assert_eq!(
        run.all_at(0, 85.0).action,
        Some(Action::ScaleTo { from: 3, to: 4 })
    );
}

#[test]
fn at_max_replicas_scale_out_is_held_back_with_a_reason() {
    let policy = Policy::test()
        .with_sustain(Duration::ZERO)
        .with_replicas(1, 3, 1);
    let mut run = Run::new(policy, three_pods());

    let decision = run.all_at(0, 85.0);

    assert_eq!(decision.action, None);
    let held = decision.held_back.expect("held back");
    assert_eq!(held.action, Action::ScaleTo { from: 3, to: 4 });
    assert_eq!(held.reason, "already at maxReplicas 3");
    assert_eq!(decision.throttled, None);
}

#[test]
fn the_high_state_clears_only_below_the_low_mark() {
    let mut run = Run::new(Policy::test(), three_pods());
    run.all_at(0, 85.0);

    assert!(run.all_at(120, 70.0).memory.high_since.is_some());
    assert!(run.all_at(240, 61.0).memory.high_since.is_some());
    let sustained = run.all_at(300, 79.0);
    assert!(sustained.high);
    assert_eq!(sustained.action, Some(Action::ScaleTo { from: 3, to: 4 }));
    assert!(!run.all_at(360, 59.0).high);
}

#[test]
fn usage_between_the_marks_never_enters_the_high_state() {
    let policy = Policy::test().with_sustain(Duration::ZERO);
    let mut run = Run::new(policy, three_pods());
    run.all_at(0, 50.0);

    for (step, percent) in [79.0, 61.0, 78.5, 65.0, 79.9, 60.5].into_iter().enumerate() {
        let decision = run.all_at(60 * (step as u64 + 1), percent);
        assert!(!decision.high);
        assert_eq!(decision.action, None);
    }
}

#[test]
fn a_second_scale_out_needs_fresh_evidence_after_the_first() {
    let policy = Policy::test().with_cooldown(Duration::ZERO);
    let mut run = Run::new(policy, three_pods());
    run.all_at(0, 85.0);
    assert!(run.all_at(300, 85.0).action.is_some());

    assert_eq!(run.all_at(400, 85.0).action, None);
    assert_eq!(
        run.all_at(600, 85.0).action,
        Some(Action::ScaleTo { from: 3, to: 4 })
    );
}

#[test]
fn scale_in_waits_for_every_pod_to_stay_low_for_the_stabilization_window() {
    let mut run = Run::new(Policy::test(), three_pods());

    assert_eq!(run.all_at(0, 30.0).action, None);
    let waiting = run.all_at(599, 30.0);
    assert_eq!(waiting.action, None);
    assert!(
        waiting
            .reasons
            .iter()
            .any(|r| r.contains("for 9m 59s of the 10m scale-in stabilization window"))
    );
    assert_eq!(
        run.all_at(600, 30.0).action,
        Some(Action::ScaleTo { from: 3, to: 2 })
    );
}

#[test]
fn one_pod_above_low_restarts_the_scale_in_window() {
    let mut run = Run::new(Policy::test(), three_pods());
    run.all_at(0, 30.0);
    run.at(300, &[("a", 30.0), ("b", 30.0), ("c", 61.0)]);

    assert_eq!(run.all_at(600, 30.0).action, None);
    assert_eq!(run.all_at(1199, 30.0).action, None);
    assert!(run.all_at(1200, 30.0).action.is_some());
}

#[test]
fn scale_in_never_goes_below_min_replicas() {
    let policy = Policy::test()
        .with_scale_in_stabilization(Duration::ZERO)
        .with_cooldown(Duration::ZERO)
        .with_replicas(2, 6, 2);
    let mut run = Run::new(policy, three_pods());

    assert_eq!(
        run.all_at(0, 30.0).action,
        Some(Action::ScaleTo { from: 3, to: 2 })
    );
    run.workload = Workload::test(&["a", "b"]);
    let at_min = run.all_at(60, 30.0);
    assert_eq!(at_min.action, None);
    assert!(
        at_min
            .reasons
            .iter()
            .any(|r| r.contains("already at minReplicas 2"))
    );
}

#[test]
fn an_alert_only_policy_alerts_and_never_changes_replicas() {
    let policy = Policy::test()
        .with_sustain(Duration::ZERO)
        .with_scale_in_stabilization(Duration::ZERO)
        .on_high(HighAction::AlertOnly);
    let mut run = Run::new(policy, three_pods());

    let high = run.all_at(0, 85.0);
    assert!(matches!(high.action, Some(Action::Alert { .. })));
    assert_eq!(run.all_at(3600, 10.0).action, None);
}
