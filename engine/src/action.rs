//! What the engine can ask for, and the one table of every name an action goes by.
//!
//! Adding an action kind is a variant of [`ActionKind`] (and of [`Action`]): the compiler
//! then points at [`ActionKind::names`], [`Action::kind`] and every `match` that carries an
//! action out. Reading a kind back from status walks the derived list of every kind, so a
//! new one is read back without being listed anywhere else.

use std::fmt;

use strum::{EnumIter, IntoEnumIterator};

use super::size;

/// Something to do to the cluster, or to tell a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set `spec.replicas` from `from` to `to`.
    ScaleTo { from: u32, to: u32 },
    /// Evict these pods through the Eviction API (PodDisruptionBudgets still apply).
    Evict { pods: Vec<String> },
    /// Restart every pod, the way `kubectl rollout restart` does.
    RollingRestart,
    /// Set the target container's memory request and/or limit in the pod template (the
    /// Deployment rolls it out); `None` leaves that one as it is.
    SetLimits {
        request: Option<u64>,
        limit: Option<u64>,
    },
    /// Raise the target container's memory limit of running pods in place, through each
    /// pod's `resize` subresource; `restart` when their containers restart on such a change
    /// (`resizePolicy` `RestartContainer`, which the policy allowed).
    RaiseLimit { raises: Vec<Raise>, restart: bool },
    /// No cluster change: raise an event and a condition with this message.
    Alert { about: Alarm, message: String },
}

/// One pod's memory limit raised in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raise {
    pub pod: String,
    /// The limit it runs with, in bytes.
    pub from: u64,
    /// The limit it is to run with.
    pub to: u64,
    /// The memory request, moved with the limit in a Guaranteed pod (a resize may not change
    /// a pod's QoS class); `None` leaves it.
    pub request: Option<u64>,
}

impl fmt::Display for Raise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} from {} to {}",
            self.pod,
            size(self.from),
            size(self.to)
        )?;
        if self.request.is_some() {
            f.write_str(" (request too)")?;
        }
        Ok(())
    }
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alarm {
    /// The fleet stayed high.
    High,
    /// Pods stayed critical.
    Critical,
}

impl Action {
    /// The kind this action is remembered and reported as.
    pub fn kind(&self) -> ActionKind {
        match self {
            Self::ScaleTo { from, to } if to > from => ActionKind::ScaleOut,
            Self::ScaleTo { .. } => ActionKind::ScaleIn,
            Self::Evict { .. } => ActionKind::Evict,
            Self::RollingRestart => ActionKind::RollingRestart,
            Self::SetLimits { .. } => ActionKind::SetLimits,
            Self::RaiseLimit { restart: false, .. } => ActionKind::RaiseLimit,
            Self::RaiseLimit { restart: true, .. } => ActionKind::RaiseLimitRestart,
            Self::Alert {
                about: Alarm::High, ..
            } => ActionKind::HighAlert,
            Self::Alert {
                about: Alarm::Critical,
                ..
            } => ActionKind::CriticalAlert,
        }
    }

    /// Changes the cluster (everything but an alert).
    pub fn is_disruptive(&self) -> bool {
        self.kind().names().disruptive
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ScaleTo { from, to } => write!(f, "scale from {from} to {to} replicas"),
            Self::Evict { pods } => write!(f, "evict {}", pods.join(", ")),
            Self::RollingRestart => f.write_str("rolling restart"),
            Self::SetLimits { request, limit } => {
                let parts: Vec<String> = [("request", request), ("limit", limit)]
                    .into_iter()
                    .filter_map(|(what, bytes)| bytes.map(|b| format!("{what} {}", size(b))))
                    .collect();
                write!(f, "set the memory {}", parts.join(" and "))
            }
            Self::RaiseLimit { raises, restart } => {
                let each: Vec<String> = raises.iter().map(Raise::to_string).collect();
                write!(f, "raise the memory limit of {}", each.join(", "))?;
                if *restart {
                    f.write_str(", restarting their containers")?;
                }
                Ok(())
            }
            Self::Alert { message, .. } => write!(f, "alert: {message}"),
        }
    }
}

/// The kind of an action, as remembered in history and named everywhere else. Declared in
/// the order reports list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter)]
pub enum ActionKind {
    /// Critical pods were evicted.
    Evict,
    /// The whole Deployment was restarted.
    RollingRestart,
    /// Replicas went up.
    ScaleOut,
    /// Replicas went down.
    ScaleIn,
    /// The container's memory request or limit was set to the policy's.
    SetLimits,
    /// Pods' memory limits were raised in place, without a restart.
    RaiseLimit,
    /// Pods' memory limits were raised in place, restarting their containers (their
    /// `resizePolicy` asks for it, and the policy allowed it).
    RaiseLimitRestart,
    /// An alert about a high fleet.
    HighAlert,
    /// An alert about critical pods.
    CriticalAlert,
}

/// Every name of one action kind, and what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names {
    /// `status.lastAction.type` and `status.history[].type`.
    pub status: &'static str,
    /// The Event's reason when the action is taken.
    pub reason: &'static str,
    /// The Event's action.
    pub verb: &'static str,
    /// The `kind` label of the operator's metrics.
    pub metric: &'static str,
    /// In sentences: "the last disruptive action (eviction)".
    pub noun: &'static str,
    /// In backtest reports and charts.
    pub label: &'static str,
    /// Changes the cluster, so the cooldown applies and an Event goes to the Deployment too.
    pub disruptive: bool,
    /// What it costs against `maxRestartsPerHour`.
    pub restarts: Restarts,
}

/// What an action costs against the restart budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restarts {
    /// Nothing restarts.
    None,
    /// One per pod it names.
    PerPod,
    /// One: the Deployment replaces its pods at its own pace.
    One,
}

impl ActionKind {
    /// The kinds a raise of a limit in place is remembered as.
    pub const RAISES: [Self; 2] = [Self::RaiseLimit, Self::RaiseLimitRestart];

    /// The table.
    pub const fn names(self) -> Names {
        const fn names(
            status: &'static str,
            reason: &'static str,
            verb: &'static str,
            metric: &'static str,
            noun: &'static str,
            label: &'static str,
            restarts: Restarts,
        ) -> Names {
            Names {
                status,
                reason,
                verb,
                metric,
                noun,
                label,
                disruptive: true,
                restarts,
            }
        }
        const fn alert(status: &'static str, noun: &'static str, label: &'static str) -> Names {
            Names {
                status,
                reason: "MemoryAlert",
                verb: "Alert",
                metric: "alert",
                noun,
                label,
                disruptive: false,
                restarts: Restarts::None,
            }
        }
        match self {
            Self::Evict => names(
                "RestartPod",
                "PodEvicted",
                "RestartPod",
                "evict",
                "eviction",
                "evict",
                Restarts::PerPod,
            ),
            Self::RollingRestart => names(
                "RollingRestart",
                "RollingRestartStarted",
                "RollingRestart",
                "rolling_restart",
                "rolling restart",
                "rolling restart",
                Restarts::One,
            ),
            Self::ScaleOut => names(
                "ScaleOut",
                "ScaledOut",
                "ScaleOut",
                "scale_out",
                "scale-out",
                "scale out",
                Restarts::None,
            ),
            Self::ScaleIn => names(
                "ScaleIn",
                "ScaledIn",
                "ScaleIn",
                "scale_in",
                "scale-in",
                "scale in",
                Restarts::None,
            ),
            Self::SetLimits => names(
                "SetLimits",
                "LimitsEnforced",
                "EnforceLimits",
                "limits",
                "change of memory limits",
                "set limits",
                Restarts::One,
            ),
            Self::RaiseLimit => names(
                "RaiseLimit",
                "LimitRaised",
                "RaiseLimit",
                "raise_limit",
                "raise of a memory limit",
                "raise limit",
                Restarts::None,
            ),
            Self::RaiseLimitRestart => names(
                "RaiseLimitWithRestart",
                "LimitRaisedWithRestart",
                "RaiseLimit",
                "raise_limit_restart",
                "raise of a memory limit with a restart",
                "raise limit, restarting",
                Restarts::PerPod,
            ),
            Self::HighAlert => alert("HighMemoryAlert", "high alert", "high alert"),
            Self::CriticalAlert => alert("CriticalMemoryAlert", "critical alert", "critical alert"),
        }
    }

    /// Changes the cluster, so the cooldown applies.
    pub fn is_disruptive(self) -> bool {
        self.names().disruptive
    }

    /// Restarts an action of this kind naming `pods` pods costs.
    pub fn restarts(self, pods: usize) -> u32 {
        match self.names().restarts {
            Restarts::None => 0,
            Restarts::PerPod => u32::try_from(pods).unwrap_or(u32::MAX),
            Restarts::One => 1,
        }
    }

    /// The kind a status record's `type` names.
    pub fn from_status(type_: &str) -> Option<Self> {
        Self::iter().find(|kind| kind.names().status == type_)
    }

    /// Every kind, in the order reports list them.
    pub fn all() -> impl Iterator<Item = Self> {
        Self::iter()
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.names().noun)
    }
}

/// How carrying out an action ended, as the controller saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done on the cluster as decided.
    Applied,
    /// Only told: an alert, or any action under dry run.
    Reported,
    /// The cluster refused; the reason says why, and nothing was done.
    Refused(String),
    /// Done for the action's pods but these, for which the cluster refused (or which were
    /// never tried after a refusal); the reason says why.
    Partly { refused: Vec<String>, why: String },
}

impl Outcome {
    /// The `outcome` label of the operator's metrics.
    pub fn metric(&self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Reported => "reported",
            Self::Refused(_) | Self::Partly { .. } => "failed",
        }
    }

    /// Why the cluster refused, if it did.
    pub fn refusal(&self) -> Option<&str> {
        match self {
            Self::Refused(why) | Self::Partly { why, .. } => Some(why),
            Self::Applied | Self::Reported => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_kind_has_names_of_its_own_and_reads_back_from_status() {
        let kinds: Vec<ActionKind> = ActionKind::all().collect();
        let statuses: HashSet<&str> = kinds.iter().map(|k| k.names().status).collect();
        assert_eq!(statuses.len(), kinds.len(), "status types are unique");
        let nouns: HashSet<&str> = kinds.iter().map(|k| k.names().noun).collect();
        assert_eq!(nouns.len(), kinds.len(), "nouns are unique");
        for kind in kinds {
            assert_eq!(ActionKind::from_status(kind.names().status), Some(kind));
        }
        assert_eq!(ActionKind::from_status("Explode"), None);
    }

    #[test]
    fn an_action_knows_its_kind_and_what_it_costs() {
        let scale_out = Action::ScaleTo { from: 2, to: 3 };
        let scale_in = Action::ScaleTo { from: 3, to: 2 };
        assert_eq!(scale_out.kind(), ActionKind::ScaleOut);
        assert_eq!(scale_in.kind(), ActionKind::ScaleIn);
        let alert = Action::Alert {
            about: Alarm::Critical,
            message: "m".into(),
        };
        assert_eq!(alert.kind(), ActionKind::CriticalAlert);
        assert!(!alert.is_disruptive() && scale_in.is_disruptive());
        assert_eq!(ActionKind::Evict.restarts(2), 2);
        assert_eq!(ActionKind::SetLimits.restarts(0), 1);
        assert_eq!(ActionKind::HighAlert.restarts(3), 0);
    }

    #[test]
    fn a_limits_change_names_only_what_it_sets() {
        let both = Action::SetLimits {
            request: Some(32 << 20),
            limit: Some(128 << 20),
        };
        assert_eq!(
            both.to_string(),
            "set the memory request 32Mi and limit 128Mi"
        );
        let limit = Action::SetLimits {
            request: None,
            limit: Some(100_000_000),
        };
        assert_eq!(limit.to_string(), "set the memory limit 100000000");
    }

    #[test]
    fn a_raise_names_each_pod_before_and_after_and_what_it_costs() {
        let raise = |restart| Action::RaiseLimit {
            raises: vec![
                Raise {
                    pod: "web-a".into(),
                    from: 96 << 20,
                    to: 160 << 20,
                    request: None,
                },
                Raise {
                    pod: "web-b".into(),
                    from: 128 << 20,
                    to: 192 << 20,
                    request: Some(192 << 20),
                },
            ],
            restart,
        };
        assert_eq!(
            raise(false).to_string(),
            "raise the memory limit of web-a from 96Mi to 160Mi, web-b from 128Mi to 192Mi (request too)"
        );
        assert!(
            raise(true)
                .to_string()
                .ends_with(", restarting their containers")
        );
        assert_eq!(raise(false).kind(), ActionKind::RaiseLimit);
        assert_eq!(raise(true).kind(), ActionKind::RaiseLimitRestart);
        assert!(raise(false).is_disruptive());
        assert_eq!(ActionKind::RaiseLimit.restarts(2), 0);
        assert_eq!(ActionKind::RaiseLimitRestart.restarts(2), 2);
    }
}
