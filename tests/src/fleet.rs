//! The processes standing for the pods, shared between the rig and the test, and the record
//! of what happened to them.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use jiff::Timestamp;
use testkit::{ChangeType, FakeApiServer};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::{NS, pod::PodProcess};

/// A pod deletion the rig saw, and when.
#[derive(Clone, Debug)]
pub struct Deletion {
    pub pod: String,
    pub at: Timestamp,
    /// The rig deleted it itself (scale-in, rolling replacement); otherwise it was evicted.
    pub by_rig: bool,
}

/// One pod: its process and whether it has answered its health check.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) process: PodProcess,
    pub(crate) ready: bool,
}

/// The processes standing for the pods, and what happened to them; shared with the test.
#[derive(Debug, Default)]
pub(crate) struct Fleet {
    pub(crate) pods: BTreeMap<String, Member>,
    /// Sequence number of the next pod name.
    pub(crate) next: u32,
    deletions: Vec<Deletion>,
    /// Pods the rig is deleting itself, so their deletion is not taken for an eviction.
    pub(crate) deleting: BTreeSet<String>,
    /// What went wrong inside the rig, for the test to report.
    problems: Vec<String>,
}

impl Fleet {
    /// The ready pods' names and base URLs, by name.
    pub(crate) fn ready(&self) -> Vec<(String, String)> {
        self.pods
            .iter()
            .filter(|(_, m)| m.ready)
            .map(|(name, m)| (name.clone(), m.process.base_url()))
            .collect()
    }

    /// A pod's resident bytes, as `/proc` has them.
    pub(crate) fn resident_bytes(&self, pod: &str) -> Option<u64> {
        self.pods.get(pod)?.process.resident_bytes()
    }

    pub(crate) fn deletions(&self) -> Vec<Deletion> {
        self.deletions.clone()
    }

    pub(crate) fn problems(&self) -> Vec<String> {
        self.problems.clone()
    }

    /// Every process, to be killed (on drop) when the cluster goes.
    pub(crate) fn take_all(&mut self) -> Vec<PodProcess> {
        std::mem::take(&mut self.pods)
            .into_values()
            .map(|m| m.process)
            .collect()
    }

    pub(crate) fn problem(&mut self, problem: String) {
        warn!(%problem, "rig problem");
        self.problems.push(problem);
    }
}

pub(crate) type SharedFleet = Arc<Mutex<Fleet>>;

/// A panicking test thread must not take the rig down with it.
pub(crate) fn lock(fleet: &SharedFleet) -> MutexGuard<'_, Fleet> {
    fleet.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records every pod deletion the moment the API makes it, apart from the rig's loop (which
/// may be busy starting a pod), until `stop` is cancelled.
pub(crate) async fn record_deletions(
    api: FakeApiServer,
    fleet: SharedFleet,
    stop: CancellationToken,
) {
    let mut changes = api.subscribe();
    drop(api);
    loop {
        let change = tokio::select! {
            () = stop.cancelled() => return,
            change = changes.recv() => change,
        };
        match change {
            Ok(change)
                if change.kind == "Pod"
                    && change.namespace == NS
                    && change.change_type == ChangeType::Deleted =>
            {
                let mut fleet = lock(&fleet);
                let by_rig = fleet.deleting.remove(&change.name);
                debug!(pod = %change.name, by_rig, "pod deleted");
                fleet.deletions.push(Deletion {
                    pod: change.name,
                    at: Timestamp::now(),
                    by_rig,
                });
            }
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => {
                lock(&fleet).problem(format!("the deletion recorder missed {missed} changes"));
            }
            Err(RecvError::Closed) => return,
        }
    }
}
