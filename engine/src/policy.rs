//! The memory policy as the engine sees it: plain numbers, no Kubernetes types.

use std::time::Duration;

use super::{ActionKind, MemoryResources};

/// What to do when the fleet stays in the high state for `sustain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HighAction {
    /// Add `step` replicas, up to `max_replicas`; also allows scale-in when every pod is low.
    ScaleOut,
    /// Raise an alert and leave the replica count alone, in both directions.
    AlertOnly,
    /// Raise the memory limit of each pod that stays high, in place, by [`RaiseLimits::step`]
    /// up to [`RaiseLimits::max`]; a critical pod is raised once before `on_critical` acts on
    /// it, and a pod whose resize cannot be carried out gets `on_critical` at once. Leaves the
    /// replica count alone.
    RaiseLimit,
}

impl HighAction {
    /// The kind of the action it takes.
    pub fn kind(self) -> ActionKind {
        match self {
            Self::ScaleOut => ActionKind::ScaleOut,
            Self::AlertOnly => ActionKind::HighAlert,
            Self::RaiseLimit => ActionKind::RaiseLimit,
        }
    }
}

/// What to do when a pod stays at or above the critical mark for `sustain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CriticalAction {
    /// Evict only the critical pods, within `max_unavailable` and the restart budget.
    RestartPod,
    /// Restart the whole Deployment once, the way `kubectl rollout restart` does.
    RollingRestart,
    /// Raise an alert and leave the pods alone.
    AlertOnly,
}

impl CriticalAction {
    /// The kind of the action it takes.
    pub fn kind(self) -> ActionKind {
        match self {
            Self::RestartPod => ActionKind::Evict,
            Self::RollingRestart => ActionKind::RollingRestart,
            Self::AlertOnly => ActionKind::CriticalAlert,
        }
    }
}

/// How far [`HighAction::RaiseLimit`] may raise a pod's memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaiseLimits {
    /// Bytes added by one raise.
    pub step: u64,
    /// Never raised above this many bytes.
    pub max: u64,
    /// Raise a container whose `resizePolicy` restarts it on a memory change (each such raise
    /// costs a restart against the budget); otherwise such a pod is left to `on_critical`.
    pub allow_restart: bool,
    /// A resize still deferred or in progress this long after it was asked for has failed,
    /// as an infeasible one has at once: the pod gets `on_critical`.
    pub timeout: Duration,
}

/// How far ahead the engine looks at each pod's growth (see the `growth` module).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// The growth is measured over this much of the recent past, and a pod must have been
    /// measured, without a gap, for all of it.
    pub window: Duration,
    /// A leak suspect projected to reach its limit within this time is treated like a
    /// critical pod.
    pub horizon: Duration,
    /// Slower growth than this many bytes a minute is not growth: scrape noise and slow caches
    /// stay under it.
    pub min_growth_per_minute: u64,
}

/// One Deployment's memory policy, mapped from the `MemoryPolicy` spec and already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Below this ratio of the limit a pod is low; the fleet's high state clears only below it.
    pub low: f64,
    /// At or above this average ratio the fleet enters the high state.
    pub high: f64,
    /// At or above this ratio a pod is critical.
    pub critical: f64,
    /// How long a condition must hold, without a gap, before the engine acts on it.
    pub sustain: Duration,
    /// A sample older than this at evaluation time is stale, and stale data never acts.
    pub stale_after: Duration,
    /// Reaction to a sustained high fleet.
    pub on_high: HighAction,
    /// Reaction to a sustained critical pod.
    pub on_critical: CriticalAction,
    /// The bounds of raising limits in place; set exactly when `on_high` is
    /// [`HighAction::RaiseLimit`].
    pub raise: Option<RaiseLimits>,
    /// Predicting each pod's growth, and acting on leaks before they reach the marks; `None`
    /// leaves the engine to the levels alone.
    pub prediction: Option<Prediction>,
    /// Scale-in never goes below this.
    pub min_replicas: u32,
    /// Scale-out never goes above this.
    pub max_replicas: u32,
    /// Replicas added or removed by one scale action.
    pub step: u32,
    /// How long every pod must stay below `low` before one scale-in step.
    pub scale_in_stabilization: Duration,
    /// Minimum time between two disruptive actions (scale, evict, rolling restart).
    pub cooldown: Duration,
    /// Restarts allowed in any sliding hour (an evicted pod or a rolling restart counts one each).
    pub max_restarts_per_hour: u32,
    /// Pods that may be unavailable at once, counting those already unavailable.
    pub max_unavailable: u32,
    /// The memory request and limit the target container's template must have; `None` in
    /// either leaves that one to the Deployment.
    pub limits: MemoryResources,
    /// Report the action the engine would take without taking it.
    pub dry_run: bool,
    /// Observe only: never act.
    pub suspend: bool,
}

#[cfg(any(test, feature = "test-support"))]
impl Policy {
    /// A realistic policy: 60/80/95 %, sustain 5m, 2..=6 replicas, cooldown 5m, 3 restarts an hour.
    pub fn test() -> Self {
        Self {
            low: 0.60,
            high: 0.80,
            critical: 0.95,
            sustain: Duration::from_secs(300),
            stale_after: Duration::from_secs(120),
            on_high: HighAction::ScaleOut,
            on_critical: CriticalAction::RestartPod,
            raise: None,
            prediction: None,
            min_replicas: 2,
            max_replicas: 6,
            step: 1,
            scale_in_stabilization: Duration::from_secs(600),
            cooldown: Duration::from_secs(300),
            max_restarts_per_hour: 3,
            max_unavailable: 1,
            limits: MemoryResources::default(),
            dry_run: false,
            suspend: false,
        }
    }

    /// Sets the low, high and critical marks in percent of the limit.
    pub fn with_thresholds(mut self, low: u8, high: u8, critical: u8) -> Self {
        self.low = f64::from(low) / 100.0;
        self.high = f64::from(high) / 100.0;
        self.critical = f64::from(critical) / 100.0;
        self
    }

    /// Sets `sustain`.
    pub fn with_sustain(mut self, sustain: Duration) -> Self {
        self.sustain = sustain;
        self
    }

    /// Sets `stale_after`.
    pub fn with_stale_after(mut self, stale_after: Duration) -> Self {
        self.stale_after = stale_after;
        self
    }

    /// Sets the reaction to a high fleet.
    pub fn on_high(mut self, action: HighAction) -> Self {
        self.on_high = action;
        self
    }

    /// Raises limits in place when a pod stays high: by `step` MiB up to `max` MiB, giving a
    /// stuck resize a minute.
    pub fn raising(mut self, step: u64, max: u64) -> Self {
        self.on_high = HighAction::RaiseLimit;
        self.raise = Some(RaiseLimits {
            step: step << 20,
            max: max << 20,
            allow_restart: false,
            timeout: Duration::from_secs(60),
        });
        self
    }

    /// Predicts growth over `window` seconds, acting on leaks projected to reach their limit
    /// within `horizon` seconds, when they grow at least `min_growth` MiB a minute.
    pub fn predicting(mut self, window: u64, horizon: u64, min_growth: f64) -> Self {
        self.prediction = Some(Prediction {
            window: Duration::from_secs(window),
            horizon: Duration::from_secs(horizon),
            min_growth_per_minute: (min_growth * (1u64 << 20) as f64) as u64,
        });
        self
    }

    /// Sets the reaction to a critical pod.
    pub fn on_critical(mut self, action: CriticalAction) -> Self {
        self.on_critical = action;
        self
    }

    /// Sets the replica bounds and the scale step.
    pub fn with_replicas(mut self, min: u32, max: u32, step: u32) -> Self {
        self.min_replicas = min;
        self.max_replicas = max;
        self.step = step;
        self
    }

    /// Sets the scale-in stabilization window.
    pub fn with_scale_in_stabilization(mut self, window: Duration) -> Self {
        self.scale_in_stabilization = window;
        self
    }

    /// Sets the cooldown between disruptive actions.
    pub fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Sets the restart budget.
    pub fn with_max_restarts_per_hour(mut self, restarts: u32) -> Self {
        self.max_restarts_per_hour = restarts;
        self
    }

    /// Sets `max_unavailable`.
    pub fn with_max_unavailable(mut self, pods: u32) -> Self {
        self.max_unavailable = pods;
        self
    }

    /// Sets the memory request and limit the template must have, in MiB.
    pub fn with_limits(mut self, request: Option<u64>, limit: Option<u64>) -> Self {
        self.limits = MemoryResources {
            request: request.map(|mib| mib << 20),
            limit: limit.map(|mib| mib << 20),
        };
        self
    }

    /// Turns on dry run.
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    /// Turns on suspend.
    pub fn suspended(mut self) -> Self {
        self.suspend = true;
        self
    }
}
