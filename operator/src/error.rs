//! The crate's one error type; a policy's own problems are the API crate's errors.

use std::path::PathBuf;

use memory_policy_api::crd::names::reason;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A policy document that is not a sound `MemoryPolicy`, or a bad duration.
    #[error(transparent)]
    Policy(#[from] memory_policy_api::Error),

    /// The Kubernetes API refused or failed a request.
    #[error("{context}: {source}")]
    Kube {
        context: String,
        #[source]
        source: kube::Error,
    },

    /// The first list of policies failed: most likely the CRD is not installed.
    #[error(
        "cannot list MemoryPolicies; is the CRD installed? (kubectl apply -f crds/memorypolicy.yaml): {0}"
    )]
    CrdMissing(#[source] kube::Error),

    /// Prometheus did not answer in time.
    #[error("Prometheus at {url} did not answer within {timeout:?}")]
    PrometheusTimeout {
        url: String,
        timeout: std::time::Duration,
    },

    /// Prometheus answered with an error, or could not be reached.
    #[error("Prometheus at {url} failed: {message}")]
    PrometheusFailed { url: String, message: String },

    /// Prometheus's answer was larger than the operator reads.
    #[error(
        "Prometheus at {url} answered more than {limit} bytes; the answer was refused \
         (--prometheus-max-answer-bytes)"
    )]
    PrometheusAnswerTooLarge { url: String, limit: u64 },

    /// Prometheus's answer held more series than the operator reads.
    #[error(
        "Prometheus at {url} answered {series} series, more than {limit}; the answer was \
         refused (--prometheus-max-series)"
    )]
    PrometheusTooManySeries {
        url: String,
        series: usize,
        limit: usize,
    },

    /// Prometheus sent the query to another server.
    #[error("Prometheus at {url} failed: {refused}")]
    PrometheusRedirectRefused {
        url: String,
        refused: crate::prometheus::RedirectRefused,
    },

    /// A `Custom` query that is not PromQL, or reaches outside its policy's namespace.
    #[error("spec.metric.query {0}")]
    QueryRefused(#[from] memory_policy_api::promql::QueryError),

    /// A built-in query that could not be built.
    #[error("cannot build the query: {0}")]
    Query(String),

    /// A `Custom` metric without `spec.metric.query`.
    #[error("the custom query needs `spec.metric.query`")]
    NoQuery,

    /// A backtest's policy file holds no policy, or several.
    #[error("{}: expected exactly one MemoryPolicy document, found {found}", path.display())]
    NotOnePolicy { path: PathBuf, found: usize },

    /// A backtest's policy is not sound; the problem names the fields.
    #[error("{}: {problem}", path.display())]
    Unsound {
        path: PathBuf,
        problem: Box<memory_policy_api::Error>,
    },

    /// `--start` or `--end` is not a time.
    #[error(
        "`{0}` is not a time: use now, an offset such as -1h, -2d or 30m ago, \
         or an RFC 3339 timestamp such as 2026-11-22T10:00:00Z"
    )]
    Time(String),

    /// A backtest window that cannot be replayed.
    #[error("{0}")]
    Window(String),

    /// A backtest was given no server to read history from.
    #[error(
        "no Prometheus to read history from: pass --prometheus URL, or --sources FILE \
         holding the source the policy names"
    )]
    NoPrometheus,

    /// The administrator defined no metrics source at all.
    #[error("no metrics source is defined; define at least one, usually `default`")]
    NoSources,

    /// A metrics source the administrator defined cannot be used as written.
    #[error("metrics source {name:?}: {message}")]
    InvalidSource { name: String, message: String },

    /// The file of metrics sources cannot be read as one.
    #[error("{}: {message}", path.display())]
    SourcesFile { path: PathBuf, message: String },

    /// A policy names a metrics source the operator was not given.
    #[error(
        "spec.prometheus.source names {name:?}, which this operator does not know \
         (it knows: {known}); ask its administrator, or name one of those"
    )]
    UnknownSource { name: String, known: String },

    /// A source's bearer token file cannot be read.
    #[error("the bearer token of source {name:?} ({}) cannot be read: {message}", path.display())]
    SourceCredentials {
        name: String,
        path: PathBuf,
        message: String,
    },

    /// Prometheus refused the operator's credentials.
    #[error("Prometheus at {url} refused the operator's credentials: HTTP {status}")]
    PrometheusUnauthorized { url: String, status: u16 },

    /// A custom query reports bytes, and history has no pod specs to read limits from.
    #[error(
        "a Custom metric reports bytes only, and history holds no pod specs to read the \
         memory limit from: set spec.limits.limit to replay it"
    )]
    NoLimit,
}

impl Error {
    /// A short, bounded label for the `reconcile_errors` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } | Error::CrdMissing(_) => "kube",
            Error::Io { .. } => "io",
            _ => "policy",
        }
    }

    /// The `MetricsAvailable=False` reason of a query that failed with this error.
    pub fn metrics_reason(&self) -> &'static str {
        match self {
            Error::PrometheusTimeout { .. } => reason::QUERY_TIMED_OUT,
            Error::PrometheusAnswerTooLarge { .. } => reason::ANSWER_TOO_LARGE,
            Error::PrometheusTooManySeries { .. } => reason::TOO_MANY_SERIES,
            Error::PrometheusRedirectRefused { .. } => reason::REDIRECT_REFUSED,
            Error::PrometheusUnauthorized { .. } | Error::SourceCredentials { .. } => {
                reason::UNAUTHORIZED
            }
            _ => reason::QUERY_FAILED,
        }
    }

    /// Wraps a kube error with what was being done.
    pub fn kube(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let context = context.into();
        move |source| Error::Kube { context, source }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
