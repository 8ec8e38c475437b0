//! What the cluster showed while a test ran, as someone watching with `kubectl get -w` saw it:
//! every version of the policies and of the Deployments, the pods as they came and went, and
//! the Events. The watches start before the charts are installed, so nothing is missed; tests
//! read the record without waiting on the API.

use std::{
    collections::BTreeMap,
    fmt::Debug,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod, events::v1::Event};
use kube::{
    Api, Client, Resource,
    api::{ApiResource, DynamicObject},
    runtime::{WatchStreamExt, watcher},
};
use memory_policy_api::crd::MemoryPolicy;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// A pod's deletion: when the cluster first showed the pod terminating.
#[derive(Clone, Debug)]
pub struct Deletion {
    pub pod: String,
    pub at: Timestamp,
}

/// One pod as last seen.
#[derive(Clone, Debug)]
struct Seen {
    object: Value,
    deleting_since: Option<Timestamp>,
}

/// Everything seen so far.
#[derive(Debug, Default)]
pub(crate) struct Record {
    /// Every version of every MemoryPolicy, in the order seen.
    policies: Vec<Value>,
    /// Every version of every Deployment, in the order seen.
    deployments: Vec<Value>,
    /// The pods by name, and their names in the order they appeared.
    pods: BTreeMap<String, Seen>,
    pod_order: Vec<String>,
    /// The latest version of each Event, and their names in the order they appeared.
    events: BTreeMap<String, Value>,
    event_order: Vec<String>,
}

pub(crate) type SharedRecord = Arc<Mutex<Record>>;

/// A panicking test thread must not stop the watches.
pub(crate) fn lock(record: &SharedRecord) -> MutexGuard<'_, Record> {
    record.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one watch saw.
enum Seeing {
    Applied(Value),
    Deleted(Value),
}

impl Record {
    /// The latest version of policy `name`, or null if none was seen.
    pub(crate) fn policy(&self, name: &str) -> Value {
        self.policy_versions(name)
            .last()
            .cloned()
            .unwrap_or_default()
    }

    /// Every version of policy `name`, oldest first.
    pub(crate) fn policy_versions(&self, name: &str) -> Vec<Value> {
        named(&self.policies, name)
    }

    /// The names of every policy seen.
    pub(crate) fn policy_names(&self) -> std::collections::BTreeSet<String> {
        self.policies
            .iter()
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// Every version of Deployment `name`, oldest first.
    pub(crate) fn deployment_versions(&self, name: &str) -> Vec<Value> {
        named(&self.deployments, name)
    }

    /// The pods not (yet) terminating, as last seen, in the order they appeared.
    pub(crate) fn live_pods(&self) -> Vec<Value> {
        self.pod_order
            .iter()
            .filter_map(|name| self.pods.get(name))
            .filter(|seen| seen.deleting_since.is_none())
            .map(|seen| seen.object.clone())
            .collect()
    }

    /// The names of every pod seen, in the order they appeared.
    pub(crate) fn pod_names(&self) -> Vec<String> {
        self.pod_order.clone()
    }

    /// Every pod seen terminating, in the order they began to.
    pub(crate) fn deletions(&self) -> Vec<Deletion> {
        let mut deletions: Vec<Deletion> = self
            .pods
            .iter()
            .filter_map(|(name, seen)| {
                Some(Deletion {
                    pod: name.clone(),
                    at: seen.deleting_since?,
                })
            })
            .collect();
        deletions.sort_by_key(|d| d.at);
        deletions
    }

    /// The latest version of every Event, in the order they appeared.
    pub(crate) fn events(&self) -> Vec<Value> {
        self.event_order
            .iter()
            .filter_map(|name| self.events.get(name).cloned())
            .collect()
    }

    fn see_policy(&mut self, seeing: Seeing) {
        if let Seeing::Applied(object) = seeing {
            self.policies.push(object);
        }
    }

    fn see_deployment(&mut self, seeing: Seeing) {
        if let Seeing::Applied(object) = seeing {
            self.deployments.push(object);
        }
    }

    fn see_pod(&mut self, seeing: Seeing) {
        let (object, gone) = match seeing {
            Seeing::Applied(object) => (object, false),
            Seeing::Deleted(object) => (object, true),
        };
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let terminating = gone || !object["metadata"]["deletionTimestamp"].is_null();
        let seen = self.pods.entry(name.clone()).or_insert_with(|| {
            self.pod_order.push(name);
            Seen {
                object: Value::Null,
                deleting_since: None,
            }
        });
        seen.object = object;
        if terminating && seen.deleting_since.is_none() {
            seen.deleting_since = Some(Timestamp::now());
        }
    }

    fn see_event(&mut self, seeing: Seeing) {
        if let Seeing::Applied(object) = seeing {
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if self.events.insert(name.clone(), object).is_none() {
                self.event_order.push(name);
            }
        }
    }
}

/// The versions in `objects` of the object called `name`.
fn named(objects: &[Value], name: &str) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| o["metadata"]["name"] == name)
        .cloned()
        .collect()
}

/// Starts watching `namespace` into `record` until `stop` is cancelled.
pub(crate) fn start(
    client: &Client,
    namespace: &str,
    record: &SharedRecord,
    stop: &CancellationToken,
) {
    let policies: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::erase::<MemoryPolicy>(&()),
    );
    tokio::spawn(follow(
        policies,
        record.clone(),
        stop.clone(),
        Record::see_policy,
    ));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    tokio::spawn(follow(
        deployments,
        record.clone(),
        stop.clone(),
        Record::see_deployment,
    ));
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    tokio::spawn(follow(pods, record.clone(), stop.clone(), Record::see_pod));
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    tokio::spawn(follow(
        events,
        record.clone(),
        stop.clone(),
        Record::see_event,
    ));
}

/// Feeds every change `api` shows to `see` until `stop` is cancelled.
async fn follow<K>(
    api: Api<K>,
    record: SharedRecord,
    stop: CancellationToken,
    see: fn(&mut Record, Seeing),
) where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug + Send + 'static,
{
    let mut changes = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    loop {
        let change = tokio::select! {
            () = stop.cancelled() => return,
            change = changes.next() => change,
        };
        let seeing = match change {
            Some(Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object))) => {
                Seeing::Applied(as_value(&object))
            }
            Some(Ok(watcher::Event::Delete(object))) => Seeing::Deleted(as_value(&object)),
            Some(Ok(_)) => continue,
            Some(Err(error)) => {
                debug!(%error, "a watch of the record failed; retrying");
                continue;
            }
            None => return,
        };
        see(&mut lock(&record), seeing);
    }
}

fn as_value<K: Serialize>(object: &K) -> Value {
    serde_json::to_value(object).unwrap_or_default()
}
