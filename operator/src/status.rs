//! Builds what `kubectl get mempol` and `kubectl describe` show: conditions
//! that keep their transition times, a bounded pod list, the state word. Pure.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::{adapt, gather::MetricsFailure};
use memory_engine::{
    Action, Decision, Policy, Resize, ResizeState, Sample, Trend, Workload, newest, size,
};
use memory_policy_api::crd::{
    MemoryPolicyStatus, PodMemory, PodRestarts,
    names::{condition, reason, state},
};

/// `status.pods` lists at most this many pods, the most pressed first, so the
/// object stays small for Deployments with hundreds of replicas.
pub const MAX_PODS: usize = 50;

/// Sets a condition, keeping its `lastTransitionTime` when its status did not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if ok { "True" } else { "False" };
    let transition = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    let condition = Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: generation,
        last_transition_time: transition,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => *existing = condition,
        None => conditions.push(condition),
    }
}

/// The pods as the status shows them: measured ones with their state and growth, then the
/// unmeasured.
pub fn pods(
    samples: &[Sample],
    workload: &Workload,
    policy: &Policy,
    trends: &BTreeMap<String, Trend>,
) -> Vec<PodMemory> {
    let mut measured: Vec<&Sample> = newest(samples)
        .into_iter()
        .filter(|s| workload.pods.contains(&s.pod))
        .collect();
    measured.sort_by(|a, b| b.usage_ratio.total_cmp(&a.usage_ratio));
    let pod_state = |ratio: f64| {
        if ratio >= policy.critical {
            state::CRITICAL
        } else if ratio >= policy.high {
            state::HIGH
        } else {
            state::NORMAL
        }
    };
    let restarts = |pod: &str| {
        workload
            .restarted
            .iter()
            .find(|r| r.pod == pod)
            .map(|r| PodRestarts {
                count: r.restarts,
                last_reason: r.last_reason.clone(),
                last_exit_code: r.last_exit_code,
                last_finished_at: r.last_finished.map(Time),
            })
    };
    let limits = |pod: &str| workload.limits.iter().find(|l| l.pod == pod);
    let limit = |pod: &str| limits(pod).and_then(|l| l.running.limit).map(size);
    let resize = |pod: &str| {
        limits(pod)
            .and_then(|l| l.resize.as_ref())
            .map(describe_resize)
    };
    let unmeasured = workload
        .pods
        .iter()
        .filter(|pod| !measured.iter().any(|s| &&s.pod == pod))
        .map(|pod| PodMemory {
            name: pod.clone(),
            usage_ratio: 0.0,
            bytes: 0,
            limit_bytes: None,
            limit: limit(pod),
            resize: resize(pod),
            state: state::NO_DATA.into(),
            growth_bytes_per_minute: None,
            projected_limit_at: None,
            leak_suspected: false,
            restarts: restarts(pod),
        });
    measured
        .iter()
        .map(|s| PodMemory {
            name: s.pod.clone(),
            usage_ratio: (s.usage_ratio * 1000.0).round() / 1000.0,
            bytes: s.bytes,
            limit_bytes: Some(s.limit_bytes),
            limit: limit(&s.pod),
            resize: resize(&s.pod),
            state: pod_state(s.usage_ratio).into(),
            growth_bytes_per_minute: trends.get(&s.pod).map(|t| t.bytes_per_minute as i64),
            projected_limit_at: trends.get(&s.pod).and_then(|t| t.limit_at).map(Time),
            leak_suspected: trends.get(&s.pod).is_some_and(|t| t.leak_suspected),
            restarts: restarts(&s.pod),
        })
        .chain(unmeasured)
        .take(MAX_PODS)
        .collect()
}

/// A resize not carried out yet, in the kubelet's words: `Infeasible to 300Gi: Node didn't
/// have enough capacity`.
fn describe_resize(resize: &Resize) -> String {
    let state = match resize.state {
        ResizeState::Deferred => "Deferred",
        ResizeState::Infeasible => "Infeasible",
        ResizeState::InProgress => "InProgress",
        ResizeState::Failed => "Error",
    };
    let to = resize
        .to
        .map(|bytes| format!(" to {}", size(bytes)))
        .unwrap_or_default();
    match resize.message.as_str() {
        "" => format!("{state}{to}"),
        message => format!("{state}{to}: {message}"),
    }
}

/// The highest usage, in percent of the limit, for the `Max Usage` column.
pub fn max_usage(samples: &[Sample], workload: &Workload) -> Option<f64> {
    newest(samples)
        .into_iter()
        .filter(|s| workload.pods.contains(&s.pod))
        .map(|s| (s.usage_ratio * 1000.0).round() / 10.0)
        .reduce(f64::max)
}

/// The one-word state for the `State` column.
pub fn state(decision: &Decision, suspended: bool) -> &'static str {
    if suspended {
        state::SUSPENDED
    } else if !decision.metrics_available {
        state::NO_DATA
    } else if decision.critical {
        state::CRITICAL
    } else if decision.trends.values().any(|t| t.leak_suspected) {
        state::LEAK_SUSPECTED
    } else if decision.high {
        state::HIGH
    } else {
        state::NORMAL
    }
}

/// One evaluation, settled: what the status reports.
pub struct Evaluated<'a> {
    pub policy: &'a Policy,
    pub samples: &'a [Sample],
    pub workload: &'a Workload,
    /// Settled: its memory holds the action if it was carried out or reported.
    pub decision: &'a Decision,
    /// Why the query failed, when it did: its reason is the condition's.
    pub metrics_failure: Option<&'a MetricsFailure>,
    /// The policy's `metadata.generation` that was evaluated.
    pub generation: Option<i64>,
    pub now: Timestamp,
}

/// Fills the status from one evaluation. The history is the engine's, whole: one cap, and
/// what a new leader reads back is what this one counted.
pub fn fill(status: &mut MemoryPolicyStatus, evaluated: &Evaluated) {
    let Evaluated {
        policy,
        samples,
        workload,
        decision,
        metrics_failure,
        generation,
        now,
    } = *evaluated;
    let c = &mut status.conditions;
    set_condition(
        c,
        condition::READY,
        true,
        reason::EVALUATED,
        "the policy is sound and its target exists",
        generation,
        now,
    );
    let (metrics_reason, metrics_message) = if decision.metrics_available {
        (reason::SAMPLES_FRESH, decision.metrics_message.as_str())
    } else {
        let reason = metrics_failure.map_or(reason::NO_USABLE_SAMPLES, |failure| failure.reason);
        (reason, decision.metrics_message.as_str())
    };
    set_condition(
        c,
        condition::METRICS_AVAILABLE,
        decision.metrics_available,
        metrics_reason,
        metrics_message,
        generation,
        now,
    );
    let high_message = if decision.high {
        "the fleet is above the high water mark"
    } else {
        "the fleet is under the high water mark"
    };
    set_condition(
        c,
        condition::HIGH_MEMORY,
        decision.high,
        if decision.high {
            reason::ABOVE_HIGH_WATER_MARK
        } else {
            reason::BELOW_HIGH_WATER_MARK
        },
        high_message,
        generation,
        now,
    );
    let critical_message = if decision.critical {
        format!(
            "over critical for the sustain period: {}",
            decision.critical_pods.join(", ")
        )
    } else {
        "no pod is over the critical mark".to_owned()
    };
    set_condition(
        c,
        condition::CRITICAL,
        decision.critical,
        if decision.critical {
            reason::PODS_CRITICAL
        } else {
            reason::NO_POD_CRITICAL
        },
        &critical_message,
        generation,
        now,
    );
    let (throttled, throttle_message) = match &decision.throttled {
        Some(why) => (true, why.as_str()),
        None => (false, "no action is being held back by cooldown or budget"),
    };
    set_condition(
        c,
        condition::THROTTLED,
        throttled,
        if throttled {
            reason::THROTTLED
        } else {
            reason::NOT_THROTTLED
        },
        throttle_message,
        generation,
        now,
    );
    leak_condition(c, policy, decision, generation, now);
    let dry = policy.dry_run;
    set_condition(
        c,
        condition::DRY_RUN,
        dry,
        if dry { reason::DRY_RUN } else { reason::LIVE },
        if dry {
            "actions are only reported"
        } else {
            "actions are carried out"
        },
        generation,
        now,
    );

    status.observed_generation = generation;
    status.pods = pods(samples, workload, policy, &decision.trends);
    status.max_usage = max_usage(samples, workload);
    status.replicas = i32::try_from(workload.replicas).ok();
    status.desired_replicas = match &decision.action {
        Some(Action::ScaleTo { to, .. }) if !decision.dry_run => i32::try_from(*to).ok(),
        _ => status.replicas,
    };
    status.state = Some(state(decision, policy.suspend).to_owned());
    let history = &decision.memory.history;
    // Recorded this evaluation: settled into the history at `now`.
    if let Some(last) = history.last().filter(|last| last.at == now) {
        status.last_action = Some(adapt::record(last));
    }
    status.history = history.iter().map(adapt::record).collect();
}

/// `LeakSuspected`, naming the suspects, when the policy predicts; otherwise none.
fn leak_condition(
    conditions: &mut Vec<Condition>,
    policy: &Policy,
    decision: &Decision,
    generation: Option<i64>,
    now: Timestamp,
) {
    if policy.prediction.is_none() {
        conditions.retain(|c| c.type_ != condition::LEAK_SUSPECTED);
        return;
    }
    let suspects: Vec<String> = decision
        .trends
        .iter()
        .filter(|(_, t)| t.leak_suspected)
        .map(|(pod, t)| t.describe(pod, now))
        .collect();
    let (suspected, reason, message) = if suspects.is_empty() {
        let message = if decision.metrics_available {
            "no pod grows without load to carry it"
        } else {
            "no usable samples to read growth from"
        };
        (false, reason::NO_LEAK_SUSPECTED, message.to_owned())
    } else {
        (true, reason::GROWING_WITHOUT_LOAD, suspects.join("; "))
    };
    set_condition(
        conditions,
        condition::LEAK_SUSPECTED,
        suspected,
        reason,
        &message,
        generation,
        now,
    );
}

/// A status that says nothing new but its readings is written only once the written ones
/// are this many intervals old.
pub const REFRESH_INTERVALS: u32 = 4;

/// Whether `status` is worth writing over `shown` (what the API server shows): when what it
/// says changed (conditions' status and reason, the state, the pods and their states,
/// replicas, actions), at once; when only its readings changed (usage, `maxUsage`, condition
/// messages, `lastEvaluationTime`), once those shown are `refresh` old. Each write costs the
/// API server a write and every watcher an event, at every interval of every policy.
pub fn worth_writing(
    shown: Option<&MemoryPolicyStatus>,
    status: &MemoryPolicyStatus,
    refresh: std::time::Duration,
) -> bool {
    let Some(shown) = shown else {
        return true;
    };
    // Compared as JSON: the API server keeps timestamps to the second.
    let (old, new) = (serde_json::json!(shown), serde_json::json!(status));
    if old == new {
        return false;
    }
    if said(old) != said(new) {
        return true;
    }
    match (&shown.last_evaluation_time, &status.last_evaluation_time) {
        (Some(Time(then)), Some(Time(now))) => {
            std::time::Duration::try_from(now.duration_since(*then)).unwrap_or_default() >= refresh
        }
        _ => true,
    }
}

/// What a status says, without its readings.
fn said(mut status: serde_json::Value) -> serde_json::Value {
    if let Some(status) = status.as_object_mut() {
        status.remove("lastEvaluationTime");
        status.remove("maxUsage");
    }
    for pod in status["pods"].as_array_mut().into_iter().flatten() {
        if let Some(pod) = pod.as_object_mut() {
            pod.remove("usageRatio");
            pod.remove("bytes");
            pod.remove("growthBytesPerMinute");
            pod.remove("projectedLimitAt");
        }
    }
    for condition in status["conditions"].as_array_mut().into_iter().flatten() {
        if let Some(condition) = condition.as_object_mut() {
            condition.remove("message");
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn a_condition_keeps_its_transition_time_until_its_status_changes() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            condition::READY,
            true,
            "Evaluated",
            "ok",
            Some(1),
            at(10),
        );
        set_condition(
            &mut conditions,
            condition::READY,
            true,
            "Evaluated",
            "still ok",
            Some(2),
            at(20),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, Time(at(10)));
        assert_eq!(conditions[0].message, "still ok");
        set_condition(
            &mut conditions,
            condition::READY,
            false,
            "TargetNotFound",
            "gone",
            Some(2),
            at(30),
        );
        assert_eq!(conditions[0].last_transition_time, Time(at(30)));
        assert_eq!(conditions[0].status, "False");
    }

    #[test]
    fn pods_are_listed_most_pressed_first_with_unmeasured_ones_last() {
        let workload = Workload {
            replicas: 3,
            available_replicas: 3,
            rollout_in_progress: false,
            paused: false,
            pods: vec!["a".into(), "b".into(), "c".into()],
            unready: Vec::new(),
            template: None,
            restarted: vec![memory_engine::Restarted {
                pod: "c".into(),
                restarts: 1,
                last_reason: "OOMKilled".into(),
                last_exit_code: 137,
                last_finished: Some(at(5)),
            }],
            limits: vec![memory_engine::PodLimits {
                pod: "b".into(),
                running: memory_engine::MemoryResources {
                    request: None,
                    limit: Some(160 << 20),
                },
                restarts_on_resize: false,
                guaranteed: false,
                resize: Some(Resize {
                    state: ResizeState::Infeasible,
                    to: Some(300 << 30),
                    since: None,
                    message: "Node didn't have enough capacity".into(),
                }),
            }],
        };
        let sample = |pod: &str, usage_ratio: f64| Sample {
            pod: pod.into(),
            usage_ratio,
            bytes: 1,
            limit_bytes: 2,
            at: at(0),
            requests: None,
        };
        let samples = [sample("a", 0.5), sample("b", 0.97), sample("gone", 0.99)];
        let policy = memory_policy_api::reading::engine_policy(
            &memory_policy_api::crd::MemoryPolicySpec::for_deployment("w"),
        );
        let listed = pods(&samples, &workload, &policy, &BTreeMap::new());
        let names: Vec<&str> = listed.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["b", "a", "c"]);
        assert_eq!(listed[0].state, "Critical");
        assert_eq!(listed[2].state, "NoData");
        let killed = listed[2].restarts.as_ref().expect("c restarted");
        assert_eq!(
            (
                killed.count,
                killed.last_reason.as_str(),
                killed.last_exit_code
            ),
            (1, "OOMKilled", 137)
        );
        assert_eq!(killed.last_finished_at, Some(Time(at(5))));
        assert!(listed[0].restarts.is_none());
        assert_eq!(listed[0].limit.as_deref(), Some("160Mi"));
        assert_eq!(
            listed[0].resize.as_deref(),
            Some("Infeasible to 300Gi: Node didn't have enough capacity")
        );
        assert_eq!(
            (listed[1].limit.as_deref(), listed[1].resize.as_deref()),
            (None, None)
        );
        assert_eq!(max_usage(&samples, &workload), Some(97.0));
    }

    #[test]
    fn a_restart_budget_above_ten_holds_across_a_failover() {
        use memory_engine::{Memory, Outcome, Policy, decide};
        let policy = Policy::test()
            .with_sustain(std::time::Duration::ZERO)
            .with_cooldown(std::time::Duration::ZERO)
            .with_max_restarts_per_hour(12);
        let workload = Workload::test(&["a", "b"]);
        let critical = |minute: i64| {
            let now = at(minute * 60);
            let sample = |pod: &str, usage_ratio: f64| Sample {
                pod: pod.into(),
                usage_ratio,
                bytes: 1,
                limit_bytes: 2,
                at: now,
                requests: None,
            };
            (vec![sample("a", 0.99), sample("b", 0.5)], now)
        };
        let (mut memory, mut status) = (Memory::default(), MemoryPolicyStatus::default());
        for minute in 0..12 {
            let (samples, now) = critical(minute);
            let mut decision = decide(&policy, &samples, &workload, &memory, now);
            assert!(decision.action.is_some(), "eviction {minute}");
            decision.settle(&Outcome::Applied);
            fill(
                &mut status,
                &Evaluated {
                    policy: &policy,
                    samples: &samples,
                    workload: &workload,
                    decision: &decision,
                    metrics_failure: None,
                    generation: Some(1),
                    now,
                },
            );
            memory = decision.memory;
        }
        assert_eq!(status.history.len(), 12);

        // A new leader knows only the status, and seeds its memory from it.
        let key = kube::runtime::reflector::ObjectRef::new("guard").within("shop");
        let seeded = crate::recall::Recall::default().memory(&key, Some("u1"), &status);
        let (samples, now) = critical(12);
        let decision = decide(&policy, &samples, &workload, &seeded, now);
        assert_eq!(decision.action, None);
        assert_eq!(
            decision.throttled.as_deref(),
            Some("restart budget exhausted: 12 restarts in the last hour (maxRestartsPerHour 12)")
        );
    }

    #[test]
    fn a_status_is_written_when_it_says_something_new_and_readings_only_when_old() {
        let refresh = std::time::Duration::from_secs(60);
        let shown = MemoryPolicyStatus {
            state: Some(state::NORMAL.into()),
            max_usage: Some(40.0),
            last_evaluation_time: Some(Time(at(100))),
            ..MemoryPolicyStatus::default()
        };
        assert!(worth_writing(None, &shown, refresh));
        assert!(!worth_writing(Some(&shown), &shown, refresh));

        let fresher = MemoryPolicyStatus {
            max_usage: Some(41.0),
            last_evaluation_time: Some(Time(at(130))),
            ..shown.clone()
        };
        assert!(!worth_writing(Some(&shown), &fresher, refresh));
        let stale = MemoryPolicyStatus {
            last_evaluation_time: Some(Time(at(160))),
            ..fresher.clone()
        };
        assert!(worth_writing(Some(&shown), &stale, refresh));

        let high = MemoryPolicyStatus {
            state: Some(state::HIGH.into()),
            ..fresher
        };
        assert!(worth_writing(Some(&shown), &high, refresh));
    }

    #[test]
    fn a_leaking_pod_shows_its_growth_and_projection_and_is_named_by_the_leak_condition() {
        use memory_engine::{Memory, decide};
        use std::time::Duration;

        let policy = Policy::test().predicting(600, 3600, 1.0);
        let workload = Workload::test(&["a", "b"]);
        // Every 15 s for ten minutes: `a` grows 4 MiB a minute from 512 MiB on flat traffic,
        // `b` stays at 256 MiB.
        let samples: Vec<Sample> = (0..=40)
            .flat_map(|i| {
                let t = i * 15;
                [("a", 512.0 + 4.0 * t as f64 / 60.0), ("b", 256.0)].map(|(pod, mib)| Sample {
                    pod: pod.into(),
                    usage_ratio: mib / 1024.0,
                    bytes: (mib * 1048576.0) as u64,
                    limit_bytes: 1 << 30,
                    at: at(t),
                    requests: Some(t as f64 * 10.0),
                })
            })
            .collect();
        let now = at(600);
        let decision = decide(&policy, &samples, &workload, &Memory::default(), now);
        let mut status = MemoryPolicyStatus::default();
        fill(
            &mut status,
            &Evaluated {
                policy: &policy,
                samples: &samples,
                workload: &workload,
                decision: &decision,
                metrics_failure: None,
                generation: Some(1),
                now,
            },
        );
        assert_eq!(status.pods.len(), 2, "one line per pod, not per sample");
        let a = &status.pods[0];
        assert_eq!((a.name.as_str(), a.bytes), ("a", 552 << 20));
        assert_eq!(a.growth_bytes_per_minute, Some(4 << 20));
        assert!(a.leak_suspected);
        // 472 MiB left at 4 MiB a minute.
        assert_eq!(
            a.projected_limit_at,
            Some(Time(now + Duration::from_secs(118 * 60)))
        );
        let b = &status.pods[1];
        assert_eq!(
            (
                b.growth_bytes_per_minute,
                b.projected_limit_at.as_ref(),
                b.leak_suspected
            ),
            (Some(0), None, false)
        );
        assert_eq!(status.state.as_deref(), Some(state::LEAK_SUSPECTED));
        let leak = status
            .conditions
            .iter()
            .find(|c| c.type_ == condition::LEAK_SUSPECTED)
            .unwrap();
        assert_eq!(
            (leak.status.as_str(), leak.reason.as_str()),
            ("True", reason::GROWING_WITHOUT_LOAD)
        );
        assert_eq!(
            leak.message,
            "a projected to reach its 1024 MiB limit in 1h 58m at +4.0 MiB/min (request rate flat)"
        );

        let unpredicted = Policy {
            prediction: None,
            ..policy
        };
        let decision = decide(&unpredicted, &samples, &workload, &Memory::default(), now);
        fill(
            &mut status,
            &Evaluated {
                policy: &unpredicted,
                samples: &samples,
                workload: &workload,
                decision: &decision,
                metrics_failure: None,
                generation: Some(2),
                now,
            },
        );
        assert!(
            !status
                .conditions
                .iter()
                .any(|c| c.type_ == condition::LEAK_SUSPECTED)
        );
        assert_eq!(status.pods[0].growth_bytes_per_minute, None);
    }
}
