//! The controller: watches MemoryPolicies and their target Deployments,
//! evaluates each policy every `interval`, acts, and reports through status
//! conditions and Events. `reconcile` is thin: gather, decide, act, report.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{
        Controller,
        controller::Action as Requeue,
        events::{EventType, Recorder, Reporter},
        reflector::ObjectRef,
        watcher,
    },
};
use serde_json::json;
use tracing::{Instrument, debug, info_span, instrument, warn};

use crate::{
    Error, Result,
    actions::Outcome,
    adapt,
    crd::{MemoryPolicy, MemoryPolicyStatus},
    decide::{self, Memory},
    metrics::Metrics,
    prometheus::{Prometheus, build_query, samples_from},
    respond, status,
    validate::validate,
};

/// After a failed reconcile, try again this soon: long enough not to hammer
/// the API server, short enough that a 409 or a blip heals quickly.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);

/// What the controller shares between reconciles.
pub struct Context {
    pub client: Client,
    /// Like `client` but without the retry on 429: a PodDisruptionBudget's
    /// refusal is an answer to report now and retry next interval, not a blip
    /// to retry inside one reconcile for minutes.
    pub(crate) evictions: Client,
    pub prometheus: Prometheus,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The engine's memory per policy; seeded from `status.history` after a restart.
    memories: Mutex<HashMap<ObjectRef<MemoryPolicy>, Memory>>,
    /// When each policy was last evaluated, and on what, so that the reconcile
    /// our own status write triggers does not evaluate again.
    evaluated: Mutex<HashMap<ObjectRef<MemoryPolicy>, Seen>>,
}

#[derive(Clone, Debug, PartialEq)]
struct Seen {
    at: Instant,
    generation: Option<i64>,
    target_version: Option<String>,
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
            recorder: Recorder::new(client.clone(), reporter),
            client,
            evictions,
            prometheus,
            metrics,
            memories: Mutex::default(),
            evaluated: Mutex::default(),
        }))
    }
}

/// Runs the controller until `shutdown` resolves; fails fast when the CRD is missing.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let policies: Api<MemoryPolicy> = Api::all(ctx.client.clone());
    policies
        .list(&ListParams::default().limit(1))
        .await
        .map_err(Error::CrdMissing)?;
    let controller = Controller::new(policies, watcher::Config::default());
    let store = controller.store();
    controller
        .watches(
            Api::<Deployment>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |deployment| {
                let (namespace, name) = (deployment.namespace(), deployment.name_any());
                store
                    .state()
                    .into_iter()
                    .filter(|p| p.namespace() == namespace && p.spec.target_ref.name == name)
                    .map(|p| ObjectRef::from_obj(&*p))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((policy, _)) => debug!(policy = %policy, "reconciled"),
                Err(error) => warn!(%error, "reconcile failed"),
            }
        })
        .instrument(info_span!("controller"))
        .await;
    Ok(())
}

#[instrument(skip_all, fields(policy = %policy.name_any(), namespace = policy.namespace().unwrap_or_default()))]
async fn reconcile(policy: Arc<MemoryPolicy>, ctx: Arc<Context>) -> Result<Requeue> {
    let _timer = ctx.metrics.reconcile();
    let namespace = policy.namespace().unwrap_or_default();
    let interval: Duration = policy.spec.interval.into();
    let key = ObjectRef::from_obj(&*policy);
    let now = Timestamp::now();
    let mut status = policy.status.clone().unwrap_or_default();
    let generation = policy.meta().generation;

    if let Err(errors) = validate(&policy.spec) {
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        status::set_condition(
            &mut status.conditions,
            status::READY,
            false,
            "InvalidPolicy",
            &message,
            generation,
            now,
        );
        status.state = Some("Invalid".into());
        respond::publish(
            &ctx,
            &policy,
            EventType::Warning,
            "InvalidPolicy",
            "Validate",
            &message,
        )
        .await;
        write_status(&ctx, &policy, &status, now).await?;
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
            status::READY,
            false,
            "TargetNotFound",
            &message,
            generation,
            now,
        );
        status.state = Some("TargetMissing".into());
        write_status(&ctx, &policy, &status, now).await?;
        return Ok(Requeue::requeue(interval));
    };

    let seen = Seen {
        at: Instant::now(),
        generation,
        target_version: deployment.metadata.resource_version.clone(),
    };
    if let Some(wait) = ctx.too_soon(&key, &seen, interval) {
        debug!(
            ?wait,
            "evaluated recently with nothing new; waiting for the next interval"
        );
        return Ok(Requeue::requeue(wait));
    }

    let pods = list_pods(&ctx.client, &namespace, &deployment).await?;
    let workload = adapt::workload(&deployment, &pods);
    let (samples, metrics_error) = read_samples(&ctx, &policy, &namespace, &pods, &workload).await;
    let engine = adapt::engine_policy(&policy.spec);
    let memory = ctx.memory(&key, &status);
    let mut decision = decide::decide(&engine, &samples, &workload, &memory, now);
    if let Some(error) = &metrics_error {
        decision.metrics_message = error.clone();
    }
    ctx.metrics.decided(respond::decision_kind(&decision));

    let outcome = respond::act(&ctx, &policy, &namespace, &deployment, &decision, now).await;
    if outcome.is_none() && !workload.rollout_in_progress && !policy.spec.suspend {
        respond::enforce_limits(&ctx, &policy, &namespace, &deployment).await;
    }
    if matches!(outcome, Some(Outcome::Refused(_))) {
        // Nothing happened, so nothing may count against cooldown or budget.
        decision.memory.history.pop();
    }
    ctx.remember(&key, decision.memory.clone(), seen);

    status::fill(
        &mut status,
        &decision,
        outcome.as_ref(),
        &samples,
        &workload,
        &engine,
        generation,
        now,
        &policy,
    );
    write_status(&ctx, &policy, &status, now).await?;
    Ok(Requeue::requeue(interval))
}

fn error_policy(policy: Arc<MemoryPolicy>, error: &Error, ctx: Arc<Context>) -> Requeue {
    warn!(policy = %policy.name_any(), %error, "reconcile failed; retrying");
    ctx.metrics.reconcile_failed(error.metric_label());
    Requeue::requeue(RETRY_AFTER_ERROR)
}

impl Context {
    fn too_soon(
        &self,
        key: &ObjectRef<MemoryPolicy>,
        seen: &Seen,
        interval: Duration,
    ) -> Option<Duration> {
        let evaluated = self
            .evaluated
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let last = evaluated.get(key)?;
        let unchanged =
            last.generation == seen.generation && last.target_version == seen.target_version;
        let elapsed = seen.at.saturating_duration_since(last.at);
        // A little slack so a requeue that fires a hair early still evaluates.
        (unchanged && elapsed + Duration::from_millis(50) < interval).then(|| interval - elapsed)
    }

    fn memory(&self, key: &ObjectRef<MemoryPolicy>, status: &MemoryPolicyStatus) -> Memory {
        let memories = self.memories.lock().unwrap_or_else(PoisonError::into_inner);
        memories.get(key).cloned().unwrap_or_else(|| Memory {
            history: status
                .history
                .iter()
                .filter_map(adapt::past_action)
                .collect(),
            ..Memory::default()
        })
    }

    fn remember(&self, key: &ObjectRef<MemoryPolicy>, memory: Memory, seen: Seen) {
        self.memories
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), memory);
        self.evaluated
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), seen);
    }
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
    workload: &decide::Workload,
) -> (Vec<decide::Sample>, Option<String>) {
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

async fn write_status(
    ctx: &Context,
    policy: &MemoryPolicy,
    status: &MemoryPolicyStatus,
    now: Timestamp,
) -> Result<()> {
    let mut status = status.clone();
    status.last_evaluation_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
    let api: Api<MemoryPolicy> =
        Api::namespaced(ctx.client.clone(), &policy.namespace().unwrap_or_default());
    api.patch_status(
        &policy.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map_err(Error::kube(format!(
        "writing the status of {}",
        policy.name_any()
    )))?;
    Ok(())
}
