//! The Prometheus adapter: one query per policy per evaluation, whatever the
//! replica count, mapped to the target's current pods.
//!
//! For the `Service` and `Container` sources the query is a range selector
//! over `staleAfter` (or the prediction window), so the answer carries each series' raw
//! samples with their real scrape times: the newest sample in the window is the reading,
//! the others the pod's recent history, and a pod with none is missing, which the engine
//! never acts on.

use std::{
    sync::{Arc, LazyLock},
    time::{Duration, Instant},
};

use jiff::Timestamp;
use prometheus_http_query::response::Data;
use tracing::debug;

use crate::{Error, Result};
use memory_policy_api::{
    crd::{self, MemoryPolicySpec, MetricSource},
    promql,
};
use promql_parser::{
    label::{MatchOp, Matcher, Matchers},
    parser::{MatrixSelector, VectorSelector, token::T_EQL_REGEX},
};

mod answer;
mod samples;
mod source;

pub use answer::{Bounds, RedirectRefused};
pub use samples::{most_pressed, samples_from};
pub use source::{Source, SourceConfig, Sources};

/// Series the shortener exports about itself.
const SERVICE_SERIES: (&str, &str) = (
    "shortener_memory_resident_bytes",
    "shortener_memory_limit_bytes",
);
/// The shortener's count of requests served, which tells a leak from load: read beside its
/// memory when the policy predicts growth.
pub const SERVICE_REQUESTS: &str = "shortener_http_requests_total";
/// cAdvisor's working set (what the OOM killer compares) and the container limit.
const CONTAINER_SERIES: (&str, &str) = (
    "container_memory_working_set_bytes",
    "container_spec_memory_limit_bytes",
);
/// The matchers of each built-in source's two series, compiled once rather than at every
/// evaluation.
static SERVICE_NAMES: LazyLock<Matcher> = LazyLock::new(|| names(SERVICE_SERIES, None));
static SERVICE_NAMES_WITH_REQUESTS: LazyLock<Matcher> =
    LazyLock::new(|| names(SERVICE_SERIES, Some(SERVICE_REQUESTS)));
static CONTAINER_NAMES: LazyLock<Matcher> = LazyLock::new(|| names(CONTAINER_SERIES, None));

fn names((usage, limit): (&str, &str), requests: Option<&str>) -> Matcher {
    let more = requests.map(|name| format!("|{name}")).unwrap_or_default();
    matching("__name__", &format!("{usage}|{limit}{more}"))
        .expect("metric names make a regular expression")
}

/// A PromQL query and how to read its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsQuery {
    pub promql: String,
    reading: Reading,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Reading {
    /// A usage series and a limit series per pod, told apart by `__name__`, and the pod's
    /// request counters when the query asks for them.
    UsageAndLimit {
        usage: &'static str,
        limit: &'static str,
        requests: Option<&'static str>,
    },
    /// One series per pod in bytes; the limit comes from the pod spec.
    Custom,
}

/// Builds the one query of an evaluation: every sample of the last `staleAfter` (or of the
/// prediction window, when longer) of the target's current `pods`, with their request counters
/// when the policy predicts growth and the source exports them. Naming the pods keeps the
/// answer to this Deployment's series however many other workloads share the namespace (at
/// 500 Deployments in one namespace, a namespace-wide answer was 1,000 pods' series for every
/// evaluation). A custom query is sent held to `namespace`, over the prediction window as a
/// subquery when the policy predicts.
pub fn build_query(
    spec: &MemoryPolicySpec,
    namespace: &str,
    pods: &[String],
) -> Result<MetricsQuery> {
    let stale_after: Duration = spec.thresholds.stale_after.into();
    let Some((selector, reading)) = built_in(spec, namespace, Some(pods))? else {
        let query = custom(spec, namespace)?;
        let Some(prediction) = &spec.prediction else {
            return Ok(query);
        };
        // Three points in every `staleAfter`, so that no gap between them is a stale one.
        let step = (stale_after / 3).max(Duration::from_secs(1));
        let step = crd::Duration::from_millis(u64::try_from(step.as_millis()).unwrap_or(1000));
        return Ok(MetricsQuery {
            promql: format!("({})[{}:{step}]", query.promql, prediction.window),
            ..query
        });
    };
    let window = spec
        .prediction
        .as_ref()
        .map_or(stale_after, |p| stale_after.max(p.window.into()));
    let window = MatrixSelector {
        vs: selector,
        range: window,
    };
    Ok(MetricsQuery {
        promql: window.to_string(),
        reading,
    })
}

/// The query without its window: for a built-in source, the instant selector of the usage
/// and limit series (a backtest evaluates it at every step); a custom query held to
/// `namespace`.
pub fn build_selector(spec: &MemoryPolicySpec, namespace: &str) -> Result<MetricsQuery> {
    let Some((selector, reading)) = built_in(spec, namespace, None)? else {
        return custom(spec, namespace);
    };
    Ok(MetricsQuery {
        promql: selector.to_string(),
        reading,
    })
}

/// The selector of a built-in source: its usage and limit series in `namespace`, of `pods`
/// when given. Built as PromQL's syntax tree, so that no name can break out of its quotes.
/// None for a custom query.
fn built_in(
    spec: &MemoryPolicySpec,
    namespace: &str,
    pods: Option<&[String]>,
) -> Result<Option<(VectorSelector, Reading)>> {
    let predicting = spec.prediction.is_some();
    let ((usage, limit), names, requests) = match spec.metric.source {
        MetricSource::Service if predicting => (
            SERVICE_SERIES,
            &*SERVICE_NAMES_WITH_REQUESTS,
            Some(SERVICE_REQUESTS),
        ),
        MetricSource::Service => (SERVICE_SERIES, &*SERVICE_NAMES, None),
        MetricSource::Container => (CONTAINER_SERIES, &*CONTAINER_NAMES, None),
        MetricSource::Custom => return Ok(None),
    };
    let mut matchers = vec![
        names.clone(),
        Matcher::new(MatchOp::Equal, "namespace", namespace),
    ];
    if spec.metric.source == MetricSource::Container {
        match spec.limits.as_ref().and_then(|l| l.container.as_deref()) {
            Some(name) => matchers.push(Matcher::new(MatchOp::Equal, "container", name)),
            // Not the pod's cgroup as a whole, nor its sandbox.
            None => matchers.extend(
                ["", "POD"].map(|other| Matcher::new(MatchOp::NotEqual, "container", other)),
            ),
        }
    }
    if let Some(pods) = pods {
        let alternatives: Vec<String> = pods.iter().map(|pod| quote_meta(pod)).collect();
        matchers.push(matching("pod", &alternatives.join("|"))?);
    }
    let selector = VectorSelector::new(None, Matchers::new(matchers));
    let reading = Reading::UsageAndLimit {
        usage,
        limit,
        requests,
    };
    Ok(Some((selector, reading)))
}

/// A custom query, held to `namespace`.
fn custom(spec: &MemoryPolicySpec, namespace: &str) -> Result<MetricsQuery> {
    let query = spec.metric.query.as_deref().ok_or(Error::NoQuery)?;
    Ok(MetricsQuery {
        promql: promql::confine(query, namespace)?,
        reading: Reading::Custom,
    })
}

/// The matcher `name=~"pattern"`.
fn matching(name: &str, pattern: &str) -> Result<Matcher> {
    Matcher::new_matcher(T_EQL_REGEX, name.to_owned(), pattern.to_owned())
        .map_err(|message| Error::Query(format!("{name}=~\"{pattern}\": {message}")))
}

/// Runs queries against the metrics sources its administrator defined: the live
/// evaluations' and a backtest's.
#[derive(Clone, Debug)]
pub struct Prometheus {
    sources: Arc<Sources>,
    bounds: Bounds,
}

impl Prometheus {
    /// Queries `sources`, reading answers within the default [`Bounds`].
    pub fn new(sources: Sources) -> Self {
        Prometheus {
            sources: Arc::new(sources),
            bounds: Bounds::default(),
        }
    }

    /// Queries one source, `default`, at `url`.
    pub fn at(url: &str) -> Result<Self> {
        Ok(Prometheus::new(Sources::single(url)?))
    }

    /// Reads answers within `bounds` instead.
    pub fn with_bounds(self, bounds: Bounds) -> Self {
        Prometheus { bounds, ..self }
    }

    /// The source called `name`, or why there is none.
    pub fn source(&self, name: &str) -> Result<&Source> {
        self.sources.get(name)
    }

    /// Runs the policy's one query on the source it names; returns the answer and how long
    /// it took.
    pub async fn query(
        &self,
        spec: &MemoryPolicySpec,
        query: &MetricsQuery,
    ) -> Result<(Data, Duration)> {
        let source = self.source(&spec.prometheus.source)?;
        let timeout = source.timeout(spec.prometheus.timeout.into());
        let started = Instant::now();
        debug!(source = source.name(), url = source.url(), promql = %query.promql, "querying Prometheus");
        let params = [("query", query.promql.clone()), told(timeout)];
        let data = self
            .exchange(source, "api/v1/query", &params, timeout)
            .await?;
        Ok((data, started.elapsed()))
    }

    /// Evaluates `promql` at every `step` from `start` to `end` on the source called `source`:
    /// the one query of a backtest.
    pub async fn query_range(
        &self,
        source: &str,
        promql: &str,
        (start, end, step): (Timestamp, Timestamp, Duration),
        timeout: Duration,
    ) -> Result<Data> {
        let source = self.source(source)?;
        let timeout = source.timeout(timeout);
        debug!(source = source.name(), url = source.url(), %promql, %start, %end, ?step, "querying Prometheus over a range");
        let params = [
            ("query", promql.to_owned()),
            ("start", start.as_second().to_string()),
            ("end", end.as_second().to_string()),
            ("step", step.as_secs_f64().to_string()),
            told(timeout),
        ];
        self.exchange(source, "api/v1/query_range", &params, timeout)
            .await
    }

    /// The data of the answer to GET `path` with `params` on `source`, read within the bounds
    /// and within `timeout`, body included (Prometheus is told the same timeout, and the
    /// request is abandoned at it whatever the server does: answer slowly, or trickle its
    /// answer).
    async fn exchange(
        &self,
        source: &Source,
        path: &str,
        params: &[(&str, String)],
        timeout: Duration,
    ) -> Result<Data> {
        let exchange = async {
            let response = source.get(path, params).await?;
            answer::read(source.url(), response, self.bounds).await
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::PrometheusTimeout {
                url: source.url().to_owned(),
                timeout,
            })?
    }
}

/// Prometheus's `timeout` parameter: `timeout`, in milliseconds.
fn told(timeout: Duration) -> (&'static str, String) {
    ("timeout", format!("{}ms", timeout.as_millis()))
}

/// The error and its causes, outermost first: "error sending request" alone does not say
/// whether the connection was refused, timed out or failed TLS.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        let more = error.to_string();
        // Some errors already print their cause; do not say it twice.
        if !text.ends_with(&more) {
            text = format!("{text}: {more}");
        }
        cause = error.source();
    }
    text
}

/// `value` as a regular expression that matches it literally, in Prometheus's (Go's RE2)
/// syntax: the metacharacters Go's `regexp.QuoteMeta` escapes, and nothing else.
fn quote_meta(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len());
    for c in value.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A policy on Deployment `web` with `extra` spec lines.
    pub(crate) fn spec(extra: &str) -> MemoryPolicySpec {
        let yaml =
            format!("targetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\n{extra}");
        serde_yaml::from_str(&yaml).unwrap()
    }

    #[tokio::test]
    async fn an_unreachable_prometheus_is_reported_with_the_underlying_cause() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let spec = spec("");
        let query = build_query(&spec, "shop", &pods(&["web-a"])).unwrap();
        let error = Prometheus::at(&url)
            .unwrap()
            .query(&spec, &query)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!("Prometheus at {url} failed: ")),
            "{error}"
        );
        assert!(error.contains("Connection refused"), "{error}");
    }

    /// A range vector's series `name` of pod `web-a` with more `labels` and its `values`.
    pub(crate) fn series_of_web_a(
        name: &str,
        labels: serde_json::Value,
        values: serde_json::Value,
    ) -> serde_json::Value {
        let mut metric = serde_json::json!({"__name__": name, "pod": "web-a"});
        if let (Some(metric), Some(labels)) = (metric.as_object_mut(), labels.as_object()) {
            metric.extend(labels.clone());
        }
        serde_json::json!({"metric": metric, "values": values})
    }

    /// Pod names, owned.
    pub(crate) fn pods(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn the_service_query_reads_usage_and_limit_of_the_current_pods_over_the_staleness_window() {
        let query = build_query(&spec(""), "shop", &pods(&["web-a", "web.b"])).unwrap();
        assert_eq!(
            query.promql,
            r#"{__name__=~"shortener_memory_resident_bytes|shortener_memory_limit_bytes",namespace="shop",pod=~"web-a|web\\.b"}[45s]"#
        );
    }

    #[test]
    fn a_predicting_service_query_reads_the_window_and_the_request_counters() {
        let yaml = "prediction: {window: 10m}";
        let query = build_query(&spec(yaml), "shop", &pods(&["web-a"])).unwrap();
        assert_eq!(
            query.promql,
            r#"{__name__=~"shortener_memory_resident_bytes|shortener_memory_limit_bytes|shortener_http_requests_total",namespace="shop",pod=~"web-a"}[10m]"#
        );
        // The container source has no request counter; a window shorter than staleAfter (which
        // validation refuses) never shortens the staleness window.
        let yaml =
            "metric: {source: Container}\nprediction: {window: 30s}\nthresholds: {staleAfter: 1m}";
        let query = build_query(&spec(yaml), "shop", &pods(&["web-a"])).unwrap();
        assert!(query.promql.ends_with("[1m]"), "{}", query.promql);
        assert!(!query.promql.contains("requests"), "{}", query.promql);
    }

    #[test]
    fn the_container_query_names_the_container_when_given() {
        let yaml = "metric: {source: Container}\nlimits: {container: app}\nthresholds: {staleAfter: 1500ms}";
        let query = build_query(&spec(yaml), "shop", &pods(&["web-a"])).unwrap();
        assert_eq!(
            query.promql,
            r#"{__name__=~"container_memory_working_set_bytes|container_spec_memory_limit_bytes",container="app",namespace="shop",pod=~"web-a"}[1s500ms]"#
        );
    }

    #[test]
    fn no_name_breaks_out_of_its_quotes() {
        let namespace = r#"shop"} or vector(1) or {x=""#;
        let yaml = "metric: {source: Container}\nlimits: {container: 'a\"b'}";
        let query = build_query(&spec(yaml), namespace, &pods(&[r#"web"}"#])).unwrap();
        let Ok(promql_parser::parser::Expr::MatrixSelector(parsed)) =
            promql_parser::parser::parse(&query.promql)
        else {
            panic!("one selector: {}", query.promql)
        };
        let value = |name: &str| parsed.vs.matchers.find_matchers(name)[0].value.clone();
        assert_eq!(value("namespace"), namespace);
        assert_eq!(value("container"), r#"a"b"#);
        assert_eq!(value("pod"), r#"web"\}"#);
    }

    #[test]
    fn pod_names_match_literally() {
        assert_eq!(quote_meta("web-a.b"), r"web-a\.b");
        assert_eq!(
            quote_meta(r"a+b*(c)|[d]{e}^$?\"),
            r"a\+b\*\(c\)\|\[d\]\{e\}\^\$\?\\"
        );
    }
}
