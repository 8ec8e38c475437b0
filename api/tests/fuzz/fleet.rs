//! The fleets that accepted policies drive the engine over: workloads of any shape, with their
//! containers' limits and resizes, and evaluations of samples that may be stale, foreign or
//! not numbers at all.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use proptest::sample::select;

use memory_engine::{MemoryResources, PodLimits, Resize, ResizeState, Workload};

/// Pods the generated workloads can have; samples may name a few more, as
/// foreign pods.
pub const MAX_PODS: usize = 5;

/// The memory limit of a sampled pod that runs with none: the engine reads ratios, so any
/// size does.
pub const LIMIT_BYTES: u64 = 1 << 30;

/// One evaluation: how long after the previous one, and the samples it reads.
#[derive(Clone, Debug)]
pub struct Tick {
    pub after: Duration,
    /// Pod (by index, past the workload's pods for a foreign one), usage
    /// ratio, and age of the sample in seconds (negative: clock skew).
    pub samples: Vec<(usize, f64, i64)>,
    /// How the cluster answers the action: 0 refuses it, 1 refuses it for its first pod
    /// only, anything else carries it out.
    pub answer: u8,
}

/// A Deployment of up to [`MAX_PODS`] pods in any state, their containers' limits with them.
pub fn workload() -> impl Strategy<Value = Workload> {
    (
        0..=MAX_PODS,
        prop_oneof![0..=8u32, 0..=i32::MAX as u32],
        any::<bool>(),
        any::<bool>(),
        0.0..=1.0f64,
        prop::collection::vec(pod_limits(), MAX_PODS),
    )
        .prop_map(
            |(pods, replicas, rollout_in_progress, paused, available, limits)| {
                let pods: Vec<String> = (0..pods).map(|i| format!("pod-{i}")).collect();
                let limits = pods
                    .iter()
                    .zip(limits)
                    .map(|(pod, limits)| PodLimits {
                        pod: pod.clone(),
                        ..limits
                    })
                    .collect();
                Workload {
                    replicas,
                    available_replicas: (f64::from(replicas) * available) as u32,
                    rollout_in_progress,
                    paused,
                    pods,
                    unready: Vec::new(),
                    restarted: Vec::new(),
                    template: None,
                    limits,
                }
            },
        )
}

/// Any number of bytes, as likely small as huge.
fn bytes() -> impl Strategy<Value = u64> {
    (0..64u32, any::<u64>()).prop_map(|(shift, bytes)| bytes >> shift)
}

/// One pod's target container, its name left for [`workload`] to fill in: any limit (or
/// none), sometimes a request equal to it, and now and then a resize not carried out.
fn pod_limits() -> impl Strategy<Value = PodLimits> {
    let states = [
        ResizeState::Deferred,
        ResizeState::Infeasible,
        ResizeState::InProgress,
        ResizeState::Failed,
    ];
    let resize = (
        select(states.to_vec()),
        prop::option::of(bytes()),
        // Before the first evaluation, during the ticks, or (clock skew) after them.
        prop::option::of(-3_600..=30_000i64),
        prop_oneof![Just(""), Just("Node didn't have enough capacity: memory")],
    )
        .prop_map(|(state, to, since, message)| Resize {
            state,
            to,
            since: since.map(|s| start() + SignedDuration::from_secs(s)),
            message: message.to_owned(),
        });
    // No request, or the limit's own (Guaranteed, when the CPU's are equal too), or any.
    let running = prop::option::weighted(0.9, bytes()).prop_flat_map(|limit| {
        let request = prop_oneof![Just(None), Just(limit), bytes().prop_map(Some)];
        (request, any::<bool>()).prop_map(move |(request, cpu_equal)| {
            let guaranteed = limit.is_some() && request == limit && cpu_equal;
            (MemoryResources { request, limit }, guaranteed)
        })
    });
    (running, any::<bool>(), prop::option::weighted(0.25, resize)).prop_map(
        |((running, guaranteed), restarts_on_resize, resize)| PodLimits {
            pod: String::new(),
            running,
            guaranteed,
            restarts_on_resize,
            resize,
        },
    )
}

/// Up to seven evaluations with any samples, some sweeping every pod as a scrape does.
pub fn ticks() -> impl Strategy<Value = Vec<Tick>> {
    let ratio = prop_oneof![
        8 => 0.0..1.2f64,
        1 => Just(0.0),
        1 => Just(1.0),
        1 => any::<f64>(),
    ];
    let sample = (
        0..MAX_PODS + 2,
        ratio.clone(),
        prop_oneof![9 => 0..=600i64, 1 => -60..=7_200i64],
    );
    // A fresh sample of every pod the workload can have, as a scrape gives: without one,
    // no rule that needs every pod measured (or a pod high for a while) acts.
    let sweep = prop::collection::vec((ratio, 0..=30i64), MAX_PODS).prop_map(|samples| {
        let pods = samples.into_iter().enumerate();
        pods.map(|(pod, (ratio, age))| (pod, ratio, age)).collect()
    });
    let samples = prop_oneof![prop::collection::vec(sample, 0..8), sweep];
    let tick = (0..=3_600u64, samples, 0..8u8).prop_map(|(after, samples, answer)| Tick {
        after: Duration::from_secs(after),
        samples,
        answer,
    });
    prop::collection::vec(tick, 1..8)
}

/// Every test starts at the same instant, so none reads the clock.
pub fn start() -> Timestamp {
    Timestamp::from_second(1_750_000_000).expect("a valid timestamp")
}

/// The limit `pod`'s target container runs with, if the workload has the pod and it has one.
pub fn running_limit(workload: &Workload, pod: &str) -> Option<u64> {
    let limits = workload.limits.iter().find(|limits| limits.pod == pod)?;
    limits.running.limit
}
