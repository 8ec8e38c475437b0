//! The `MemoryPolicy` custom resource (`shortener.dev/v1alpha1`).
//!
//! `crds/memorypolicy.yaml` is generated from these types. The schema's
//! bounds and CEL rules mirror [`crate::validate::validate`], which gives the
//! same verdicts offline.

mod duration;
pub mod names;
mod prediction;
mod quantity;
mod status;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use duration::{DURATION_PATTERN, Duration};
pub use prediction::{GROWTH_PATTERN, Growth, Prediction, WINDOW_TOO_SHORT};
pub use quantity::{QUANTITY_SUFFIXES, quantity_bytes};
pub use status::{ActionRecord, MemoryPolicyStatus, PodMemory, PodRestarts};

/// How a policy keeps one workload's memory in check.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
// Clippy reads the repeated `type_ = "string"` of separate printer columns as duplicates.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "shortener.dev",
    version = "v1alpha1",
    kind = "MemoryPolicy",
    namespaced,
    shortname = "mempol",
    status = "MemoryPolicyStatus",
    derive = "PartialEq",
    doc = "A memory policy: watches a Deployment's pods against water marks and scales out or restarts them.",
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.targetRef.name"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(name = "Max Usage", type_ = "number", json_path = ".status.maxUsage"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "Last Action",
        type_ = "string",
        json_path = ".status.lastAction.type"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.onHigh) || self.onHigh != 'RaiseLimit' || (has(self.limits) && has(self.limits.raise))", "message": RAISE_NEEDED},
    {"rule": "!has(self.limits) || !has(self.limits.raise) || (has(self.onHigh) && self.onHigh == 'RaiseLimit')", "message": RAISE_UNUSED},
    {"rule": prediction::window_rule(), "message": WINDOW_TOO_SHORT},
]))]
pub struct MemoryPolicySpec {
    /// The workload this policy watches and acts on.
    pub target_ref: TargetRef,
    /// Which of the operator's metrics sources to query, and for how long.
    #[serde(default)]
    pub prometheus: Prometheus,
    /// Which memory series counts as usage.
    #[serde(default)]
    pub metric: Metric,
    /// How often the policy is evaluated.
    #[serde(default = "default_interval")]
    #[schemars(extend("x-kubernetes-validations" = [positive("interval")]))]
    pub interval: Duration,
    /// Water marks, in percent of each pod's memory limit.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// The memory request and limit the target's container is expected to run with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// What to do above the high water mark.
    #[serde(default)]
    pub on_high: HighAction,
    /// What to do above the critical mark, and to a leak projected to reach its limit.
    #[serde(default)]
    pub on_critical: CriticalAction,
    /// Predict each pod's growth and act on a leak before it reaches a mark; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Prediction>,
    /// Bounds for scaling the target out and back in.
    #[serde(default)]
    pub scaling: Scaling,
    /// Brakes on disruptive actions.
    #[serde(default)]
    pub safety: Safety,
    /// Decide and report, but change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Skip evaluation entirely.
    #[serde(default)]
    pub suspend: bool,
}

/// The Deployment a policy applies to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.apiVersion == 'apps/v1'", "message": "targetRef.apiVersion must be apps/v1"},
    {"rule": "self.kind == 'Deployment'", "message": "targetRef.kind must be Deployment (the only kind supported for now)"},
]))]
pub struct TargetRef {
    /// `apps/v1`.
    pub api_version: String,
    /// `Deployment`.
    pub kind: String,
    /// The Deployment's name, in the policy's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Which Prometheus the policy is evaluated against, and for how long a query may run.
///
/// The servers themselves are the operator administrator's to define (`--sources`): a policy
/// names one and can no longer carry an address, so no policy can make the operator connect
/// anywhere its administrator did not configure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.url)", "message": URL_REFUSED},
    {"rule": "size(self.source) <= 63 && self.source.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')", "message": SOURCE_NAME},
]))]
pub struct Prometheus {
    /// The metrics source to query, by the name the operator's administrator gave it.
    #[schemars(length(max = 63))]
    pub source: String,
    /// No longer supported: refused, in favour of `source`. Kept in the schema so that a
    /// policy still carrying it is refused with a message saying what to write instead,
    /// rather than having it dropped silently.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Per-query timeout (the source's own timeout, when shorter, wins).
    #[schemars(extend("x-kubernetes-validations" = [positive("prometheus.timeout")]))]
    pub timeout: Duration,
}

/// The source every policy names unless it says otherwise.
pub const DEFAULT_SOURCE: &str = "default";

/// What names a source, as the apiserver and `check` say it.
pub const SOURCE_NAME: &str = "spec.prometheus.source must be a source's name: lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters";

/// Why `spec.prometheus.url` is refused, and what replaces it: the apiserver's message and
/// `check`'s.
pub const URL_REFUSED: &str = "spec.prometheus.url is no longer supported: the operator queries only the metrics sources its administrator configured; name one in spec.prometheus.source (default \"default\") instead";

/// A Kubernetes DNS label (RFC 1123): what names a metrics source.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (1..=63).contains(&bytes.len())
        && bytes.first().is_some_and(inner)
        && bytes.last().is_some_and(inner)
        && bytes.iter().all(|b| inner(b) || *b == b'-')
}

impl Default for Prometheus {
    fn default() -> Self {
        Self {
            source: DEFAULT_SOURCE.to_owned(),
            url: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// The memory series that counts as usage.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.source != 'Custom' || (has(self.query) && size(self.query) > 0)", "message": "metric.query is required when metric.source is Custom"},
    {"rule": "self.source == 'Custom' || !has(self.query)", "message": "metric.query is only allowed when metric.source is Custom"},
]))]
pub struct Metric {
    /// Which series to read.
    pub source: MetricSource,
    /// PromQL returning one series per pod (label `pod`), in bytes; only with `Custom`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// Where usage figures come from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum MetricSource {
    /// The service's own `shortener_memory_resident_bytes`.
    #[default]
    Service,
    /// The container's cgroup working set (cAdvisor).
    Container,
    /// `metric.query`.
    Custom,
}

/// Water marks in percent of the memory limit, and how long they must hold.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.lowWaterMark < self.highWaterMark", "message": "thresholds.lowWaterMark must be below highWaterMark"},
    {"rule": "self.highWaterMark < self.critical", "message": "thresholds.highWaterMark must be below critical"},
]))]
pub struct Thresholds {
    /// Below this a pod counts as comfortable; scaling in waits for it.
    #[schemars(range(min = 1, max = 100))]
    pub low_water_mark: u32,
    /// Above this `onHigh` applies.
    #[schemars(range(min = 1, max = 100))]
    pub high_water_mark: u32,
    /// Above this `onCritical` applies.
    #[schemars(range(min = 1, max = 100))]
    pub critical: u32,
    /// How long usage must stay above a mark before anything is done.
    #[schemars(extend("x-kubernetes-validations" = [positive("thresholds.for")]))]
    pub r#for: Duration,
    /// Samples older than this are ignored.
    #[schemars(extend("x-kubernetes-validations" = [positive("thresholds.staleAfter")]))]
    pub stale_after: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            low_water_mark: 60,
            high_water_mark: 80,
            critical: 95,
            r#for: Duration::from_secs(60),
            stale_after: Duration::from_secs(45),
        }
    }
}

/// The memory request and limit expected on the target's container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Limits {
    /// Container name; the pod's first container when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Memory request, a Kubernetes quantity such as `64Mi`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Quantity>,
    /// Memory limit, a Kubernetes quantity such as `256Mi`; not below `request`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<Quantity>,
    /// How `onHigh: RaiseLimit` raises a running pod's limit in place; required with it, and
    /// only allowed with it. The pod template is left as it is: new pods start at its limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raise: Option<Raise>,
}

/// Raising a running pod's memory limit in place (Kubernetes 1.33 and later).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Raise {
    /// Added by one raise, a quantity such as `64Mi`.
    pub step: Quantity,
    /// Never raised above this, a quantity such as `512Mi`.
    pub max: Quantity,
    /// Also raise containers whose memory `resizePolicy` is `RestartContainer`: each such
    /// raise restarts the container and counts against `safety.maxRestartsPerHour`. Off: such
    /// pods are left to `onCritical`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_restart: bool,
    /// A resize still deferred or in progress this long after it was asked for has failed,
    /// as an infeasible one has at once: the pod gets `onCritical` if it is still high.
    #[serde(default = "default_raise_timeout")]
    #[schemars(extend("x-kubernetes-validations" = [positive("limits.raise.timeout")]))]
    pub timeout: Duration,
}

fn default_raise_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Why `onHigh: RaiseLimit` without `limits.raise` is refused, by the apiserver and `check`.
pub const RAISE_NEEDED: &str = "spec.limits.raise is required when onHigh is RaiseLimit: it says by how much a limit is raised (step) and up to what (max)";

/// Why `limits.raise` without `onHigh: RaiseLimit` is refused, by the apiserver and `check`.
pub const RAISE_UNUSED: &str =
    "spec.limits.raise is only used when onHigh is RaiseLimit; remove it or set onHigh";

/// The response above the high water mark.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum HighAction {
    /// Add `scaling.step` replicas, up to `scaling.maxReplicas`.
    #[default]
    ScaleOut,
    /// Report only.
    AlertOnly,
    /// Raise the memory limit of each pod that stays above the mark, in place and without a
    /// restart, by `limits.raise.step` up to `limits.raise.max`. A critical pod is raised once
    /// before `onCritical` acts on it; a resize the node cannot carry out falls back to
    /// `onCritical`. Leaves the replica count alone.
    RaiseLimit,
}

/// The response above the critical mark.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CriticalAction {
    /// Delete the critical pod so its ReplicaSet replaces it.
    #[default]
    RestartPod,
    /// Restart the whole Deployment, one surge at a time.
    RollingRestart,
    /// Report only.
    AlertOnly,
}

/// Replica bounds for scaling.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.minReplicas <= self.maxReplicas", "message": "scaling.minReplicas must not exceed maxReplicas"},
]))]
pub struct Scaling {
    /// Never scale in below this.
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// Never scale out above this.
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Replicas added per scale-out.
    #[schemars(range(min = 1))]
    pub step: i32,
    /// How long usage must stay below the low water mark before scaling in.
    #[schemars(extend("x-kubernetes-validations" = [positive("scaling.scaleInStabilization")]))]
    pub scale_in_stabilization: Duration,
}

impl Default for Scaling {
    fn default() -> Self {
        Self {
            min_replicas: 1,
            max_replicas: 10,
            step: 1,
            scale_in_stabilization: Duration::from_secs(600),
        }
    }
}

/// Brakes on disruptive actions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Safety {
    /// Minimum time between two actions on the target.
    #[schemars(extend("x-kubernetes-validations" = [positive("safety.cooldown")]))]
    pub cooldown: Duration,
    /// Pod restarts allowed in any hour; 0 forbids restarts.
    pub max_restarts_per_hour: u32,
    /// Pods that may be restarting at once.
    #[schemars(range(min = 1))]
    pub max_unavailable: i32,
}

impl Default for Safety {
    fn default() -> Self {
        Self {
            cooldown: Duration::from_secs(300),
            max_restarts_per_hour: 3,
            max_unavailable: 1,
        }
    }
}

impl MemoryPolicySpec {
    /// A policy for the named Deployment with every other field at its default.
    pub fn for_deployment(name: &str) -> Self {
        Self {
            target_ref: TargetRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: name.into(),
            },
            prometheus: Prometheus::default(),
            metric: Metric::default(),
            interval: default_interval(),
            thresholds: Thresholds::default(),
            limits: None,
            on_high: HighAction::default(),
            on_critical: CriticalAction::default(),
            prediction: None,
            scaling: Scaling::default(),
            safety: Safety::default(),
            dry_run: false,
            suspend: false,
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(15)
}

/// A value written as text, read through its `FromStr`: a bad one is reported at its own
/// field with the parser's message (serde's `try_from` would name the enclosing section).
fn parsed<'de, D, T>(deserializer: D, expecting: &'static str) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    struct Visitor<T>(&'static str, std::marker::PhantomData<T>);
    impl<T> serde::de::Visitor<'_> for Visitor<T>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<T, E> {
            s.parse().map_err(E::custom)
        }
    }
    deserializer.deserialize_str(Visitor(expecting, std::marker::PhantomData))
}

/// The CEL rule that keeps a duration field above zero, naming the field.
fn positive(field: &str) -> serde_json::Value {
    serde_json::json!({
        "rule": "duration(self) > duration('0s')",
        "message": format!("{field} must be a positive duration"),
    })
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::*;

    #[test]
    fn a_policy_with_only_a_target_takes_every_default() {
        let yaml = "targetRef: {apiVersion: apps/v1, kind: Deployment, name: shortener}";
        let spec: MemoryPolicySpec = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(spec, MemoryPolicySpec::for_deployment("shortener"));
        assert_eq!(spec.interval.as_std(), std::time::Duration::from_secs(15));
        assert_eq!(spec.thresholds.r#for, Duration::from_secs(60));
        assert_eq!(spec.on_critical, CriticalAction::RestartPod);
    }

    #[test]
    fn a_partial_section_keeps_the_defaults_of_the_fields_it_omits() {
        let yaml = "targetRef: {apiVersion: apps/v1, kind: Deployment, name: s}\nthresholds: {critical: 99}";
        let spec: MemoryPolicySpec = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(
            spec.thresholds,
            Thresholds {
                critical: 99,
                ..Thresholds::default()
            }
        );
    }

    #[test]
    fn the_schema_carries_enums_bounds_and_cel_rules() {
        let crd = serde_json::to_string(&MemoryPolicy::crd()).unwrap();
        for needle in [
            r#""enum":["ScaleOut","AlertOnly","RaiseLimit"]"#,
            "spec.limits.raise is required when onHigh is RaiseLimit",
            r#""maximum":100"#,
            r#""pattern":"^([0-9]+(ms|s|m|h))+$""#,
            "self.lowWaterMark < self.highWaterMark",
            "self.minReplicas <= self.maxReplicas",
            "thresholds.for must be a positive duration",
        ] {
            assert!(crd.contains(needle), "missing {needle}");
        }
    }
}
