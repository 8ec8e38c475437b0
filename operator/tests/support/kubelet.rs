//! What a kubelet would do for the tests' pods, without running anything: a Node the scheduler
//! can bind pods to, bound pods marked Running and Ready, and deleted pods removed once their
//! (imaginary) containers stopped. Real processes come with the process kubelet.

use std::future::Future;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use testkit::ControlPlane;

/// Creates Node `name` with room for every test pod and no taints (the node lifecycle
/// controller does not run, so nothing marks it unreachable).
pub fn register_node(plane: &ControlPlane, name: &str) {
    let manifest = std::env::temp_dir().join(format!("testkit-node-{}.json", std::process::id()));
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}
    });
    std::fs::write(&manifest, node.to_string()).expect("writing the Node manifest");
    plane
        .run_kubectl(&["apply", "-f", manifest.to_str().unwrap()])
        .expect("creating the Node");
    let _ = std::fs::remove_file(&manifest);
    let now = Timestamp::now().to_string();
    let room = json!({"cpu": "64", "memory": "256Gi", "pods": "1000"});
    let status = json!({"status": {
        "capacity": room, "allocatable": room,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "testkit marks the node ready", "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]
    }});
    plane
        .run_kubectl(&[
            "patch",
            "node",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ])
        .expect("setting the Node's status");
}

/// Until `stop`, keeps the pods of `namespace` as a kubelet would.
pub async fn run(client: Client, namespace: String, stop: impl Future<Output = ()>) {
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let events = watcher(pods.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects();
    let keep = events.for_each(|pod| {
        let pods = pods.clone();
        async move {
            if let Ok(pod) = pod {
                keep_pod(&pods, &pod).await;
            }
        }
    });
    tokio::select! {
        () = stop => {}
        () = keep => {}
    }
}

async fn keep_pod(pods: &Api<Pod>, pod: &Pod) {
    let bound = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some();
    if !bound {
        return;
    }
    let name = pod.name_any();
    if pod.metadata.deletion_timestamp.is_some() {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        // Already gone is fine: the watch may show a deletion twice.
        let _ = pods.delete(&name, &params).await;
        return;
    }
    if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
        return;
    }
    let now = Timestamp::now().to_string();
    let ip = format!("10.244.{}.{}", rand_octet(), rand_octet());
    let condition =
        |type_: &str| json!({"type": type_, "status": "True", "lastTransitionTime": now});
    let containers: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| {
            json!({"name": c.name, "image": c.image, "imageID": "", "ready": true, "started": true,
                "restartCount": 0, "state": {"running": {"startedAt": now}}})
        })
        .collect();
    let status = json!({"status": {
        "phase": "Running", "hostIP": "127.0.0.1", "podIP": ip, "podIPs": [{"ip": ip}],
        "startTime": now,
        "conditions": [condition("PodScheduled"), condition("Initialized"),
            condition("ContainersReady"), condition("Ready")],
        "containerStatuses": containers,
    }});
    if let Err(error) = pods
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
        .await
    {
        tracing::debug!(%error, pod = name, "could not mark the pod running");
    }
}

fn rand_octet() -> u8 {
    rand::random::<u8>().clamp(1, 254)
}
