//! The operator's own metrics, named `memory_operator_<thing>_<unit>`.

use std::time::Instant;

use memory_engine::ActionKind;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
    outcome: &'static str,
}

fn seconds_histogram() -> Histogram {
    // 1 ms to about 16 s: a reconcile is a few API calls and one query.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    reconcile_errors: Family<KindLabels, Counter>,
    reconcile_duration: Histogram,
    decisions: Family<KindLabels, Counter>,
    actions: Family<ActionLabels, Counter>,
    queries: Counter,
    query_failures: Counter,
    query_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("memory_operator"),
            reconciles: Counter::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: seconds_histogram(),
            decisions: Family::default(),
            actions: Family::default(),
            queries: Counter::default(),
            query_failures: Counter::default(),
            query_duration: seconds_histogram(),
        };
        let r = &mut metrics.registry;
        r.register(
            "reconciles",
            "Policy evaluations",
            metrics.reconciles.clone(),
        );
        r.register(
            "reconcile_errors",
            "Evaluations that failed, by error kind",
            metrics.reconcile_errors.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time to evaluate a policy",
            metrics.reconcile_duration.clone(),
        );
        r.register(
            "decisions",
            format!(
                "Engine decisions, by kind ({})",
                decision_kinds().join(", ")
            ),
            metrics.decisions.clone(),
        );
        r.register(
            "actions",
            "Actions by kind and outcome (applied, dry_run, held_back, failed)",
            metrics.actions.clone(),
        );
        r.register(
            "prometheus_queries",
            "Queries sent to Prometheus",
            metrics.queries.clone(),
        );
        r.register(
            "prometheus_query_failures",
            "Prometheus queries that failed or timed out",
            metrics.query_failures.clone(),
        );
        r.register(
            "prometheus_query_duration_seconds",
            "Time for Prometheus to answer",
            metrics.query_duration.clone(),
        );
        metrics
    }
}

/// Records a reconcile's duration when dropped, however the reconcile ends.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    started: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .reconcile_duration
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Metrics {
    /// Counts a reconcile and times it until the timer is dropped.
    pub fn reconcile(&self) -> ReconcileTimer<'_> {
        self.reconciles.inc();
        ReconcileTimer {
            metrics: self,
            started: Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, kind: &'static str) {
        self.reconcile_errors
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// Counts an engine decision.
    pub fn decided(&self, kind: &'static str) {
        self.decisions.get_or_create(&KindLabels { kind }).inc();
    }

    /// Counts an action's outcome.
    pub fn action(&self, action: &'static str, outcome: &'static str) {
        self.actions
            .get_or_create(&ActionLabels { action, outcome })
            .inc();
    }

    /// Counts a Prometheus query and its duration, or its failure.
    pub fn queried(&self, seconds: Option<f64>) {
        self.queries.inc();
        match seconds {
            Some(seconds) => self.query_duration.observe(seconds),
            None => {
                self.query_failures.inc();
            }
        }
    }

    /// Queries sent so far.
    pub fn queries_sent(&self) -> u64 {
        self.queries.get()
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// Every `kind` label of the decisions metric: `none`, then each action kind's, once.
fn decision_kinds() -> Vec<&'static str> {
    let mut kinds = vec!["none"];
    for kind in ActionKind::all() {
        let label = kind.names().metric;
        if !kinds.contains(&label) {
            kinds.push(label);
        }
    }
    kinds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_are_counted_and_timed_even_when_they_fail() {
        let metrics = Metrics::default();
        {
            let _timer = metrics.reconcile();
            metrics.reconcile_failed("kube");
        }
        let text = metrics.encode();
        assert!(
            text.contains("memory_operator_reconciles_total 1"),
            "{text}"
        );
        assert!(text.contains("memory_operator_reconcile_duration_seconds_count 1"));
        assert!(text.contains(r#"memory_operator_reconcile_errors_total{kind="kube"} 1"#));
    }

    #[test]
    fn actions_are_counted_by_kind_and_outcome() {
        let metrics = Metrics::default();
        metrics.action("evict", "dry_run");
        metrics.queried(None);
        let text = metrics.encode();
        assert!(
            text.contains(r#"memory_operator_actions_total{action="evict",outcome="dry_run"} 1"#)
        );
        assert!(text.contains("memory_operator_prometheus_query_failures_total 1"));
        assert_eq!(metrics.queries_sent(), 1);
    }

    #[test]
    fn the_decisions_help_names_every_kind_once() {
        let metrics = Metrics::default();
        metrics.decided("raise_limit");
        let text = metrics.encode();
        assert!(
            text.contains("(none, evict, rolling_restart, scale_out, scale_in, limits, raise_limit, raise_limit_restart, alert)"),
            "{text}"
        );
    }
}
