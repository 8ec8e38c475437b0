//! The objects, the global `resourceVersion` counter and the event log every watch reads.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use super::{
    Change, ChangeType,
    object::{has_finalizers, meta, meta_mut, name_suffix, new_uid, now},
    registry::ResourceType,
    status::Failure,
};

/// How many changes a slow [`broadcast`] subscriber may fall behind before it misses some.
const CHANGE_BUFFER: usize = 4096;

/// Which parts of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// A write to the object itself: `.status` is kept as stored if the kind has `/status`.
    Object,
    /// A write to `/status`: only `.status` changes.
    Status,
    /// A test's own write: everything changes, as the cluster's controllers would do it.
    Everything,
}

/// One write, as the watches replay it.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) rv: u64,
    pub(crate) rt: &'static ResourceType,
    pub(crate) change: Change,
    /// The object before a `Modified` change, so watches with selectors can tell an object
    /// that stopped matching (sent as `DELETED`) from one that started (sent as `ADDED`).
    pub(crate) old: Option<Value>,
}

/// Metadata only the server writes; whatever a client sends for these is ignored.
const SERVER_OWNED: [&str; 5] = [
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "resourceVersion",
];

type Key = (&'static str, &'static str, String, String);

fn key(rt: &'static ResourceType, namespace: &str, name: &str) -> Key {
    (
        rt.api_version,
        rt.kind,
        namespace.to_owned(),
        name.to_owned(),
    )
}

/// Every object of every kind, the write counter and the full log of changes.
#[derive(Debug)]
pub(crate) struct Store {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    log: Vec<Entry>,
    /// Events at or below this `resourceVersion` were compacted away.
    floor: u64,
    changes: broadcast::Sender<Change>,
    latest: watch::Sender<u64>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            objects: BTreeMap::new(),
            rv: 0,
            log: Vec::new(),
            floor: 0,
            changes: broadcast::channel(CHANGE_BUFFER).0,
            latest: watch::channel(0).0,
        }
    }
}

impl Store {
    /// The `resourceVersion` of the latest write.
    pub(crate) fn rv(&self) -> u64 {
        self.rv
    }

    pub(crate) fn get(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
    ) -> Option<&Value> {
        self.objects.get(&key(rt, namespace, name))
    }

    /// The objects of a kind, in one namespace or all, ordered by namespace and name.
    pub(crate) fn list<'a>(
        &'a self,
        rt: &'static ResourceType,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .iter()
            .filter(move |((av, kind, ns, _), _)| {
                (*av, *kind) == (rt.api_version, rt.kind) && namespace.is_none_or(|n| n == ns)
            })
            .map(|(_, object)| object)
    }

    /// Stores a new object, stamping the metadata the API server owns.
    pub(crate) fn create(
        &mut self,
        rt: &'static ResourceType,
        namespace: &str,
        mut object: Value,
        scope: Scope,
    ) -> Result<Value, Failure> {
        let name = match (meta(&object, "name"), meta(&object, "generateName")) {
            (Some(name), _) => name.to_owned(),
            (None, Some(prefix)) => format!("{prefix}{}", name_suffix()),
            (None, None) => {
                let problem = "metadata.name: Required value: name or generateName is required";
                return Err(Failure::invalid(rt, "", problem));
            }
        };
        if self.get(rt, namespace, &name).is_some() {
            return Err(Failure::already_exists(rt, &name));
        }
        if scope == Scope::Object && rt.status_subresource {
            object.as_object_mut().map(|o| o.remove("status"));
        }
        stamp_identity(rt, namespace, &name, &mut object);
        let metadata = meta_mut(&mut object);
        metadata.insert("uid".into(), json!(new_uid()));
        metadata.insert("creationTimestamp".into(), json!(now()));
        metadata.insert("generation".into(), json!(1));
        metadata.remove("deletionTimestamp");
        metadata.remove("deletionGracePeriodSeconds");
        let written = self.record(rt, ChangeType::Added, object, None);
        self.objects
            .insert(key(rt, namespace, &name), written.clone());
        Ok(written)
    }

    /// Replaces a stored object with `new`, within `scope`; a stale `resourceVersion` in `new`
    /// is a conflict. A write that changes nothing is not a write: no new version, no event.
    pub(crate) fn update(
        &mut self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        new: Value,
        scope: Scope,
    ) -> Result<Value, Failure> {
        let old = self
            .get(rt, namespace, name)
            .ok_or_else(|| Failure::not_found(rt, name))?
            .clone();
        if meta(&new, "resourceVersion").is_some_and(|rv| Some(rv) != meta(&old, "resourceVersion"))
        {
            return Err(Failure::conflict(rt, name));
        }
        let mut next = match scope {
            Scope::Status => with_status_of(old.clone(), &new),
            Scope::Object if rt.status_subresource => with_status_of(new, &old),
            Scope::Object | Scope::Everything => new,
        };
        stamp_identity(rt, namespace, name, &mut next);
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        let generation = generation + i64::from(next.get("spec") != old.get("spec"));
        let metadata = meta_mut(&mut next);
        for field in SERVER_OWNED {
            match old["metadata"].get(field) {
                Some(value) => metadata.insert(field.into(), value.clone()),
                None => metadata.remove(field),
            };
        }
        metadata.insert("generation".into(), json!(generation));
        let finalized = meta(&next, "deletionTimestamp").is_some() && !has_finalizers(&next);
        if next == old && !finalized {
            return Ok(old);
        }
        if finalized {
            self.objects.remove(&key(rt, namespace, name));
            Ok(self.record(rt, ChangeType::Deleted, next, None))
        } else {
            let written = self.record(rt, ChangeType::Modified, next, Some(old));
            self.objects
                .insert(key(rt, namespace, name), written.clone());
            Ok(written)
        }
    }

    /// Deletes an object. One with finalizers only gets a `deletionTimestamp` (and is deleted
    /// once an update empties them) unless `force`, which removes it at once.
    pub(crate) fn delete(
        &mut self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        force: bool,
    ) -> Result<Value, Failure> {
        let stored = self
            .get(rt, namespace, name)
            .ok_or_else(|| Failure::not_found(rt, name))?;
        if has_finalizers(stored) && !force {
            if meta(stored, "deletionTimestamp").is_some() {
                return Ok(stored.clone());
            }
            let old = stored.clone();
            let mut marked = old.clone();
            let metadata = meta_mut(&mut marked);
            metadata.insert("deletionTimestamp".into(), json!(now()));
            metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
            let written = self.record(rt, ChangeType::Modified, marked, Some(old));
            self.objects
                .insert(key(rt, namespace, name), written.clone());
            return Ok(written);
        }
        let object = self
            .objects
            .remove(&key(rt, namespace, name))
            .expect("found just above");
        Ok(self.record(rt, ChangeType::Deleted, object, None))
    }

    /// The log after `rv`, or `Err(floor)` if events after `rv` were compacted away.
    pub(crate) fn entries_after(&self, rv: u64) -> Result<&[Entry], u64> {
        if rv < self.floor {
            return Err(self.floor);
        }
        Ok(&self.log[self.log.partition_point(|e| e.rv <= rv)..])
    }

    /// Forgets the event log, so watches from any older `resourceVersion` get 410 Gone.
    pub(crate) fn compact(&mut self) {
        self.log.clear();
        self.floor = self.rv;
    }

    /// Every change still in the log, oldest first.
    pub(crate) fn history(&self) -> impl Iterator<Item = &Change> {
        self.log.iter().map(|entry| &entry.change)
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// A receiver that wakes whenever the `resourceVersion` moves; for watches.
    pub(crate) fn wake_on_write(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// Takes the next `resourceVersion` for a write, stamps it into `object`, and logs and
    /// announces the change; returns the object as written, for the caller to store.
    fn record(
        &mut self,
        rt: &'static ResourceType,
        change_type: ChangeType,
        mut object: Value,
        old: Option<Value>,
    ) -> Value {
        self.rv += 1;
        let rv = json!(self.rv.to_string());
        meta_mut(&mut object).insert("resourceVersion".into(), rv);
        let change = Change {
            change_type,
            api_version: rt.api_version.to_owned(),
            kind: rt.kind.to_owned(),
            namespace: meta(&object, "namespace").unwrap_or_default().to_owned(),
            name: meta(&object, "name").unwrap_or_default().to_owned(),
            object: object.clone(),
        };
        // Nobody listening is fine: tests subscribe only when they care.
        let _ = self.changes.send(change.clone());
        self.log.push(Entry {
            rv: self.rv,
            rt,
            change,
            old,
        });
        self.latest.send_replace(self.rv);
        object
    }
}

/// `target` with its `.status` taken from `source` (or without one, if `source` has none).
fn with_status_of(mut target: Value, source: &Value) -> Value {
    if let Some(object) = target.as_object_mut() {
        match source.get("status") {
            Some(status) => object.insert("status".into(), status.clone()),
            None => object.remove("status"),
        };
    }
    target
}

/// Sets what the URL decides: apiVersion, kind, name and namespace.
fn stamp_identity(rt: &ResourceType, namespace: &str, name: &str, object: &mut Value) {
    if !object.is_object() {
        *object = json!({});
    }
    object["apiVersion"] = json!(rt.api_version);
    object["kind"] = json!(rt.kind);
    let metadata = meta_mut(object);
    metadata.insert("name".into(), json!(name));
    if rt.namespaced {
        metadata.insert("namespace".into(), json!(namespace));
    } else {
        metadata.remove("namespace");
    }
}

#[cfg(test)]
mod tests;
