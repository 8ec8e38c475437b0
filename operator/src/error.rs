//! The crate's one error type.

use std::path::PathBuf;

use crate::validate::FieldError;

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

    /// A YAML document is not a well-formed `MemoryPolicy`: bad syntax, a
    /// missing field, a value of the wrong type or enum. The YAML error is
    /// part of the message (it names the field and line), not a cause.
    #[error("document {document}: {error}")]
    Yaml {
        document: usize,
        error: serde_yaml::Error,
    },

    /// A YAML document parsed but has fields a `MemoryPolicy` does not.
    #[error("document {document}:{}", fields.iter().map(|f| format!("\n  unknown field {f}")).collect::<String>())]
    UnknownFields {
        document: usize,
        fields: Vec<String>,
    },

    /// A YAML document is some other kind of object.
    #[error("document {document}: expected {expected}, found {found}")]
    WrongKind {
        document: usize,
        expected: String,
        found: String,
    },

    /// A policy parsed but breaks rules the schema enforces.
    #[error("document {document}{}:{}", named(name), list(errors))]
    Invalid {
        document: usize,
        name: String,
        errors: Vec<FieldError>,
    },

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

    /// A `Custom` metric without `spec.metric.query`.
    #[error("the custom query needs `spec.metric.query`")]
    NoQuery,

    /// A backtest's policy file holds no policy, or several.
    #[error("{}: expected exactly one MemoryPolicy document, found {found}", path.display())]
    NotOnePolicy { path: PathBuf, found: usize },

    /// A backtest's policy is not sound; the problem names the fields.
    #[error("{}: {problem}", path.display())]
    Unsound { path: PathBuf, problem: Box<Error> },

    /// `--start` or `--end` is not a time.
    #[error(
        "`{0}` is not a time: use now, an offset such as -1h, -2d or 30m ago, \
         or an RFC 3339 timestamp such as 2026-11-22T10:00:00Z"
    )]
    Time(String),

    /// A backtest window that cannot be replayed.
    #[error("{0}")]
    Window(String),

    /// Neither `--prometheus` nor the policy names a server.
    #[error("no Prometheus to read history from: pass --prometheus or set spec.prometheus.url")]
    NoPrometheus,

    /// A custom query reports bytes, and history has no pod specs to read limits from.
    #[error(
        "a Custom metric reports bytes only, and history holds no pod specs to read the \
         memory limit from: set spec.limits.limit to replay it"
    )]
    NoLimit,

    /// A string is not a duration such as `15s`.
    #[error(
        "`{0}` is not a duration: use whole numbers with units ms, s, m or h, like 15s, 1m30s or 500ms"
    )]
    Duration(String),
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

    /// Wraps a kube error with what was being done.
    pub fn kube(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let context = context.into();
        move |source| Error::Kube { context, source }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn named(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" ({name})")
    }
}

fn list(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("\n  {e}")).collect()
}
