//! The critical rule: which pods, how many at once, and how.

use super::*;
use crate::{Action, CriticalAction};

const HEALTHY: f64 = 50.0;

#[test]
fn critical_pod_is_evicted_but_healthy_pods_are_not() {
    let mut run = Run::new(Policy::test(), Workload::test(&["a", "b", "c"]));
    let usage = [("a", 97.0), ("b", HEALTHY), ("c", 40.0)];
    run.at(0, &usage);

    let decision = run.at(300, &usage);

    assert_eq!(
        decision.action,
        Some(Action::Evict {
            pods: vec!["a".into()]
        })
    );
    assert_eq!(decision.critical_pods, ["a"]);
    assert!(decision.critical);
    assert!(!decision.dry_run);
}

#[test]
fn samples_from_before_a_pods_restart_say_nothing_about_it() {
    let mut run = Run::new(Policy::test(), Workload::test(&["a", "b"]));
    run.at(0, &[("a", 97.0), ("b", HEALTHY)]);
    // a's container was OOM-killed at 290.5 (290 as the API says it) and runs again; its
    // latest sample, from before, is critical, and a has been critical for the whole sustain.
    run.workload.restarted = vec![crate::Restarted {
        pod: "a".into(),
        restarts: 1,
        last_reason: "OOMKilled".into(),
        last_exit_code: 137,
        last_finished: Some(at(290)),
    }];
    // Its last sample was taken in the very second it was killed, which is all the API says
    // of when that was.
    let killed_in_that_second = at(290) + Duration::from_millis(400);
    let samples = [
        sample("a", 97.0, killed_in_that_second),
        sample("b", HEALTHY, at(300)),
    ];

    let decision = run.eval(&samples, at(300));

    assert_eq!(decision.action, None);
    assert!(decision.critical_pods.is_empty());
    // Fresh samples of the new run count again, with a sustain clock of their own.
    let decision = run.eval(
        &[sample("a", 97.0, at(310)), sample("b", HEALTHY, at(310))],
        at(310),
    );
    assert_eq!(decision.action, None);
    assert_eq!(run.memory.critical_since.get("a"), Some(&at(310)));
}

#[test]
fn a_pod_must_stay_critical_for_the_whole_sustain_before_it_is_evicted() {
    let mut run = Run::new(Policy::test(), Workload::test(&["a", "b"]));
    let usage = [("a", 96.0), ("b", HEALTHY)];

    assert_eq!(run.at(0, &usage).action, None);
    let early = run.at(299, &usage);
    assert_eq!(early.action, None);
    assert!(!early.critical);
    assert!(
        early
            .reasons
            .iter()
            .any(|r| r.contains("critical for 4m 59s (>= 95%); acts after the 5m sustain"))
    );
    assert!(run.at(300, &usage).action.is_some());
}

#[test]
fn a_dip_below_critical_restarts_the_sustain_clock() {
    let mut run = Run::new(Policy::test(), Workload::test(&["a", "b"]));
    run.at(0, &[("a", 97.0), ("b", HEALTHY)]);
    run.at(200, &[("a", 94.0), ("b", HEALTHY)]);
    run.at(240, &[("a", 97.0), ("b", HEALTHY)]);

    assert_eq!(run.at(300, &[("a", 97.0), ("b", HEALTHY)]).action, None);
    assert!(run.at(540, &[("a", 97.0), ("b", HEALTHY)]).action.is_some());
}

#[test]
fn the_most_critical_pods_go_first_within_max_unavailable() {
    let policy = Policy::test()
        .with_sustain(Duration::ZERO)
        .with_max_unavailable(2);
    let mut run = Run::new(policy, Workload::test(&["a", "b", "c", "d"]));

    let decision = run.at(0, &[("a", 96.0), ("b", 99.0), ("c", 97.0), ("d", HEALTHY)]);

    assert_eq!(
        decision.action,
        Some(Action::Evict {
            pods: vec!["b".into(), "c".into()]
        })
    );
    assert_eq!(decision.critical_pods, ["a", "b", "c"]);
}

#[test]
fn pods_already_unavailable_count_against_max_unavailable() {
    let policy = Policy::test()
        .with_sustain(Duration::ZERO)
        .with_max_unavailable(2);
    let workload = Workload::test(&["a", "b", "c"]).with_available(2);
    let mut run = Run::new(policy, workload);

    let decision = run.at(0, &[("a", 99.0), ("b", 97.0), ("c", HEALTHY)]);

    assert_eq!(
        decision.action,
        Some(Action::Evict {
            pods: vec!["a".into()]
        })
    );
}

#[test]
fn a_critical_pod_that_is_already_unavailable_is_evicted_without_room() {
    // A shortener over critical fails its own readiness: it is the one pod unavailable, and
    // evicting it makes nothing less available.
    let policy = Policy::test().with_sustain(Duration::ZERO);
    let workload = Workload::test(&["a", "b", "c"]).with_unready(&["b"]);
    let mut run = Run::new(policy, workload);

    let decision = run.at(0, &[("a", 99.0), ("b", 97.0), ("c", HEALTHY)]);

    assert_eq!(
        decision.action,
        Some(Action::Evict {
            pods: vec!["b".into()]
        })
    );
}

#[test]
fn no_pod_is_evicted_while_max_unavailable_pods_are_already_down() {
    let policy = Policy::test().with_sustain(Duration::ZERO);
    let workload = Workload::test(&["a", "b", "c"]).with_available(2);
    let mut run = Run::new(policy, workload);

    let decision = run.at(0, &[("a", 99.0), ("b", HEALTHY), ("c", HEALTHY)]);

    assert_eq!(decision.action, None);
    let held = decision.held_back.expect("held back");
    assert_eq!(
        held.action,
        Action::Evict {
            pods: vec!["a".into()]
        }
    );
    assert_eq!(
        held.reason,
        "1 of 3 pods already unavailable; maxUnavailable 1 leaves no room to evict"
    );
    assert_eq!(decision.throttled, None);
}

#[test]
fn rolling_restart_is_one_action_for_any_number_of_critical_pods() {
    let policy = Policy::test()
        .with_sustain(Duration::ZERO)
        .on_critical(CriticalAction::RollingRestart);
    let mut run = Run::new(policy, Workload::test(&["a", "b", "c"]));

    let decision = run.at(0, &[("a", 99.0), ("b", 97.0), ("c", HEALTHY)]);

    assert_eq!(decision.action, Some(Action::RollingRestart));
    let remembered = decision.memory.history.last().expect("remembered");
    assert_eq!(remembered.restarts(), 1);
}

#[test]
fn a_paused_deployment_is_never_rolled() {
    let policy = Policy::test()
        .with_sustain(Duration::ZERO)
        .on_critical(CriticalAction::RollingRestart);
    let mut run = Run::new(policy, Workload::test(&["a", "b"]).paused());

    for minute in 0..10 {
        let decision = run.at(60 * minute, &[("a", 99.0), ("b", 99.0)]);
        assert_eq!(decision.action, None);
        let held = decision.held_back.expect("held back");
        assert_eq!(held.action, Action::RollingRestart);
        assert!(held.reason.contains("paused"));
    }
}

#[test]
fn alert_only_raises_an_alert_once_per_sustain_and_changes_nothing() {
    let policy = Policy::test().on_critical(CriticalAction::AlertOnly);
    let mut run = Run::new(policy, Workload::test(&["a", "b"]));
    let usage = [("a", 97.0), ("b", HEALTHY)];
    run.at(0, &usage);

    let first = run.at(300, &usage).action.expect("an alert");
    assert!(!first.is_disruptive());
    assert!(matches!(&first, Action::Alert { message, .. } if message.contains("a 97%")));
    assert_eq!(run.at(360, &usage).action, None);
    assert!(matches!(
        run.at(600, &usage).action,
        Some(Action::Alert { .. })
    ));
}

#[test]
fn critical_takes_precedence_over_high() {
    let policy = Policy::test().with_sustain(Duration::ZERO);
    let mut run = Run::new(policy, Workload::test(&["a", "b", "c"]));

    let decision = run.at(0, &[("a", 97.0), ("b", 90.0), ("c", 90.0)]);

    assert!(decision.high);
    assert_eq!(
        decision.action,
        Some(Action::Evict {
            pods: vec!["a".into()]
        })
    );
}
