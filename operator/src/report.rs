//! Reports on a policy: its status, applied server-side by the operator's one field manager
//! and built on what this process last wrote, and the Event of a policy that cannot be
//! evaluated.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{events::EventType, reflector::ObjectRef},
};
use memory_policy_api::crd::{MemoryPolicy, MemoryPolicyStatus, names::condition};
use serde_json::json;
use tracing::debug;

use crate::{Error, Result, context::Context, respond, status, watched::Policy};

/// The field manager of the status the operator applies.
pub const FIELD_MANAGER: &str = "memory-operator";

/// One report on one policy, built on the status this process last wrote (else the one the
/// cache shows).
pub struct Report<'a> {
    ctx: &'a Context,
    key: ObjectRef<MemoryPolicy>,
    uid: Option<String>,
    reference: ObjectReference,
    /// How old the readings shown may grow before a status that says nothing new is written.
    refresh: Duration,
    generation: Option<i64>,
    now: Timestamp,
    /// What the cache shows.
    cached: Option<MemoryPolicyStatus>,
    status: MemoryPolicyStatus,
}

impl<'a> Report<'a> {
    /// A report on a policy that was read.
    pub fn on_policy(ctx: &'a Context, policy: &MemoryPolicy, now: Timestamp) -> Self {
        let interval = Duration::from(policy.spec.interval);
        Self {
            ctx,
            key: ObjectRef::from_obj(policy),
            uid: policy.metadata.uid.clone(),
            reference: policy.object_ref(&()),
            refresh: interval.saturating_mul(status::REFRESH_INTERVALS),
            generation: policy.metadata.generation,
            now,
            cached: policy.status.clone(),
            status: MemoryPolicyStatus::default(),
        }
        .built_on_the_last_write()
    }

    /// A report on a policy whose spec could not be read; its status is taken as it is, if it
    /// could be read itself.
    pub fn on_object(ctx: &'a Context, object: &Policy, now: Timestamp) -> Self {
        let namespace = object.namespace().unwrap_or_default();
        Self {
            ctx,
            key: ObjectRef::new(&object.name_any()).within(&namespace),
            uid: object.metadata.uid.clone(),
            reference: object.object_ref(&()),
            // Not evaluated: there are no readings to refresh.
            refresh: Duration::MAX,
            generation: object.metadata.generation,
            now,
            cached: object.status.clone(),
            status: MemoryPolicyStatus::default(),
        }
        .built_on_the_last_write()
    }

    /// Starts from the status this process last wrote, else the one the cache shows.
    fn built_on_the_last_write(mut self) -> Self {
        self.status = self
            .ctx
            .recall
            .status(&self.key, self.uid.as_deref(), self.cached.as_ref());
        self
    }

    /// The policy's key in the controller's memory.
    pub fn key(&self) -> &ObjectRef<MemoryPolicy> {
        &self.key
    }

    /// The policy's uid.
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    /// The status this report builds on.
    pub fn status(&self) -> &MemoryPolicyStatus {
        &self.status
    }

    /// `Ready=False` for `reason`, the `State` word `state`, and, when the policy itself is at
    /// fault, a Warning Event with the same reason and the Event action `verb`; the rest of
    /// the status (its history above all) stays as it was.
    pub async fn not_ready(
        mut self,
        reason: &str,
        state: &str,
        message: &str,
        verb: Option<&str>,
    ) -> Result<()> {
        status::set_condition(
            &mut self.status.conditions,
            condition::READY,
            false,
            reason,
            message,
            self.generation,
            self.now,
        );
        self.status.state = Some(state.to_owned());
        if let Some(verb) = verb {
            let notice = respond::notice(EventType::Warning, reason, verb, message);
            respond::publish(self.ctx, &self.reference, notice).await;
        }
        self.write().await
    }

    /// The status of an evaluation.
    pub async fn evaluated(mut self, evaluated: &status::Evaluated<'_>) -> Result<()> {
        status::fill(&mut self.status, evaluated);
        self.status.last_evaluation_time = Some(Time(self.now));
        self.write().await
    }

    /// Applies `status` server-side as [`FIELD_MANAGER`], the one owner of the status: what
    /// the new status no longer has (`maxUsage` without metrics, say) is removed, and whatever
    /// another writer changed is taken back. Writes only what is worth writing over what the
    /// cache shows ([`status::worth_writing`]), so a policy that is invalid, unreadable or
    /// missing its target is not written every interval, and a calm one only every few; when
    /// the cache lags behind this process's last write, the same status is applied again,
    /// which changes nothing.
    async fn write(self) -> Result<()> {
        let Self {
            ctx,
            key,
            uid,
            refresh,
            cached,
            status,
            ..
        } = self;
        if !status::worth_writing(cached.as_ref(), &status, refresh) {
            debug!("the status says nothing new; not writing it");
            return Ok(());
        }
        let namespace = key.namespace.as_deref().unwrap_or_default();
        // The answer is read as the cache's view of a policy, the cheapest to decode.
        let api: Api<Policy> = Api::namespaced(ctx.client.clone(), namespace);
        let applied = json!({
            "apiVersion": MemoryPolicy::api_version(&()),
            "kind": MemoryPolicy::kind(&()),
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
        ctx.recall.written(&key, uid.as_deref(), status);
        Ok(())
    }
}
