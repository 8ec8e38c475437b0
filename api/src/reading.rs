//! The one reading of a policy: what the engine, the status, the Prometheus query and the
//! actions take from a `MemoryPolicySpec`, so none of them reaches into the spec beside it.

use memory_engine::{CriticalAction, HighAction, MemoryResources, Policy, Prediction, RaiseLimits};

use crate::crd::{self, MemoryPolicySpec, quantity_bytes};

/// The engine's reading of a policy, which [`crate::validate::validate`] found sound: ratios,
/// counts and byte sizes. A value validation would refuse reads as the nearest sound one.
pub fn engine_policy(spec: &MemoryPolicySpec) -> Policy {
    let t = &spec.thresholds;
    let ratio = |percent: u32| f64::from(percent) / 100.0;
    let count = |n: i32| u32::try_from(n).unwrap_or(1).max(1);
    let raise = raise_limits(spec);
    Policy {
        low: ratio(t.low_water_mark),
        high: ratio(t.high_water_mark),
        critical: ratio(t.critical),
        sustain: t.r#for.into(),
        stale_after: t.stale_after.into(),
        on_high: match spec.on_high {
            crd::HighAction::ScaleOut => HighAction::ScaleOut,
            crd::HighAction::AlertOnly => HighAction::AlertOnly,
            crd::HighAction::RaiseLimit if raise.is_some() => HighAction::RaiseLimit,
            crd::HighAction::RaiseLimit => HighAction::AlertOnly,
        },
        on_critical: match spec.on_critical {
            crd::CriticalAction::RestartPod => CriticalAction::RestartPod,
            crd::CriticalAction::RollingRestart => CriticalAction::RollingRestart,
            crd::CriticalAction::AlertOnly => CriticalAction::AlertOnly,
        },
        raise,
        prediction: spec.prediction.as_ref().map(|p| Prediction {
            window: p.window.into(),
            horizon: p.horizon.into(),
            min_growth_per_minute: p.min_growth.bytes_per_minute(),
        }),
        min_replicas: count(spec.scaling.min_replicas),
        max_replicas: count(spec.scaling.max_replicas),
        step: count(spec.scaling.step),
        scale_in_stabilization: spec.scaling.scale_in_stabilization.into(),
        cooldown: spec.safety.cooldown.into(),
        max_restarts_per_hour: spec.safety.max_restarts_per_hour,
        max_unavailable: count(spec.safety.max_unavailable),
        limits: spec
            .limits
            .as_ref()
            .map_or_else(MemoryResources::default, |limits| MemoryResources {
                request: limits.request.as_ref().and_then(quantity_bytes),
                limit: limits.limit.as_ref().and_then(quantity_bytes),
            }),
        dry_run: spec.dry_run,
        suspend: spec.suspend,
    }
}

/// The bounds of raising limits in place, when `onHigh` is `RaiseLimit` and they are
/// readable.
fn raise_limits(spec: &MemoryPolicySpec) -> Option<RaiseLimits> {
    if spec.on_high != crd::HighAction::RaiseLimit {
        return None;
    }
    let raise = spec.limits.as_ref()?.raise.as_ref()?;
    let step = quantity_bytes(&raise.step).filter(|step| *step > 0)?;
    Some(RaiseLimits {
        step,
        max: quantity_bytes(&raise.max)?,
        allow_restart: raise.allow_restart,
        timeout: raise.timeout.into(),
    })
}

/// The container whose memory the policy sizes and reads limits from: `spec.limits.container`,
/// or the pod's first container when `None`.
pub fn container(spec: &MemoryPolicySpec) -> Option<&str> {
    spec.limits.as_ref().and_then(|l| l.container.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_becomes_ratios_and_counts() {
        let spec = MemoryPolicySpec::for_deployment("web");
        let policy = engine_policy(&spec);
        assert_eq!((policy.low, policy.high, policy.critical), (0.6, 0.8, 0.95));
        assert_eq!(
            (policy.min_replicas, policy.max_replicas, policy.step),
            (1, 10, 1)
        );
        assert_eq!(policy.on_critical, CriticalAction::RestartPod);
    }

    #[test]
    fn declared_limits_are_read_in_bytes_with_their_container() {
        let mut spec = MemoryPolicySpec::for_deployment("web");
        assert_eq!(engine_policy(&spec).limits, MemoryResources::default());
        assert_eq!(container(&spec), None);
        spec.limits = Some(crd::Limits {
            container: Some("app".into()),
            request: None,
            limit: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                "0.5Gi".into(),
            )),
            raise: None,
        });
        assert_eq!(
            engine_policy(&spec).limits,
            MemoryResources {
                request: None,
                limit: Some(512 << 20)
            }
        );
        assert_eq!(container(&spec), Some("app"));
    }

    #[test]
    fn prediction_is_off_unless_its_section_is_there_and_takes_its_defaults() {
        let mut spec = MemoryPolicySpec::for_deployment("web");
        assert_eq!(engine_policy(&spec).prediction, None);
        spec.prediction = Some(serde_json::from_str("{}").unwrap());
        let minute = std::time::Duration::from_secs(60);
        assert_eq!(
            engine_policy(&spec).prediction,
            Some(Prediction {
                window: 10 * minute,
                horizon: 15 * minute,
                min_growth_per_minute: 1 << 20,
            })
        );
        spec.prediction = Some(serde_json::from_str(r#"{"minGrowth": "512Ki/s"}"#).unwrap());
        let prediction = engine_policy(&spec).prediction.unwrap();
        assert_eq!(prediction.min_growth_per_minute, 30 << 20);
    }

    #[test]
    fn raising_limits_is_read_with_its_bounds_and_only_with_on_high_raise_limit() {
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let mut spec = MemoryPolicySpec::for_deployment("web");
        spec.on_high = crd::HighAction::RaiseLimit;
        // Unsound (no bounds): read as the nearest sound policy, which only alerts.
        assert_eq!(engine_policy(&spec).on_high, HighAction::AlertOnly);
        spec.limits = Some(crd::Limits {
            raise: Some(crd::Raise {
                step: Quantity("64Mi".into()),
                max: Quantity("0.5Gi".into()),
                allow_restart: true,
                timeout: crd::Duration::from_secs(90),
            }),
            ..crd::Limits::default()
        });
        let policy = engine_policy(&spec);
        assert_eq!(policy.on_high, HighAction::RaiseLimit);
        assert_eq!(
            policy.raise,
            Some(RaiseLimits {
                step: 64 << 20,
                max: 512 << 20,
                allow_restart: true,
                timeout: std::time::Duration::from_secs(90),
            })
        );
        spec.on_high = crd::HighAction::ScaleOut;
        assert_eq!(engine_policy(&spec).raise, None);
    }
}
