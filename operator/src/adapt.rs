//! Maps the `MemoryPolicy` spec and the cluster's objects onto the engine's
//! plain types, and the engine's history onto status records. Pure.

use std::{borrow::Borrow, collections::HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use memory_engine::{
    ActionKind, MemoryResources, PastAction, PodLimits, Resize, ResizeState, Restarted, Workload,
};
use memory_policy_api::crd::{ActionRecord, quantity_bytes};

use crate::watched::{Container, Deployment, Pod, Resources};

/// The Deployment and its live pods as the engine sees them; `container` is the one whose
/// memory the policy sizes (the first when `None`).
pub fn workload<P: Borrow<Pod>>(
    deployment: &Deployment,
    pods: &[P],
    container: Option<&str>,
) -> Workload {
    let (spec, status) = (&deployment.spec, &deployment.status);
    let replicas = spec.replicas.unwrap_or(1);
    let count = |n: Option<i32>| u32::try_from(n.unwrap_or(0)).unwrap_or(0);
    // A rollout: the controller has not seen the latest spec, or not every pod
    // is of the new template yet, or old pods are still terminating, or the
    // controller has not yet reported the new ReplicaSet available. A pod that
    // turns unready after that (a shortener over critical fails its own
    // readiness) is no rollout: it may be the very pod to evict.
    let generation = deployment.metadata.generation.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let completed = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable"));
    let rollout_in_progress = status.observed_generation.unwrap_or(0) < generation
        || updated < replicas
        || status.replicas.unwrap_or(0) > updated
        || (!completed && status.available_replicas.unwrap_or(0) < updated);
    Workload {
        replicas: count(Some(replicas)),
        available_replicas: count(status.available_replicas),
        rollout_in_progress,
        paused: spec.paused.unwrap_or(false),
        pods: live_pods(pods).map(|pod| name(pod).to_owned()).collect(),
        unready: live_pods(pods)
            .filter(|pod| !is_ready(pod))
            .map(|pod| name(pod).to_owned())
            .collect(),
        restarted: live_pods(pods).filter_map(restarted).collect(),
        template: template_memory(deployment, container),
        limits: live_pods(pods)
            .filter_map(|pod| pod_limits_of(pod, container))
            .collect(),
    }
}

/// The target container's memory in `pod` and how a resize of it stands; `None` when the pod
/// has no such container.
fn pod_limits_of(pod: &Pod, container: Option<&str>) -> Option<PodLimits> {
    let spec = target(&pod.spec.containers, container)?;
    let running = running_memory(pod, spec);
    let asked = memory(&spec.resources).limit;
    let condition = |type_: &str| {
        pod.status
            .conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    let state = if let Some(pending) = condition("PodResizePending") {
        Some((
            if pending.reason.as_deref() == Some("Infeasible") {
                ResizeState::Infeasible
            } else {
                ResizeState::Deferred
            },
            pending,
        ))
    } else {
        condition("PodResizeInProgress").map(|progress| {
            let state = if progress.reason.as_deref() == Some("Error") {
                ResizeState::Failed
            } else {
                ResizeState::InProgress
            };
            (state, progress)
        })
    };
    Some(PodLimits {
        pod: name(pod).to_owned(),
        running,
        restarts_on_resize: spec.restarts_on_memory_resize(),
        guaranteed: pod.status.qos_class.as_deref() == Some("Guaranteed"),
        resize: state.map(|(state, condition)| Resize {
            state,
            to: asked.filter(|asked| Some(*asked) != running.limit),
            since: condition.last_transition_time.as_ref().map(|t| t.0),
            message: condition.message.clone().unwrap_or_default(),
        }),
    })
}

/// The memory `container` of `pod` runs with: what the kubelet reports it applied, else the
/// spec's (a kubelet older than 1.33 reports nothing, and there is no resize in place).
fn running_memory(pod: &Pod, container: &Container) -> MemoryResources {
    let asked = memory(&container.resources);
    let Some(applied) = pod
        .status
        .container_statuses
        .iter()
        .find(|status| status.name == container.name)
        .and_then(|status| status.resources.as_ref())
        .map(memory)
    else {
        return asked;
    };
    MemoryResources {
        request: applied.request.or(asked.request),
        limit: applied.limit.or(asked.limit),
    }
}

/// The memory request and limit of a container's resources, in bytes.
fn memory(resources: &Resources) -> MemoryResources {
    MemoryResources {
        request: resources.requests.memory.as_ref().and_then(quantity_bytes),
        limit: resources.limits.memory.as_ref().and_then(quantity_bytes),
    }
}

/// The memory request and limit of `container` (the first when `None`) in the pod template.
fn template_memory(deployment: &Deployment, container: Option<&str>) -> Option<MemoryResources> {
    let chosen = target(&deployment.spec.template.spec.containers, container)?;
    Some(memory(&chosen.resources))
}

/// How often the pod's containers restarted and how the latest run that ended did; `None`
/// when none restarted.
fn restarted(pod: &Pod) -> Option<Restarted> {
    let containers = &pod.status.container_statuses;
    let restarts: u32 = containers
        .iter()
        .map(|c| u32::try_from(c.restart_count).unwrap_or(0))
        .sum();
    if restarts == 0 {
        return None;
    }
    let last = containers
        .iter()
        .filter_map(|c| c.last_state.terminated.as_ref())
        .max_by_key(|t| t.finished_at.as_ref().map(|at| at.0));
    Some(Restarted {
        pod: name(pod).to_owned(),
        restarts,
        last_reason: last
            .and_then(|t| t.reason.clone())
            .unwrap_or_else(|| "Unknown".to_owned()),
        last_exit_code: last.map_or(0, |t| t.exit_code),
        last_finished: last.and_then(|t| t.finished_at.as_ref()).map(|at| at.0),
    })
}

/// The pod's `Ready` condition is `True`.
fn is_ready(pod: &Pod) -> bool {
    pod.status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Each pod's memory limit as its target container runs with it, for custom queries that
/// report bytes only.
pub fn running_limits(workload: &Workload) -> HashMap<String, u64> {
    workload
        .limits
        .iter()
        .filter_map(|l| Some((l.pod.clone(), l.running.limit?)))
        .collect()
}

/// The container a policy sizes: the named one, else the first.
pub fn target<'a>(containers: &'a [Container], name: Option<&str>) -> Option<&'a Container> {
    match name {
        Some(wanted) => containers.iter().find(|c| c.name == wanted),
        None => containers.first(),
    }
}

/// Pods that count: not being deleted and not finished.
fn live_pods<P: Borrow<Pod>>(pods: &[P]) -> impl Iterator<Item = &Pod> {
    pods.iter().map(Borrow::borrow).filter(|pod: &&Pod| {
        let phase = pod.status.phase.as_deref();
        pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
    })
}

fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

/// A remembered action as a status record.
pub fn record(action: &PastAction) -> ActionRecord {
    ActionRecord {
        r#type: action.kind.names().status.to_owned(),
        dry_run: action.dry_run,
        pods: action.pods.clone(),
        reason: action.reason.clone(),
        time: Time(action.at),
    }
}

/// A status record back as history, after an operator restart or failover; `None` for a
/// type this operator does not know.
pub fn past_action(record: &ActionRecord) -> Option<PastAction> {
    Some(PastAction {
        kind: ActionKind::from_status(&record.r#type)?,
        pods: record.pods.clone(),
        at: record.time.0,
        dry_run: record.dry_run,
        reason: record.reason.clone(),
    })
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use serde_json::json;

    use super::*;

    fn deployment(value: serde_json::Value) -> Deployment {
        serde_json::from_value(value).unwrap()
    }

    fn pod(name: &str, limit: &str, extra: serde_json::Value) -> Pod {
        let mut value = json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "resources": {"limits": {"memory": limit}}}]}
        });
        if let (Some(target), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                target.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_settled_deployment_is_not_rolling_out() {
        let d = deployment(json!({
            "metadata": {"name": "web", "generation": 3},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
        }));
        let w = workload(
            &d,
            &[
                pod("web-a", "64Mi", json!({})),
                pod("web-b", "64Mi", json!({})),
            ],
            None,
        );
        assert!(!w.rollout_in_progress);
        assert_eq!((w.replicas, w.available_replicas), (2, 2));
        assert_eq!(w.pods, ["web-a", "web-b"]);
    }

    #[test]
    fn restarted_pods_are_named_with_how_their_last_run_ended() {
        let d = deployment(json!({
            "metadata": {"name": "web", "generation": 1},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
        }));
        let killed = json!({"status": {"containerStatuses": [{
            "name": "app", "image": "shortener", "imageID": "", "ready": true, "restartCount": 2,
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                "finishedAt": "2026-12-02T09:00:00Z"}}
        }]}});
        let fresh = json!({"status": {"containerStatuses": [{
            "name": "app", "image": "shortener", "imageID": "", "ready": true, "restartCount": 0
        }]}});
        let w = workload(
            &d,
            &[pod("web-a", "64Mi", killed), pod("web-b", "64Mi", fresh)],
            None,
        );
        assert_eq!(
            w.restarted,
            [Restarted {
                pod: "web-a".into(),
                restarts: 2,
                last_reason: "OOMKilled".into(),
                last_exit_code: 137,
                last_finished: Some("2026-12-02T09:00:00Z".parse().unwrap()),
            }]
        );
    }

    #[test]
    fn a_pod_that_turns_unready_after_the_rollout_is_no_rollout_and_is_named() {
        let d = deployment(json!({
            "metadata": {"name": "web", "generation": 3},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1,
                "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}
        }));
        let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let unready = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        let w = workload(
            &d,
            &[pod("web-a", "64Mi", ready), pod("web-b", "64Mi", unready)],
            None,
        );
        assert!(!w.rollout_in_progress);
        assert_eq!(w.unready, ["web-b"]);
    }

    #[test]
    fn an_unavailable_replacement_counts_as_a_rollout_in_progress() {
        let d = deployment(json!({
            "metadata": {"name": "web", "generation": 3},
            "spec": {"replicas": 2, "selector": {}, "template": {}, "paused": true},
            "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}
        }));
        let w = workload::<Pod>(&d, &[], None);
        assert!(w.rollout_in_progress && w.paused);
    }

    #[test]
    fn terminating_and_finished_pods_are_not_part_of_the_workload() {
        let d = deployment(
            json!({"metadata": {"name": "web"}, "spec": {"selector": {}, "template": {}}}),
        );
        let pods = [
            pod("live", "64Mi", json!({})),
            pod(
                "going",
                "64Mi",
                json!({"metadata": {"name": "going", "deletionTimestamp": "2026-01-01T00:00:00Z"}}),
            ),
            pod("done", "64Mi", json!({"status": {"phase": "Succeeded"}})),
        ];
        assert_eq!(workload(&d, &pods, None).pods, ["live"]);
    }

    #[test]
    fn the_template_memory_is_the_named_or_first_containers() {
        let d = deployment(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [
                {"name": "app", "resources": {"limits": {"memory": "512Mi"}}},
                {"name": "sidecar", "resources": {"requests": {"memory": "16Mi"}}}
            ]}}}
        }));
        let memory = |container| workload::<Pod>(&d, &[], container).template;
        let mib = |n: u64| Some(n << 20);
        assert_eq!(
            memory(None),
            Some(MemoryResources {
                request: None,
                limit: mib(512)
            })
        );
        assert_eq!(
            memory(Some("sidecar")),
            Some(MemoryResources {
                request: mib(16),
                limit: None
            })
        );
        assert_eq!(memory(Some("nope")), None);
    }

    #[test]
    fn pod_limits_come_from_the_named_or_first_container() {
        let d = deployment(
            json!({"metadata": {"name": "web"}, "spec": {"selector": {}, "template": {}}}),
        );
        let limits = |container| {
            running_limits(&workload(&d, &[pod("web-a", "64Mi", json!({}))], container))
        };
        assert_eq!(limits(None)["web-a"], 64 << 20);
        assert!(limits(Some("sidecar")).is_empty());
    }

    fn resized(conditions: serde_json::Value, applied: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-a"},
            "spec": {"containers": [{"name": "app",
                "resources": {"limits": {"memory": "300Gi"}, "requests": {"memory": "64Mi"}},
                "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "RestartContainer"},
                    {"resourceName": "memory", "restartPolicy": "NotRequired"}]}]},
            "status": {"conditions": conditions, "containerStatuses": [{"name": "app",
                "restartCount": 0, "resources": {"limits": {"memory": applied}}}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_runs_with_the_limit_the_kubelet_applied_and_its_resize_is_read_from_its_conditions() {
        let d = deployment(
            json!({"metadata": {"name": "web"}, "spec": {"selector": {}, "template": {}}}),
        );
        let infeasible = resized(
            json!([{"type": "PodResizePending", "status": "True", "reason": "Infeasible",
                "message": "Node didn't have enough capacity", "lastTransitionTime": "2026-12-03T10:00:00Z"}]),
            "96Mi",
        );
        let limits = &workload(&d, &[infeasible], None).limits[0];
        assert_eq!(
            limits.running,
            MemoryResources {
                request: Some(64 << 20),
                limit: Some(96 << 20)
            }
        );
        assert!(!limits.restarts_on_resize, "cpu restarts, memory does not");
        assert!(!limits.guaranteed);
        assert_eq!(
            limits.resize,
            Some(Resize {
                state: ResizeState::Infeasible,
                to: Some(300 << 30),
                since: Some("2026-12-03T10:00:00Z".parse().unwrap()),
                message: "Node didn't have enough capacity".into(),
            })
        );

        let states = |conditions| {
            workload(&d, &[resized(conditions, "96Mi")], None).limits[0]
                .resize
                .as_ref()
                .map(|r| r.state)
        };
        assert_eq!(
            states(json!([{"type": "PodResizePending", "status": "True", "reason": "Deferred"}])),
            Some(ResizeState::Deferred)
        );
        assert_eq!(
            states(json!([{"type": "PodResizeInProgress", "status": "True"}])),
            Some(ResizeState::InProgress)
        );
        assert_eq!(
            states(json!([{"type": "PodResizeInProgress", "status": "True", "reason": "Error"}])),
            Some(ResizeState::Failed)
        );
        assert_eq!(states(json!([{"type": "Ready", "status": "True"}])), None);
        // Done: the kubelet applied what the spec asks.
        let done = workload(&d, &[resized(json!([]), "300Gi")], None);
        assert_eq!(done.limits[0].running.limit, Some(300 << 30));
        let applied = workload(&d, &[resized(json!([]), "96Mi")], None);
        assert_eq!(running_limits(&applied)["web-a"], 96 << 20);
    }

    #[test]
    fn a_container_whose_memory_resize_restarts_it_is_known() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-a"},
            "spec": {"containers": [{"name": "app", "resources": {"limits": {"memory": "64Mi"}},
                "resizePolicy": [{"resourceName": "memory", "restartPolicy": "RestartContainer"}]}]},
            "status": {"qosClass": "Guaranteed"}
        }))
        .unwrap();
        let d = deployment(
            json!({"metadata": {"name": "web"}, "spec": {"selector": {}, "template": {}}}),
        );
        let limits = &workload(&d, &[pod], None).limits[0];
        assert!(limits.restarts_on_resize);
        assert_eq!(
            limits.running.limit,
            Some(64 << 20),
            "the spec's, before any report"
        );
    }

    #[test]
    fn history_survives_the_round_trip_through_status() {
        let past = PastAction {
            kind: ActionKind::Evict,
            pods: vec!["web-a".into()],
            at: Timestamp::from_second(1_000).unwrap(),
            dry_run: true,
            reason: "critical for 1m".into(),
        };
        let record = record(&past);
        assert_eq!(record.r#type, "RestartPod");
        assert_eq!(past_action(&record), Some(past));
    }
}
