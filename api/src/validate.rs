//! The verdict on a policy, offline.
//!
//! [`validate`] gives the same verdicts as the CRD schema's bounds and CEL
//! rules (see `crd.rs`), plus `limits.request <= limits.limit`, which the
//! schema cannot express. [`check_documents`] is `memory-operator check`:
//! strict parsing (unknown fields are errors) followed by [`validate`].

mod documents;

use std::fmt;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub use documents::check_documents;

use crate::{
    Result,
    crd::{
        Duration, HighAction, MemoryPolicySpec, MetricSource, QUANTITY_SUFFIXES, RAISE_NEEDED,
        RAISE_UNUSED, SOURCE_NAME, URL_REFUSED, WINDOW_TOO_SHORT, is_dns_label, quantity_bytes,
    },
    promql,
};

/// The longest duration the apiserver's CEL `duration()` reads (Go's, in nanoseconds
/// within an i64); the schema rules on longer ones fail, so such a policy is never admitted.
const MAX_DURATION: std::time::Duration = std::time::Duration::from_nanos(i64::MAX as u64);

/// One rule a policy breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Where, such as `spec.thresholds.lowWaterMark`.
    pub path: String,
    /// What is wrong, starting with the path.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Collects [`FieldError`]s under `spec.`.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: &str, what: impl fmt::Display) {
        let path = format!("spec.{field}");
        let message = format!("{path} {what}");
        self.0.push(FieldError { path, message });
    }

    /// A rule whose message is written out whole, path included (the apiserver's own).
    fn refuse(&mut self, field: &str, message: &str) {
        self.0.push(FieldError {
            path: format!("spec.{field}"),
            message: message.to_owned(),
        });
    }

    fn duration(&mut self, field: &str, value: Duration) {
        if value.is_zero() {
            self.add(field, format_args!("({value}) must be a positive duration"));
        } else if value.as_std() > MAX_DURATION {
            self.add(
                field,
                format_args!("({value}) is longer than Kubernetes durations go (2562047h47m16s)"),
            );
        }
    }

    fn at_least_one(&mut self, field: &str, value: i32) {
        if value < 1 {
            self.add(field, format_args!("({value}) must be at least 1"));
        }
    }

    fn percent(&mut self, field: &str, value: u32) {
        if !(1..=100).contains(&value) {
            self.add(field, format_args!("({value}) must be between 1 and 100"));
        }
    }

    /// The quantity in bytes, with its text; `None` when unset or unreadable.
    fn quantity<'q>(&mut self, field: &str, value: Option<&'q Quantity>) -> Option<(u64, &'q str)> {
        let text = value?.0.as_str();
        let bytes = quantity_bytes(value?);
        if bytes.is_none() {
            self.add(
                field,
                format_args!(
                    "({text}) is not a memory quantity this check understands: use bytes, \
                     optionally with a {QUANTITY_SUFFIXES} suffix, such as 256Mi"
                ),
            );
        }
        Some((bytes?, text))
    }
}

/// Every rule `spec` breaks, or `Ok` when it is sound, for a policy in `namespace` (unknown
/// for a document that names none: a custom query's namespace is then judged at run time).
pub fn validate(spec: &MemoryPolicySpec, namespace: Option<&str>) -> Result<(), Vec<FieldError>> {
    let mut p = Problems::default();

    let target = &spec.target_ref;
    if target.api_version != "apps/v1" {
        p.add(
            "targetRef.apiVersion",
            format_args!("({}) must be apps/v1", target.api_version),
        );
    }
    if target.kind != "Deployment" {
        p.add(
            "targetRef.kind",
            format_args!(
                "({}) must be Deployment, the only kind supported for now",
                target.kind
            ),
        );
    }
    if target.name.is_empty() {
        p.add("targetRef.name", "must not be empty");
    }

    if spec.prometheus.url.is_some() {
        p.refuse("prometheus.url", URL_REFUSED);
    }
    if !is_dns_label(&spec.prometheus.source) {
        let name = &spec.prometheus.source;
        p.refuse("prometheus.source", &format!("{SOURCE_NAME}, not {name:?}"));
    }
    p.duration("prometheus.timeout", spec.prometheus.timeout);

    let metric = &spec.metric;
    match (metric.source, metric.query.as_deref()) {
        (MetricSource::Custom, None | Some("")) => {
            p.add("metric.query", "is required when metric.source is Custom")
        }
        (source, Some(_)) if source != MetricSource::Custom => p.add(
            "metric.query",
            format_args!("is only allowed when metric.source is Custom, not {source:?}"),
        ),
        (_, Some(query)) => {
            if let Err(error) = promql::check(query, namespace) {
                p.add("metric.query", error);
            }
        }
        _ => {}
    }

    p.duration("interval", spec.interval);

    let t = &spec.thresholds;
    p.percent("thresholds.lowWaterMark", t.low_water_mark);
    p.percent("thresholds.highWaterMark", t.high_water_mark);
    p.percent("thresholds.critical", t.critical);
    if t.low_water_mark >= t.high_water_mark {
        p.add(
            "thresholds.lowWaterMark",
            format_args!(
                "({}) must be below highWaterMark ({})",
                t.low_water_mark, t.high_water_mark
            ),
        );
    }
    if t.high_water_mark >= t.critical {
        p.add(
            "thresholds.highWaterMark",
            format_args!(
                "({}) must be below critical ({})",
                t.high_water_mark, t.critical
            ),
        );
    }
    p.duration("thresholds.for", t.r#for);
    p.duration("thresholds.staleAfter", t.stale_after);

    if let Some(limits) = &spec.limits {
        let request = p.quantity("limits.request", limits.request.as_ref());
        let limit = p.quantity("limits.limit", limits.limit.as_ref());
        if let (Some((request, request_text)), Some((limit, limit_text))) = (request, limit)
            && request > limit
        {
            p.add(
                "limits.request",
                format_args!("({request_text}) must not exceed limit ({limit_text})"),
            );
        }
        if let Some(raise) = &limits.raise {
            let step = p.quantity("limits.raise.step", Some(&raise.step));
            let max = p.quantity("limits.raise.max", Some(&raise.max));
            if step.is_some_and(|(bytes, _)| bytes == 0) {
                p.add("limits.raise.step", "(0) must be more than zero");
            }
            if let (Some((step, step_text)), Some((max, max_text))) = (step, max)
                && max < step
            {
                p.add(
                    "limits.raise.max",
                    format_args!("({max_text}) must be at least step ({step_text})"),
                );
            }
            if let (Some((max, max_text)), Some((limit, limit_text))) = (max, limit)
                && max <= limit
            {
                p.add(
                    "limits.raise.max",
                    format_args!(
                        "({max_text}) must be above limits.limit ({limit_text}), or no pod at the policy's limit could be raised"
                    ),
                );
            }
            p.duration("limits.raise.timeout", raise.timeout);
        }
    }
    let raises = spec.limits.as_ref().is_some_and(|l| l.raise.is_some());
    match (spec.on_high == HighAction::RaiseLimit, raises) {
        (true, false) => p.refuse("limits.raise", RAISE_NEEDED),
        (false, true) => p.refuse("limits.raise", RAISE_UNUSED),
        _ => {}
    }

    if let Some(prediction) = &spec.prediction {
        p.duration("prediction.window", prediction.window);
        p.duration("prediction.horizon", prediction.horizon);
        if prediction.window <= t.stale_after {
            p.refuse("prediction.window", WINDOW_TOO_SHORT);
        }
    }

    let s = &spec.scaling;
    p.at_least_one("scaling.minReplicas", s.min_replicas);
    p.at_least_one("scaling.maxReplicas", s.max_replicas);
    if s.min_replicas > s.max_replicas {
        p.add(
            "scaling.minReplicas",
            format_args!(
                "({}) must not exceed maxReplicas ({})",
                s.min_replicas, s.max_replicas
            ),
        );
    }
    p.at_least_one("scaling.step", s.step);
    p.duration("scaling.scaleInStabilization", s.scale_in_stabilization);

    p.duration("safety.cooldown", spec.safety.cooldown);
    p.at_least_one("safety.maxUnavailable", spec.safety.max_unavailable);

    if p.0.is_empty() { Ok(()) } else { Err(p.0) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Limits;

    fn spec() -> MemoryPolicySpec {
        MemoryPolicySpec::for_deployment("shortener")
    }

    fn messages(spec: &MemoryPolicySpec) -> Vec<String> {
        validate(spec, None)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    #[test]
    fn a_policy_with_every_default_is_sound() {
        assert_eq!(validate(&spec(), None), Ok(()));
    }

    #[test]
    fn water_marks_out_of_order_name_both_values() {
        let mut s = spec();
        (s.thresholds.low_water_mark, s.thresholds.high_water_mark) = (80, 60);
        let errors = validate(&s, None).unwrap_err();
        assert_eq!(errors[0].path, "spec.thresholds.lowWaterMark");
        assert_eq!(
            errors[0].message,
            "spec.thresholds.lowWaterMark (80) must be below highWaterMark (60)"
        );
    }

    #[test]
    fn the_high_water_mark_must_be_below_critical_and_critical_at_most_100() {
        let mut s = spec();
        (s.thresholds.high_water_mark, s.thresholds.critical) = (96, 101);
        assert_eq!(
            messages(&s),
            ["spec.thresholds.critical (101) must be between 1 and 100"]
        );
        s.thresholds.critical = 95;
        assert_eq!(
            messages(&s),
            ["spec.thresholds.highWaterMark (96) must be below critical (95)"]
        );
    }

    #[test]
    fn a_zero_low_water_mark_is_refused() {
        let mut s = spec();
        s.thresholds.low_water_mark = 0;
        assert_eq!(
            messages(&s),
            ["spec.thresholds.lowWaterMark (0) must be between 1 and 100"]
        );
    }

    #[test]
    fn replica_bounds_must_be_at_least_one_and_in_order() {
        let mut s = spec();
        (
            s.scaling.min_replicas,
            s.scaling.max_replicas,
            s.scaling.step,
        ) = (5, 3, 0);
        assert_eq!(
            messages(&s),
            [
                "spec.scaling.minReplicas (5) must not exceed maxReplicas (3)",
                "spec.scaling.step (0) must be at least 1"
            ]
        );
        (
            s.scaling.min_replicas,
            s.scaling.max_replicas,
            s.scaling.step,
        ) = (0, 3, 1);
        assert_eq!(
            messages(&s),
            ["spec.scaling.minReplicas (0) must be at least 1"]
        );
    }

    #[test]
    fn durations_longer_than_kubernetes_reads_are_refused() {
        let mut s = spec();
        s.safety.cooldown = "2562047h47m16s".parse().unwrap();
        assert!(validate(&s, None).is_ok());
        s.safety.cooldown = "2562047h47m17s".parse().unwrap();
        assert_eq!(
            messages(&s),
            [
                "spec.safety.cooldown (2562047h47m17s) is longer than Kubernetes durations go (2562047h47m16s)"
            ]
        );
    }

    #[test]
    fn every_duration_must_be_positive() {
        let mut s = spec();
        let zero = Duration::from_secs(0);
        s.interval = zero;
        s.prometheus.timeout = zero;
        (s.thresholds.r#for, s.thresholds.stale_after) = (zero, zero);
        s.scaling.scale_in_stabilization = zero;
        s.safety.cooldown = zero;
        let paths: Vec<String> = validate(&s, None)
            .unwrap_err()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            [
                "spec.prometheus.timeout",
                "spec.interval",
                "spec.thresholds.for",
                "spec.thresholds.staleAfter",
                "spec.scaling.scaleInStabilization",
                "spec.safety.cooldown",
            ]
        );
    }

    #[test]
    fn a_custom_metric_needs_a_query_and_only_a_custom_metric_may_have_one() {
        let mut s = spec();
        s.metric.source = MetricSource::Custom;
        assert_eq!(
            messages(&s),
            ["spec.metric.query is required when metric.source is Custom"]
        );
        s.metric.query = Some("container_memory_working_set_bytes".into());
        assert_eq!(validate(&s, None), Ok(()));
        s.metric.source = MetricSource::Container;
        assert_eq!(
            messages(&s),
            ["spec.metric.query is only allowed when metric.source is Custom, not Container"]
        );
    }

    #[test]
    fn only_a_named_apps_v1_deployment_can_be_targeted() {
        let mut s = spec();
        s.target_ref.api_version = "apps/v1beta2".into();
        s.target_ref.kind = "StatefulSet".into();
        s.target_ref.name.clear();
        assert_eq!(
            messages(&s),
            [
                "spec.targetRef.apiVersion (apps/v1beta2) must be apps/v1",
                "spec.targetRef.kind (StatefulSet) must be Deployment, the only kind supported for now",
                "spec.targetRef.name must not be empty",
            ]
        );
    }

    #[test]
    fn the_request_must_not_exceed_the_limit() {
        let mut s = spec();
        let q = |v: &str| Some(Quantity(v.into()));
        s.limits = Some(Limits {
            request: q("512Mi"),
            limit: q("0.25Gi"),
            ..Limits::default()
        });
        assert_eq!(
            messages(&s),
            ["spec.limits.request (512Mi) must not exceed limit (0.25Gi)"]
        );
        s.limits = Some(Limits {
            request: q("256Mi"),
            limit: q("256Mi"),
            ..Limits::default()
        });
        assert_eq!(validate(&s, None), Ok(()));
    }

    fn raising(step: &str, max: &str) -> MemoryPolicySpec {
        let mut s = spec();
        s.on_high = HighAction::RaiseLimit;
        s.limits = Some(Limits {
            raise: Some(crate::crd::Raise {
                step: Quantity(step.into()),
                max: Quantity(max.into()),
                allow_restart: false,
                timeout: Duration::from_secs(60),
            }),
            ..Limits::default()
        });
        s
    }

    #[test]
    fn raising_limits_needs_its_bounds_and_its_bounds_need_raising_limits() {
        assert_eq!(validate(&raising("64Mi", "512Mi"), None), Ok(()));
        let mut s = raising("64Mi", "512Mi");
        s.limits = None;
        assert_eq!(messages(&s), [RAISE_NEEDED]);
        let mut s = raising("64Mi", "512Mi");
        s.on_high = HighAction::ScaleOut;
        assert_eq!(messages(&s), [RAISE_UNUSED]);
    }

    #[test]
    fn a_raise_goes_up_by_more_than_nothing_to_a_max_above_the_policys_limit() {
        assert_eq!(
            messages(&raising("0", "512Mi")),
            ["spec.limits.raise.step (0) must be more than zero"]
        );
        assert_eq!(
            messages(&raising("128Mi", "64Mi")),
            ["spec.limits.raise.max (64Mi) must be at least step (128Mi)"]
        );
        let mut s = raising("64Mi", "256Mi");
        if let Some(limits) = s.limits.as_mut() {
            limits.limit = Some(Quantity("256Mi".into()));
        }
        assert_eq!(
            messages(&s),
            [
                "spec.limits.raise.max (256Mi) must be above limits.limit (256Mi), or no pod at the policy's limit could be raised"
            ]
        );
        let message = &messages(&raising("lots", "512Mi"))[0];
        assert!(message.starts_with("spec.limits.raise.step (lots) is not a memory quantity"));
        let mut s = raising("64Mi", "512Mi");
        if let Some(raise) = s.limits.as_mut().and_then(|l| l.raise.as_mut()) {
            raise.timeout = Duration::from_secs(0);
        }
        assert_eq!(
            messages(&s),
            ["spec.limits.raise.timeout (0s) must be a positive duration"]
        );
    }

    #[test]
    fn a_prediction_window_must_outlast_stale_after_and_its_horizon_be_positive() {
        let mut spec = spec();
        spec.prediction = Some(serde_yaml::from_str("{window: 45s}").unwrap());
        assert_eq!(messages(&spec), [WINDOW_TOO_SHORT]);
        spec.prediction = Some(serde_yaml::from_str("{window: 46s, horizon: 0s}").unwrap());
        assert_eq!(
            messages(&spec),
            ["spec.prediction.horizon (0s) must be a positive duration"]
        );
        spec.prediction = Some(serde_yaml::from_str("{}").unwrap());
        assert!(validate(&spec, None).is_ok());
    }

    #[test]
    fn a_quantity_the_check_cannot_read_is_reported_as_such() {
        let mut s = spec();
        s.limits = Some(Limits {
            request: Some(Quantity("64K".into())),
            ..Limits::default()
        });
        let message = &messages(&s)[0];
        assert!(message.starts_with(
            "spec.limits.request (64K) is not a memory quantity this check understands"
        ));
    }

    #[test]
    fn a_policy_carrying_a_prometheus_url_is_refused_and_told_to_name_a_source() {
        for url in [
            "http://prometheus.monitoring:9090",
            "http://169.254.169.254/latest/meta-data/",
            "prometheus:9090",
        ] {
            let mut s = spec();
            s.prometheus.url = Some(url.into());
            let messages = messages(&s);
            assert_eq!(messages.len(), 1, "{messages:?}");
            assert!(messages[0].starts_with("spec.prometheus.url is no longer supported"));
            assert!(
                messages[0].contains("spec.prometheus.source"),
                "{messages:?}"
            );
        }
    }

    #[test]
    fn a_source_is_named_by_a_dns_label() {
        for good in ["default", "team-a", "p0"] {
            let mut s = spec();
            s.prometheus.source = good.into();
            assert!(messages(&s).is_empty(), "{good}");
        }
        for bad in ["", "Default", "team_a", "-a", "a-", &"a".repeat(64)] {
            let mut s = spec();
            s.prometheus.source = bad.into();
            let messages = messages(&s);
            assert_eq!(messages.len(), 1, "{bad}: {messages:?}");
            assert!(
                messages[0].starts_with("spec.prometheus.source must be a source's name"),
                "{messages:?}"
            );
        }
    }

    #[test]
    fn a_custom_query_must_be_promql_that_reads_the_policys_namespace_only() {
        let mut s = spec();
        s.metric.source = MetricSource::Custom;
        s.metric.query = Some("sum(my_bytes".into());
        assert_eq!(
            messages(&s),
            ["spec.metric.query does not parse (at character 12): unclosed left parenthesis"]
        );
        s.metric.query = Some(r#"my_bytes{namespace="bank"}"#.into());
        assert_eq!(
            validate(&s, None),
            Ok(()),
            "judged once the namespace is known"
        );
        let errors = validate(&s, Some("shop")).unwrap_err();
        assert_eq!(errors[0].path, "spec.metric.query");
        assert!(
            errors[0].message.contains("reads series of namespace bank"),
            "{}",
            errors[0].message
        );
        s.metric.query = Some(r#"my_bytes{namespace="shop"}"#.into());
        assert_eq!(validate(&s, Some("shop")), Ok(()));
    }
}
