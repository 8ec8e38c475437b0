//! Feeding recorded history through the engine, one step at a time. Pure.
//!
//! The history only says which pods had samples, so the simulated
//! Deployment is those pods, all available, never rolling out. A simulated
//! scale-out is carried forward (the replica count is at least the last
//! count the engine scaled to), or the engine would scale from the same
//! count over and over. So is a raised limit: a pod's later samples are read
//! against the limit the engine raised it to (the same bytes, a lower ratio),
//! or the engine would raise the same pod over and over. Nothing else the
//! engine does changes the data: an evicted pod goes on with the usage it
//! really had.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use memory_engine::{
    Action, HeldBack, Memory, MemoryResources, Outcome, PodLimits, Policy, Sample, Trend, Workload,
    decide, newest,
};

/// What the engine decided at one step of the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// When the step was evaluated.
    pub at: Timestamp,
    /// Each measured pod's usage, as a ratio of its limit.
    pub usage: BTreeMap<String, f64>,
    /// The simulated replica count.
    pub replicas: u32,
    /// What the engine would have done.
    pub action: Option<Action>,
    /// What it wanted to do but held back, and why.
    pub held_back: Option<HeldBack>,
    /// The hold was the cooldown or the restart budget.
    pub throttled: bool,
    /// The samples were usable.
    pub metrics_available: bool,
    /// Why the samples were (un)usable.
    pub metrics_message: String,
    /// The fleet had been high for the policy's `for`.
    pub high: bool,
    /// Since when the fleet had been high (entered at `high`, left below `low`).
    pub high_since: Option<Timestamp>,
    /// The pods that had been critical for the policy's `for`.
    pub critical: Vec<String>,
    /// Since when each pod at or above the critical mark had been there.
    pub critical_since: BTreeMap<String, Timestamp>,
    /// Each pod's growth over the prediction window, when the policy predicts.
    pub trends: BTreeMap<String, Trend>,
    /// The engine's explanation, in the order it reasoned.
    pub reasons: Vec<String>,
}

/// Replays `history` (samples per evaluation time, oldest first) through the engine; a
/// predicting policy is given the samples of its window at each step, as live.
#[must_use]
pub fn replay(policy: &Policy, history: &[(Timestamp, Vec<Sample>)]) -> Vec<Step> {
    let mut memory = Memory::default();
    let mut scaled_to: Option<u32> = None;
    let mut raised: BTreeMap<String, u64> = BTreeMap::new();
    let mut window: Vec<Sample> = Vec::new();
    history
        .iter()
        .map(|(at, samples)| {
            let samples = &against_raised_limits(samples, &raised);
            let fed = match policy.prediction {
                Some(prediction) => {
                    window.retain(|s| s.at >= *at - prediction.window);
                    window.extend_from_slice(samples);
                    &window
                }
                None => samples,
            };
            let pods: BTreeSet<&str> = samples.iter().map(|s| s.pod.as_str()).collect();
            let seen = u32::try_from(pods.len()).unwrap_or(u32::MAX);
            let replicas = scaled_to.map_or(seen, |to| to.max(seen));
            let workload = Workload {
                replicas,
                available_replicas: replicas,
                rollout_in_progress: false,
                paused: false,
                pods: pods.iter().map(|pod| (*pod).to_owned()).collect(),
                unready: Vec::new(),
                restarted: Vec::new(),
                // History has no pod template: take it to match the policy's limits.
                template: Some(policy.limits),
                limits: running_limits(samples),
            };
            let mut decision = decide(policy, fed, &workload, &memory, *at);
            // A replay takes every action to succeed.
            decision.settle(&Outcome::Applied);
            match &decision.action {
                Some(Action::ScaleTo { to, .. }) => scaled_to = Some(*to),
                Some(Action::RaiseLimit { raises, .. }) => {
                    for raise in raises {
                        raised.insert(raise.pod.clone(), raise.to);
                    }
                }
                _ => {}
            }
            memory = decision.memory;
            Step {
                at: *at,
                usage: latest_usage(samples),
                replicas,
                action: decision.action,
                held_back: decision.held_back,
                throttled: decision.throttled.is_some(),
                metrics_available: decision.metrics_available,
                metrics_message: decision.metrics_message,
                high: decision.high,
                high_since: memory.high_since,
                critical: decision.critical_pods,
                critical_since: memory.critical_since.clone(),
                trends: decision.trends,
                reasons: decision.reasons,
            }
        })
        .collect()
}

/// The samples, those of raised pods read against their raised limit.
fn against_raised_limits(samples: &[Sample], raised: &BTreeMap<String, u64>) -> Vec<Sample> {
    samples
        .iter()
        .map(|sample| match raised.get(&sample.pod) {
            Some(&limit) if limit > sample.limit_bytes => Sample {
                usage_ratio: sample.usage_ratio * sample.limit_bytes as f64 / limit as f64,
                limit_bytes: limit,
                ..sample.clone()
            },
            _ => sample.clone(),
        })
        .collect()
}

/// Each pod runs with the limit its newest sample names, and no resize is ever pending.
fn running_limits(samples: &[Sample]) -> Vec<PodLimits> {
    newest(samples)
        .into_iter()
        .filter(|sample| sample.limit_bytes > 0)
        .map(|sample| PodLimits {
            pod: sample.pod.clone(),
            running: MemoryResources {
                request: None,
                limit: Some(sample.limit_bytes),
            },
            restarts_on_resize: false,
            guaranteed: false,
            resize: None,
        })
        .collect()
}

/// Each pod's newest usage, as the engine reads it.
fn latest_usage(samples: &[Sample]) -> BTreeMap<String, f64> {
    newest(samples)
        .into_iter()
        .map(|s| (s.pod.clone(), s.usage_ratio))
        .collect()
}

/// Every test pod's limit: 1 GiB.
#[cfg(test)]
const LIMIT_BYTES: u64 = 1 << 30;

/// `usage[i]` gives each pod's percent at second `i` after an arbitrary start.
#[cfg(test)]
pub(super) fn history(usage: &[&[(&str, f64)]]) -> Vec<(Timestamp, Vec<Sample>)> {
    let start = Timestamp::from_second(1_750_000_000).unwrap();
    usage
        .iter()
        .zip(0u64..)
        .map(|(pods, second)| {
            let at = start + std::time::Duration::from_secs(second);
            let samples = pods
                .iter()
                .map(|(pod, percent)| Sample {
                    pod: (*pod).to_owned(),
                    usage_ratio: percent / 100.0,
                    bytes: (percent / 100.0 * LIMIT_BYTES as f64) as u64,
                    limit_bytes: LIMIT_BYTES,
                    at,
                    requests: None,
                })
                .collect();
            (at, samples)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use memory_engine::HighAction;

    fn fast_policy() -> Policy {
        Policy::test()
            .with_sustain(Duration::from_secs(2))
            .with_cooldown(Duration::from_secs(60))
    }

    fn actions(steps: &[Step]) -> Vec<(usize, Action)> {
        steps
            .iter()
            .enumerate()
            .filter_map(|(i, step)| Some((i, step.action.clone()?)))
            .collect()
    }

    #[test]
    fn a_pod_climbing_past_critical_is_evicted_once_and_the_cooldown_holds_the_next() {
        let mut usage: Vec<&[(&str, f64)]> = vec![&[("a", 50.0), ("b", 40.0)]; 3];
        usage.extend(vec![&[("a", 97.0), ("b", 40.0)][..]; 8]);
        let steps = replay(&fast_policy(), &history(&usage));

        let evict_a = Action::Evict {
            pods: vec!["a".into()],
        };
        assert_eq!(
            actions(&steps),
            [(5, evict_a.clone())],
            "after the 2s sustain"
        );
        assert_eq!(steps[5].critical, ["a"]);
        assert!(
            steps[6].held_back.is_none(),
            "a fresh 2s of evidence is due first"
        );
        for step in &steps[7..] {
            let held = step.held_back.as_ref().expect("the next eviction is due");
            assert_eq!(held.action, evict_a);
            assert!(held.reason.starts_with("cooldown"), "{}", held.reason);
            assert!(step.throttled);
        }
    }

    #[test]
    fn a_noisy_series_between_the_marks_takes_no_action() {
        let noisy = [62.0, 78.0, 65.0, 79.5, 61.0, 70.0, 77.0, 63.0, 79.0, 66.0];
        let rows: Vec<Vec<(&str, f64)>> =
            noisy.iter().map(|p| vec![("a", *p), ("b", *p)]).collect();
        let usage: Vec<&[(&str, f64)]> = rows.iter().map(Vec::as_slice).collect();
        let steps = replay(&fast_policy(), &history(&usage));

        assert!(actions(&steps).is_empty());
        assert!(steps.iter().all(|s| s.held_back.is_none() && !s.high));
    }

    #[test]
    fn a_simulated_scale_out_is_carried_into_the_next_steps() {
        let policy = fast_policy()
            .on_high(HighAction::ScaleOut)
            .with_replicas(1, 4, 1)
            .with_cooldown(Duration::from_secs(1));
        let usage = vec![&[("a", 85.0), ("b", 85.0)][..]; 12];
        let steps = replay(&policy, &history(&usage));

        let targets: Vec<(u32, u32)> = actions(&steps)
            .into_iter()
            .map(|(_, action)| match action {
                Action::ScaleTo { from, to } => (from, to),
                other => panic!("unexpected {other}"),
            })
            .collect();
        assert_eq!(targets, [(2, 3), (3, 4)], "then maxReplicas holds it");
        assert_eq!(steps.last().unwrap().replicas, 4);
    }

    #[test]
    fn a_simulated_raise_lowers_the_pods_later_ratios_and_is_not_repeated() {
        // 1 GiB pods, raised by 512 MiB up to 2 GiB: a at 85 % is at 57 % after one raise.
        let policy = fast_policy()
            .raising(512, 2048)
            .with_cooldown(Duration::from_secs(1));
        let usage = vec![&[("a", 85.0), ("b", 40.0)][..]; 8];
        let steps = replay(&policy, &history(&usage));

        // (step, pod, from MiB, to MiB) of every raise.
        let raises: Vec<(usize, String, u64, u64)> = actions(&steps)
            .into_iter()
            .flat_map(|(i, action)| match action {
                Action::RaiseLimit { raises, .. } => raises
                    .into_iter()
                    .map(move |r| (i, r.pod, r.from >> 20, r.to >> 20)),
                other => panic!("unexpected {other}"),
            })
            .collect();
        assert_eq!(raises, [(2, "a".to_owned(), 1024, 1536)]);
        let after = steps.last().unwrap().usage["a"];
        assert!((after - 0.85 * 2.0 / 3.0).abs() < 1e-9, "{after}");
    }

    #[test]
    fn a_gap_in_the_data_restarts_the_clocks() {
        let usage: Vec<&[(&str, f64)]> = vec![
            &[("a", 97.0)],
            &[("a", 97.0)],
            &[],
            &[("a", 97.0)],
            &[("a", 97.0)],
        ];
        let steps = replay(&fast_policy(), &history(&usage));

        assert!(actions(&steps).is_empty());
        assert!(!steps[2].metrics_available);
        assert_eq!(steps[4].critical_since["a"], steps[3].at);
    }
}
