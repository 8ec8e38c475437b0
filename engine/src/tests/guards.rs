//! What holds actions back: rollouts, cooldown, the restart budget, suspend
//! and dry run; and how memory stays small.

use super::*;
use crate::{Action, ActionKind, HISTORY_LIMIT, PastAction};

const HEALTHY: f64 = 50.0;

#[test]
fn nothing_disruptive_happens_while_a_rollout_is_in_progress() {
    let policy = Policy::test().with_sustain(Duration::ZERO);
    let mut run = Run::new(policy, Workload::test(&["a", "b"]).rolling_out());

    let decision = run.at(0, &[("a", 99.0), ("b", HEALTHY)]);

    assert_eq!(decision.action, None);
    let held = decision.held_back.expect("held back");
    assert_eq!(
        held.reason,
        "a rollout is in progress; acting now would fight it"
    );
    assert!(decision.memory.history.is_empty());
}

#[test]
fn cooldown_holds_back_a_second_disruptive_action() {
    let mut run = Run::new(Policy::test(), Workload::test(&["a", "b", "c"]));
    run.at(0, &[("a", 99.0), ("b", 97.0), ("c", HEALTHY)]);
    assert_eq!(
        run.at(300, &[("a", 99.0), ("b", 97.0), ("c", HEALTHY)])
            .action,
        Some(Action::Evict {
            pods: vec!["a".into()]
        })
    );
    run.workload = Workload::test(&["a2", "b", "c"]);

    let throttled = run.at(360, &[("a2", 20.0), ("b", 97.0), ("c", HEALTHY)]);
    assert_eq!(throttled.action, None);
    assert_eq!(
        throttled.throttled.as_deref(),
        Some("cooldown: the last disruptive action (eviction) was 1m ago (cooldown 5m)")
    );

    assert_eq!(
        run.at(600, &[("a2", 20.0), ("b", 97.0), ("c", HEALTHY)])
            .action,
        Some(Action::Evict {
            pods: vec!["b".into()]
        })
    );
}

#[test]
fn under_dry_run_cooldown_and_budget_say_the_actions_were_only_reported() {
    let policy = Policy::test().with_sustain(Duration::ZERO).dry_run();
    let mut run = Run::new(policy, Workload::test(&["a", "b"]));
    let reported = run.at(0, &[("a", 99.0), ("b", HEALTHY)]);
    assert!(reported.dry_run && reported.action.is_some());

    let throttled = run.at(60, &[("a", 99.0), ("b", HEALTHY)]);
    assert_eq!(
        throttled.throttled.as_deref(),
        Some(
            "cooldown: the last disruptive action (eviction, only reported under dry run) \
             was 1m ago (cooldown 5m)"
        )
    );

    let policy = Policy::test()
        .with_sustain(Duration::ZERO)
        .with_cooldown(Duration::ZERO)
        .dry_run();
    let mut run = Run::new(policy, Workload::test(&["a", "b"]));
    for minute in 0..3 {
        assert!(run.at(60 * minute, &[("a", 99.0), ("b", HEALTHY)]).dry_run);
    }
    assert_eq!(
        run.at(180, &[("a", 99.0), ("b", HEALTHY)])
            .throttled
            .as_deref(),
        Some(
            "restart budget exhausted: 3 restarts reported under dry run in the last hour \
             (maxRestartsPerHour 3)"
        )
    );
}

/// Evicts a fresh critical pod every minute until the budget stops it.
fn exhaust_budget() -> Run {
    let policy = Policy::test()
        .with_sustain(Duration::ZERO)
        .with_cooldown(Duration::ZERO);
    let mut run = Run::new(policy, Workload::test(&["p0", "ok"]));
    for n in 0..3u64 {
        let pod = format!("p{n}");
        run.workload = Workload::test(&[&pod, "ok"]);
        let decision = run.at(60 * n, &[(&pod, 99.0), ("ok", HEALTHY)]);
        assert_eq!(decision.action, Some(Action::Evict { pods: vec![pod] }));
    }
    run.workload = Workload::test(&["p3", "ok"]);
    run
}

#[test]
fn the_restart_budget_holds_back_evictions_once_exhausted() {
    let mut run = exhaust_budget();

    let decision = run.at(180, &[("p3", 99.0), ("ok", HEALTHY)]);

    assert_eq!(decision.action, None);
    let reason = "restart budget exhausted: 3 restarts in the last hour (maxRestartsPerHour 3)";
    assert_eq!(decision.throttled.as_deref(), Some(reason));
    assert_eq!(decision.held_back.expect("held back").reason, reason);
}

#[test]
fn an_exhausted_budget_is_the_reason_given_even_when_there_is_no_room_either() {
    let mut run = exhaust_budget();
    // The critical pod counts as available (its readiness not yet seen to fail) while the
    // Deployment already counts one pod unavailable: no room, and no budget.
    run.workload = Workload::test(&["p3", "ok"]).with_available(1);

    let decision = run.at(180, &[("p3", 99.0), ("ok", HEALTHY)]);

    assert_eq!(decision.action, None);
    let reason = "restart budget exhausted: 3 restarts in the last hour (maxRestartsPerHour 3)";
    assert_eq!(decision.throttled.as_deref(), Some(reason));
    assert_eq!(decision.held_back.expect("held back").reason, reason);
}

#[test]
fn the_restart_budget_is_a_sliding_hour() {
    let mut run = exhaust_budget();

    assert_eq!(run.at(3599, &[("p3", 99.0), ("ok", HEALTHY)]).action, None);
    assert_eq!(
        run.at(3600, &[("p3", 99.0), ("ok", HEALTHY)]).action,
        Some(Action::Evict {
            pods: vec!["p3".into()]
        })
    );
}

#[test]
fn suspend_takes_no_action_and_says_so() {
    let policy = Policy::test().with_sustain(Duration::ZERO).suspended();
    let mut run = Run::new(policy, Workload::test(&["a", "b"]));

    let decision = run.at(0, &[("a", 99.0), ("b", HEALTHY)]);

    assert_eq!(decision.action, None);
    assert!(decision.critical);
    assert_eq!(
        decision.held_back.expect("held back").reason,
        "the policy is suspended"
    );
    assert!(decision.reasons.iter().any(|r| r.contains("suspended")));
}

#[test]
fn dry_run_reports_the_action_and_remembers_it_so_it_is_not_repeated() {
    let mut run = Run::new(Policy::test().dry_run(), Workload::test(&["a", "b"]));
    let usage = [("a", 99.0), ("b", HEALTHY)];
    run.at(0, &usage);

    let first = run.at(300, &usage);
    assert!(first.dry_run);
    assert_eq!(
        first.action,
        Some(Action::Evict {
            pods: vec!["a".into()]
        })
    );
    assert!(first.memory.history.iter().all(|past| past.dry_run));

    for seconds in [360, 420, 540] {
        assert_eq!(run.at(seconds, &usage).action, None);
    }
    assert!(run.at(600, &usage).dry_run);
}

#[test]
fn live_mode_ignores_dry_run_history() {
    let mut run = Run::new(Policy::test().dry_run(), Workload::test(&["a", "b"]));
    let usage = [("a", 99.0), ("b", HEALTHY)];
    run.at(0, &usage);
    assert!(run.at(300, &usage).dry_run);

    run.policy.dry_run = false;
    let live = run.at(360, &usage);

    assert!(!live.dry_run);
    assert_eq!(
        live.action,
        Some(Action::Evict {
            pods: vec!["a".into()]
        })
    );
}

#[test]
fn memory_forgets_actions_older_than_an_hour_and_stays_bounded() {
    let alert = |seconds: u64| PastAction {
        kind: ActionKind::HighAlert,
        pods: Vec::new(),
        at: at(seconds),
        dry_run: false,
        reason: "high".into(),
    };
    let mut run = Run::new(Policy::test(), Workload::test(&["a", "b"]));
    run.memory.history = (0..200).map(|n| alert(3000 + 10 * n)).collect();
    run.memory.history.insert(0, alert(0));

    let decision = run.at(5000, &[("a", HEALTHY), ("b", HEALTHY)]);

    let history = &decision.memory.history;
    assert_eq!(history.len(), HISTORY_LIMIT);
    assert!(history.iter().all(|past| past.at > at(5000 - 3600)));
    assert_eq!(history.last().map(|past| past.at), Some(at(4990)));
}
