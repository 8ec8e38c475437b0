//! Properties over random sequences of evaluations: random policies, random
//! usage, random gaps and stale data, random time steps. Each decision's
//! memory feeds the next, and its action is applied to a simulated
//! Deployment (unless the policy is a dry run).

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::sim::{Data, MAX_PODS, Scenario, Sim, Step, restarts};
use super::*;
use crate::{Action, CriticalAction, HighAction, RESTART_WINDOW};

/// Cases per property: enough to shake out ordering bugs, few enough to keep `cargo test` fast.
const CASES: u32 = 256;

/// Longest generated gap between evaluations: three times a typical one-minute interval.
const MAX_STEP_SECONDS: u64 = 180;

fn policy() -> impl Strategy<Value = Policy> {
    let marks = (30u8..60, 5u8..25, 5u8..15);
    let clocks = (
        prop_oneof![Just(0u64), 1u64..600],
        60u64..300,
        60u64..1200,
        prop_oneof![Just(0u64), 1u64..900],
    );
    let reactions = (
        prop_oneof![
            Just(HighAction::ScaleOut),
            Just(HighAction::AlertOnly),
            Just(HighAction::RaiseLimit),
        ],
        prop_oneof![
            Just(CriticalAction::RestartPod),
            Just(CriticalAction::RollingRestart),
            Just(CriticalAction::AlertOnly),
        ],
    );
    let limits = (
        1u32..=3,
        0u32..=4,
        1u32..=3,
        0u32..=5,
        1u32..=3,
        prop::bool::weighted(0.2),
    );
    let prediction = prop::option::weighted(0.3, (120u64..900, 60u64..1800, 0.0f64..64.0));
    (marks, clocks, reactions, limits, prediction).prop_map(
        |(
            (low, to_high, to_critical),
            (sustain, stale_after, stabilization, cooldown),
            (on_high, on_critical),
            (min, span, step, restarts, unavailable, dry_run),
            prediction,
        )| {
            let high = low + to_high;
            let mut policy = Policy::test()
                .with_thresholds(low, high, high + to_critical)
                .with_sustain(Duration::from_secs(sustain))
                .with_stale_after(Duration::from_secs(stale_after))
                .with_scale_in_stabilization(Duration::from_secs(stabilization))
                .with_cooldown(Duration::from_secs(cooldown))
                .on_critical(on_critical)
                .with_replicas(min, min + span, step)
                .with_max_restarts_per_hour(restarts)
                .with_max_unavailable(unavailable);
            policy = match on_high {
                HighAction::RaiseLimit => policy.raising(256, 2048),
                other => policy.on_high(other),
            };
            if let Some((window, horizon, growth)) = prediction {
                policy = policy.predicting(window, horizon, growth);
            }
            policy.dry_run = dry_run;
            policy
        },
    )
}

/// Usage ranges a phase of the scenario stays in, so conditions can last.
const REGIMES: [(f64, f64); 4] = [(0.0, 0.3), (0.55, 0.9), (0.85, 1.05), (0.0, 1.05)];

/// One evaluation, with usage as fractions of its phase's range.
fn step() -> impl Strategy<Value = Step> {
    let data = prop_oneof![
        24 => Just(Data::Fresh),
        1 => Just(Data::Partial),
        1 => Just(Data::Missing),
        1 => Just(Data::Stale),
        1 => Just(Data::Foreign),
    ];
    (
        1..=MAX_STEP_SECONDS,
        prop::collection::vec(0.0f64..1.0, MAX_PODS),
        data,
        prop::bool::weighted(0.05),
    )
        .prop_map(|(after, usage, data, external_rollout)| Step {
            after,
            usage,
            data,
            external_rollout,
        })
}

/// Phases of steps that each stay in one usage regime.
fn steps() -> impl Strategy<Value = Vec<Step>> {
    let phase = (0..REGIMES.len(), prop::collection::vec(step(), 1..20));
    prop::collection::vec(phase, 1..6).prop_map(|phases| {
        phases
            .into_iter()
            .flat_map(|(regime, steps)| {
                let (lowest, highest) = REGIMES[regime];
                steps.into_iter().map(move |mut step| {
                    for usage in &mut step.usage {
                        *usage = lowest + *usage * (highest - lowest);
                    }
                    step
                })
            })
            .collect()
    })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (policy(), 0u32..=4, prop::bool::weighted(0.1), steps()).prop_map(
        |(policy, offset, paused, steps)| Scenario {
            replicas: policy.min_replicas + offset.min(policy.max_replicas - policy.min_replicas),
            policy,
            paused,
            steps,
        },
    )
}

proptest! {
    #![proptest_config(Config::with_cases(CASES))]

    #[test]
    fn never_two_disruptive_actions_within_the_cooldown(scenario in scenario()) {
        let (_, log) = Sim::run(&scenario);
        let disruptive: Vec<Timestamp> = log
            .iter()
            .filter(|e| e.decision.action.as_ref().is_some_and(Action::is_disruptive))
            .map(|e| e.now)
            .collect();
        for pair in disruptive.windows(2) {
            let gap = Duration::try_from(pair[1].duration_since(pair[0])).expect("time moves on");
            prop_assert!(gap >= scenario.policy.cooldown, "{gap:?} between disruptive actions");
        }
    }

    #[test]
    fn never_more_restarts_in_any_hour_than_the_budget(scenario in scenario()) {
        let (_, log) = Sim::run(&scenario);
        let restarted: Vec<(Timestamp, u32)> = log
            .iter()
            .filter_map(|e| e.decision.action.as_ref().map(|a| (e.now, restarts(a))))
            .filter(|(_, n)| *n > 0)
            .collect();
        for (end, _) in &restarted {
            let in_hour: u32 = restarted
                .iter()
                .filter(|(t, _)| t <= end && end.duration_since(*t) < RESTART_WINDOW.try_into().expect("an hour"))
                .map(|(_, n)| n)
                .sum();
            prop_assert!(in_hour <= scenario.policy.max_restarts_per_hour);
        }
    }

    #[test]
    fn replicas_stay_between_min_and_max(scenario in scenario()) {
        let (sim, log) = Sim::run(&scenario);
        let Policy { min_replicas, max_replicas, .. } = scenario.policy;
        for e in &log {
            if let Some(Action::ScaleTo { from, to }) = &e.decision.action {
                prop_assert_eq!(*from, e.before.replicas);
                prop_assert!((min_replicas..=max_replicas).contains(to), "scaled to {to}");
            }
        }
        prop_assert!((min_replicas..=max_replicas).contains(&sim.workload.replicas));
    }

    #[test]
    fn stale_or_missing_data_never_acts(scenario in scenario()) {
        let (_, log) = Sim::run(&scenario);
        for e in log.iter().filter(|e| matches!(e.data, Data::Missing | Data::Stale | Data::Foreign)) {
            prop_assert_eq!(&e.decision.action, &None);
            prop_assert_eq!(&e.decision.held_back, &None);
            prop_assert!(!e.decision.metrics_available);
        }
    }

    #[test]
    fn evictions_stay_within_max_unavailable_and_take_only_critical_pods_or_leaks(scenario in scenario()) {
        let (_, log) = Sim::run(&scenario);
        let policy = &scenario.policy;
        for e in &log {
            let Some(Action::Evict { pods }) = &e.decision.action else { continue };
            let room = policy.max_unavailable.saturating_sub(e.before.unavailable());
            prop_assert!(!pods.is_empty());
            prop_assert!(pods.len() <= room as usize, "{} evicted, room for {room}", pods.len());
            for pod in pods {
                let critical = e.samples.iter().any(|s| &s.pod == pod && s.usage_ratio >= policy.critical);
                let leak = e.decision.trends.get(pod).is_some_and(|t| {
                    let horizon = policy.prediction.expect("only a predicting policy has trends").horizon;
                    t.leak_suspected && t.limit_at.is_some_and(|at| at <= e.now + horizon)
                });
                prop_assert!(critical || leak, "{pod} evicted without a critical sample or a leak");
            }
        }
    }

    #[test]
    fn nothing_disruptive_during_a_rollout_and_a_paused_deployment_is_never_rolled(scenario in scenario()) {
        let (_, log) = Sim::run(&scenario);
        for e in &log {
            let Some(action) = &e.decision.action else { continue };
            if e.before.rollout_in_progress {
                prop_assert!(!action.is_disruptive(), "{action} during a rollout");
            }
            if e.before.paused {
                prop_assert_ne!(action, &Action::RollingRestart);
            }
        }
    }

    #[test]
    fn raises_go_to_high_pods_only_by_step_and_never_above_max(scenario in scenario()) {
        let (_, log) = Sim::run(&scenario);
        let policy = &scenario.policy;
        for e in &log {
            let Some(Action::RaiseLimit { raises, .. }) = &e.decision.action else { continue };
            let bounds = policy.raise.expect("only a policy that raises limits raises them");
            prop_assert!(!raises.is_empty());
            for raise in raises {
                prop_assert!(raise.from < raise.to && raise.to <= bounds.max, "{raise}");
                prop_assert!(raise.to - raise.from <= bounds.step, "{raise}");
                let high = e.samples.iter().any(|s| s.pod == raise.pod && s.usage_ratio >= policy.high);
                prop_assert!(high, "{} raised without a sample at or above high", raise.pod);
            }
        }
    }

    #[test]
    fn a_noisy_series_between_the_marks_never_scales(
        policy in policy(),
        offset in 0u32..=4,
        start in 0.0f64..0.99,
        noise in prop::collection::vec((1..=MAX_STEP_SECONDS, prop::collection::vec(0.01f64..0.99, MAX_PODS)), 1..80),
    ) {
        let replicas = policy.min_replicas + offset.min(policy.max_replicas - policy.min_replicas);
        let scenario = Scenario { policy, replicas, paused: false, steps: Vec::new() };
        let mut sim = Sim::new(&scenario);
        let Policy { low, high, .. } = scenario.policy;
        let below = Step { after: 1, usage: vec![start * low; MAX_PODS], data: Data::Fresh, external_rollout: false };
        let between = noise.into_iter().map(|(after, fractions)| Step {
            after,
            usage: fractions.iter().map(|f| low + f * (high - low)).collect(),
            data: Data::Fresh,
            external_rollout: false,
        });
        for step in std::iter::once(below).chain(between) {
            let e = sim.step(&step);
            prop_assert!(!e.decision.high);
            prop_assert!(
                !matches!(e.decision.action, Some(Action::ScaleTo { .. })),
                "{:?}", e.decision.reasons
            );
        }
    }
}
