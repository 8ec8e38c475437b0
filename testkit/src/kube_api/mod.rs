//! An in-process, stateful fake of the Kubernetes API server, for running the real kube-rs
//! client, `watcher` and `Controller` against in tests, without a cluster.
//!
//! Only the closed-loop suite (`tests/`, crate `e2e`) and the operator benchmark still use it;
//! the operator's own tests run on the real control plane ([`crate::ControlPlane`]). It goes
//! once the closed loop moves onto the real control plane with the process kubelet.
//!
//! It serves plain HTTP on `127.0.0.1:0` inside the test's tokio runtime and keeps every
//! object as JSON, for the few kinds in [`registry`]. The test side ([`FakeApiServer`]) reads
//! and writes the same store directly, playing the cluster's own controllers.
//!
//! Faithful: URL layout; `Status` bodies and reasons for every failure; one global
//! `resourceVersion` counter; `uid`, `creationTimestamp` and `generation` (bumped only when
//! `.spec` changes); writes that change nothing are not writes (no new version, no event);
//! optimistic concurrency on PUT and PATCH; custom resources refuse a PUT without
//! `resourceVersion`; `/status` subresources (writes to the object keep the stored status, and
//! status is dropped on create); `/scale` on Deployments; finalizers and `deletionTimestamp`;
//! label selectors (equality, set and existence terms) and field selectors on lists and
//! watches, with objects that stop matching sent as `DELETED`; watches replaying from a
//! `resourceVersion`, streaming lists (`sendInitialEvents`), bookmarks, `timeoutSeconds`, and
//! `410 Expired` after [`FakeApiServer::compact`]; metadata-only requests
//! (`as=PartialObjectMetadata`); the eviction rule of the PodDisruptionBudget controller.
//!
//! Simplified: lists ignore `limit`/`continue` and `resourceVersion`, and always return the
//! latest state; strategic merge patch is a JSON merge patch (lists are replaced, not merged by
//! key, and `$patch` directives are not understood); server-side apply is a JSON merge patch
//! that creates the object if missing (no field ownership, so no apply conflicts, and no
//! `managedFields`); JSON patch and `dryRun` are refused; no validation, defaulting,
//! admission, namespaces' existence, garbage collection or graceful pod deletion (a deleted
//! pod is gone at once); evictions ignore `observedGeneration` and pods still `Pending` skip
//! their budget, as in the real API. The server never creates or changes objects on its own:
//! a test rig plays the Deployment and disruption controllers through the test-side API.

mod http;
mod object;
mod path;
mod registry;
mod selector;
mod status;
mod store;
mod subresource;
mod verbs;
mod watch;

pub use object::merge_patch;

use std::{
    net::Ipv4Addr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use serde_json::Value;
use tokio::sync::{broadcast, watch as signal};
use tracing::Instrument;

use crate::{Error, Result};
use object::meta_mut;
use registry::ResourceType;
use status::Failure;
use store::{Scope, Store};

/// What a write did to an object, as a watch reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    /// The watch event type: `ADDED`, `MODIFIED` or `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// One write to the store, from a client or from the test; `namespace` is empty for
/// cluster-scoped kinds.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub change_type: ChangeType,
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The object as written (for `Deleted`, as it was last, with the deletion's version).
    pub object: Value,
}

/// Makes the next matching requests fail.
#[derive(Debug)]
struct Fault {
    method: String,
    path_contains: String,
    status: u16,
    remaining: usize,
}

/// What the HTTP side and the test side share.
#[derive(Debug)]
pub(crate) struct Shared {
    store: Mutex<Store>,
    requests: Mutex<Vec<(String, String)>>,
    faults: Mutex<Vec<Fault>>,
    /// Turns true when the last handle is dropped; watches and the server then stop.
    shutdown: signal::Receiver<bool>,
}

/// A panicking test thread must not take the whole fake down with it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// Logs the request, then takes an injected failure for it, if one matches.
    pub(crate) fn admit(&self, method: &str, path_and_query: &str) -> Option<Failure> {
        lock(&self.requests).push((method.to_owned(), path_and_query.to_owned()));
        let mut faults = lock(&self.faults);
        let index = faults.iter().position(|f| {
            (f.method == "*" || f.method.eq_ignore_ascii_case(method))
                && path_and_query.contains(&f.path_contains)
        })?;
        let fault = &mut faults[index];
        fault.remaining -= 1;
        let failure = Failure::for_code(
            fault.status,
            format!("injected failure for {method} {path_and_query}"),
        );
        if fault.remaining == 0 {
            faults.remove(index);
        }
        Some(failure)
    }
}

/// Stops the server when the last handle goes.
#[derive(Debug)]
struct Running(signal::Sender<bool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// A running fake API server; clones share it, and it stops when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct FakeApiServer {
    shared: Arc<Shared>,
    url: String,
    _running: Arc<Running>,
}

impl FakeApiServer {
    /// Starts an empty server on a free loopback port, served by the current tokio runtime.
    pub async fn start() -> Result<FakeApiServer> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(Error::Port)?;
        let address = listener.local_addr().map_err(Error::Port)?;
        let (stop, shutdown) = signal::channel(false);
        let shared = Arc::new(Shared {
            store: Mutex::default(),
            requests: Mutex::default(),
            faults: Mutex::default(),
            shutdown: shutdown.clone(),
        });
        let mut stopped = shutdown;
        let server =
            axum::serve(listener, http::app(shared.clone())).with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            });
        let span = tracing::info_span!("fake_api_server", %address);
        tokio::spawn(
            async move {
                if let Err(error) = server.await {
                    tracing::warn!(%error, "the fake API server stopped");
                }
            }
            .instrument(span),
        );
        Ok(FakeApiServer {
            shared,
            url: format!("http://{address}"),
            _running: Arc::new(Running(stop)),
        })
    }

    /// The base URL, such as `http://127.0.0.1:41234`, for `kube::Config::new`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Creates or replaces the object named by its `apiVersion`, `kind`, `metadata.namespace`
    /// (default `default`) and `metadata.name`, status included, as the cluster's controllers
    /// would; returns it as stored. Panics if the fake does not serve the kind or there is no
    /// name.
    pub fn apply(&self, mut object: Value) -> Value {
        let rt = resource(
            object["apiVersion"].as_str().unwrap_or_default(),
            object["kind"].as_str().unwrap_or_default(),
        );
        let namespace = match (rt.namespaced, object::meta(&object, "namespace")) {
            (false, _) => "",
            (true, namespace) => namespace.unwrap_or("default"),
        }
        .to_owned();
        let name = object::meta(&object, "name")
            .unwrap_or_else(|| panic!("apply needs metadata.name: {object}"))
            .to_owned();
        meta_mut(&mut object).remove("resourceVersion");
        let mut store = self.shared.store();
        let written = if store.get(rt, &namespace, &name).is_some() {
            store.update(rt, &namespace, &name, object, Scope::Everything)
        } else {
            store.create(rt, &namespace, object, Scope::Everything)
        };
        written.unwrap_or_else(|f| panic!("apply {} {namespace}/{name}: {}", rt.kind, f.message))
    }

    /// The stored object, if any; `namespace` is ignored for cluster-scoped kinds.
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let rt = resource(api_version, kind);
        let namespace = if rt.namespaced { namespace } else { "" };
        self.shared.store().get(rt, namespace, name).cloned()
    }

    /// The stored objects of a kind, in one namespace or all, ordered by namespace and name.
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let rt = resource(api_version, kind);
        self.shared.store().list(rt, namespace).cloned().collect()
    }

    /// Removes the object at once, finalizers or not (emitting `DELETED`); returns it.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let rt = resource(api_version, kind);
        let namespace = if rt.namespaced { namespace } else { "" };
        self.shared.store().delete(rt, namespace, name, true).ok()
    }

    /// Every HTTP request so far, as (method, path and query), oldest first.
    pub fn requests(&self) -> Vec<(String, String)> {
        lock(&self.shared.requests).clone()
    }

    /// The paths of the requests so far with `method` whose path contains `part`, oldest first.
    pub fn requests_to(&self, method: &str, part: &str) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|(m, p)| m == method && p.contains(part))
            .map(|(_, p)| p)
            .collect()
    }

    /// Makes the next `times` requests with this method (`"*"` for any) whose path and query
    /// contain `path_contains` fail with `status` and a matching `Status` body.
    pub fn fail_next(&self, method: &str, path_contains: &str, status: u16, times: usize) {
        if times > 0 {
            lock(&self.shared.faults).push(Fault {
                method: method.to_owned(),
                path_contains: path_contains.to_owned(),
                status,
                remaining: times,
            });
        }
    }

    /// Every write from now on, from clients and from the test alike.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.shared.store().subscribe()
    }

    /// Every write so far (since the last [`compact`](Self::compact)), oldest first.
    pub fn history(&self) -> Vec<Change> {
        self.shared.store().history().cloned().collect()
    }

    /// The Kubernetes Events (`events.k8s.io/v1` and core `v1`) about objects of `kind`,
    /// in the order they were last written.
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        let store = self.shared.store();
        let mut events: Vec<Value> = ["events.k8s.io/v1", "v1"]
            .into_iter()
            .flat_map(|api_version| store.list(resource(api_version, "Event"), None))
            .filter(|e| e["regarding"]["kind"] == kind || e["involvedObject"]["kind"] == kind)
            .cloned()
            .collect();
        let rv =
            |e: &Value| object::meta(e, "resourceVersion").and_then(|rv| rv.parse::<u64>().ok());
        events.sort_by_key(rv);
        events
    }

    /// The reasons of the Events about objects of `kind`, in the order they were last written.
    pub fn event_reasons(&self, kind: &str) -> Vec<String> {
        self.events_of(kind)
            .iter()
            .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Forgets the event log, as etcd compaction does: watches resuming from an older
    /// `resourceVersion` get `410 Expired` and must list again.
    pub fn compact(&self) {
        self.shared.store().compact();
    }
}

fn resource(api_version: &str, kind: &str) -> &'static ResourceType {
    ResourceType::by_kind(api_version, kind)
        .unwrap_or_else(|| panic!("the fake API server does not serve {api_version} {kind}"))
}
