//! What the controller shares between reconciles: the clients, Prometheus, the Event
//! recorder, the metrics, and what it remembers of each policy.

use std::sync::Arc;

use kube::{
    Client,
    runtime::events::{Recorder, Reporter},
};

use crate::{Error, Result, metrics::Metrics, prometheus::Prometheus, recall::Recall};

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
    pub(crate) recall: Recall,
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
