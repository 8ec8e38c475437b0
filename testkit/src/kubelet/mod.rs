//! A process kubelet for the real control plane (test and playground support): it registers a
//! Node, and runs each container of the pods the scheduler binds to it as a real process.
//!
//! - **Images to binaries**: an image's name without tag or digest (`shortener:1.2` is
//!   `shortener`) names a binary in [`KubeletConfig::images`]; the binary is the entrypoint and
//!   the container's `args` follow it (`command` is not supported). An unknown image waits
//!   with reason `ErrImageNeverPull`.
//! - **Addresses**: every pod gets a loopback address of its own, `127.1.x.y`, as its
//!   `status.podIP`. The processes share the machine's network namespace, so a container
//!   listens on its pod's address by asking for it (`fieldRef: status.podIP` and `$(POD_IP)` in
//!   a value, as in any cluster); one that listens on `0.0.0.0` takes its port for every pod.
//! - **Environment**: plain values, `secretKeyRef`, `configMapKeyRef`, `fieldRef` (name,
//!   namespace, uid, node, service account, pod IP) and `$(NAME)` expansion; nothing else.
//! - **Status**: phase, `Ready` from the readiness probe (HTTP GET or TCP), and per container
//!   `ready`, `restartCount`, `state` and `lastState` (exit code; `OOMKilled` from the cgroup's
//!   OOM kills).
//! - **Lifecycle**: a container that exits is restarted (restartPolicy Always) after a
//!   back-off that doubles up to 5 minutes; deletion and eviction send SIGTERM, SIGKILL after
//!   `terminationGracePeriodSeconds`, then the pod object is removed.
//! - **Service account**: a pod that mounts its token gets it as a kubeconfig in `KUBECONFIG`
//!   (see [`KubeletConfig::api_server`]).
//! - **Memory limits**: each container runs in a memory cgroup of its own whose limit is its
//!   `resources.limits.memory` where the machine lets root create one
//!   ([`ProcessKubelet::memory_cgroups`] says whether it could, and why not); otherwise the limit
//!   is passed as `SHORTENER_MAX_MEMORY`.
//! - **Resize in place**: a memory limit changed through the pod's `resize` subresource is
//!   written to the running container's cgroup (no restart, whatever `resizePolicy` says) and
//!   reported in `containerStatuses[].resources`; a limit the Node's memory cannot hold is
//!   refused with `PodResizePending` (reason `Infeasible`), and one the kernel refuses (below
//!   what the container uses) is `PodResizeInProgress` (reason `Error`) until it can be applied.

mod cgroup;
mod env;
mod pod;
mod probe;
mod process;
mod quantity;
mod status;

pub use cgroup::MemoryCgroup;

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// How the kubelet runs.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    /// The Node it registers and runs the pods of.
    pub node: String,
    /// Image name (no tag) to the binary that runs it.
    pub images: BTreeMap<String, PathBuf>,
    /// The first wait before a restart; it doubles with every exit (a kubelet's is 10 s).
    pub restart_backoff: Duration,
    /// Where container logs go (`<namespace>_<pod>_<container>_<restarts>.log`).
    pub dir: PathBuf,
    /// The apiserver's URL and CA file. With them, a pod that mounts its service account token
    /// (the default) gets a kubeconfig with a TokenRequest token bound to the pod, in
    /// `KUBECONFIG`: pods share this machine's filesystem, so the token cannot be mounted at
    /// the in-cluster path.
    pub api_server: Option<(String, PathBuf)>,
}

impl KubeletConfig {
    fn binary_for(&self, image: &str) -> Option<&Path> {
        let name = image.split('@').next().unwrap_or(image);
        let name = match name.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => name,
            _ => name,
        };
        self.images.get(name).map(PathBuf::as_path)
    }

    fn image_names(&self) -> String {
        self.images.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// How one run of a container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerExit {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The exit code, or 128 + the signal that ended it.
    pub code: i32,
    /// The kernel's OOM killer ended it (its memory cgroup counted an OOM kill).
    pub oom_killed: bool,
    /// It was stopped because its pod was deleted, rather than exiting on its own.
    pub stopped: bool,
}

/// The memory the Node offers (256 GiB): a resize asking a container for more is infeasible.
const NODE_MEMORY_BYTES: u64 = 256 << 30;

/// What every pod task shares.
struct Shared {
    client: Client,
    config: KubeletConfig,
    cgroups: Result<cgroup::CgroupRoot, String>,
    /// One status write at a time, so a pod's reports arrive in order.
    reports: tokio::sync::Mutex<()>,
    /// Every container exit so far, oldest first.
    exits: std::sync::Mutex<Vec<ContainerExit>>,
}

/// A running process kubelet; dropping it stops every container it started.
pub struct ProcessKubelet {
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl ProcessKubelet {
    /// Registers the Node (Ready, 64 CPUs, 256 GiB, 10,000 pods) and starts running its pods.
    pub async fn start(client: Client, config: KubeletConfig) -> Result<ProcessKubelet> {
        std::fs::create_dir_all(&config.dir).map_err(|e| Error::Write(config.dir.clone(), e))?;
        register(&client, &config.node).await?;
        // Shared by every kubelet; each container's cgroup has a unique name and is removed
        // when the container exits.
        let cgroups = cgroup::CgroupRoot::find("testkit-kubelet");
        if let Err(why) = &cgroups {
            eprintln!(
                "process kubelet: no memory cgroups ({why}); limits are passed as SHORTENER_MAX_MEMORY instead"
            );
        }
        let shared = Arc::new(Shared {
            client,
            config,
            cgroups,
            reports: tokio::sync::Mutex::new(()),
            exits: std::sync::Mutex::default(),
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(watch_pods(shared.clone(), stop.clone()));
        Ok(ProcessKubelet {
            shared,
            stop,
            task: Some(task),
        })
    }

    /// Whether containers get real memory cgroups, and if not, why.
    pub fn memory_cgroups(&self) -> Result<(), String> {
        self.shared
            .cgroups
            .as_ref()
            .map(|_| ())
            .map_err(Clone::clone)
    }

    /// The log of `container` of pod `namespace/pod` after `restarts` restarts.
    pub fn log_path(&self, namespace: &str, pod: &str, container: &str, restarts: u32) -> PathBuf {
        self.shared
            .config
            .dir
            .join(format!("{namespace}_{pod}_{container}_{restarts}.log"))
    }

    /// Every container exit so far, oldest first: what a node's container runtime remembers
    /// after the pod object is gone.
    pub fn exits(&self) -> Vec<ContainerExit> {
        self.shared
            .exits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Stops every container (SIGTERM, then SIGKILL after each pod's grace period) and waits.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ProcessKubelet {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn register(client: &Client, name: &str) -> Result<()> {
    let failed = |e: kube::Error| Error::Kubelet(format!("registering Node {name}: {e}"));
    let nodes: Api<Node> = Api::all(client.clone());
    let node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}
    }))
    .expect("a Node");
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => return Err(failed(e)),
    }
    let now = Timestamp::now().to_string();
    let room = json!({"cpu": "64", "memory": NODE_MEMORY_BYTES.to_string(), "pods": "10000"});
    let status = json!({"status": {
        "capacity": room, "allocatable": room,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "the process kubelet is running", "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}]
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .map_err(failed)?;
    Ok(())
}

/// Starts a task for every pod bound to the node, and tells it when the pod is deleted.
async fn watch_pods(shared: Arc<Shared>, stop: CancellationToken) {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let config =
        watcher::Config::default().fields(&format!("spec.nodeName={}", shared.config.node));
    let mut events = watcher(pods, config)
        .default_backoff()
        .touched_objects()
        .boxed();
    // Per pod: its deletion signal, its task, and the newest object (a resize changes the spec).
    type Running = (CancellationToken, JoinHandle<()>, watch::Sender<Pod>);
    let mut running: HashMap<String, Running> = HashMap::new();
    loop {
        let pod = tokio::select! {
            () = stop.cancelled() => break,
            next = events.next() => match next {
                Some(Ok(pod)) => pod,
                Some(Err(error)) => {
                    tracing::debug!(%error, "the kubelet's pod watch failed; retrying");
                    continue;
                }
                None => break,
            },
        };
        let uid = pod.uid().unwrap_or_default();
        let terminal = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        if pod.metadata.deletion_timestamp.is_some() {
            if let Some((deleting, _, _)) = running.get(&uid) {
                deleting.cancel();
            } else {
                // Never started here: nothing to stop, only the object to remove.
                let shared = shared.clone();
                tokio::spawn(async move { pod::remove(&shared, &pod).await });
            }
            continue;
        }
        if let Some((_, _, newest)) = running.get(&uid) {
            newest.send_replace(pod);
            continue;
        }
        if terminal {
            continue;
        }
        let deleting = CancellationToken::new();
        let (newest, updates) = watch::channel(pod.clone());
        let task = tokio::spawn(pod::run(
            shared.clone(),
            pod,
            next_address(),
            deleting.clone(),
            updates,
        ));
        running.insert(uid, (deleting, task, newest));
        running.retain(|_, (_, task, _)| !task.is_finished());
    }
    for (deleting, _, _) in running.values() {
        deleting.cancel();
    }
    for (_, (_, task, _)) in running {
        let _ = task.await;
    }
}

/// Hands out pod addresses `127.1.0.1`, `127.1.0.2`, …, unique across every kubelet of the
/// process.
fn next_address() -> IpAddr {
    static TAKEN: AtomicU32 = AtomicU32::new(0);
    let n = TAKEN.fetch_add(1, Ordering::Relaxed);
    IpAddr::V4(Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8))
}
