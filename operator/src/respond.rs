//! Carries out a decision (or, under dry run, only reports it) and tells
//! humans: an Event for every action taken and every action held back, on the
//! policy, and on the Deployment for actions that change it.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Resource, ResourceExt,
    runtime::events::{Event, EventType, Recorder},
};

use tracing::warn;

use crate::{
    actions::{self, Outcome},
    controller::Context,
    crd::MemoryPolicy,
    decide::{Action, Decision},
};

/// Carries out (or, under dry run, only reports) the decision; publishes an
/// Event for every action taken and every action held back.
pub async fn act(
    ctx: &Context,
    policy: &MemoryPolicy,
    namespace: &str,
    deployment: &Deployment,
    decision: &Decision,
    now: Timestamp,
) -> Option<Outcome> {
    if let Some(held) = &decision.held_back {
        ctx.metrics.action(names(&held.action).kind, "held_back");
        let note = format!("held back {}: {}", held.action, held.reason);
        publish(
            ctx,
            &policy.object_ref(&()),
            event(
                EventType::Warning,
                "ActionHeldBack",
                names(&held.action).verb,
                &note,
            ),
        )
        .await;
    }
    let action = decision.action.as_ref()?;
    let reasons = decision.reasons.join("; ");
    if decision.dry_run {
        ctx.metrics.action(names(action).kind, "dry_run");
        let note = format!("dry run: would {action}: {reasons}");
        publish(
            ctx,
            &policy.object_ref(&()),
            event(EventType::Normal, "DryRun", names(action).verb, &note),
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
        names(action).kind,
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
                &policy.object_ref(&()),
                event(EventType::Warning, "ActionFailed", names(action).verb, why),
            )
            .await;
        }
        _ => {
            let note = format!("{action}: {reasons}");
            let reason = names(action).reason;
            let kind = if matches!(action, Action::Alert { .. }) {
                EventType::Warning
            } else {
                EventType::Normal
            };
            let verb = names(action).verb;
            record_action(
                ctx,
                &policy.object_ref(&()),
                event(kind, reason, verb, &note),
            )
            .await;
            if action.is_disruptive() {
                record_action(
                    ctx,
                    &deployment.object_ref(&()),
                    event(kind, reason, verb, &note),
                )
                .await;
            }
        }
    }
    Some(outcome)
}

/// Brings the target container's memory request and limit to `spec.limits`
/// (a rollout), unless another action ran this round or a rollout is under way.
pub async fn enforce_limits(
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
            &policy.object_ref(&()),
            event(
                EventType::Normal,
                "DryRun",
                "EnforceLimits",
                &format!("dry run: would set {wanted}"),
            ),
        )
        .await;
        return;
    }
    match actions::enforce_limits(&ctx.client, namespace, &deployment.name_any(), patch).await {
        Outcome::Refused(why) => {
            ctx.metrics.action("limits", "failed");
            publish(
                ctx,
                &policy.object_ref(&()),
                event(EventType::Warning, "ActionFailed", "EnforceLimits", &why),
            )
            .await;
        }
        _ => {
            ctx.metrics.action("limits", "applied");
            let note = format!("set {wanted} on {}", deployment.name_any());
            for object in [policy.object_ref(&()), deployment.object_ref(&())] {
                let note = event(EventType::Normal, "LimitsEnforced", "EnforceLimits", &note);
                record_action(ctx, &object, note).await;
            }
        }
    }
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
pub fn event(type_: EventType, reason: &str, action: &str, note: &str) -> Event {
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

pub fn decision_kind(decision: &Decision) -> &'static str {
    decision.action.as_ref().map_or("none", |a| names(a).kind)
}

/// How an action is named: its metric label, its Event action and its Event reason.
struct Names {
    kind: &'static str,
    verb: &'static str,
    reason: &'static str,
}

fn names(action: &Action) -> Names {
    let (kind, verb, reason) = match action {
        Action::ScaleTo { from, to } if to > from => ("scale_out", "ScaleOut", "ScaledOut"),
        Action::ScaleTo { .. } => ("scale_in", "ScaleIn", "ScaledIn"),
        Action::Evict { .. } => ("evict", "RestartPod", "PodEvicted"),
        Action::RollingRestart => ("rolling_restart", "RollingRestart", "RollingRestartStarted"),
        Action::Alert { .. } => ("alert", "Alert", "MemoryAlert"),
    };
    Names { kind, verb, reason }
}
