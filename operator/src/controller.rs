//! The controller: watches MemoryPolicies and their target Deployments,
//! evaluates each policy every `interval`, acts, and reports through status
//! conditions and Events. An evaluation is a call into each step's module:
//! `gather`, the engine, `respond` (which acts and says how it ended, for the
//! engine to record), `recall`, `report`.

use std::{future::Future, sync::Arc, time::Duration};

use futures::StreamExt;
use jiff::Timestamp;
use kube::{
    Api, Client, ResourceExt,
    api::ListParams,
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action as Requeue},
        predicates,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use memory_policy_api::{
    crd::{
        MemoryPolicy,
        names::{reason, state},
    },
    reading,
    validate::validate,
};
use tracing::{Instrument, debug, info_span, instrument, warn};

use crate::{
    Error, Result,
    context::Context,
    gather::{self, Cluster},
    report::Report,
    respond, status,
    watched::Policy,
};

/// After a failed reconcile, try again this soon: long enough not to hammer
/// the API server, short enough that a 409 or a blip heals quickly.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);

/// At most this many policies are evaluated at once. Each evaluation holds a connection to
/// Prometheus and, when it writes, one to the API server, and every connection a client
/// opened stays in its pool: unbounded, the 500 evaluations of a start-up would leave 500 of
/// each behind. 32 evaluations of a few milliseconds each serve thousands of policies a second.
const CONCURRENCY: u16 = 32;

/// How often to forget deleted policies: their leftovers are a few kB each, so only a
/// cluster that creates and deletes policies all day would notice, and then only slowly.
const FORGET_EVERY: Duration = Duration::from_secs(600);

/// The policies the operator serves: those of `namespace`, or of every namespace. Read as
/// [`Policy`] views, so that one the operator cannot read is reported rather than stopping
/// the rest.
fn policies_api(client: Client, namespace: Option<&str>) -> Api<Policy> {
    match namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
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
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let client = ctx.client.clone();
    ensure_crd(&client, namespace).await?;
    let policies = policies_api(client.clone(), namespace);
    let (store, writer) = reflector::store();
    // The store sees every change; a reconcile only a new generation (a change of the spec)
    // or a new object: the operator's own status writes do not wake the policy. It is
    // evaluated again every interval, and when its Deployment changes.
    let changed = watcher(policies, watcher::Config::default())
        .default_backoff()
        .modify(|policy| {
            // Nothing reads them, and field ownership alone is larger than the rest.
            policy.metadata.managed_fields = None;
            policy.metadata.annotations = None;
        })
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    let (cluster, deployment_changes, pod_changes) = Cluster::watch(&client, namespace);
    // A change of a Deployment wakes the policies that target it.
    let (wake, woken) = futures::channel::mpsc::unbounded();
    let targets = store.clone();
    let deployments = deployment_changes
        .for_each(move |changed| {
            if let Ok(deployment) = changed {
                let (namespace, name) = (deployment.namespace(), deployment.name_any());
                for policy in targets.state().iter().filter(|p| {
                    p.namespace() == namespace
                        && p.spec.as_ref().is_ok_and(|s| s.target_ref.name == name)
                }) {
                    let _ = wake.unbounded_send(ObjectRef::from_obj(&**policy));
                }
            }
            async {}
        })
        .instrument(info_span!("deployment_cache"));
    let pods = pod_changes
        .for_each(|_| async {})
        .instrument(info_span!("pod_cache"));
    let forget_deleted = forget_deleted(store.clone(), ctx.clone());
    let controller = async move {
        // No evaluation may take a Deployment that is not cached yet for a missing one.
        cluster.ready().await;
        let evaluator = Arc::new(Evaluator { ctx, cluster });
        Controller::for_stream(changed, store)
            .reconcile_on(woken)
            .with_config(controller::Config::default().concurrency(CONCURRENCY))
            .graceful_shutdown_on(shutdown)
            .run(reconcile, error_policy, evaluator)
            .for_each(|result| async move {
                match result {
                    Ok((policy, _)) => debug!(policy = %policy, "reconciled"),
                    Err(error) => warn!(%error, "reconcile failed"),
                }
            })
            .await;
    }
    .instrument(info_span!("controller"));
    // The caches are filled by their own streams, polled here beside the controller.
    tokio::select! {
        () = controller => {}
        () = forget_deleted => {}
        () = deployments => {}
        () = pods => {}
    }
    Ok(())
}

/// What a reconcile works with: the shared context and the watch caches.
struct Evaluator {
    ctx: Arc<Context>,
    cluster: Cluster,
}

/// Every [`FORGET_EVERY`], drops what the context keeps of policies that no longer exist.
async fn forget_deleted(store: Store<Policy>, ctx: Arc<Context>) {
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
async fn reconcile(object: Arc<Policy>, evaluator: Arc<Evaluator>) -> Result<Requeue> {
    let Evaluator { ctx, cluster } = &*evaluator;
    let _timer = ctx.metrics.reconcile();
    match object.read() {
        Ok(policy) => evaluate(&policy, ctx, cluster).await,
        Err(problem) => {
            let message = format!("the operator cannot read this policy: {problem}");
            Report::on_object(ctx, &object, Timestamp::now())
                .not_ready(reason::UNREADABLE, state::INVALID, &message, Some("Read"))
                .await?;
            // Nothing to evaluate until the object changes, which wakes us anyway.
            Ok(Requeue::await_change())
        }
    }
}

/// One evaluation: gather, decide, act (and record how it ended), remember, report.
async fn evaluate(policy: &MemoryPolicy, ctx: &Context, cluster: &Cluster) -> Result<Requeue> {
    let interval: Duration = policy.spec.interval.into();
    let now = Timestamp::now();
    let report = Report::on_policy(ctx, policy, now);

    if let Err(errors) = validate(&policy.spec, policy.metadata.namespace.as_deref()) {
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        report
            .not_ready(
                reason::INVALID_POLICY,
                state::INVALID,
                &message,
                Some("Validate"),
            )
            .await?;
        return Ok(Requeue::requeue(interval));
    }
    if let Err(unknown) = ctx.prometheus.source(&policy.spec.prometheus.source) {
        report
            .not_ready(
                reason::UNKNOWN_SOURCE,
                state::INVALID,
                &unknown.to_string(),
                Some("Validate"),
            )
            .await?;
        return Ok(Requeue::requeue(interval));
    }
    let Some(observed) = gather::gather(ctx, cluster, policy).await? else {
        let message = format!(
            "Deployment {}/{} not found",
            policy.namespace().unwrap_or_default(),
            policy.spec.target_ref.name
        );
        report
            .not_ready(
                reason::TARGET_NOT_FOUND,
                state::TARGET_MISSING,
                &message,
                None,
            )
            .await?;
        return Ok(Requeue::requeue(interval));
    };

    let engine = reading::engine_policy(&policy.spec);
    let memory = ctx
        .recall
        .memory(report.key(), report.uid(), report.status());
    let mut decision =
        memory_engine::decide(&engine, &observed.samples, &observed.workload, &memory, now);
    if let Some(failure) = &observed.metrics_failure {
        decision.metrics_message = failure.message.clone();
    }
    ctx.metrics.decided(respond::decision_kind(&decision));

    let container = reading::container(&policy.spec);
    if let Some(outcome) =
        respond::act(ctx, policy, &observed.deployment, container, &decision, now).await
    {
        decision.settle(&outcome);
    }
    ctx.recall
        .evaluated(report.key(), report.uid(), decision.memory.clone());

    report
        .evaluated(&status::Evaluated {
            policy: &engine,
            samples: &observed.samples,
            workload: &observed.workload,
            decision: &decision,
            metrics_failure: observed.metrics_failure.as_ref(),
            generation: policy.metadata.generation,
            now,
        })
        .await?;
    Ok(Requeue::requeue(interval))
}

fn error_policy(object: Arc<Policy>, error: &Error, evaluator: Arc<Evaluator>) -> Requeue {
    warn!(policy = %object.name_any(), %error, "reconcile failed; retrying");
    evaluator.ctx.metrics.reconcile_failed(error.metric_label());
    Requeue::requeue(RETRY_AFTER_ERROR)
}
