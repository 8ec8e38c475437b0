//! What the engine remembers between evaluations, and the questions it asks
//! of its action history (cooldown, restart budget, fresh evidence).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use super::{ActionKind, elapsed};

/// The restart budget looks back this far, so history must reach at least as far.
pub const RESTART_WINDOW: Duration = Duration::from_secs(60 * 60);

/// The one cap on history, which the status shows whole and a new leader reads back: at a
/// one-minute cadence with a cooldown, an hour holds far fewer actions than this, and
/// restarts the budget still counts are kept even beyond it.
pub const HISTORY_LIMIT: usize = 50;

/// State carried from one evaluation to the next; the operator stores it in status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    /// Since when each pod has been at or above the critical mark without a gap.
    pub critical_since: BTreeMap<String, Timestamp>,
    /// Since when each pod has been at or above the high mark without a gap, which raising
    /// limits in place acts on.
    pub high_pods_since: BTreeMap<String, Timestamp>,
    /// The pods whose latest raise the cluster refused, while they stay high.
    pub refused_raises: BTreeMap<String, Refusal>,
    /// Since when the fleet has been in the high state (entered at `high`, left below `low`).
    pub high_since: Option<Timestamp>,
    /// Since when every pod has been below the low mark.
    pub all_low_since: Option<Timestamp>,
    /// Actions taken, or under dry run that would have been taken, oldest first.
    pub history: Vec<PastAction>,
}

/// A raise the cluster refused for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// When the raise was decided.
    pub at: Timestamp,
    /// What the cluster said.
    pub why: String,
}

/// One remembered action.
#[derive(Debug, Clone, PartialEq)]
pub struct PastAction {
    /// What was done.
    pub kind: ActionKind,
    /// The pods it was about (evicted, alerted on, or critical at a rolling restart).
    pub pods: Vec<String>,
    /// When it was decided.
    pub at: Timestamp,
    /// Only reported, under dry run; live mode ignores these entries.
    pub dry_run: bool,
    /// Why, in words: the engine's reasons at the time.
    pub reason: String,
}

impl PastAction {
    /// Restarts this action counts against the budget: one per evicted pod, one per rolling restart.
    pub fn restarts(&self) -> u32 {
        self.kind.restarts(self.pods.len())
    }

    /// True when this action acted on `pod` (a rolling restart acts on every pod).
    fn touched(&self, pod: &str) -> bool {
        self.kind == ActionKind::RollingRestart || self.pods.iter().any(|p| p == pod)
    }
}

impl Memory {
    /// Drops what no rule can need any more: entries older than `keep_for`, then
    /// the oldest entries beyond [`HISTORY_LIMIT`] that are neither the newest
    /// of their kind nor restarts the budget still counts.
    pub(super) fn forget(&mut self, now: Timestamp, keep_for: Duration) {
        self.history
            .retain(|entry| elapsed(entry.at, now) <= keep_for);
        self.cap(now);
    }

    /// Remembers an action that was carried out or reported, within the cap.
    pub(super) fn record(&mut self, action: PastAction) {
        let now = action.at;
        self.history.push(action);
        self.cap(now);
    }

    /// Drops the oldest entries beyond [`HISTORY_LIMIT`] that are neither the newest of
    /// their kind nor restarts the budget still counts.
    fn cap(&mut self, now: Timestamp) {
        while self.history.len() > HISTORY_LIMIT {
            let needed = |i: usize| {
                let entry = &self.history[i];
                let counted = entry.restarts() > 0 && elapsed(entry.at, now) < RESTART_WINDOW;
                let newest = !self.history[i + 1..]
                    .iter()
                    .any(|later| later.kind == entry.kind && later.dry_run == entry.dry_run);
                counted || newest
            };
            match (0..self.history.len()).find(|&i| !needed(i)) {
                Some(i) => {
                    self.history.remove(i);
                }
                None => break,
            }
        }
    }
}

/// The history as one mode sees it: live mode ignores dry-run entries, since
/// nothing happened to the cluster; dry run counts both, to mirror live mode.
pub(super) struct History<'a> {
    entries: &'a [PastAction],
    include_dry_run: bool,
}

impl<'a> History<'a> {
    pub fn new(memory: &'a Memory, dry_run: bool) -> Self {
        Self {
            entries: &memory.history,
            include_dry_run: dry_run,
        }
    }

    fn relevant(&self) -> impl Iterator<Item = &'a PastAction> + '_ {
        self.entries
            .iter()
            .filter(|entry| self.include_dry_run || !entry.dry_run)
    }

    /// The latest disruptive action.
    pub fn last_disruptive(&self) -> Option<&'a PastAction> {
        self.relevant()
            .filter(|entry| entry.kind.is_disruptive())
            .max_by_key(|entry| entry.at)
    }

    /// When an action of one of these kinds was last taken.
    pub fn last(&self, kinds: &[ActionKind]) -> Option<Timestamp> {
        self.relevant()
            .filter(|entry| kinds.contains(&entry.kind))
            .map(|entry| entry.at)
            .max()
    }

    /// When an action of one of these kinds last acted on `pod`.
    pub fn last_on(&self, kinds: &[ActionKind], pod: &str) -> Option<Timestamp> {
        self.relevant()
            .filter(|entry| kinds.contains(&entry.kind) && entry.touched(pod))
            .map(|entry| entry.at)
            .max()
    }

    /// Restarts in the sliding hour that ends now.
    pub fn restarts_in_window(&self, now: Timestamp) -> u32 {
        self.relevant()
            .filter(|entry| elapsed(entry.at, now) < RESTART_WINDOW)
            .map(PastAction::restarts)
            .fold(0, u32::saturating_add)
    }
}
