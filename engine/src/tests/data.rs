//! Missing, stale and foreign data never acts.

use super::*;
use crate::Action;

/// Acts at the first critical sample, so only the data can stop it.
fn eager() -> Policy {
    Policy::test()
        .with_sustain(Duration::ZERO)
        .with_cooldown(Duration::ZERO)
}

#[test]
fn stale_samples_never_trigger_an_action() {
    let mut run = Run::new(eager(), Workload::test(&["a", "b"]));
    let old = at(0);
    let samples = [sample("a", 99.0, old), sample("b", 99.0, old)];

    let decision = run.eval(&samples, at(121));

    assert_eq!(decision.action, None);
    assert_eq!(decision.held_back, None);
    assert!(!decision.metrics_available);
    assert!(
        decision
            .metrics_message
            .contains("is 2m 1s old (staleAfter 2m)"),
        "{}",
        decision.metrics_message
    );
}

#[test]
fn one_stale_pod_makes_the_whole_reading_unusable() {
    let mut run = Run::new(eager(), Workload::test(&["a", "b"]));
    let samples = [sample("a", 99.0, at(600)), sample("b", 40.0, at(0))];

    let decision = run.eval(&samples, at(600));

    assert_eq!(decision.action, None);
    assert!(!decision.metrics_available);
    assert!(decision.metrics_message.contains("pod b"));
}

#[test]
fn missing_samples_never_trigger_an_action() {
    let mut run = Run::new(eager(), Workload::test(&["a", "b"]));

    let decision = run.eval(&[], at(0));

    assert_eq!(decision.action, None);
    assert!(!decision.metrics_available);
    assert_eq!(
        decision.metrics_message,
        "no memory samples for any of the 2 current pods"
    );
}

#[test]
fn samples_for_pods_that_are_gone_are_ignored() {
    let mut run = Run::new(eager(), Workload::test(&["a", "b"]));

    let decision = run.at(0, &[("gone", 99.0), ("a", 50.0), ("b", 50.0)]);
    assert_eq!(decision.action, None);
    assert!(decision.metrics_available);
    assert!(!decision.memory.critical_since.contains_key("gone"));

    let only_gone = run.at(60, &[("gone", 99.0)]);
    assert_eq!(only_gone.action, None);
    assert!(!only_gone.metrics_available);
}

#[test]
fn missing_data_never_scales_in() {
    let policy = eager().with_scale_in_stabilization(Duration::ZERO);
    let mut run = Run::new(policy, Workload::test(&["a", "b", "c"]));

    assert_eq!(run.eval(&[], at(0)).action, None);
    let stale = [
        sample("a", 5.0, at(0)),
        sample("b", 5.0, at(0)),
        sample("c", 5.0, at(0)),
    ];
    assert_eq!(run.eval(&stale, at(3600)).action, None);
}

#[test]
fn a_gap_in_the_data_restarts_the_sustain_clock() {
    let mut run = Run::new(Policy::test(), Workload::test(&["a", "b"]));
    run.at(0, &[("a", 97.0), ("b", 50.0)]);
    run.at(240, &[("a", 97.0), ("b", 50.0)]);

    let gap = run.eval(&[], at(270));
    assert!(gap.memory.critical_since.is_empty());

    assert_eq!(run.at(300, &[("a", 97.0), ("b", 50.0)]).action, None);
    assert_eq!(run.at(540, &[("a", 97.0), ("b", 50.0)]).action, None);
    assert_eq!(
        run.at(600, &[("a", 97.0), ("b", 50.0)]).action,
        Some(Action::Evict {
            pods: vec!["a".into()]
        })
    );
}

#[test]
fn a_pod_without_a_sample_blocks_scaling_but_not_evicting_a_measured_pod() {
    let policy = eager().with_max_unavailable(1);
    let mut run = Run::new(policy, Workload::test(&["a", "b", "c"]));

    let high = run.at(0, &[("a", 85.0), ("b", 85.0)]);
    assert_eq!(high.action, None);
    assert!(
        high.reasons
            .iter()
            .any(|r| r == "scaling waits: no sample yet for c")
    );

    let critical = run.at(60, &[("a", 99.0), ("b", 85.0)]);
    assert_eq!(
        critical.action,
        Some(Action::Evict {
            pods: vec!["a".into()]
        })
    );
}
