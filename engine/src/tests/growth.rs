//! Prediction: simulated leak, load and sawtooth curves evaluated every interval with the
//! window of samples a predicting policy's query returns, and the properties that keep a
//! prediction from acting on what is not growth.

use proptest::prelude::*;

use super::*;
use crate::{Action, CriticalAction, Traffic};

/// Seconds between two scrapes, and between two evaluations.
const SCRAPE: u64 = 15;
const MIB: f64 = (1u64 << 20) as f64;

/// A pod's memory in MiB and its request count so far, at a second of the test.
type Curve = fn(&str, f64) -> (f64, Option<f64>);

/// A few MiB of deterministic scrape jitter, different for each pod and second.
fn jitter(pod: &str, t: f64) -> f64 {
    let seed = pod.bytes().map(f64::from).sum::<f64>();
    3.0 * (t * 0.37 + seed).sin() * (t * 0.11).cos()
}

/// The window of samples of every current pod that the query returns at `now`.
fn window(policy: &Policy, workload: &Workload, curve: Curve, now: u64) -> Vec<Sample> {
    let window = policy.prediction.map_or(0, |p| p.window.as_secs());
    let first = now.saturating_sub(window).div_ceil(SCRAPE) * SCRAPE;
    workload
        .pods
        .iter()
        .flat_map(|pod| {
            (first..=now).step_by(SCRAPE as usize).map(move |t| {
                let (mib, requests) = curve(pod, t as f64);
                let mut sample = sample(pod, mib * MIB / LIMIT_BYTES as f64 * 100.0, at(t));
                sample.requests = requests;
                sample
            })
        })
        .collect()
}

/// Evaluates every scrape until `until` seconds or the first action; scale-outs add pods.
fn simulate(run: &mut Run, curve: Curve, until: u64) -> Option<(u64, Decision)> {
    for now in (SCRAPE..=until).step_by(SCRAPE as usize) {
        let samples = window(&run.policy, &run.workload, curve, now);
        let decision = run.eval(&samples, at(now));
        if decision.action.is_some() {
            return Some((now, decision));
        }
    }
    None
}

/// 60/80/95 %, sustain 5m, 3 to 6 replicas; a 10m window, a 15m horizon, 1 MiB/min at least.
fn predicting() -> Policy {
    Policy::test()
        .predicting(600, 900, 1.0)
        .with_replicas(3, 6, 1)
}

/// Pod `web-a` leaks 8 MiB a minute from 400 MiB; the others stay at 400 MiB; every pod
/// serves a flat 10 requests a second.
fn leak(pod: &str, t: f64) -> (f64, Option<f64>) {
    let leaked = if pod == "web-a" { 8.0 * t / 60.0 } else { 0.0 };
    (400.0 + leaked + jitter(pod, t), Some(10.0 * t))
}

#[test]
fn a_slow_leak_with_flat_traffic_is_evicted_before_it_reaches_critical() {
    let mut run = Run::new(predicting(), Workload::test(&["web-a", "web-b", "web-c"]));
    let (when, decision) = simulate(&mut run, leak, 3 * 3600).expect("an action");
    assert_eq!(
        decision.action,
        Some(Action::Evict {
            pods: vec!["web-a".into()]
        }),
        "{:?}",
        decision.reasons
    );
    let (mib, _) = leak("web-a", when as f64);
    let critical_mib = 0.95 * 1024.0;
    assert!(mib < critical_mib, "acted at {mib:.0} MiB");
    // The level rule would have acted a sustain after crossing critical.
    let crossing = (critical_mib - 400.0) / 8.0 * 60.0;
    let lead = crossing + 300.0 - when as f64;
    assert!(lead >= 600.0, "only {lead:.0} s before the level rule");

    let trend = &decision.trends["web-a"];
    assert!(trend.growing && trend.leak_suspected);
    assert_eq!(trend.traffic, Traffic::Flat);
    assert!(
        (trend.bytes_per_minute / MIB - 8.0).abs() < 0.5,
        "{trend:?}"
    );
    let left = trend.limit_at.unwrap().duration_since(at(when)).as_secs();
    assert!(left <= 900, "{left} s left");
    assert!(!decision.trends["web-b"].growing);
    let said = decision.reasons.join("; ");
    assert!(
        said.contains("web-a projected to reach its 1024 MiB limit in")
            && said.contains("at +8.0 MiB/min (request rate flat)"),
        "{said}"
    );
}

#[test]
fn nothing_is_predicted_before_a_pod_was_measured_for_the_whole_window() {
    // Leaking fast from the start: it would be projected within the horizon at once.
    fn fast(pod: &str, t: f64) -> (f64, Option<f64>) {
        let leaked = if pod == "web-a" { 30.0 * t / 60.0 } else { 0.0 };
        (600.0 + leaked, Some(t))
    }
    let mut run = Run::new(predicting(), Workload::test(&["web-a", "web-b"]));
    let (when, decision) = simulate(&mut run, fast, 3600).expect("an action");
    // Within a scrape of the window: the query's window starts between two scrapes.
    assert!(
        when + SCRAPE >= 600,
        "acted after {when} s: {:?}",
        decision.reasons
    );
    assert!(matches!(decision.action, Some(Action::Evict { .. })));
}

/// Every pod's memory rises with its request rate, which rises by a request a second each
/// minute.
fn load(_: &str, t: f64) -> (f64, Option<f64>) {
    (300.0 + 6.0 * t / 60.0, Some(5.0 * t + t * t / 120.0))
}

#[test]
fn a_load_ramp_on_every_pod_scales_out_and_evicts_nothing() {
    let mut run = Run::new(predicting(), Workload::test(&["web-a", "web-b", "web-c"]));
    let (_, decision) = simulate(&mut run, load, 3 * 3600).expect("an action");
    assert_eq!(
        decision.action,
        Some(Action::ScaleTo { from: 3, to: 4 }),
        "{:?}",
        decision.reasons
    );
    for trend in decision.trends.values() {
        assert!(trend.growing && trend.limit_at.is_some(), "{trend:?}");
        assert_eq!(trend.traffic, Traffic::Rising);
        assert!(!trend.leak_suspected);
    }
}

#[test]
fn a_gc_sawtooth_is_never_predicted() {
    // 400 to 700 MiB over three minutes, then collected back, on flat traffic.
    fn sawtooth(_: &str, t: f64) -> (f64, Option<f64>) {
        (400.0 + 300.0 * (t % 180.0) / 180.0, Some(10.0 * t))
    }
    let mut run = Run::new(predicting(), Workload::test(&["web-a", "web-b"]));
    for now in (SCRAPE..=7200).step_by(SCRAPE as usize) {
        let samples = window(&run.policy, &run.workload, sawtooth, now);
        let decision = run.eval(&samples, at(now));
        assert_eq!(decision.action, None, "{:?}", decision.reasons);
        assert!(decision.trends.values().all(|t| !t.growing), "{now}");
    }
}

#[test]
fn without_a_request_counter_a_pod_growing_alone_is_a_suspect_and_a_fleet_growing_together_is_not()
{
    fn alone(pod: &str, t: f64) -> (f64, Option<f64>) {
        let (mib, _) = leak(pod, t);
        (mib, None)
    }
    fn together(pod: &str, t: f64) -> (f64, Option<f64>) {
        (400.0 + 8.0 * t / 60.0 + jitter(pod, t), None)
    }
    let workload = Workload::test(&["web-a", "web-b"]);
    let mut run = Run::new(predicting(), workload.clone());
    let (_, decision) = simulate(&mut run, alone, 3 * 3600).expect("an action");
    assert_eq!(decision.trends["web-a"].traffic, Traffic::Unknown);
    assert!(decision.trends["web-a"].leak_suspected);
    assert!(matches!(decision.action, Some(Action::Evict { .. })));

    let mut run = Run::new(predicting(), workload);
    let (_, decision) = simulate(&mut run, together, 3 * 3600).expect("an action");
    // Left to the levels: the fleet goes high and scales out first.
    assert!(
        matches!(decision.action, Some(Action::ScaleTo { .. })),
        "{:?}",
        decision.reasons
    );
    assert!(
        decision
            .trends
            .values()
            .all(|t| t.growing && !t.leak_suspected)
    );
}

#[test]
fn a_pod_whose_traffic_rises_with_its_memory_is_load_even_when_its_siblings_are_flat() {
    fn favoured(pod: &str, t: f64) -> (f64, Option<f64>) {
        match pod {
            "web-a" => load(pod, t),
            _ => (300.0, Some(5.0 * t)),
        }
    }
    let mut run = Run::new(predicting(), Workload::test(&["web-a", "web-b"]));
    for now in (SCRAPE..=5400).step_by(SCRAPE as usize) {
        let samples = window(&run.policy, &run.workload, favoured, now);
        let decision = run.eval(&samples, at(now));
        assert!(
            !matches!(decision.action, Some(Action::Evict { .. })),
            "{:?}",
            decision.reasons
        );
        if let Some(trend) = decision.trends.get("web-a").filter(|t| t.growing) {
            assert_eq!(trend.traffic, Traffic::Rising);
            assert!(!trend.leak_suspected);
        }
    }
}

#[test]
fn a_leak_alert_repeats_only_after_a_full_window_of_new_evidence() {
    let policy = predicting()
        .on_critical(CriticalAction::AlertOnly)
        .with_cooldown(Duration::ZERO);
    let mut run = Run::new(policy, Workload::test(&["web-a", "web-b", "web-c"]));
    let (first, decision) = simulate(&mut run, leak, 3 * 3600).expect("an alert");
    assert!(matches!(decision.action, Some(Action::Alert { .. })));
    let (second, decision) = simulate_from(&mut run, leak, first, 3 * 3600).expect("another");
    assert!(matches!(decision.action, Some(Action::Alert { .. })));
    assert!(second - first >= 600, "again after {} s", second - first);
    assert!(
        second - first <= 600 + SCRAPE,
        "again after {} s",
        second - first
    );
}

/// As [`simulate`], from the scrape after `after`.
fn simulate_from(run: &mut Run, curve: Curve, after: u64, until: u64) -> Option<(u64, Decision)> {
    for now in (after + SCRAPE..=until).step_by(SCRAPE as usize) {
        let samples = window(&run.policy, &run.workload, curve, now);
        let decision = run.eval(&samples, at(now));
        if decision.action.is_some() {
            return Some((now, decision));
        }
    }
    None
}

#[test]
fn a_leak_beyond_the_horizon_is_shown_but_not_acted_on() {
    let mut run = Run::new(predicting(), Workload::test(&["web-a", "web-b", "web-c"]));
    let samples = window(&run.policy, &run.workload, leak, 1200);
    let decision = run.eval(&samples, at(1200));
    assert_eq!(decision.action, None);
    let trend = &decision.trends["web-a"];
    assert!(trend.leak_suspected);
    let said = decision.reasons.join("; ");
    assert!(
        said.contains("a leak suspect, beyond the 15m horizon"),
        "{said}"
    );
}

/// Points every scrape over a ten-minute window: `(seconds, bytes)`.
fn points(values: &[f64]) -> Vec<Sample> {
    values
        .iter()
        .zip(0u64..)
        .map(|(mib, i)| {
            let mut s = sample(
                "web-a",
                mib * MIB / LIMIT_BYTES as f64 * 100.0,
                at(i * SCRAPE),
            );
            s.requests = Some(i as f64 * 100.0);
            s
        })
        .collect()
}

/// The trend the engine sees of `values` at the last of them.
fn trend_of(values: &[f64]) -> Option<crate::Trend> {
    let policy = predicting();
    let samples = points(values);
    let now = samples.last().map(|s| s.at).expect("some values");
    let decision = decide(
        &policy,
        &samples,
        &Workload::test(&["web-a"]),
        &Memory::default(),
        now,
    );
    decision.trends.get("web-a").cloned()
}

/// Forty-one scrapes cover the ten-minute window.
const SCRAPES: usize = 41;

proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(512))]

    #[test]
    fn a_flat_or_falling_pod_is_never_predicted(
        level in 50.0f64..900.0,
        fall in 0.0f64..20.0,
        noise in prop::collection::vec(-1.0f64..1.0, SCRAPES),
    ) {
        // Noise up to a sixteenth of what minGrowth adds over the window (1 MiB/min for 10m).
        let values: Vec<f64> = noise.iter().zip(0..).map(|(n, i)| {
            level - fall * f64::from(i) * SCRAPE as f64 / 60.0 + n * 10.0 / 16.0
        }).collect();
        let trend = trend_of(&values).expect("a trend");
        prop_assert!(!trend.growing && trend.limit_at.is_none() && !trend.leak_suspected, "{trend:?}");
    }

    #[test]
    fn a_spike_alone_never_triggers(
        level in 50.0f64..900.0,
        noise in prop::collection::vec(-1.0f64..1.0, SCRAPES),
        spikes in prop::collection::vec((0..SCRAPES, 0.0f64..1024.0), 1..=2),
    ) {
        let mut values: Vec<f64> = noise.iter().map(|n| level + n * 10.0 / 16.0).collect();
        for (i, height) in spikes {
            values[i] = height;
        }
        let trend = trend_of(&values).expect("a trend");
        prop_assert!(!trend.growing && !trend.leak_suspected, "{trend:?}");
    }

    #[test]
    fn growth_is_only_ever_read_from_a_whole_window_of_fresh_continuous_samples(
        growth in 1.5f64..50.0,
        skip_start in 0usize..20,
        gap in prop::option::of((1usize..35, 1usize..20)),
        stale_for in prop_oneof![Just(0u64), 1u64..400],
    ) {
        let policy = predicting();
        let values: Vec<f64> = (0..SCRAPES).map(|i| 100.0 + growth * (i as u64 * SCRAPE) as f64 / 60.0).collect();
        let mut samples = points(&values);
        let end = samples.last().expect("samples").at;
        samples.drain(..skip_start);
        if let Some((from, len)) = gap {
            let from = from.min(samples.len());
            samples.drain(from..(from + len).min(samples.len()));
        }
        let now = end + Duration::from_secs(stale_for);
        let decision = decide(&policy, &samples, &Workload::test(&["web-a"]), &Memory::default(), now);
        let Some(trend) = decision.trends.get("web-a").filter(|t| t.growing) else {
            return Ok(());
        };
        let stale = policy.stale_after.as_secs();
        let now = now.duration_since(at(0)).as_secs() as u64;
        let times: Vec<u64> = samples
            .iter()
            .map(|s| s.at.duration_since(at(0)).as_secs() as u64)
            .filter(|t| *t + 600 >= now)
            .collect();
        prop_assert!(now - times[times.len() - 1] <= stale, "stale: {trend:?}");
        prop_assert!(times[0] <= now - 600 + stale, "window not covered: {times:?}");
        prop_assert!(times.windows(2).all(|p| p[1] - p[0] <= stale), "a gap: {times:?}");
    }
}
