//! What a pod's status says of each container, in the kubelet's words.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::process::Exit;

/// What the pod's status says of one container.
#[derive(Clone, Debug, Default)]
pub(crate) struct ContainerView {
    pub(crate) name: String,
    pub(crate) image: String,
    pub(crate) ready: bool,
    pub(crate) restarts: u32,
    /// `running` since, or `waiting` with a reason and message.
    pub(crate) running_since: Option<Timestamp>,
    pub(crate) waiting: Option<(String, String)>,
    pub(crate) last: Option<Exit>,
    pub(crate) last_started: Option<Timestamp>,
    /// The memory limit allocated to it (a quantity, as the spec writes it): the spec's at
    /// start, then what the last resize in place set.
    pub(crate) memory_limit: Option<String>,
    /// The memory cgroup of its current run, if it has one.
    pub(crate) cgroup: Option<std::path::PathBuf>,
}

/// `containerStatuses[]` for `v`.
pub(crate) fn container_status(v: &ContainerView) -> Value {
    let state = match (&v.running_since, &v.waiting) {
        (Some(since), _) => json!({"running": {"startedAt": since.to_string()}}),
        (None, Some((reason, message))) => {
            json!({"waiting": {"reason": reason, "message": message}})
        }
        (None, None) => json!({"waiting": {"reason": "ContainerCreating"}}),
    };
    let last = match &v.last {
        Some(exit) => json!({"terminated": {
            "exitCode": exit.code,
            "reason": if exit.oom_killed { "OOMKilled" } else if exit.code == 0 { "Completed" } else { "Error" },
            "startedAt": v.last_started.map(|t| t.to_string()),
            "finishedAt": exit.finished_at.to_string(),
        }}),
        None => json!({}),
    };
    let mut status = json!({"name": v.name, "image": v.image, "imageID": "", "ready": v.ready,
        "started": v.running_since.is_some(), "restartCount": v.restarts,
        "state": state, "lastState": last});
    if let Some(limit) = &v.memory_limit {
        status["resources"] = json!({"limits": {"memory": limit}});
    }
    status
}
