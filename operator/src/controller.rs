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
        events::{Event, EventType, Recorder, Reporter},
        reflector::ObjectRef,
        watcher,
    },
};
use serde_json::json;
use tracing::{Instrument, debug, info_span, instrument, warn};

use crate::{
    Error, Result,
    actions::{self, Outcome},
    adapt,
    crd::{MemoryPolicy, MemoryPolicyStatus},
    decide::{self, Action, Decision, Memory},
    metrics::Metrics,
    prometheus::{Prometheus, build_query, samples_from},
    status::{self, MAX_HISTORY},
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
    evictions: Client,
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
        publish(
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
    ctx.metrics.decided(decision_kind(&decision));

    let outcome = act(&ctx, &policy, &namespace, &deployment, &decision, now).await;
    if outcome.is_none() && !workload.rollout_in_progress && !policy.spec.suspend {
        enforce_limits(&ctx, &policy, &namespace, &deployment).await;
    }
    if matches!(outcome, Some(Outcome::Refused(_))) {
        // Nothing happened, so nothing may count against cooldown or budget.
        decision.memory.history.pop();
    }
    ctx.remember(&key, decision.memory.clone(), seen);

    report(
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

/// Carries out (or, under dry run, only reports) the decision; publishes an
/// Event for every action taken and every action held back.
async fn act(
    ctx: &Context,
    policy: &MemoryPolicy,
    namespace: &str,
    deployment: &Deployment,
    decision: &Decision,
    now: Timestamp,
) -> Option<Outcome> {
    if let Some(held) = &decision.held_back {
        ctx.metrics.action(action_kind(&held.action), "held_back");
        let note = format!("held back {}: {}", held.action, held.reason);
        publish(
            ctx,
            policy,
            EventType::Warning,
            "ActionHeldBack",
            action_verb(&held.action),
            &note,
        )
        .await;
    }
    let action = decision.action.as_ref()?;
    let reasons = decision.reasons.join("; ");
    if decision.dry_run {
        ctx.metrics.action(action_kind(action), "dry_run");
        let note = format!("dry run: would {action}: {reasons}");
        publish(
            ctx,
            policy,
            EventType::Normal,
            "DryRun",
            action_verb(action),
            &note,
        )
        .await;
        return Some(Outcome::Reported);
    }
    let outcome = actions::apply(
        &ctx.client,
        &ctx.evictions,
        namespace,
        deployment,
        action,
        now,
    )
    .await;
    let (kind, outcome_label) = (
        action_kind(action),
        match &outcome {
            Outcome::Done => "applied",
            Outcome::Reported => "reported",
            Outcome::Refused(_) => "failed",
        },
    );
    ctx.metrics.action(kind, outcome_label);
    match &outcome {
        Outcome::Refused(why) => {
            publish(
                ctx,
                policy,
                EventType::Warning,
                "ActionFailed",
                action_verb(action),
                why,
            )
            .await;
        }
        _ => {
            let note = format!("{action}: {reasons}");
            let reason = event_reason(action);
            let kind = if matches!(action, Action::Alert { .. }) {
                EventType::Warning
            } else {
                EventType::Normal
            };
            publish(ctx, policy, kind, reason, action_verb(action), &note).await;
            if action.is_disruptive() {
                publish_on(
                    ctx,
                    &deployment.object_ref(&()),
                    kind,
                    reason,
                    action_verb(action),
                    &note,
                )
                .await;
            }
        }
    }
    Some(outcome)
}

/// Brings the target container's memory request and limit to `spec.limits`
/// (a rollout), unless another action ran this round or a rollout is under way.
async fn enforce_limits(
    ctx: &Context,
    policy: &MemoryPolicy,
    namespace: &str,
    deployment: &Deployment,
) {
    let Some(limits) = &policy.spec.limits else {
        return;
    };
    let Some(patch) = actions::limits_patch(deployment, limits) else {
        return;
    };
    let wanted = format!(
        "memory request {} and limit {}",
        limits
            .request
            .as_ref()
            .map_or("unchanged", |q| q.0.as_str()),
        limits.limit.as_ref().map_or("unchanged", |q| q.0.as_str())
    );
    if policy.spec.dry_run {
        ctx.metrics.action("limits", "dry_run");
        publish(
            ctx,
            policy,
            EventType::Normal,
            "DryRun",
            "EnforceLimits",
            &format!("dry run: would set {wanted}"),
        )
        .await;
        return;
    }
    match actions::enforce_limits(&ctx.client, namespace, &deployment.name_any(), patch).await {
        Outcome::Refused(why) => {
            ctx.metrics.action("limits", "failed");
            publish(
                ctx,
                policy,
                EventType::Warning,
                "ActionFailed",
                "EnforceLimits",
                &why,
            )
            .await;
        }
        _ => {
            ctx.metrics.action("limits", "applied");
            let note = format!("set {wanted} on {}", deployment.name_any());
            publish(
                ctx,
                policy,
                EventType::Normal,
                "LimitsEnforced",
                "EnforceLimits",
                &note,
            )
            .await;
            publish_on(
                ctx,
                &deployment.object_ref(&()),
                EventType::Normal,
                "LimitsEnforced",
                "EnforceLimits",
                &note,
            )
            .await;
        }
    }
}

/// Fills the status from one evaluation.
#[allow(clippy::too_many_arguments)]
fn report(
    status: &mut MemoryPolicyStatus,
    decision: &Decision,
    outcome: Option<&Outcome>,
    samples: &[decide::Sample],
    workload: &decide::Workload,
    engine: &decide::Policy,
    generation: Option<i64>,
    now: Timestamp,
    policy: &MemoryPolicy,
) {
    use status::set_condition as set;
    let c = &mut status.conditions;
    set(
        c,
        status::READY,
        true,
        "Evaluated",
        "the policy is sound and its target exists",
        generation,
        now,
    );
    let (metrics_reason, metrics_message) = if decision.metrics_available {
        ("SamplesFresh", decision.metrics_message.as_str())
    } else {
        ("NoUsableSamples", decision.metrics_message.as_str())
    };
    set(
        c,
        status::METRICS_AVAILABLE,
        decision.metrics_available,
        metrics_reason,
        metrics_message,
        generation,
        now,
    );
    let high_message = if decision.high {
        "the fleet is above the high water mark"
    } else {
        "the fleet is under the high water mark"
    };
    set(
        c,
        status::HIGH_MEMORY,
        decision.high,
        if decision.high {
            "AboveHighWaterMark"
        } else {
            "BelowHighWaterMark"
        },
        high_message,
        generation,
        now,
    );
    let critical_message = if decision.critical {
        format!(
            "over critical for the sustain period: {}",
            decision.critical_pods.join(", ")
        )
    } else {
        "no pod is over the critical mark".to_owned()
    };
    set(
        c,
        status::CRITICAL,
        decision.critical,
        if decision.critical {
            "PodsCritical"
        } else {
            "NoPodCritical"
        },
        &critical_message,
        generation,
        now,
    );
    let (throttled, throttle_message) = match &decision.throttled {
        Some(why) => (true, why.as_str()),
        None => (false, "no action is being held back by cooldown or budget"),
    };
    set(
        c,
        status::THROTTLED,
        throttled,
        if throttled {
            "Throttled"
        } else {
            "NotThrottled"
        },
        throttle_message,
        generation,
        now,
    );
    let dry = policy.spec.dry_run;
    set(
        c,
        status::DRY_RUN,
        dry,
        if dry { "DryRun" } else { "Live" },
        if dry {
            "actions are only reported"
        } else {
            "actions are carried out"
        },
        generation,
        now,
    );

    status.observed_generation = generation;
    status.pods = status::pods(samples, workload, engine);
    status.max_usage = status::max_usage(samples, workload);
    status.replicas = i32::try_from(workload.replicas).ok();
    status.desired_replicas = match &decision.action {
        Some(Action::ScaleTo { to, .. }) if !decision.dry_run => i32::try_from(*to).ok(),
        _ => status.replicas,
    };
    status.state = Some(status::state(decision, policy.spec.suspend).to_owned());
    if let (Some(_), Some(last)) = (decision.action.as_ref(), decision.memory.history.last())
        && !matches!(outcome, Some(Outcome::Refused(_)))
    {
        let record = adapt::record(last, &decision.reasons.join("; "));
        status.last_action = Some(record.clone());
        status.history.push(record);
        let excess = status.history.len().saturating_sub(MAX_HISTORY);
        status.history.drain(..excess);
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

async fn publish(
    ctx: &Context,
    policy: &MemoryPolicy,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    publish_on(ctx, &policy.object_ref(&()), type_, reason, action, note).await;
}

async fn publish_on(
    ctx: &Context,
    object: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        // Events cap notes at 1 kB.
        note: Some(note.chars().take(1000).collect()),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, object).await {
        warn!(%error, reason, "could not publish an Event");
    }
}

fn decision_kind(decision: &Decision) -> &'static str {
    decision.action.as_ref().map_or("none", action_kind)
}

fn action_kind(action: &Action) -> &'static str {
    match action {
        Action::ScaleTo { from, to } if to > from => "scale_out",
        Action::ScaleTo { .. } => "scale_in",
        Action::Evict { .. } => "evict",
        Action::RollingRestart => "rolling_restart",
        Action::Alert { .. } => "alert",
    }
}

fn action_verb(action: &Action) -> &'static str {
    match action {
        Action::ScaleTo { from, to } if to > from => "ScaleOut",
        Action::ScaleTo { .. } => "ScaleIn",
        Action::Evict { .. } => "RestartPod",
        Action::RollingRestart => "RollingRestart",
        Action::Alert { .. } => "Alert",
    }
}

fn event_reason(action: &Action) -> &'static str {
    match action {
        Action::ScaleTo { from, to } if to > from => "ScaledOut",
        Action::ScaleTo { .. } => "ScaledIn",
        Action::Evict { .. } => "PodEvicted",
        Action::RollingRestart => "RollingRestartStarted",
        Action::Alert { .. } => "MemoryAlert",
    }
}
