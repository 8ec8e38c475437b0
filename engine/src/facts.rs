//! What every rule looks at, and what a rule hands back: the action it wants and what holds
//! it back.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::Action;
use super::growth::Trend;
use super::memory::{History, Memory};
use super::observe::Observation;
use super::policy::Policy;
use super::workload::Workload;

/// Everything the rules look at.
pub(super) struct Facts<'a> {
    pub policy: &'a Policy,
    pub workload: &'a Workload,
    pub observation: &'a Observation,
    pub memory: &'a Memory,
    /// Each pod's growth over the prediction window, when the policy predicts.
    pub trends: &'a BTreeMap<String, Trend>,
    pub history: History<'a>,
    pub now: Timestamp,
}

/// The action a rule wants, and whether its own limits hold it back.
pub(super) struct Wanted {
    pub action: Action,
    /// The pods to remember with the action.
    pub pods: Vec<String>,
    pub hold: Option<Hold>,
}

/// Pods that `onCritical` is for although the critical rule did not pick them (a raise that
/// will not happen, a leak projected to reach its limit), and what an alert about them says.
pub(super) struct ForCritical {
    pub pods: Vec<String>,
    pub alarm: String,
}

/// Why a wanted action is not taken.
#[derive(Debug, Clone)]
pub(super) struct Hold {
    pub reason: String,
    /// Held back by the cooldown or the restart budget.
    pub throttled: bool,
}

impl Hold {
    pub fn plain(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            throttled: false,
        }
    }

    pub fn throttled(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            throttled: true,
        }
    }

    /// The restart budget holds the action back: `used` restarts in the last hour.
    pub fn budget_exhausted(used: u32, p: &Policy) -> Self {
        let restarts = if p.dry_run {
            "restarts reported under dry run"
        } else {
            "restarts"
        };
        Self::throttled(format!(
            "restart budget exhausted: {used} {restarts} in the last hour (maxRestartsPerHour {})",
            p.max_restarts_per_hour
        ))
    }
}
