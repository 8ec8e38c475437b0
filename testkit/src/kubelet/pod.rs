//! One pod on the process kubelet: its containers run, are probed, restarted with back-off
//! when they exit, and reported in the pod's status; on deletion they get SIGTERM, SIGKILL
//! after `terminationGracePeriodSeconds`, and the pod object is removed.

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use jiff::Timestamp;
use k8s_openapi::{
    ByteString,
    api::core::v1::{ConfigMap, Container, Pod, Secret, ServiceAccount},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions},
};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    ContainerExit, NODE_MEMORY_BYTES, Shared,
    env::{self, Sources},
    probe::answers,
    process::{Placement, Run},
    status::{ContainerView, container_status},
};

/// How long a pod's service account token lasts: longer than any test or playground session.
const TOKEN_SECONDS: i64 = 24 * 3600;
/// The longest wait between restarts of a container that keeps exiting, as a kubelet's.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// One pod's run: what its containers' tasks share.
struct PodRun {
    shared: Arc<Shared>,
    pod: Pod,
    ip: IpAddr,
    started: Timestamp,
    views: Mutex<Vec<ContainerView>>,
    /// The resize condition the status shows (`PodResizePending` or `PodResizeInProgress`), if
    /// a resize is not done.
    resizing: Mutex<Option<Value>>,
    deleting: CancellationToken,
    grace: Duration,
}

/// Runs `pod` at `ip` until `deleting` fires, then stops it and removes the object; `updates`
/// brings the pod object as it changes (a resize).
pub(crate) async fn run(
    shared: Arc<Shared>,
    pod: Pod,
    ip: IpAddr,
    deleting: CancellationToken,
    updates: watch::Receiver<Pod>,
) {
    let spec = pod.spec.clone().unwrap_or_default();
    let views = spec
        .containers
        .iter()
        .map(|c| ContainerView {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            memory_limit: memory_limit(c).map(|(text, _)| text),
            ..ContainerView::default()
        })
        .collect();
    let grace = spec.termination_grace_period_seconds.unwrap_or(30);
    let run = Arc::new(PodRun {
        shared,
        pod,
        ip,
        started: Timestamp::now(),
        views: Mutex::new(views),
        resizing: Mutex::default(),
        deleting,
        grace: Duration::from_secs(grace.try_into().unwrap_or(30)),
    });
    run.report().await;
    let resizes = tokio::spawn({
        let run = run.clone();
        async move { run.follow_resizes(updates).await }
    });
    let tasks: Vec<_> = spec
        .containers
        .into_iter()
        .enumerate()
        .map(|(index, container)| {
            let run = run.clone();
            tokio::spawn(async move { run.keep_running(index, &container).await })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    resizes.abort();
    remove(&run.shared, &run.pod).await;
}

/// Removes the pod object once its containers have stopped, as a kubelet does.
pub(crate) async fn remove(shared: &Shared, pod: &Pod) {
    let pods: Api<Pod> =
        Api::namespaced(shared.client.clone(), &pod.namespace().unwrap_or_default());
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    // Gone already (a forced deletion) is fine.
    let _ = pods.delete(&pod.name_any(), &params).await;
}

impl PodRun {
    /// One container: start, probe, wait, restart with back-off; stop on deletion.
    async fn keep_running(&self, index: usize, container: &Container) {
        let (shared, pod, deleting) = (&*self.shared, &self.pod, &self.deleting);
        let update = |change: &dyn Fn(&mut ContainerView)| {
            let mut all = self.views.lock().unwrap_or_else(PoisonError::into_inner);
            change(&mut all[index]);
        };
        let mut backoff = shared.config.restart_backoff;
        let mut restarts = 0u32;
        loop {
            if deleting.is_cancelled() {
                return;
            }
            match self.start(index, container, restarts).await {
                Err(why) => {
                    let (reason, message) = why;
                    update(&|v| {
                        v.running_since = None;
                        v.ready = false;
                        v.waiting = Some((reason.clone(), message.clone()));
                    });
                    self.report().await;
                }
                Ok(mut run) => {
                    let since = run.started_at;
                    update(&|v| {
                        v.running_since = Some(since);
                        v.waiting = None;
                        v.ready = container.readiness_probe.is_none();
                    });
                    self.report().await;
                    let exit = tokio::select! {
                        exit = run.wait() => exit,
                        () = self.probe(index, container) => unreachable!("probing never ends"),
                        () = deleting.cancelled() => {
                            run.signal("TERM");
                            match tokio::time::timeout(self.grace, run.wait()).await {
                                Ok(exit) => exit,
                                Err(_) => {
                                    run.signal("KILL");
                                    run.wait().await
                                }
                            }
                        }
                    };
                    tracing::debug!(
                        pod = pod.name_any(),
                        container = container.name,
                        ?exit,
                        "container exited"
                    );
                    restarts += 1;
                    let restarted = !deleting.is_cancelled();
                    shared
                        .exits
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(ContainerExit {
                            namespace: pod.namespace().unwrap_or_default(),
                            pod: pod.name_any(),
                            container: container.name.clone(),
                            code: exit.code,
                            oom_killed: exit.oom_killed,
                            stopped: !restarted,
                        });
                    update(&|v| {
                        v.running_since = None;
                        v.ready = false;
                        // Its run's cgroup is gone with it: a resize until the next run only
                        // changes the limit that run starts with.
                        v.cgroup = None;
                        v.last = Some(exit.clone());
                        v.last_started = Some(since);
                        if restarted {
                            v.restarts = restarts;
                            v.waiting = Some((
                                "CrashLoopBackOff".into(),
                                format!(
                                    "back-off {backoff:?} restarting failed container={}",
                                    container.name
                                ),
                            ));
                        }
                    });
                    if !restarted {
                        return;
                    }
                    self.report().await;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = deleting.cancelled() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Starts one run of `container`, or says why it cannot start (reason, message).
    async fn start(
        &self,
        index: usize,
        container: &Container,
        restarts: u32,
    ) -> Result<Run, (String, String)> {
        let (shared, pod, ip) = (&*self.shared, &self.pod, self.ip);
        let image = container.image.clone().unwrap_or_default();
        let binary = shared
            .config
            .binary_for(&image)
            .ok_or_else(|| {
                (
                    "ErrImageNeverPull".to_owned(),
                    format!(
                        "no binary for image {image:?} on this kubelet (it knows {})",
                        shared.config.image_names()
                    ),
                )
            })?
            .to_owned();
        let sources = Fetched::new(shared, pod, container).await;
        let env = env::resolve(pod, &ip.to_string(), container, &sources)
            .map_err(|e| ("CreateContainerConfigError".to_owned(), e))?;
        let args: Vec<String> = container
            .args
            .iter()
            .flatten()
            .map(|a| env::expand(a, &env))
            .collect();
        let name = format!(
            "{}_{}_{}_{}",
            pod.namespace().unwrap_or_default(),
            pod.name_any(),
            container.name,
            restarts
        );
        let log = shared.config.dir.join(format!("{name}.log"));
        // The limit allocated now: the spec's, or what a resize in place set since.
        let limit = self.views.lock().unwrap_or_else(PoisonError::into_inner)[index]
            .memory_limit
            .as_deref()
            .and_then(crate::kubelet::quantity::bytes);
        let cgroup = match &shared.cgroups {
            Ok(root) => Some(
                root.create(&name, limit)
                    .map(|dir| (dir, root.root_procs()))
                    .map_err(|e| {
                        (
                            "RunContainerError".to_owned(),
                            format!("memory cgroup: {e}"),
                        )
                    })?,
            ),
            Err(_) => None,
        };
        self.views.lock().unwrap_or_else(PoisonError::into_inner)[index].cgroup =
            cgroup.as_ref().map(|(dir, _)| dir.clone());
        let placement = Placement {
            cgroup: cgroup
                .as_ref()
                .map(|(dir, procs)| (dir.as_path(), procs.clone())),
            log: &log,
        };
        let mut env = env;
        if let Some(kubeconfig) = self.kubeconfig().await?
            && !env.iter().any(|(name, _)| name == "KUBECONFIG")
        {
            env.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
        }
        if shared.cgroups.is_err()
            && let Some(limit) = limit
        {
            // No cgroup to hold the limit: the service reads it from here instead.
            env.push(("SHORTENER_MAX_MEMORY".into(), limit.to_string()));
        }
        Run::start(&binary, &args, &env, placement)
            .await
            .map_err(|e| ("RunContainerError".to_owned(), e.to_string()))
    }

    /// A kubeconfig holding a token of the pod's service account, bound to the pod, when the
    /// pod mounts its token and the kubelet knows the apiserver.
    async fn kubeconfig(&self) -> Result<Option<PathBuf>, (String, String)> {
        let (shared, pod) = (&*self.shared, &self.pod);
        let spec = pod.spec.as_ref();
        let Some((server, ca)) = &shared.config.api_server else {
            return Ok(None);
        };
        if spec.and_then(|s| s.automount_service_account_token) == Some(false) {
            return Ok(None);
        }
        let account = spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let namespace = pod.namespace().unwrap_or_default();
        let accounts: Api<ServiceAccount> = Api::namespaced(shared.client.clone(), &namespace);
        let request = json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": TOKEN_SECONDS,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod.name_any(), "uid": pod.uid()}}
        });
        let failed = |e: String| {
            (
                "CreateContainerConfigError".to_owned(),
                format!("service account token: {e}"),
            )
        };
        let answer: Value = accounts
            .create_subresource("token", &account, &PostParams::default(), &request)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let token = answer["status"]["token"]
            .as_str()
            .ok_or_else(|| failed("no token in the answer".into()))?;
        let path = shared
            .config
            .dir
            .join(format!("{namespace}_{}.kubeconfig", pod.name_any()));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: cluster\n  cluster:\n    server: {server}\n    \
             certificate-authority: {}\nusers:\n- name: {account}\n  user:\n    token: {token}\ncontexts:\n\
             - name: pod\n  context: {{cluster: cluster, user: {account}, namespace: {namespace}}}\ncurrent-context: pod\n",
            ca.display()
        );
        std::fs::write(&path, text).map_err(|e| failed(e.to_string()))?;
        Ok(Some(path))
    }
}

/// `resources.limits.memory`, as written and in bytes.
fn memory_limit(container: &Container) -> Option<(String, u64)> {
    let quantity = container
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")?;
    let bytes = crate::kubelet::quantity::bytes(&quantity.0)?;
    Some((quantity.0.clone(), bytes))
}

impl PodRun {
    /// Applies every resize of the pod's memory limits, as the pod object changes.
    async fn follow_resizes(&self, mut updates: watch::Receiver<Pod>) {
        while updates.changed().await.is_ok() {
            let pod = updates.borrow_and_update().clone();
            if self.resize(&pod) {
                self.report().await;
            }
        }
    }

    /// Gives each container the memory limit `pod`'s spec now asks for, in its running cgroup;
    /// true when the status has something new to say.
    fn resize(&self, pod: &Pod) -> bool {
        let containers = pod.spec.as_ref().map(|s| s.containers.as_slice());
        let mut views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        let mut unfinished = None;
        let mut changed = false;
        for container in containers.unwrap_or_default() {
            let Some(view) = views.iter_mut().find(|v| v.name == container.name) else {
                continue;
            };
            let Some((text, bytes)) = memory_limit(container) else {
                continue;
            };
            if view.memory_limit.as_deref() == Some(text.as_str()) {
                continue;
            }
            if bytes > NODE_MEMORY_BYTES {
                let message = format!(
                    "Node didn't have enough capacity: memory, requested: {bytes}, capacity: {NODE_MEMORY_BYTES}"
                );
                unfinished = Some(resize_condition("PodResizePending", "Infeasible", &message));
                continue;
            }
            let written = match (&self.shared.cgroups, &view.cgroup) {
                (Ok(root), Some(dir)) => root.set_limit(dir, bytes),
                // No cgroup: the limit reaches the next run's environment.
                _ => Ok(()),
            };
            match written {
                Ok(()) => {
                    view.memory_limit = Some(text);
                    changed = true;
                }
                Err(error) => {
                    let message = format!("setting the memory limit of {}: {error}", view.name);
                    unfinished = Some(resize_condition("PodResizeInProgress", "Error", &message));
                }
            }
        }
        drop(views);
        let mut resizing = self.resizing.lock().unwrap_or_else(PoisonError::into_inner);
        if *resizing != unfinished {
            *resizing = unfinished;
            changed = true;
        }
        changed
    }
}

/// A resize condition, as the kubelet writes it.
fn resize_condition(type_: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": "True", "reason": reason, "message": message,
        "lastTransitionTime": Timestamp::now().to_string()})
}

/// The Secrets and ConfigMaps a container's environment names, read once per start.
struct Fetched {
    secrets: Vec<Secret>,
    config_maps: Vec<ConfigMap>,
}

impl Fetched {
    async fn new(shared: &Shared, pod: &Pod, container: &Container) -> Fetched {
        let namespace = pod.namespace().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(shared.client.clone(), &namespace);
        let config_maps: Api<ConfigMap> = Api::namespaced(shared.client.clone(), &namespace);
        let mut fetched = Fetched {
            secrets: Vec::new(),
            config_maps: Vec::new(),
        };
        for from in container
            .env
            .iter()
            .flatten()
            .filter_map(|e| e.value_from.as_ref())
        {
            if let Some(key) = &from.secret_key_ref
                && let Ok(Some(secret)) = secrets.get_opt(&key.name).await
            {
                fetched.secrets.push(secret);
            }
            if let Some(key) = &from.config_map_key_ref
                && let Ok(Some(map)) = config_maps.get_opt(&key.name).await
            {
                fetched.config_maps.push(map);
            }
        }
        fetched
    }
}

impl Sources for Fetched {
    fn secret(&self, name: &str, key: &str) -> Option<String> {
        let secret = self.secrets.iter().find(|s| s.name_any() == name)?;
        if let Some(ByteString(bytes)) = secret.data.as_ref().and_then(|d| d.get(key)) {
            return String::from_utf8(bytes.clone()).ok();
        }
        secret.string_data.as_ref()?.get(key).cloned()
    }

    fn config_map(&self, name: &str, key: &str) -> Option<String> {
        let map = self.config_maps.iter().find(|m| m.name_any() == name)?;
        map.data.as_ref()?.get(key).cloned()
    }
}

impl PodRun {
    /// Probes readiness for as long as the container runs, reporting each change.
    async fn probe(&self, index: usize, container: &Container) {
        let Some(readiness) = &container.readiness_probe else {
            return std::future::pending().await;
        };
        let seconds = |s: Option<i32>, default: u64| {
            Duration::from_secs(s.map_or(default, |s| s.max(0) as u64))
        };
        tokio::time::sleep(seconds(readiness.initial_delay_seconds, 0)).await;
        let period = seconds(readiness.period_seconds, 10).max(Duration::from_secs(1));
        let threshold = readiness.failure_threshold.unwrap_or(3).max(1);
        let mut failures = 0;
        loop {
            let ok = answers(container, self.ip, readiness).await;
            failures = if ok { 0 } else { failures + 1 };
            let ready = ok || (failures < threshold && self.is_ready(index));
            if ready != self.is_ready(index) {
                self.views.lock().unwrap_or_else(PoisonError::into_inner)[index].ready = ready;
                self.report().await;
            }
            tokio::time::sleep(period).await;
        }
    }

    fn is_ready(&self, index: usize) -> bool {
        self.views.lock().unwrap_or_else(PoisonError::into_inner)[index].ready
    }
}

impl PodRun {
    /// Writes the pod's status as a kubelet reports it.
    async fn report(&self) {
        let (shared, pod, ip, started) = (&*self.shared, &self.pod, self.ip, self.started);
        let views = self
            .views
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let now = Timestamp::now().to_string();
        let all_ready = views.iter().all(|v| v.ready);
        let condition = |type_: &str, ok: bool| json!({"type": type_, "status": if ok { "True" } else { "False" }, "lastTransitionTime": now});
        let statuses: Vec<Value> = views.iter().map(container_status).collect();
        let mut conditions = vec![
            condition("PodScheduled", true),
            condition("Initialized", true),
            condition("ContainersReady", all_ready),
            condition("Ready", all_ready),
        ];
        conditions.extend(
            self.resizing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        );
        let status = json!({"status": {
            "phase": "Running",
            "hostIP": ip.to_string(), "hostIPs": [{"ip": ip.to_string()}],
            "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}],
            "startTime": started.to_string(),
            "conditions": conditions,
            "containerStatuses": statuses,
        }});
        let pods: Api<Pod> =
            Api::namespaced(shared.client.clone(), &pod.namespace().unwrap_or_default());
        let _serial = shared.reports.lock().await;
        if let Err(error) = pods
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(status),
            )
            .await
        {
            tracing::debug!(%error, pod = pod.name_any(), "could not report the pod's status");
        }
    }
}
