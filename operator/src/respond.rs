//! Carries out a decision (or, under dry run, only reports it) and tells
//! humans: an Event for every action taken and every action held back, on the
//! policy, and on the Deployment for actions that change it.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Resource, ResourceExt,
    runtime::events::{Event, EventType, Recorder},
};

use tracing::warn;

use crate::{actions, context::Context, watched::Deployment};
use memory_engine::{Action, Decision, Outcome, size};
use memory_policy_api::crd::{MemoryPolicy, names::event};

/// Carries out (or, under dry run, only reports) the decision; publishes an
/// Event for every action taken and every action held back. `container` is the one whose
/// memory the policy sizes.
pub async fn act(
    ctx: &Context,
    policy: &MemoryPolicy,
    deployment: &Deployment,
    container: Option<&str>,
    decision: &Decision,
    now: Timestamp,
) -> Option<Outcome> {
    if let Some(held) = &decision.held_back {
        let names = held.action.kind().names();
        ctx.metrics.action(names.metric, "held_back");
        let note = format!("held back {}: {}", held.action, held.reason);
        let notice = notice(
            EventType::Warning,
            event::ACTION_HELD_BACK,
            names.verb,
            &note,
        );
        publish(ctx, &policy.object_ref(&()), notice).await;
    }
    let action = decision.action.as_ref()?;
    let names = action.kind().names();
    let reasons = decision.reasons.join("; ");
    if decision.dry_run {
        ctx.metrics.action(names.metric, "dry_run");
        let note = format!("dry run: would {action}: {reasons}");
        let notice = notice(EventType::Normal, event::DRY_RUN, names.verb, &note);
        publish(ctx, &policy.object_ref(&()), notice).await;
        return Some(Outcome::Reported);
    }
    let namespace = deployment.namespace().unwrap_or_default();
    let outcome = actions::apply(
        &ctx.client,
        &ctx.evictions,
        &namespace,
        deployment,
        container,
        action,
        now,
    )
    .await;
    ctx.metrics.action(names.metric, outcome.metric());
    if let Some(why) = outcome.refusal() {
        let notice = notice(EventType::Warning, event::ACTION_FAILED, names.verb, why);
        publish(ctx, &policy.object_ref(&()), notice).await;
    }
    let refused: &[String] = match &outcome {
        Outcome::Refused(_) => return Some(outcome),
        Outcome::Partly { refused, .. } => refused,
        Outcome::Applied | Outcome::Reported => &[],
    };
    let note = format!("{action}: {reasons}");
    let type_ = if names.disruptive {
        EventType::Normal
    } else {
        EventType::Warning
    };
    record_action(
        ctx,
        &policy.object_ref(&()),
        notice(type_, names.reason, names.verb, &note),
    )
    .await;
    if names.disruptive {
        record_action(
            ctx,
            &deployment.object_ref(&()),
            notice(type_, names.reason, names.verb, &note),
        )
        .await;
    }
    // A pod resized in place says so itself, for `kubectl describe pod`.
    if let Action::RaiseLimit { raises, .. } = action {
        for raise in raises.iter().filter(|r| !refused.contains(&r.pod)) {
            let pod = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(raise.pod.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectReference::default()
            };
            let note = format!(
                "memory limit raised in place from {} to {} by MemoryPolicy {}",
                size(raise.from),
                size(raise.to),
                policy.name_any()
            );
            record_action(ctx, &pod, notice(type_, names.reason, names.verb, &note)).await;
        }
    }
    Some(outcome)
}

/// A notice about `object`: it repeats every interval while its cause lasts, so repeats
/// fold into one Event series with a count, as `kubectl events` shows them.
pub async fn publish(ctx: &Context, object: &ObjectReference, event: Event) {
    send(&ctx.recorder, object, event).await;
}

/// An action taken, as an Event of its own: the shared recorder would fold it into an
/// earlier one with the same reason and keep that one's note, so that a second eviction
/// would read as the first pod's.
async fn record_action(ctx: &Context, object: &ObjectReference, event: Event) {
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    send(&recorder, object, event).await;
}

/// An Event with its note cut to the 1 kB that Events allow.
pub fn notice(type_: EventType, reason: &str, action: &str, note: &str) -> Event {
    Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: action.to_owned(),
        secondary: None,
    }
}

async fn send(recorder: &Recorder, object: &ObjectReference, event: Event) {
    if let Err(error) = recorder.publish(&event, object).await {
        warn!(%error, reason = event.reason, "could not publish an Event");
    }
}

/// The `kind` label of the decision's action, `none` without one.
pub fn decision_kind(decision: &Decision) -> &'static str {
    decision
        .action
        .as_ref()
        .map_or("none", |a| a.kind().names().metric)
}
