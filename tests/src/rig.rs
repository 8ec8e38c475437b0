//! The rig: plays the kubelet and the Deployment, ReplicaSet and disruption controllers for
//! one Deployment whose pods are real `shortener` processes.
//!
//! It is level-triggered: on every change to a Pod, the Deployment or the budget (and once a
//! second regardless) it compares the fake API's objects with the running processes and
//! closes the gap one step at a time, as the real controllers do: a Pod deleted through the
//! API (an eviction) loses its process and gets a replacement under a new name; `replicas`
//! starts or stops processes; a new `restartedAt` on the pod template replaces the pods one
//! at a time, the new one ready before the old one goes. After each step it publishes what
//! the cluster would: Pod phases, the Deployment's and the budget's status, and the
//! Prometheus targets (each carrying the `pod` and `namespace` labels service discovery adds).

use std::{path::PathBuf, time::Duration};

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod, policy::v1::PodDisruptionBudget};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};
use testkit::{Change, FakeApiServer, Target};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::{
    DEPLOYMENT, NS,
    fleet::{Member, SharedFleet, lock},
    pod::PodProcess,
    targets::Targets,
};

/// The annotation `kubectl rollout restart` (and the operator) sets on the pod template.
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// How long an evicted pod gets between SIGTERM and SIGKILL, as `terminationGracePeriodSeconds`.
const TERMINATION_GRACE: Duration = Duration::from_secs(5);
/// The rig also looks once a second, in case a change slipped by.
const RESYNC: Duration = Duration::from_secs(1);
/// The budget's `maxUnavailable`.
const MAX_UNAVAILABLE: usize = 1;

/// What every pod runs: the binary, its environment and the memory limit its spec declares.
#[derive(Clone, Debug)]
pub struct Template {
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
    pub limit_bytes: u64,
    pub log_dir: PathBuf,
}

/// The rig's loop and its handles on the cluster.
pub(crate) struct Rig {
    pub(crate) api: FakeApiServer,
    pub(crate) client: kube::Client,
    pub(crate) fleet: SharedFleet,
    pub(crate) template: Template,
    pub(crate) http: reqwest::Client,
    pub(crate) targets: Targets,
}

impl Rig {
    /// Reacts to the fake API's changes until `stop` is cancelled.
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let mut changes = self.api.subscribe();
        let mut resync = tokio::time::interval(RESYNC);
        loop {
            let mut dirty = false;
            tokio::select! {
                () = stop.cancelled() => return,
                _ = resync.tick() => dirty = true,
                change = changes.recv() => match change {
                    Ok(change) => dirty |= matters(&change),
                    Err(RecvError::Lagged(_)) => dirty = true,
                    Err(RecvError::Closed) => return,
                },
            }
            // Take in everything already queued before acting on it.
            loop {
                match changes.try_recv() {
                    Ok(change) => dirty |= matters(&change),
                    Err(TryRecvError::Lagged(_)) => dirty = true,
                    Err(_) => break,
                }
            }
            if dirty {
                self.sync().await;
            }
        }
    }

    /// Closes the gap between the API's objects and the processes, one step at a time.
    async fn sync(&mut self) {
        self.stop_deleted_pods();
        // Each step changes the fleet by one pod; the bound only guards against a bug looping.
        for _ in 0..64 {
            let Some(deployment) = self.api.get("apps/v1", "Deployment", NS, DEPLOYMENT) else {
                return;
            };
            let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(0) as usize;
            let stamp = restarted_at(&deployment);
            let (total, outdated, newest) = {
                let fleet = lock(&self.fleet);
                let outdated = fleet
                    .pods
                    .iter()
                    .filter(|(_, m)| m.process.template() != stamp)
                    .min_by_key(|(name, _)| pod_number(name))
                    .map(|(name, _)| name.clone());
                let newest = fleet
                    .pods
                    .keys()
                    .max_by_key(|name| pod_number(name))
                    .cloned();
                (fleet.pods.len(), outdated, newest)
            };
            if total < replicas || (outdated.is_some() && total == replicas) {
                if !self.start_pod(&stamp).await {
                    break;
                }
            } else if total > replicas {
                // Old pods go first in a rollout; otherwise the newest, as a ReplicaSet does.
                let Some(victim) = outdated.or(newest) else {
                    break;
                };
                self.delete_pod(&victim).await;
            } else {
                break;
            }
            self.publish().await;
        }
        self.publish().await;
    }

    /// Pods deleted through the API (evicted) lose their process, as the kubelet stops them.
    fn stop_deleted_pods(&mut self) {
        let gone: Vec<PodProcess> = {
            let mut fleet = lock(&self.fleet);
            let names: Vec<String> = fleet
                .pods
                .keys()
                .filter(|name| self.api.get("v1", "Pod", NS, name).is_none())
                .cloned()
                .collect();
            names
                .iter()
                .filter_map(|name| fleet.pods.remove(name))
                .map(|m| m.process)
                .collect()
        };
        for process in gone {
            debug!(
                pod = process.name(),
                "stopping the process of a deleted pod"
            );
            tokio::spawn(process.terminate(TERMINATION_GRACE));
        }
    }

    /// Starts one pod from the current template and waits until it is healthy; false if it
    /// could not start.
    async fn start_pod(&mut self, stamp: &str) -> bool {
        let name = {
            let mut fleet = lock(&self.fleet);
            fleet.next += 1;
            format!("{DEPLOYMENT}-{}", fleet.next - 1)
        };
        let t = &self.template;
        let process = match PodProcess::spawn(&t.binary, &name, stamp, &t.env, &t.log_dir) {
            Ok(process) => process,
            Err(error) => {
                lock(&self.fleet).problem(format!("could not start {name}: {error}"));
                return false;
            }
        };
        self.api.apply(pod_object(&name, t.limit_bytes));
        lock(&self.fleet).pods.insert(
            name.clone(),
            Member {
                process,
                ready: false,
            },
        );
        self.publish().await;
        let url = lock(&self.fleet)
            .pods
            .get(&name)
            .map(|m| m.process.base_url());
        let Some(url) = url else {
            return true;
        };
        if let Err(problem) = wait_healthy(&self.http, &url, &self.fleet, &name).await {
            let mut fleet = lock(&self.fleet);
            fleet.problem(problem);
            fleet.pods.remove(&name);
            drop(fleet);
            self.api.delete("v1", "Pod", NS, &name);
            return false;
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NS);
        let running = json!({"status": {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": "True"}],
        }});
        match pods
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(running))
            .await
        {
            Ok(_) => {
                if let Some(member) = lock(&self.fleet).pods.get_mut(&name) {
                    member.ready = true;
                }
            }
            // Deleted while starting: the next sync stops it.
            Err(error) => debug!(pod = %name, %error, "pod gone before it was ready"),
        }
        true
    }

    /// Deletes a pod through the API and stops its process.
    async fn delete_pod(&mut self, name: &str) {
        let process = {
            let mut fleet = lock(&self.fleet);
            fleet.deleting.insert(name.to_owned());
            fleet.pods.remove(name).map(|m| m.process)
        };
        self.api.delete("v1", "Pod", NS, name);
        if let Some(process) = process {
            process.terminate(TERMINATION_GRACE).await;
        }
    }

    /// Publishes what the cluster's controllers would: the Deployment's and the budget's
    /// status, and the scrape targets.
    async fn publish(&mut self) {
        let Some(deployment) = self.api.get("apps/v1", "Deployment", NS, DEPLOYMENT) else {
            return;
        };
        let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(0) as usize;
        let stamp = restarted_at(&deployment);
        let (total, updated, ready, targets) = {
            let fleet = lock(&self.fleet);
            let updated = fleet
                .pods
                .values()
                .filter(|m| m.process.template() == stamp)
                .count();
            let targets: Vec<Target> = fleet
                .pods
                .iter()
                .filter(|(_, m)| m.ready)
                .map(|(name, m)| {
                    Target::new(
                        m.process.address(),
                        [("pod", name.as_str()), ("namespace", NS)],
                    )
                })
                .collect();
            (fleet.pods.len(), updated, targets.len(), targets)
        };
        let status = json!({
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": replicas.saturating_sub(ready),
        });
        if !contains(&deployment["status"], &status) {
            let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), NS);
            let patch = Patch::Merge(json!({ "status": status }));
            if let Err(error) = deployments
                .patch_status(DEPLOYMENT, &PatchParams::default(), &patch)
                .await
            {
                lock(&self.fleet).problem(format!("Deployment status: {error}"));
            }
        }
        let desired = replicas.saturating_sub(MAX_UNAVAILABLE);
        let budget = json!({
            "observedGeneration": 1,
            "currentHealthy": ready,
            "desiredHealthy": desired,
            "expectedPods": replicas,
            "disruptionsAllowed": ready.saturating_sub(desired),
        });
        let stored = self
            .api
            .get("policy/v1", "PodDisruptionBudget", NS, DEPLOYMENT)
            .map(|pdb| pdb["status"].clone())
            .unwrap_or_default();
        if !contains(&stored, &budget) || !stored["disruptedPods"].is_null() {
            let budgets: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), NS);
            let mut status = budget;
            status["disruptedPods"] = Value::Null;
            let patch = Patch::Merge(json!({ "status": status }));
            if let Err(error) = budgets
                .patch_status(DEPLOYMENT, &PatchParams::default(), &patch)
                .await
            {
                lock(&self.fleet).problem(format!("budget status: {error}"));
            }
        }
        self.targets.converge(&targets).await;
    }
}

/// Whether a change is one the rig acts on.
fn matters(change: &Change) -> bool {
    change.namespace == NS
        && matches!(
            change.kind.as_str(),
            "Pod" | "Deployment" | "PodDisruptionBudget"
        )
}

/// Polls the pod's `/healthz` until it answers, the pod is deleted, or it gives up.
async fn wait_healthy(
    http: &reqwest::Client,
    url: &str,
    fleet: &SharedFleet,
    name: &str,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(reply) = http.get(format!("{url}/healthz")).send().await
            && reply.status().is_success()
        {
            return Ok(());
        }
        {
            let fleet = lock(fleet);
            let Some(member) = fleet.pods.get(name) else {
                return Ok(());
            };
            if !member.process.is_running() {
                return Err(format!(
                    "{name} exited during start-up:\n{}",
                    member.process.log()
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "{name} not healthy within 30 s:\n{}",
                    member.process.log()
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Pod the ReplicaSet would create: labels, one container with the declared limit.
fn pod_object(name: &str, limit_bytes: u64) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": DEPLOYMENT}},
        "spec": {"containers": [{"name": "app", "image": "shortener",
            "resources": {"limits": {"memory": limit_bytes.to_string()}}}]},
        "status": {"phase": "Pending"}
    })
}

/// The pod template's `restartedAt` annotation, or empty.
fn restarted_at(deployment: &Value) -> String {
    deployment["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `web-12` is pod number 12.
fn pod_number(name: &str) -> u32 {
    name.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Whether every field of `wanted` has the same value in `stored`.
fn contains(stored: &Value, wanted: &Value) -> bool {
    wanted
        .as_object()
        .is_some_and(|fields| fields.iter().all(|(k, v)| stored.get(k) == Some(v)))
}
