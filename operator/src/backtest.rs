//! `memory-operator backtest`: what a policy would have done to real history.
//!
//! One range query reads the policy's memory series from Prometheus over a
//! window ([`history`]); every step of it goes through the same engine the
//! operator runs, each decision's memory feeding the next ([`replay`]); the
//! result is a timeline of actions, holds and changes of condition
//! ([`Backtest::report`]) and a chart ([`Backtest::svg`]). Only the first
//! step is I/O; the rest is pure and tested with plain data.
//!
//! History records usage, not the cluster, so the replay simulates a
//! Deployment made of the pods that had samples; the report's header spells
//! out what that cannot show.

mod history;
mod replay;
mod report;
mod svg;
mod window;

use std::path::{Path, PathBuf};

use jiff::Timestamp;

pub use history::{RangeQuery, fetch, range_query, timeline};
pub use replay::{Step, replay};
pub use window::{MAX_POINTS, When, Window};

use crate::{
    Error, Result,
    prometheus::{Prometheus, Sources},
};
use memory_engine::Policy;
use memory_policy_api::crd::{self, DEFAULT_SOURCE, MemoryPolicy, MemoryPolicySpec};
use memory_policy_api::reading::engine_policy;
use memory_policy_api::validate::check_documents;

/// Flags of `memory-operator backtest`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// The policy to replay: a file holding exactly one MemoryPolicy.
    #[arg(long)]
    pub policy: PathBuf,
    /// Prometheus to read history from, whatever source the policy names.
    #[arg(long, conflicts_with = "sources")]
    pub prometheus: Option<String>,
    /// Or the operator's file of metrics sources: history is read from the one the policy
    /// names in spec.prometheus.source.
    #[arg(long)]
    pub sources: Option<PathBuf>,
    /// First evaluation: now, an offset such as -1h or -2d, or an RFC 3339 timestamp.
    #[arg(long, default_value = "-1h", allow_hyphen_values = true)]
    pub start: When,
    /// Last evaluation, written like --start.
    #[arg(long, default_value = "now", allow_hyphen_values = true)]
    pub end: When,
    /// Time between evaluations, such as 15s; the policy's interval when unset.
    #[arg(long)]
    pub step: Option<crd::Duration>,
    /// Namespace of the pods' series; the policy's own namespace when unset, else `default`.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Also write a chart of usage per pod against the water marks, actions marked, to this SVG file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

/// A replayed policy, ready to report.
#[derive(Debug, Clone)]
pub struct Backtest {
    /// `namespace/name` of the policy.
    pub name: String,
    /// The policy as written.
    pub spec: MemoryPolicySpec,
    /// The policy as the engine sees it.
    pub policy: Policy,
    /// The query and the server it went to, for the header.
    pub source: String,
    /// The evaluation times.
    pub window: Window,
    /// What the engine decided at each of them.
    pub steps: Vec<Step>,
}

impl Backtest {
    /// The timeline as text: header with caveats, events, summary.
    pub fn report(&self) -> String {
        report::report(self)
    }

    /// The chart, as an SVG document.
    pub fn svg(&self) -> String {
        svg::render(&self.policy, &self.steps)
    }
}

/// Reads the policy, fetches its history and replays it.
pub async fn run(options: &Options) -> Result<Backtest> {
    let policy = read_policy(&options.policy)?;
    let spec = policy.spec;
    let namespace = options
        .namespace
        .clone()
        .or(policy.metadata.namespace)
        .unwrap_or_else(|| "default".to_owned());
    let (prometheus, source) = match (&options.prometheus, &options.sources) {
        (Some(url), _) => (Prometheus::at(url)?, DEFAULT_SOURCE),
        (None, Some(file)) => (
            Prometheus::new(Sources::load(file)?),
            spec.prometheus.source.as_str(),
        ),
        (None, None) => return Err(Error::NoPrometheus),
    };
    let url = prometheus.source(source)?.url().to_owned();
    let now = Timestamp::now();
    let step = options.step.unwrap_or(spec.interval).into();
    let window = Window::new(options.start.resolve(now)?, options.end.resolve(now)?, step)?;
    let query = range_query(&spec, &namespace)?;
    let data = fetch(&prometheus, source, &query, &window).await?;
    let policy_engine = engine_policy(&spec);
    let steps = replay(&policy_engine, &timeline(&query, &data, &window.times()));
    Ok(Backtest {
        name: format!("{namespace}/{}", policy.metadata.name.unwrap_or_default()),
        source: format!("{} at {url}", query.promql),
        spec,
        policy: policy_engine,
        window,
        steps,
    })
}

/// The one sound policy in the file at `path`.
pub fn read_policy(path: &Path) -> Result<MemoryPolicy> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut results = check_documents(&text);
    if results.len() != 1 {
        return Err(Error::NotOnePolicy {
            path: path.to_owned(),
            found: results.len(),
        });
    }
    results.remove(0).map_err(|problem| Error::Unsound {
        path: path.to_owned(),
        problem: Box::new(problem),
    })
}
