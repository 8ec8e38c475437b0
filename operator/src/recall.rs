//! What the controller remembers of each policy between evaluations: the
//! engine's memory and the status it last wrote. Entries belong to one object:
//! a policy deleted and created again under the same name (a new uid) starts
//! afresh.

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, PoisonError},
};

use kube::runtime::reflector::ObjectRef;

use crate::adapt;
use memory_engine::Memory;
use memory_policy_api::crd::{MemoryPolicy, MemoryPolicyStatus};

#[derive(Default)]
struct Entry {
    uid: Option<String>,
    memory: Option<Memory>,
    written: Option<MemoryPolicyStatus>,
}

/// Per-policy recollection, keyed by namespace and name, checked by uid.
#[derive(Default)]
pub struct Recall {
    entries: Mutex<HashMap<ObjectRef<MemoryPolicy>, Entry>>,
}

impl Recall {
    /// Runs `f` on the entry of the object `key` and `uid` name, emptied first if it was
    /// another object's.
    fn with<T>(
        &self,
        key: &ObjectRef<MemoryPolicy>,
        uid: Option<&str>,
        f: impl FnOnce(&mut Entry) -> T,
    ) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.entry(key.clone()).or_default();
        if entry.uid.as_deref() != uid {
            *entry = Entry {
                uid: uid.map(str::to_owned),
                ..Entry::default()
            };
        }
        f(entry)
    }

    /// The status to build on: the one this process last wrote, else the cached one. While
    /// this replica leads it is the only writer, and the watch cache may not yet hold its
    /// last write: building on the cache would write older history back.
    pub fn status(
        &self,
        key: &ObjectRef<MemoryPolicy>,
        uid: Option<&str>,
        cached: Option<&MemoryPolicyStatus>,
    ) -> MemoryPolicyStatus {
        self.with(key, uid, |entry| {
            entry
                .written
                .clone()
                .or_else(|| cached.cloned())
                .unwrap_or_default()
        })
    }

    /// The engine's memory; on the first evaluation, seeded from the status history, so
    /// cooldown and the restart budget survive a restart or a change of leader.
    pub fn memory(
        &self,
        key: &ObjectRef<MemoryPolicy>,
        uid: Option<&str>,
        status: &MemoryPolicyStatus,
    ) -> Memory {
        self.with(key, uid, |entry| {
            entry.memory.clone().unwrap_or_else(|| Memory {
                history: status
                    .history
                    .iter()
                    .filter_map(adapt::past_action)
                    .collect(),
                ..Memory::default()
            })
        })
    }

    /// Keeps the engine's memory after an evaluation for the next one.
    pub fn evaluated(&self, key: &ObjectRef<MemoryPolicy>, uid: Option<&str>, memory: Memory) {
        self.with(key, uid, |entry| entry.memory = Some(memory));
    }

    /// Forgets every policy but those `live` names: a deleted policy is never reconciled
    /// again, so nothing else would drop what was kept of it.
    pub fn retain(&self, live: &HashSet<ObjectRef<MemoryPolicy>>) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|key, _| live.contains(key));
    }

    /// Keeps a status that the API server accepted.
    pub fn written(
        &self,
        key: &ObjectRef<MemoryPolicy>,
        uid: Option<&str>,
        status: MemoryPolicyStatus,
    ) {
        self.with(key, uid, |entry| entry.written = Some(status));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ObjectRef<MemoryPolicy> {
        ObjectRef::new("guard").within("shop")
    }

    fn status(state: &str) -> MemoryPolicyStatus {
        MemoryPolicyStatus {
            state: Some(state.into()),
            ..MemoryPolicyStatus::default()
        }
    }

    #[test]
    fn the_status_last_written_wins_over_an_older_cached_one() {
        let recall = Recall::default();
        assert_eq!(
            recall.status(&key(), Some("a"), Some(&status("cached"))),
            status("cached")
        );
        recall.written(&key(), Some("a"), status("written"));
        assert_eq!(
            recall.status(&key(), Some("a"), Some(&status("stale"))),
            status("written")
        );
    }

    #[test]
    fn a_policy_created_again_under_the_same_name_starts_afresh() {
        let recall = Recall::default();
        recall.written(&key(), Some("a"), status("old object"));
        let remembered = Memory {
            high_since: Some(jiff::Timestamp::UNIX_EPOCH),
            ..Memory::default()
        };
        recall.evaluated(&key(), Some("a"), remembered.clone());
        assert_eq!(
            recall.memory(&key(), Some("a"), &MemoryPolicyStatus::default()),
            remembered
        );

        assert_eq!(
            recall.status(&key(), Some("b"), None),
            MemoryPolicyStatus::default()
        );
        assert_eq!(
            recall.memory(&key(), Some("b"), &MemoryPolicyStatus::default()),
            Memory::default()
        );
    }

    #[test]
    fn deleted_policies_are_forgotten() {
        let recall = Recall::default();
        let other = ObjectRef::new("other").within("shop");
        recall.written(&key(), None, status("kept"));
        recall.written(&other, None, status("dropped"));
        recall.retain(&HashSet::from([key()]));
        assert_eq!(recall.status(&key(), None, None), status("kept"));
        assert_eq!(
            recall.status(&other, None, None),
            MemoryPolicyStatus::default()
        );
    }
}
