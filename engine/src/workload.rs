//! The Deployment as the engine sees it: its replicas, pods, restarts and the memory each
//! pod's container runs with.

use jiff::Timestamp;

/// The Deployment as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Workload {
    /// Desired replicas (`spec.replicas`).
    pub replicas: u32,
    /// Pods available to serve (`status.availableReplicas`).
    pub available_replicas: u32,
    /// A rollout has not finished yet (derived by the adapter from the Deployment's status).
    pub rollout_in_progress: bool,
    /// `spec.paused`: a rolling restart would never start.
    pub paused: bool,
    /// Names of the Deployment's current pods.
    pub pods: Vec<String>,
    /// The current pods that are not Ready (a shortener over critical fails its own readiness
    /// check): evicting one of them makes nothing less available.
    pub unready: Vec<String>,
    /// The current pods whose containers have restarted, and how the last run ended (an
    /// `OOMKilled` one is a limit the operator did not keep the pod under).
    pub restarted: Vec<Restarted>,
    /// The target container's memory request and limit in the pod template; `None` when the
    /// template has no such container.
    pub template: Option<MemoryResources>,
    /// The target container's memory in each current pod that has that container, and any
    /// resize of it not yet carried out.
    pub limits: Vec<PodLimits>,
}

/// One pod's target container: the memory it runs with and how a resize of it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLimits {
    pub pod: String,
    /// The memory request and limit the container runs with (the kubelet's report once it
    /// made one, else the pod's spec).
    pub running: MemoryResources,
    /// Its `resizePolicy` restarts the container when its memory changes.
    pub restarts_on_resize: bool,
    /// Its QoS class is Guaranteed: a resize must keep its memory request equal to its limit.
    pub guaranteed: bool,
    /// A resize asked for and not carried out yet.
    pub resize: Option<Resize>,
}

/// A resize the kubelet has not carried out yet, from the pod's conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resize {
    pub state: ResizeState,
    /// The memory limit asked for (the pod's spec), when it differs from the running one.
    pub to: Option<u64>,
    /// When the condition last changed, if the kubelet said.
    pub since: Option<Timestamp>,
    /// The kubelet's message, if any.
    pub message: String,
}

/// Where a resize stands (`PodResizePending` and `PodResizeInProgress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeState {
    /// Pending, reason `Deferred`: the Node may make room later.
    Deferred,
    /// Pending, reason `Infeasible`: the Node can never hold it.
    Infeasible,
    /// Being carried out.
    InProgress,
    /// In progress, reason `Error`: the kubelet tried and failed, and retries.
    Failed,
}

impl ResizeState {
    /// It will never complete, however long one waits.
    pub fn is_hopeless(self) -> bool {
        self == Self::Infeasible
    }
}

impl std::fmt::Display for ResizeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Deferred => "deferred",
            Self::Infeasible => "infeasible",
            Self::InProgress => "in progress",
            Self::Failed => "failing",
        })
    }
}

/// A container's memory request and limit, in bytes; `None` is unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryResources {
    pub request: Option<u64>,
    pub limit: Option<u64>,
}

#[cfg(any(test, feature = "test-support"))]
impl Workload {
    /// A settled Deployment running exactly these pods.
    pub fn test(pods: &[&str]) -> Self {
        let replicas = u32::try_from(pods.len()).expect("few pods");
        Self {
            replicas,
            available_replicas: replicas,
            rollout_in_progress: false,
            paused: false,
            pods: pods.iter().map(|pod| (*pod).to_owned()).collect(),
            unready: Vec::new(),
            restarted: Vec::new(),
            template: None,
            limits: Vec::new(),
        }
    }

    /// Every pod's container runs with `limit` MiB (and no request), and no resize is pending.
    pub fn with_pod_limits(mut self, limit: u64) -> Self {
        self.limits = self
            .pods
            .iter()
            .map(|pod| PodLimits {
                pod: pod.clone(),
                running: MemoryResources {
                    request: None,
                    limit: Some(limit << 20),
                },
                restarts_on_resize: false,
                guaranteed: false,
                resize: None,
            })
            .collect();
        self
    }

    /// `pod`'s limits, to change in a test.
    pub fn pod_limits(&mut self, pod: &str) -> &mut PodLimits {
        self.limits
            .iter_mut()
            .find(|l| l.pod == pod)
            .expect("the pod has limits; call with_pod_limits first")
    }

    /// The target container's template has this memory request and limit, in MiB.
    pub fn with_template(mut self, request: Option<u64>, limit: Option<u64>) -> Self {
        self.template = Some(MemoryResources {
            request: request.map(|mib| mib << 20),
            limit: limit.map(|mib| mib << 20),
        });
        self
    }

    /// `pods` are not Ready (and so not available).
    pub fn with_unready(mut self, pods: &[&str]) -> Self {
        self.unready = pods.iter().map(|pod| (*pod).to_owned()).collect();
        self.available_replicas = self.replicas.saturating_sub(self.unready.len() as u32);
        self
    }

    /// Only `available` of the replicas are available.
    pub fn with_available(mut self, available: u32) -> Self {
        self.available_replicas = available;
        self
    }

    /// A rollout has not finished.
    pub fn rolling_out(mut self) -> Self {
        self.rollout_in_progress = true;
        self
    }

    /// `spec.paused` is set.
    pub fn paused(mut self) -> Self {
        self.paused = true;
        self
    }
}

/// A pod whose containers have restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restarted {
    pub pod: String,
    /// Restarts of all its containers.
    pub restarts: u32,
    /// The kubelet's reason for the latest end of a container, such as `OOMKilled` or `Error`.
    pub last_reason: String,
    pub last_exit_code: i32,
    pub last_finished: Option<Timestamp>,
}

impl Workload {
    /// Desired replicas that are not available right now.
    pub fn unavailable(&self) -> u32 {
        self.replicas.saturating_sub(self.available_replicas)
    }
}
