//! The controller: watches MemoryPolicies and their target Deployments,
//! evaluates each policy every `interval`, acts, and reports through status
//! conditions and Events. `reconcile` is thin: gather, decide, act, report.

mod recall;

use std::{future::Future, sync::Arc, time::Duration};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action as Requeue,
        events::{EventType, Recorder, Reporter},
        predicates,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde_json::json;
use tracing::{Instrument, debug, info_span, instrument, warn};

use self::recall::Recall;
use crate::{
    Error, Result, adapt,
    metrics::Metrics,
    prometheus::{Prometheus, build_query, samples_from},
    respond, status,
};
use memory_policy_api::crd::{
    MemoryPolicy, MemoryPolicyStatus,
    names::{condition, event, reason, state},
};
use memory_policy_api::{reading, validate::validate};

/// After a failed reconcile, try again this soon: long enough not to hammer
/// the API server, short enough that a 409 or a blip heals quickly.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);

/// The field manager of the status the operator applies.
pub const FIELD_MANAGER: &str = "memory-operator";

/// How often to forget deleted policies: their leftovers are a few kB each, so only a
/// cluster that creates and deletes policies all day would notice, and then only slowly.
const FORGET_EVERY: Duration = Duration::from_secs(600);

/// What the controller shares between reconciles.
pub struct Context {
    pub client: Client,
    /// Like `client` but without the retry on 429: a PodDisruptionBudget's
    /// refusal is an answer to report now and retry next interval, not a blip
    /// to retry inside one reconcile for minutes.
    pub(crate) evictions: Client,
    pub prometheus: Prometheus,
    /// Folds repeated notices (held back, invalid) into Event series.
    pub recorder: Recorder,
    /// The source named on Events; each action taken gets an Event of its own.
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    recall: Recall,
}

impl Context {
    /// A context for the cluster `config` names, whose Events name `reporter` as their source.
    pub fn new(
        config: kube::Config,
        prometheus: Prometheus,
        metrics: Arc<Metrics>,
        reporter: Reporter,
    ) -> Result<Arc<Context>> {
        let mut no_retry = config.clone();
        no_retry.default_retry = false;
        let evictions =
            Client::try_from(no_retry).map_err(Error::kube("creating the Kubernetes client"))?;
        let client =
            Client::try_from(config).map_err(Error::kube("creating the Kubernetes client"))?;
        Ok(Arc::new(Context {
            recorder: Recorder::new(client.clone(), reporter.clone()),
            reporter,
            client,
            evictions,
            prometheus,
            metrics,
            recall: Recall::default(),
        }))
    }
}

/// The policies the operator serves: those of `namespace`, or of every namespace. As untyped
/// objects, so that one the operator cannot read is reported rather than stopping the rest.
fn policies_api(client: Client, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<MemoryPolicy>(&());
    match namespace {
        Some(namespace) => Api::namespaced_with(client, namespace, &resource),
        None => Api::all_with(client, &resource),
    }
}

/// Fails with [`Error::CrdMissing`] unless the API serves MemoryPolicies (of `namespace`, or
/// of every namespace) to this identity. Only metadata is read, so a stored policy the operator
/// cannot read does not stop it.
pub async fn ensure_crd(client: &Client, namespace: Option<&str>) -> Result<()> {
    policies_api(client.clone(), namespace)
        .list_metadata(&ListParams::default().limit(1))
        .await
        .map_err(Error::CrdMissing)?;
    Ok(())
}

/// Runs the controller until `shutdown` resolves; fails fast when the CRD is missing.
/// With `namespace`, only that namespace's policies and Deployments are watched.
///
/// Policies are watched untyped and read one by one, so that one the operator cannot read
/// (stored under an older schema, say) is reported on its own status instead of failing
/// every list and watch, and with them every other policy.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let resource = ApiResource::erase::<MemoryPolicy>(&());
    let client = ctx.client.clone();
    ensure_crd(&client, namespace).await?;
    let policies = policies_api(client.clone(), namespace);
    let deployments: Api<Deployment> = match namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
    };
    let writer = reflector::store::Writer::new(resource.clone());
    let store = writer.as_reader();
    // The store sees every change; a reconcile only a new generation (a change of the spec)
    // or a new object: the operator's own status writes do not wake the policy. It is
    // evaluated again every interval, and when its Deployment changes.
    let changed = watcher(policies, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    let controller = Controller::for_stream_with(changed, store.clone(), resource.clone());
    let forget_deleted = forget_deleted(store.clone(), ctx.clone());
    let controller = controller
        .watches(deployments, watcher::Config::default(), move |deployment| {
            let (namespace, name) = (deployment.namespace(), deployment.name_any());
            store
                .state()
                .into_iter()
                .filter(|p| {
                    p.namespace() == namespace
                        && p.data["spec"]["targetRef"]["name"].as_str() == Some(&name)
                })
                .map(|p| ObjectRef::from_obj_with(&*p, resource.clone()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((policy, _)) => debug!(policy = %policy, "reconciled"),
                Err(error) => warn!(%error, "reconcile failed"),
            }
        })
        .instrument(info_span!("controller"));
    tokio::select! {
        () = controller => {}
        () = forget_deleted => {}
    }
    Ok(())
}

/// Every [`FORGET_EVERY`], drops what the context keeps of policies that no longer exist.
async fn forget_deleted(store: Store<DynamicObject>, ctx: Arc<Context>) {
    let mut ticks = tokio::time::interval(FORGET_EVERY);
    loop {
        ticks.tick().await;
        let live = store
            .state()
            .iter()
            .map(|p| ObjectRef::new(&p.name_any()).within(&p.namespace().unwrap_or_default()))
            .collect();
        ctx.recall.retain(&live);
    }
}

#[instrument(skip_all, fields(policy = %object.name_any(), namespace = object.namespace().unwrap_or_default()))]
async fn reconcile(object: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Requeue> {
    let _timer = ctx.metrics.reconcile();
    match read_policy(&object) {
        Ok(policy) => evaluate(&policy, &ctx).await,
        Err(problem) => {
            report_unreadable(&object, &problem, &ctx).await?;
            // Nothing to evaluate until the object changes, which wakes us anyway.
            Ok(Requeue::await_change())
        }
    }
}

/// The typed policy, or what makes its spec unreadable, with the path of the field at fault.
/// Read in place, without copying the object. A status this operator cannot read (one an
/// older version wrote, say) is dropped with a warning rather than keeping the policy from
/// being evaluated: the next status write replaces it.
fn read_policy(object: &DynamicObject) -> Result<MemoryPolicy, String> {
    let spec = read_part(&object.data["spec"], "spec")?;
    let status = match &object.data["status"] {
        serde_json::Value::Null => None,
        status => read_part(status, "status")
            .inspect_err(|problem| warn!(%problem, "ignoring an unreadable status"))
            .ok(),
    };
    let mut policy = MemoryPolicy::new(&object.name_any(), spec);
    policy.metadata = object.metadata.clone();
    policy.status = status;
    Ok(policy)
}

fn read_part<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    part: &str,
) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = match error.path().to_string() {
            root if root == "." => part.to_owned(),
            path => format!("{part}.{path}"),
        };
        format!("{path}: {}", error.into_inner())
    })
}

/// `Ready=False` for a policy that cannot be read, naming the field; the rest of its status
/// (its history above all) stays as it was.
async fn report_unreadable(object: &DynamicObject, problem: &str, ctx: &Context) -> Result<()> {
    let now = Timestamp::now();
    let key = ObjectRef::new(&object.name_any()).within(&object.namespace().unwrap_or_default());
    let uid = object.metadata.uid.as_deref();
    let cached = serde_json::from_value::<MemoryPolicyStatus>(object.data["status"].clone()).ok();
    let mut status = ctx.recall.status(&key, uid, cached.as_ref());
    let message = format!("the operator cannot read this policy: {problem}");
    status::set_condition(
        &mut status.conditions,
        condition::READY,
        false,
        reason::UNREADABLE,
        &message,
        object.metadata.generation,
        now,
    );
    status.state = Some(state::INVALID.into());
    let reference = object.object_ref(&ApiResource::erase::<MemoryPolicy>(&()));
    let notice = respond::notice(EventType::Warning, event::INVALID_POLICY, "Read", &message);
    respond::publish(ctx, &reference, notice).await;
    write_status(ctx, &key, uid, cached.as_ref(), status).await
}

async fn evaluate(policy: &MemoryPolicy, ctx: &Context) -> Result<Requeue> {
    let namespace = policy.namespace().unwrap_or_default();
    let interval: Duration = policy.spec.interval.into();
    let key = ObjectRef::from_obj(policy);
    let uid = policy.metadata.uid.as_deref();
    let now = Timestamp::now();
    let cached = policy.status.as_ref();
    let mut status = ctx.recall.status(&key, uid, cached);
    let generation = policy.meta().generation;

    if let Err(errors) = validate(&policy.spec) {
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        status::set_condition(
            &mut status.conditions,
            condition::READY,
            false,
            reason::INVALID_POLICY,
            &message,
            generation,
            now,
        );
        status.state = Some(state::INVALID.into());
        let notice = respond::notice(
            EventType::Warning,
            event::INVALID_POLICY,
            "Validate",
            &message,
        );
        respond::publish(ctx, &policy.object_ref(&()), notice).await;
        write_status(ctx, &key, uid, cached, status).await?;
        return Ok(Requeue::requeue(interval));
    }

    let target = &policy.spec.target_ref.name;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(deployment) = deployments
        .get_opt(target)
        .await
        .map_err(Error::kube(format!(
            "reading Deployment {namespace}/{target}"
        )))?
    else {
        let message = format!("Deployment {namespace}/{target} not found");
        status::set_condition(
            &mut status.conditions,
            condition::READY,
            false,
            reason::TARGET_NOT_FOUND,
            &message,
            generation,
            now,
        );
        status.state = Some(state::TARGET_MISSING.into());
        write_status(ctx, &key, uid, cached, status).await?;
        return Ok(Requeue::requeue(interval));
    };

    let container = reading::container(&policy.spec);
    let pods = list_pods(&ctx.client, &namespace, &deployment).await?;
    let workload = adapt::workload(&deployment, &pods, container);
    let (samples, metrics_error) = read_samples(ctx, policy, &namespace, &pods, &workload).await;
    let engine = reading::engine_policy(&policy.spec);
    let memory = ctx.recall.memory(&key, uid, &status);
    let mut decision = memory_engine::decide(&engine, &samples, &workload, &memory, now);
    if let Some(error) = &metrics_error {
        decision.metrics_message = error.clone();
    }
    ctx.metrics.decided(respond::decision_kind(&decision));

    if let Some(outcome) = respond::act(ctx, policy, &deployment, container, &decision, now).await {
        decision.settle(&outcome);
    }
    ctx.recall.evaluated(&key, uid, decision.memory.clone());

    status::fill(
        &mut status,
        &status::Evaluated {
            policy: &engine,
            samples: &samples,
            workload: &workload,
            decision: &decision,
            generation,
            now,
        },
    );
    status.last_evaluation_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
    write_status(ctx, &key, uid, cached, status).await?;
    Ok(Requeue::requeue(interval))
}

fn error_policy(object: Arc<DynamicObject>, error: &Error, ctx: Arc<Context>) -> Requeue {
    warn!(policy = %object.name_any(), %error, "reconcile failed; retrying");
    ctx.metrics.reconcile_failed(error.metric_label());
    Requeue::requeue(RETRY_AFTER_ERROR)
}

/// The Deployment's pods, by its label selector.
async fn list_pods(client: &Client, namespace: &str, deployment: &Deployment) -> Result<Vec<Pod>> {
    let selector = deployment
        .spec
        .selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::kube(format!(
            "listing the pods of {namespace}/{}",
            deployment.name_any()
        )))?;
    Ok(list.items)
}

/// One Prometheus query, mapped to the current pods; an error leaves no samples.
async fn read_samples(
    ctx: &Context,
    policy: &MemoryPolicy,
    namespace: &str,
    pods: &[Pod],
    workload: &memory_engine::Workload,
) -> (Vec<memory_engine::Sample>, Option<String>) {
    let query = match build_query(&policy.spec, namespace) {
        Ok(query) => query,
        Err(error) => return (Vec::new(), Some(error.to_string())),
    };
    match ctx.prometheus.query(&policy.spec, &query).await {
        Ok((data, took)) => {
            ctx.metrics.queried(Some(took.as_secs_f64()));
            let container = policy
                .spec
                .limits
                .as_ref()
                .and_then(|l| l.container.as_deref());
            let limits = adapt::pod_limits(pods, container);
            (samples_from(&query, &data, &workload.pods, &limits), None)
        }
        Err(error) => {
            ctx.metrics.queried(None);
            (Vec::new(), Some(error.to_string()))
        }
    }
}

/// Applies `status` server-side as [`FIELD_MANAGER`], the one owner of the status: what
/// the new status no longer has (`maxUsage` without metrics, say) is removed, and whatever
/// another writer changed is taken back. Writes nothing when the cache already shows it, so
/// a policy that is invalid, unreadable or missing its target, which is not evaluated, is
/// not written every interval; when the cache lags behind this process's last write, the
/// same status is applied again, which changes nothing.
async fn write_status(
    ctx: &Context,
    key: &ObjectRef<MemoryPolicy>,
    uid: Option<&str>,
    cached: Option<&MemoryPolicyStatus>,
    status: MemoryPolicyStatus,
) -> Result<()> {
    if cached == Some(&status) {
        debug!("status unchanged; not writing it");
        return Ok(());
    }
    let namespace = key.namespace.as_deref().unwrap_or_default();
    let resource = ApiResource::erase::<MemoryPolicy>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, &resource);
    let applied = json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": { "name": key.name },
        "status": status,
    });
    api.patch_status(
        &key.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(applied),
    )
    .await
    .map_err(Error::kube(format!("writing the status of {}", key.name)))?;
    ctx.recall.written(key, uid, status);
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn object(spec: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "shortener.dev/v1alpha1",
            "kind": "MemoryPolicy",
            "metadata": {"name": "guard", "namespace": "shop", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn a_readable_policy_is_read_whole() {
        let policy = read_policy(&object(json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "thresholds": {"critical": 97},
        })))
        .unwrap();
        assert_eq!(policy.spec.target_ref.name, "web");
        assert_eq!(policy.spec.thresholds.critical, 97);
        assert_eq!(policy.metadata.uid.as_deref(), Some("u1"));
    }

    #[test]
    fn an_unreadable_policy_is_reported_by_the_path_of_the_field_at_fault() {
        let problem = read_policy(&object(json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "onCritical": "Explode",
        })))
        .unwrap_err();
        assert!(
            problem.starts_with("spec.onCritical: unknown variant `Explode`, expected one of"),
            "{problem}"
        );
        let problem = read_policy(&object(json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "thresholds": {"critical": "very"},
        })))
        .unwrap_err();
        assert!(
            problem.starts_with("spec.thresholds.critical: invalid type"),
            "{problem}"
        );
        let mut missing = object(json!({}));
        missing.data.as_object_mut().unwrap().remove("spec");
        let problem = read_policy(&missing).unwrap_err();
        assert!(problem.starts_with("spec: invalid type: null"), "{problem}");
    }

    #[test]
    fn an_unreadable_status_is_dropped_and_the_policy_still_read() {
        let mut policy = object(json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        }));
        policy.data["status"] = json!({"history": "not a list"});
        let policy = read_policy(&policy).unwrap();
        assert_eq!(policy.status, None);
        assert_eq!(policy.spec.target_ref.name, "web");
    }
}
