//! The backtest as text: a header with the caveats, one line per step where
//! something happened, and a summary. Pure.

use std::{collections::BTreeMap, fmt::Write};

use jiff::{SignedDuration, Timestamp};

use super::{Backtest, Step};
use memory_engine::{Action, ActionKind};

/// Header lines wrap here, to read well in a terminal.
const LINE: usize = 100;

/// What the replay cannot know, printed with every backtest.
const CAVEATS: [&str; 3] = [
    "replicas are the pods with samples at each step (history does not record the real \
     count), raised to the count of any simulated scale; every pod counts as available and \
     no rollout is ever in progress",
    "actions do not change the recorded usage: an evicted pod goes on as it really did, and \
     a scale-out spreads no load",
    "each step reads the newest sample within Prometheus's lookback, so staleAfter only \
     bites where Prometheus marked a series stale",
];

/// The whole report.
pub fn report(backtest: &Backtest) -> String {
    let mut out = header(backtest);
    let mut previous: Option<&Step> = None;
    let mut quiet = true;
    for step in &backtest.steps {
        for (tag, detail) in events(previous, step) {
            quiet = false;
            let _ = writeln!(out, "{}  {tag:<9} {detail}", step.at);
        }
        previous = Some(step);
    }
    if quiet {
        out.push_str("nothing happened: no action, hold or change of condition\n");
    }
    out.push('\n');
    out.push_str(&summary(&backtest.steps));
    out
}

fn header(b: &Backtest) -> String {
    let p = &b.policy;
    let spec = &b.spec;
    let pods: Vec<&str> = max_usage(&b.steps).into_keys().collect();
    let mut out = format!(
        "Backtest of MemoryPolicy {} (Deployment {})\n",
        b.name, spec.target_ref.name
    );
    let _ = writeln!(out, "query     {}", b.source);
    let _ = writeln!(out, "window    {} ({} steps)", b.window, b.steps.len());
    let _ = writeln!(
        out,
        "marks     low {}, high {}, critical {}, for {:#}; cooldown {:#}, {} restarts an hour",
        whole(p.low),
        whole(p.high),
        whole(p.critical),
        signed(p.sustain),
        signed(p.cooldown),
        p.max_restarts_per_hour
    );
    let _ = writeln!(
        out,
        "actions   onHigh {:?} ({}..{} replicas), onCritical {:?}",
        spec.on_high, p.min_replicas, p.max_replicas, spec.on_critical
    );
    if let Some(prediction) = &spec.prediction {
        let _ = writeln!(
            out,
            "predict   window {}, horizon {}, minGrowth {}: a leak projected to reach its limit \
             within the horizon gets onCritical",
            prediction.window, prediction.horizon, prediction.min_growth
        );
    }
    let seen = format!("{} seen: {}", pods.len(), pods.join(", "));
    out.push_str(&wrap("pods      ", &seen));
    let suspended = p
        .suspend
        .then_some("the policy is suspended, so every action shows as held back");
    for caveat in CAVEATS.iter().copied().chain(suspended) {
        out.push_str(&wrap("caveat    ", caveat));
    }
    out.push('\n');
    out
}

/// What changed at `step`, as (tag, detail), in the order the engine reasons.
fn events(previous: Option<&Step>, step: &Step) -> Vec<(&'static str, String)> {
    let mut events = Vec::new();
    let was_available = previous.is_none_or(|p| p.metrics_available);
    if was_available != step.metrics_available {
        // Pods are whatever had samples, so the engine's "no pods" means "no samples".
        events.push(match (step.metrics_available, step.usage.len()) {
            (true, 1) => ("DATA", "samples for 1 pod".to_owned()),
            (true, pods) => ("DATA", format!("samples for {pods} pods")),
            (false, 0) => ("NO DATA", "no samples".to_owned()),
            (false, _) => ("NO DATA", step.metrics_message.clone()),
        });
    }
    let was_high = previous.is_some_and(|p| p.high_since.is_some());
    if step.high_since.is_some() != was_high {
        let tag = if was_high { "HIGH OFF" } else { "HIGH" };
        let detail = if step.usage.is_empty() {
            "no samples".to_owned()
        } else {
            format!("fleet average {}", average(step))
        };
        events.push((tag, detail));
    }
    let no_pods = BTreeMap::new();
    let was_critical = previous.map_or(&no_pods, |p| &p.critical_since);
    for (pod, ratio) in &step.usage {
        if step.critical_since.contains_key(pod) && !was_critical.contains_key(pod) {
            events.push(("CRITICAL", format!("{pod} at {}", one_decimal(*ratio))));
        }
    }
    for pod in was_critical.keys() {
        if !step.critical_since.contains_key(pod) {
            let now = step
                .usage
                .get(pod)
                .map_or("no longer measured".to_owned(), |u| {
                    format!("down to {}", one_decimal(*u))
                });
            events.push(("CLEARED", format!("{pod} {now}")));
        }
    }
    let no_trends = BTreeMap::new();
    let trends_before = previous.map_or(&no_trends, |p| &p.trends);
    let suspected = |trends: &BTreeMap<String, memory_engine::Trend>, pod: &str| {
        trends.get(pod).is_some_and(|t| t.leak_suspected)
    };
    for (pod, trend) in &step.trends {
        if trend.leak_suspected && !suspected(trends_before, pod) {
            events.push(("LEAK", trend.describe(pod, step.at)));
        }
    }
    for pod in trends_before.keys() {
        if suspected(trends_before, pod) && !suspected(&step.trends, pod) {
            events.push(("LEAK OFF", format!("{pod} no longer grows like a leak")));
        }
    }
    if let Some(action) = &step.action {
        events.push(describe(step, action));
    }
    let held_before = previous
        .and_then(|p| p.held_back.as_ref())
        .map(|h| &h.action);
    if let Some(held) = &step.held_back
        && held_before != Some(&held.action)
    {
        events.push(("HELD", format!("{}: {}", held.action, held.reason)));
    }
    events
}

fn describe(step: &Step, action: &Action) -> (&'static str, String) {
    match action {
        Action::Evict { pods } => {
            let pods: Vec<String> = pods.iter().map(|pod| critical(step, pod)).collect();
            ("EVICT", pods.join(", "))
        }
        Action::ScaleTo { from, to } if to > from => (
            "SCALE OUT",
            format!("{from} -> {to} replicas (average {})", average(step)),
        ),
        Action::ScaleTo { from, to } => {
            let highest = step.usage.values().copied().fold(0.0, f64::max);
            (
                "SCALE IN",
                format!("{from} -> {to} replicas (highest {})", one_decimal(highest)),
            )
        }
        Action::RollingRestart => {
            let pods: Vec<String> = step
                .critical
                .iter()
                .map(|pod| critical(step, pod))
                .collect();
            (
                "RESTART",
                format!("rolling restart for {}", pods.join(", ")),
            )
        }
        Action::SetLimits { .. } => ("LIMITS", action.to_string()),
        Action::RaiseLimit { .. } => ("RAISE", action.to_string()),
        Action::Alert { message, .. } => ("ALERT", message.clone()),
    }
}

/// `web-a (critical 97.1% for 1m)`, or for a pod acted on by prediction, `web-a (72.0%,
/// leak projected to reach its limit in 9m)`.
fn critical(step: &Step, pod: &str) -> String {
    let usage = step
        .usage
        .get(pod)
        .map_or("?".to_owned(), |u| one_decimal(*u));
    if !step.critical_since.contains_key(pod)
        && let Some(limit_at) = step.trends.get(pod).and_then(|t| t.limit_at)
    {
        let left = SignedDuration::from_secs(limit_at.duration_since(step.at).as_secs());
        return format!("{pod} ({usage}, leak projected to reach its limit in {left:#})");
    }
    let since = step.critical_since.get(pod).copied().unwrap_or(step.at);
    let held = SignedDuration::from_secs(step.at.duration_since(since).as_secs());
    format!("{pod} (critical {usage} for {held:#})")
}

fn summary(steps: &[Step]) -> String {
    let actions: Vec<&Action> = steps.iter().filter_map(|s| s.action.as_ref()).collect();
    let counts: Vec<String> = ActionKind::all()
        .map(|kind| {
            let taken = actions.iter().filter(|a| a.kind() == kind).count();
            format!("{} {taken}", kind.names().label)
        })
        .collect();
    let held = steps.iter().filter(|s| s.held_back.is_some()).count();
    let throttled = steps.iter().filter(|s| s.throttled).count();
    let blind = steps.iter().filter(|s| !s.metrics_available).count();
    let mut out = format!("actions   {}\n", counts.join(", "));
    let _ = writeln!(
        out,
        "held back at {held} steps ({throttled} by cooldown or restart budget); \
         {blind} of {} steps without usable data",
        steps.len()
    );
    let usage = max_usage(steps);
    if !usage.is_empty() {
        out.push_str("max usage\n");
    }
    let width = usage.keys().map(|pod| pod.len()).max().unwrap_or(0);
    for (pod, (ratio, at)) in usage {
        let _ = writeln!(out, "  {pod:<width$}  {:>6}  at {at}", one_decimal(ratio));
    }
    out
}

/// Each pod's highest usage and when it was first reached.
pub(super) fn max_usage(steps: &[Step]) -> BTreeMap<&str, (f64, Timestamp)> {
    let mut max: BTreeMap<&str, (f64, Timestamp)> = BTreeMap::new();
    for step in steps {
        for (pod, ratio) in &step.usage {
            let slot = max.entry(pod.as_str()).or_insert((*ratio, step.at));
            if *ratio > slot.0 {
                *slot = (*ratio, step.at);
            }
        }
    }
    max
}

fn average(step: &Step) -> String {
    let sum: f64 = step.usage.values().sum();
    one_decimal(sum / step.usage.len().max(1) as f64)
}

/// `label` and `text` on lines of at most [`LINE`] characters, indented under the label.
fn wrap(label: &str, text: &str) -> String {
    let indent = " ".repeat(label.len());
    let mut out = label.to_owned();
    let mut width = label.len();
    for word in text.split(' ') {
        if width > label.len() && width + 1 + word.len() > LINE {
            out.push('\n');
            out.push_str(&indent);
            width = indent.len();
        } else if width > label.len() {
            out.push(' ');
            width += 1;
        }
        out.push_str(word);
        width += word.len();
    }
    out.push('\n');
    out
}

/// `0.971` is `97.1%`.
fn one_decimal(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

/// `0.8` is `80%`.
fn whole(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

fn signed(duration: std::time::Duration) -> SignedDuration {
    SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::backtest::{Window, replay, replay::history};
    use memory_engine::Policy;
    use memory_policy_api::crd::MemoryPolicySpec;

    fn backtest(usage: &[&[(&str, f64)]]) -> Backtest {
        let policy = Policy::test()
            .with_sustain(Duration::from_secs(2))
            .with_cooldown(Duration::from_secs(60));
        let history = history(usage);
        let (start, end) = (history[0].0, history[history.len() - 1].0);
        Backtest {
            name: "shop/web-memory".into(),
            spec: MemoryPolicySpec::for_deployment("web"),
            steps: replay(&policy, &history),
            policy,
            source: "{...} at http://prometheus".into(),
            window: Window::new(start, end, Duration::from_secs(1)).unwrap(),
        }
    }

    #[test]
    fn the_timeline_shows_the_eviction_and_a_continuing_hold_once() {
        let mut usage: Vec<&[(&str, f64)]> = vec![&[("a", 50.0), ("b", 40.0)]; 2];
        usage.extend(vec![&[("a", 97.0), ("b", 40.0)][..]; 8]);
        let text = backtest(&usage).report();

        assert!(text.starts_with("Backtest of MemoryPolicy shop/web-memory (Deployment web)\n"));
        assert!(text.contains("pods      2 seen: a, b\n"), "{text}");
        assert!(
            text.contains("2025-06-15T15:06:42Z  CRITICAL  a at 97.0%\n"),
            "{text}"
        );
        assert!(
            text.contains("2025-06-15T15:06:44Z  EVICT     a (critical 97.0% for 2s)\n"),
            "{text}"
        );
        assert_eq!(text.matches("  HELD  ").count(), 1, "{text}");
        assert!(
            text.contains("actions   evict 1, rolling restart 0, "),
            "{text}"
        );
        assert!(
            text.contains("held back at 4 steps (4 by cooldown"),
            "{text}"
        );
        assert!(
            text.contains("  a   97.0%  at 2025-06-15T15:06:42Z\n"),
            "{text}"
        );
    }

    #[test]
    fn a_quiet_history_says_so_and_a_gap_is_reported() {
        let text = backtest(&[&[("a", 70.0)], &[], &[("a", 70.0)]]).report();
        assert!(text.contains("  NO DATA   no samples\n"), "{text}");
        assert!(text.contains("  DATA      samples for 1 pod\n"), "{text}");
        let quiet = backtest(&[&[("a", 70.0)], &[("a", 70.0)]]).report();
        assert!(quiet.contains("nothing happened"), "{quiet}");
    }

    #[test]
    fn a_predicting_policy_s_timeline_shows_the_leak_and_the_eviction_it_called_for() {
        // `a` climbs half a percent of its limit a second from 40 %; `b` stays at 40 %.
        let rows: Vec<Vec<(&str, f64)>> = (0..80)
            .map(|second| vec![("a", 40.0 + 0.5 * f64::from(second)), ("b", 40.0)])
            .collect();
        let usage: Vec<&[(&str, f64)]> = rows.iter().map(Vec::as_slice).collect();
        let mut b = backtest(&usage);
        b.policy = b.policy.predicting(20, 60, 1.0);
        b.spec.prediction = Some(serde_yaml::from_str("{window: 20s, horizon: 1m}").unwrap());
        b.steps = replay(&b.policy, &history(&usage));
        let text = b.report();

        assert!(
            text.contains("predict   window 20s, horizon 1m, minGrowth 1Mi/min: "),
            "{text}"
        );
        assert!(
            text.contains("  LEAK      a projected to reach its 1024 MiB limit in "),
            "{text}"
        );
        assert!(
            text.contains("+307.2 MiB/min (request rate unknown)"),
            "{text}"
        );
        let evict = text
            .lines()
            .find(|l| l.contains("  EVICT  "))
            .expect("an eviction");
        assert!(
            evict.ends_with("a (70.5%, leak projected to reach its limit in 59s)"),
            "{evict}"
        );
        assert!(!text.contains("  CRITICAL  "), "{text}");
        let svg = b.svg();
        assert!(svg.contains("class=\"projection\""), "{svg}");
    }
}
