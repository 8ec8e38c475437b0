//! Leader election through a `coordination.k8s.io` Lease, so two replicas
//! can run and only one acts. A leader that cannot renew steps down.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tracing::{debug, info, warn};

use crate::{Error, Result};

/// A candidate for leadership of one Lease.
#[derive(Clone)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// How long a lease holds without renewal; a standby takes over after it.
    pub lease_duration: Duration,
}

impl Elector {
    /// A candidate called `identity` for the Lease `namespace/name`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        lease_duration: Duration,
    ) -> Self {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration,
        }
    }

    /// Takes or renews the lease; true when this candidate holds it afterwards.
    pub async fn try_lead(&self) -> Result<bool> {
        let now = Timestamp::now();
        let seconds = i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(Error::kube(format!("reading Lease {}", self.name)))?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return self.write(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let mine = spec.holder_identity.as_deref() == Some(&self.identity);
        let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
            let held = i64::from(spec.lease_duration_seconds.unwrap_or(seconds));
            renewed.0.as_second() + held < now.as_second()
        });
        if !mine && !expired {
            debug!(holder = ?spec.holder_identity, "another replica leads; standing by");
            return Ok(false);
        }
        if !mine {
            info!(previous = ?spec.holder_identity, "lease expired; taking over");
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(seconds);
        // The resourceVersion read above makes this a compare-and-swap: of two
        // replicas racing for an expired lease, one gets 409 and stands by.
        self.write(
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await,
        )
    }

    fn write(&self, result: kube::Result<Lease>) -> Result<bool> {
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(Error::Kube {
                context: format!("writing Lease {}", self.name),
                source,
            }),
        }
    }

    /// Waits until this candidate leads, then keeps renewing; returns when
    /// leadership is lost, so the caller stops acting.
    pub async fn lead(&self, on_elected: impl FnOnce()) {
        let renew_every = self.lease_duration / 3;
        while !self.try_lead().await.unwrap_or_else(|error| {
            warn!(%error, "leader election failed; retrying");
            false
        }) {
            tokio::time::sleep(renew_every).await;
        }
        info!(identity = %self.identity, "elected leader");
        on_elected();
        let mut renewed = std::time::Instant::now();
        loop {
            tokio::time::sleep(renew_every).await;
            match self.try_lead().await {
                Ok(true) => {
                    renewed = std::time::Instant::now();
                    debug!("lease renewed");
                }
                Ok(false) => {
                    warn!("lost the lease to another replica; stepping down");
                    return;
                }
                // Past the lease duration another replica may lead: stop acting.
                Err(error) if renewed.elapsed() >= self.lease_duration => {
                    warn!(%error, "could not renew the lease in time; stepping down");
                    return;
                }
                Err(error) => {
                    warn!(%error, "could not renew the lease; will retry before it expires")
                }
            }
        }
    }
}
