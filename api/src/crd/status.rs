//! [`MemoryPolicyStatus`]: what the operator last saw and did.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the operator last saw and did; written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct MemoryPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions (`Ready`, `Degraded`, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Per-pod usage at the last evaluation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodMemory>,
    /// The target's current replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// The replicas the operator wants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// The most recent action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_action: Option<ActionRecord>,
    /// The actions the operator remembers, newest last: those of the last hour (longer
    /// when `cooldown`, `for` or `scaleInStabilization` is), at most 50 unless the restart
    /// budget still counts more. A new leader continues from it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<ActionRecord>,
    /// When an evaluation last wrote the status: at once when what it says changed, and
    /// otherwise once its readings (usage, `maxUsage`, condition messages) are four intervals
    /// old, so they may be that old.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_evaluation_time: Option<Time>,
    /// The highest pod usage, in percent of its limit (as the thresholds are).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_usage: Option<f64>,
    /// Overall state: `Normal`, `High`, `LeakSuspected`, `Critical`, `NoData`, `Suspended`,
    /// `Invalid` or `TargetMissing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// One pod's memory at the last evaluation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodMemory {
    /// Pod name.
    pub name: String,
    /// Usage divided by the limit (1.0 is at the limit).
    pub usage_ratio: f64,
    /// Usage in bytes.
    pub bytes: u64,
    /// Memory limit in bytes, if the pod has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
    /// The memory limit its container runs with now, as a quantity (`160Mi`): raised in place
    /// by `RaiseLimit`, it is above the pod template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// A resize of its memory not carried out yet: `Deferred`, `Infeasible`, `InProgress` or
    /// `Error`, with the target and the kubelet's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<String>,
    /// `Normal`, `High`, `Critical` or `NoData`.
    pub state: String,
    /// How fast its memory grew over the prediction window (negative when shrinking), in
    /// bytes a minute; only when the policy predicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth_bytes_per_minute: Option<i64>,
    /// When it reaches its memory limit at that pace, if it grew steadily for the whole window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projected_limit_at: Option<Time>,
    /// It grows while its request rate does not (or, without a request rate, while its
    /// siblings do not): a leak, not load.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leak_suspected: bool,
    /// Its containers have restarted: how often, and how the latest run ended (an
    /// `OOMKilled` one hit its memory limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<PodRestarts>,
}

/// Restarts of a pod's containers, from the kubelet's report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodRestarts {
    /// Restarts of all its containers.
    pub count: u32,
    /// Why the latest run that ended did, such as `OOMKilled` or `Error`.
    pub last_reason: String,
    /// That run's exit code (137 after a SIGKILL, such as the OOM killer's).
    pub last_exit_code: i32,
    /// When that run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_finished_at: Option<Time>,
}

/// An action the operator took (or would have taken, in dry-run).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionRecord {
    /// `RestartPod`, `RollingRestart`, `ScaleOut`, `ScaleIn`, `SetLimits`, `RaiseLimit`,
    /// `RaiseLimitWithRestart`, `HighMemoryAlert` or `CriticalMemoryAlert`.
    pub r#type: String,
    /// Only reported: the policy was in dry run, nothing was changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The pods it touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
    /// Why, in words.
    pub reason: String,
    /// When.
    pub time: Time,
}
