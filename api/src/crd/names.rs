//! The words a MemoryPolicy's status and Events use, one definition each: condition types
//! and reasons, the `State` column's words, and the Event reasons that are not an action's
//! own (those are in the engine's action table, `decide::ActionKind::names`).

/// Condition types.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const METRICS_AVAILABLE: &str = "MetricsAvailable";
    pub const HIGH_MEMORY: &str = "HighMemory";
    pub const CRITICAL: &str = "Critical";
    pub const THROTTLED: &str = "Throttled";
    pub const DRY_RUN: &str = "DryRun";
    /// Some pod grows like a leak; present only when the policy predicts.
    pub const LEAK_SUSPECTED: &str = "LeakSuspected";
}

/// Condition reasons.
pub mod reason {
    /// `Ready=True`: sound, with a target, evaluated.
    pub const EVALUATED: &str = "Evaluated";
    /// `Ready=False`: the spec breaks a rule.
    pub const INVALID_POLICY: &str = "InvalidPolicy";
    /// `Ready=False`: the spec cannot be read at all.
    pub const UNREADABLE: &str = "Unreadable";
    /// `Ready=False`: `spec.prometheus.source` names a source the operator was not given.
    pub const UNKNOWN_SOURCE: &str = "UnknownSource";
    /// `Ready=False`: the target Deployment does not exist.
    pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
    pub const SAMPLES_FRESH: &str = "SamplesFresh";
    pub const NO_USABLE_SAMPLES: &str = "NoUsableSamples";
    /// `MetricsAvailable=False`: Prometheus could not be reached, or refused the query.
    pub const QUERY_FAILED: &str = "QueryFailed";
    /// `MetricsAvailable=False`: no whole answer within the policy's `prometheus.timeout`.
    pub const QUERY_TIMED_OUT: &str = "QueryTimedOut";
    /// `MetricsAvailable=False`: the answer was larger than the operator reads.
    pub const ANSWER_TOO_LARGE: &str = "AnswerTooLarge";
    /// `MetricsAvailable=False`: the answer held more series than the operator reads.
    pub const TOO_MANY_SERIES: &str = "TooManySeries";
    /// `MetricsAvailable=False`: the source refused the operator's credentials (HTTP 401 or
    /// 403), or its token file cannot be read.
    pub const UNAUTHORIZED: &str = "Unauthorized";
    /// `MetricsAvailable=False`: Prometheus redirected the query to another server.
    pub const REDIRECT_REFUSED: &str = "RedirectRefused";
    pub const ABOVE_HIGH_WATER_MARK: &str = "AboveHighWaterMark";
    pub const BELOW_HIGH_WATER_MARK: &str = "BelowHighWaterMark";
    pub const PODS_CRITICAL: &str = "PodsCritical";
    pub const NO_POD_CRITICAL: &str = "NoPodCritical";
    pub const THROTTLED: &str = "Throttled";
    pub const NOT_THROTTLED: &str = "NotThrottled";
    pub const DRY_RUN: &str = "DryRun";
    pub const LIVE: &str = "Live";
    /// `LeakSuspected=True`: some pod's memory grows steadily without load to carry it.
    pub const GROWING_WITHOUT_LOAD: &str = "GrowingWithoutLoad";
    /// `LeakSuspected=False`.
    pub const NO_LEAK_SUSPECTED: &str = "NoLeakSuspected";
}

/// The `State` column (`status.state`) and each pod's `state`.
pub mod state {
    pub const NORMAL: &str = "Normal";
    pub const HIGH: &str = "High";
    pub const CRITICAL: &str = "Critical";
    /// Some pod grows like a leak (and none is critical).
    pub const LEAK_SUSPECTED: &str = "LeakSuspected";
    /// No usable samples (the policy), or none for this pod.
    pub const NO_DATA: &str = "NoData";
    pub const SUSPENDED: &str = "Suspended";
    pub const INVALID: &str = "Invalid";
    pub const TARGET_MISSING: &str = "TargetMissing";
}

/// Event reasons besides the actions' own and the `Ready` condition's (a policy that cannot
/// be evaluated is told with its condition's reason).
pub mod event {
    /// An action was called for and held back.
    pub const ACTION_HELD_BACK: &str = "ActionHeldBack";
    /// The cluster refused an action.
    pub const ACTION_FAILED: &str = "ActionFailed";
    /// Under dry run, the action that would have been taken.
    pub const DRY_RUN: &str = "DryRun";
}
