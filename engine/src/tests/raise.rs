//! Raising limits in place: which pods, by how much, and what happens when a resize cannot be
//! carried out.

use super::*;
use crate::{Action, ActionKind, CriticalAction, Raise, Resize, ResizeState};

const MIB: u64 = 1 << 20;

/// Raises by 256 MiB up to 2 GiB; every pod runs with 1 GiB.
fn run(pods: &[&str]) -> Run {
    Run::new(
        Policy::test().raising(256, 2048),
        Workload::test(pods).with_pod_limits(1024),
    )
}

fn raised(pod: &str, from_mib: u64, to_mib: u64) -> Raise {
    Raise {
        pod: pod.into(),
        from: from_mib * MIB,
        to: to_mib * MIB,
        request: None,
    }
}

#[test]
fn a_pod_high_for_the_sustain_gets_a_step_more_and_the_others_nothing() {
    let mut run = run(&["a", "b"]);
    let usage = [("a", 85.0), ("b", 50.0)];
    assert_eq!(run.at(0, &usage).action, None);
    let early = run.at(299, &usage);
    assert_eq!(early.action, None);
    assert!(
        early
            .reasons
            .iter()
            .any(|r| r.contains("a 85% (870 MiB of 1024 MiB): high for 4m 59s of the 5m sustain")),
        "{:?}",
        early.reasons
    );

    let decision = run.at(300, &usage);

    assert_eq!(
        decision.action,
        Some(Action::RaiseLimit {
            raises: vec![raised("a", 1024, 1280)],
            restart: false
        })
    );
    assert_eq!(run.memory.history[0].kind, ActionKind::RaiseLimit);
    assert_eq!(run.memory.history[0].pods, ["a"]);
}

#[test]
fn the_fleet_is_neither_scaled_out_nor_in() {
    let mut run = run(&["a", "b"]);
    run.policy.cooldown = Duration::from_secs(1);
    // Every pod high: each is raised, no scale-out.
    run.all_at(0, 85.0);
    let decision = run.all_at(300, 85.0);
    assert_eq!(
        decision.action,
        Some(Action::RaiseLimit {
            raises: vec![raised("a", 1024, 1280), raised("b", 1024, 1280)],
            restart: false
        })
    );
    // Every pod low for long: no scale-in.
    run.all_at(400, 10.0);
    assert_eq!(run.all_at(2000, 10.0).action, None);
}

#[test]
fn a_raise_waits_for_new_evidence_and_never_goes_above_max() {
    let mut run = run(&["a"]);
    run.policy.cooldown = Duration::from_secs(1);
    run.all_at(0, 85.0);
    assert!(run.all_at(300, 85.0).action.is_some());
    // The kubelet applied it; the pod grows into its new limit and stays high.
    run.workload.pod_limits("a").running.limit = Some(1280 * MIB);
    assert_eq!(
        run.all_at(500, 85.0).action,
        None,
        "a sustain after the raise"
    );
    assert_eq!(
        run.all_at(600, 85.0).action,
        Some(Action::RaiseLimit {
            raises: vec![raised("a", 1280, 1536)],
            restart: false
        })
    );
    // Near the top the last step is cut to max; at max nothing more.
    run.workload.pod_limits("a").running.limit = Some(1900 * MIB);
    assert_eq!(
        run.all_at(900, 85.0).action,
        Some(Action::RaiseLimit {
            raises: vec![raised("a", 1900, 2048)],
            restart: false
        })
    );
    run.workload.pod_limits("a").running.limit = Some(2048 * MIB);
    let at_max = run.all_at(1200, 85.0);
    assert_eq!(at_max.action, None);
    assert!(
        at_max
            .reasons
            .iter()
            .any(|r| r.contains("limit not raised: already at limits.raise.max 2Gi")),
        "{:?}",
        at_max.reasons
    );
}

#[test]
fn a_critical_pod_is_raised_first_and_evicted_if_still_critical_a_sustain_later() {
    let mut run = run(&["a", "b"]);
    run.policy.cooldown = Duration::from_secs(60);
    let usage = [("a", 97.0), ("b", 50.0)];
    run.at(0, &usage);
    let first = run.at(300, &usage);
    assert_eq!(
        first.action,
        Some(Action::RaiseLimit {
            raises: vec![raised("a", 1024, 1280)],
            restart: false
        })
    );
    run.workload.pod_limits("a").running.limit = Some(1280 * MIB);
    // Still critical after its raise: onCritical once the sustain has passed again.
    assert_eq!(run.at(599, &usage).action, None);
    assert_eq!(
        run.at(600, &usage).action,
        Some(Action::Evict {
            pods: vec!["a".into()]
        })
    );
}

#[test]
fn a_critical_pod_that_cannot_be_raised_gets_on_critical_as_before() {
    let mut run = run(&["a"]);
    run.workload.pod_limits("a").running.limit = Some(2048 * MIB);
    run.all_at(0, 97.0);
    assert_eq!(
        run.all_at(300, 97.0).action,
        Some(Action::Evict {
            pods: vec!["a".into()]
        })
    );
}

fn pending(state: ResizeState, since: u64) -> Option<Resize> {
    Some(Resize {
        state,
        to: Some(1280 * MIB),
        since: Some(at(since)),
        message: "Node didn't have enough capacity".into(),
    })
}

#[test]
fn an_infeasible_resize_falls_back_to_on_critical_at_once_and_says_so() {
    let mut run = run(&["a", "b"]);
    run.policy.cooldown = Duration::from_secs(10);
    let usage = [("a", 85.0), ("b", 50.0)];
    run.at(0, &usage);
    assert!(run.at(300, &usage).action.is_some());
    run.workload.pod_limits("a").resize = pending(ResizeState::Infeasible, 301);

    let decision = run.at(310, &usage);

    assert_eq!(
        decision.action,
        Some(Action::Evict {
            pods: vec!["a".into()]
        })
    );
    let why = decision.reasons.join("; ");
    assert!(
        why.contains("the resize of a to 1280Mi is infeasible after 9s (Node didn't have enough capacity): falling back to onCritical (RestartPod)"),
        "{why}"
    );
    // Once: the pod is going; if it lingered, nothing more until a new resize fails.
    assert_eq!(run.at(320, &usage).action, None);
}

#[test]
fn a_deferred_resize_is_given_its_timeout_then_falls_back() {
    let mut run = run(&["a"]);
    run.policy.cooldown = Duration::from_secs(10);
    run.policy.on_critical = CriticalAction::AlertOnly;
    run.all_at(0, 85.0);
    assert!(run.all_at(300, 85.0).action.is_some());
    run.workload.pod_limits("a").resize = pending(ResizeState::Deferred, 302);

    let waiting = run.all_at(350, 85.0);
    assert_eq!(waiting.action, None);
    assert!(
        waiting
            .reasons
            .iter()
            .any(|r| r.contains("a: the resize to 1280Mi is deferred for 48s")),
        "{:?}",
        waiting.reasons
    );
    // Timeout: a minute after the kubelet deferred it.
    let Some(Action::Alert { message, .. }) = run.all_at(362, 85.0).action else {
        panic!("the fallback alert");
    };
    assert!(
        message
            .starts_with("memory limit not raised: the resize of a to 1280Mi is deferred after 1m"),
        "{message}"
    );
}

#[test]
fn a_failed_resize_of_a_pod_back_under_high_needs_no_fallback() {
    let mut run = run(&["a"]);
    run.all_at(0, 85.0);
    assert!(run.all_at(300, 85.0).action.is_some());
    run.workload.pod_limits("a").resize = pending(ResizeState::Infeasible, 301);
    assert_eq!(run.all_at(700, 75.0).action, None);
}

#[test]
fn a_container_that_restarts_on_resize_is_raised_only_when_allowed_and_within_the_budget() {
    let mut run = run(&["a"]);
    run.workload.pod_limits("a").restarts_on_resize = true;
    run.all_at(0, 85.0);
    let refused = run.all_at(300, 85.0);
    assert_eq!(refused.action, None);
    assert!(
        refused
            .reasons
            .iter()
            .any(|r| r.contains("resizePolicy RestartContainer")),
        "{:?}",
        refused.reasons
    );

    if let Some(bounds) = run.policy.raise.as_mut() {
        bounds.allow_restart = true;
    }
    run.policy.max_restarts_per_hour = 0;
    let held = run.all_at(301, 85.0);
    assert!(held.throttled.is_some(), "{:?}", held.reasons);
    run.policy.max_restarts_per_hour = 1;
    let decision = run.all_at(302, 85.0);
    assert_eq!(
        decision.action,
        Some(Action::RaiseLimit {
            raises: vec![raised("a", 1024, 1280)],
            restart: true
        })
    );
    assert_eq!(run.memory.history[0].restarts(), 1);
}

#[test]
fn a_guaranteed_pods_request_moves_with_its_limit() {
    let mut run = run(&["a"]);
    run.workload.pod_limits("a").running.request = Some(1024 * MIB);
    run.workload.pod_limits("a").guaranteed = true;
    run.all_at(0, 85.0);
    let Some(Action::RaiseLimit { raises, .. }) = run.all_at(300, 85.0).action else {
        panic!("a raise");
    };
    assert_eq!(raises[0].request, Some(1280 * MIB));
}

#[test]
fn raises_pace_with_the_cooldown_and_dry_run_only_reports() {
    let mut run = run(&["a", "b"]);
    run.policy.cooldown = Duration::from_secs(600);
    run.at(0, &[("a", 85.0), ("b", 50.0)]);
    assert!(run.at(300, &[("a", 85.0), ("b", 50.0)]).action.is_some());
    // b turns high later; its raise waits for the cooldown after a's.
    run.at(310, &[("a", 70.0), ("b", 85.0)]);
    let held = run.at(610, &[("a", 70.0), ("b", 85.0)]);
    assert_eq!(held.action, None);
    assert!(held.throttled.is_some_and(|t| t.starts_with("cooldown")));

    let mut dry = run_with(Policy::test().raising(256, 2048).dry_run());
    dry.all_at(0, 85.0);
    let decision = dry.all_at(300, 85.0);
    assert!(decision.dry_run && decision.action.is_some());
    assert!(dry.memory.history[0].dry_run);
}

fn run_with(policy: Policy) -> Run {
    Run::new(policy, Workload::test(&["a"]).with_pod_limits(1024))
}

#[test]
fn a_burstable_pods_request_stays_where_it_is() {
    let mut run = run(&["a"]);
    run.workload.pod_limits("a").running.request = Some(1024 * MIB);
    run.all_at(0, 85.0);
    let Some(Action::RaiseLimit { raises, .. }) = run.all_at(300, 85.0).action else {
        panic!("a raise");
    };
    assert_eq!(raises[0].request, None);
}

#[test]
fn a_refused_raise_is_not_tried_again_and_the_pod_gets_on_critical() {
    let mut run = run(&["a", "b"]);
    run.policy.cooldown = Duration::from_secs(10);
    let usage = [("a", 85.0), ("b", 50.0)];
    run.at(0, &usage);
    let why = "node didn't have enough allocatable resources (403)";
    let refused = run.eval_ending(
        &[sample("a", 85.0, at(300)), sample("b", 50.0, at(300))],
        at(300),
        &Outcome::Refused(why.into()),
    );
    assert!(matches!(refused.action, Some(Action::RaiseLimit { .. })));
    assert!(run.memory.history.is_empty(), "nothing happened");

    // No cooldown to wait for: nothing happened; the pod is evicted, saying why.
    let decision = run.at(301, &usage);
    assert_eq!(
        decision.action,
        Some(Action::Evict {
            pods: vec!["a".into()]
        })
    );
    assert!(
        decision.reasons.join("; ").contains(&format!(
            "the raise of a was refused: {why}: falling back to onCritical (RestartPod)"
        )),
        "{:?}",
        decision.reasons
    );
    assert_eq!(run.at(302, &usage).action, None, "once");
    // Past the cooldown, still high (the eviction's replacement is a scrape away): the refused
    // raise is not tried again.
    let later = run.at(400, &usage);
    assert_eq!(later.action, None);
    assert_eq!(later.held_back, None);
}

#[test]
fn a_raise_refused_for_one_pod_is_remembered_for_the_others() {
    let mut run = run(&["a", "b"]);
    run.all_at(0, 85.0);
    run.eval_ending(
        &[sample("a", 85.0, at(300)), sample("b", 85.0, at(300))],
        at(300),
        &Outcome::Partly {
            refused: vec!["b".into()],
            why: "forbidden".into(),
        },
    );
    assert_eq!(run.memory.history.len(), 1);
    assert_eq!(run.memory.history[0].pods, ["a"]);
    assert_eq!(run.memory.refused_raises.keys().collect::<Vec<_>>(), ["b"]);
    // Under high, the refusal is forgotten.
    run.all_at(310, 70.0);
    assert!(run.memory.refused_raises.is_empty());
}
