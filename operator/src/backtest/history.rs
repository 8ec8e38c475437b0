//! Reading a policy's memory history out of Prometheus with one range query.
//!
//! The selector is the live query's without its `[staleAfter]` window
//! ([`crate::prometheus::build_selector`]), evaluated at every step: Prometheus
//! answers each step with the newest sample within its lookback, stamped
//! with the step's time, and a series it has marked stale (its pod gone, a
//! failed scrape) has no point there, so the pod is missing at that step.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use jiff::Timestamp;
use prometheus_http_query::response::Data;

use super::Window;
use crate::{
    Error, Result,
    prometheus::{Prometheus, SERVICE_REQUESTS, build_selector, most_pressed},
};
use memory_engine::Sample;
use memory_policy_api::crd::{MemoryPolicySpec, MetricSource, quantity_bytes};

/// A range query reads far more than the live one; a minute covers days of
/// history on a busy server, and a dead server fails at once anyway.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Both the Service and the Container sources name their limit series so.
const LIMIT_SUFFIX: &str = "_limit_bytes";

/// The PromQL of a backtest and where each pod's limit comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeQuery {
    /// Evaluated at every step.
    pub promql: String,
    limit: Limit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Limit {
    /// A `*_limit_bytes` series per pod, next to the usage series.
    Series,
    /// `spec.limits.limit`, for a custom query that reports bytes only.
    Fixed(u64),
}

/// The range query for `spec`'s metric source in `namespace`.
pub fn range_query(spec: &MemoryPolicySpec, namespace: &str) -> Result<RangeQuery> {
    let query = build_selector(spec, namespace)?;
    if spec.metric.source == MetricSource::Custom {
        // Live, the operator reads each pod's limit from its spec; history has no pod specs.
        let limit = spec
            .limits
            .as_ref()
            .and_then(|l| l.limit.as_ref())
            .ok_or(Error::NoLimit)?;
        let bytes = quantity_bytes(limit).ok_or(Error::NoLimit)?;
        return Ok(RangeQuery {
            promql: query.promql,
            limit: Limit::Fixed(bytes),
        });
    }
    Ok(RangeQuery {
        promql: query.promql,
        limit: Limit::Series,
    })
}

/// Runs `query` over `window` on `prometheus`'s source called `source`.
pub async fn fetch(
    prometheus: &Prometheus,
    source: &str,
    query: &RangeQuery,
    window: &Window,
) -> Result<Data> {
    let range = (window.start, window.end, window.step);
    prometheus
        .query_range(source, &query.promql, range, QUERY_TIMEOUT)
        .await
}

/// At one time, per (pod, container): the usage and the limit read.
type Readings<'a> = BTreeMap<(&'a str, &'a str), (Option<f64>, Option<f64>)>;

/// The samples of every evaluation time, oldest first; a time without data gets none.
pub fn timeline(
    query: &RangeQuery,
    data: &Data,
    times: &[Timestamp],
) -> Vec<(Timestamp, Vec<Sample>)> {
    let mut points: HashMap<i64, Readings> = HashMap::new();
    // Per time and pod: the requests served, summed over the counter's labels.
    let mut served: HashMap<(i64, &str), f64> = HashMap::new();
    if let Data::Matrix(series) = data {
        for range in series {
            let labels = range.metric();
            let Some(pod) = labels.get("pod") else {
                continue;
            };
            if labels.get("__name__").map(String::as_str) == Some(SERVICE_REQUESTS) {
                for point in range.samples() {
                    let millis = (point.timestamp() * 1000.0).round() as i64;
                    *served.entry((millis, pod.as_str())).or_default() += point.value();
                }
                continue;
            }
            let container = labels.get("container").map_or("", String::as_str);
            let is_limit = query.limit == Limit::Series
                && labels
                    .get("__name__")
                    .is_some_and(|name| name.ends_with(LIMIT_SUFFIX));
            for point in range.samples() {
                let millis = (point.timestamp() * 1000.0).round() as i64;
                let pair = points
                    .entry(millis)
                    .or_default()
                    .entry((pod, container))
                    .or_default();
                if is_limit {
                    pair.1 = Some(point.value());
                } else {
                    pair.0 = Some(point.value());
                }
            }
        }
    }
    times
        .iter()
        .map(|at| {
            let millis = at.as_millisecond();
            let pairs = points.remove(&millis).unwrap_or_default();
            let mut samples = samples(query.limit, pairs, *at);
            for sample in &mut samples {
                sample.requests = served.get(&(millis, sample.pod.as_str())).copied();
            }
            (*at, samples)
        })
        .collect()
}

/// One sample per pod: the most pressed of its containers, as live.
fn samples(limit: Limit, pairs: Readings, at: Timestamp) -> Vec<Sample> {
    most_pressed(
        pairs
            .into_iter()
            .filter_map(|((pod, _), (usage, series_limit))| {
                let limit = match limit {
                    Limit::Series => series_limit,
                    Limit::Fixed(bytes) => Some(bytes as f64),
                };
                Some((pod.to_owned(), usage?, limit?, at))
            }),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::prometheus::tests::{series_of_web_a, spec};

    fn times() -> Vec<Timestamp> {
        [100, 101, 102]
            .map(|s| Timestamp::from_second(s).unwrap())
            .to_vec()
    }

    #[test]
    fn the_range_query_is_the_live_selector_without_its_window() {
        let query = range_query(&spec(""), "shop").unwrap();
        assert_eq!(
            query.promql,
            r#"{__name__=~"shortener_memory_resident_bytes|shortener_memory_limit_bytes",namespace="shop"}"#
        );
        let container = range_query(&spec("metric: {source: Container}"), "shop").unwrap();
        assert_eq!(
            container.promql,
            r#"{__name__=~"container_memory_working_set_bytes|container_spec_memory_limit_bytes",container!="",container!="POD",namespace="shop"}"#
        );
    }

    #[test]
    fn a_custom_query_needs_the_limit_from_the_policy() {
        let custom = "metric: {source: Custom, query: my_bytes}";
        let error = range_query(&spec(custom), "shop").unwrap_err();
        assert!(error.to_string().contains("spec.limits.limit"), "{error}");
        let query =
            range_query(&spec(&format!("{custom}\nlimits: {{limit: 100}}")), "shop").unwrap();
        let data: Data = serde_json::from_value(json!({"resultType": "matrix", "result": [
            {"metric": {"pod": "web-a"}, "values": [[100, "25"], [101, "50"]]}
        ]}))
        .unwrap();
        let usage: Vec<Vec<f64>> = timeline(&query, &data, &times())
            .iter()
            .map(|(_, samples)| samples.iter().map(|s| s.usage_ratio).collect())
            .collect();
        assert_eq!(usage, [vec![0.25], vec![0.5], vec![]]);
    }

    #[test]
    fn each_step_pairs_usage_with_limit_per_pod_and_the_fullest_container_speaks() {
        let query = range_query(&spec(""), "shop").unwrap();
        let series = |name: &str, pod: &str, container: &str, values: serde_json::Value| json!({"metric": {"__name__": name, "pod": pod, "container": container}, "values": values});
        let data: Data = serde_json::from_value(json!({"resultType": "matrix", "result": [
            series("shortener_memory_resident_bytes", "web-a", "app", json!([[100, "10"], [101, "90"]])),
            series("shortener_memory_limit_bytes", "web-a", "app", json!([[100, "100"], [101, "100"]])),
            series("shortener_memory_resident_bytes", "web-a", "side", json!([[100, "30"]])),
            series("shortener_memory_limit_bytes", "web-a", "side", json!([[100, "100"]])),
            series("shortener_memory_resident_bytes", "web-b", "app", json!([[101, "5"]])),
        ]}))
        .unwrap();
        let steps = timeline(&query, &data, &times());

        assert_eq!(steps.len(), 3, "a time without data is kept, empty");
        assert_eq!(steps[0].1.len(), 1);
        assert_eq!(
            steps[0].1[0].usage_ratio, 0.3,
            "the side container is fuller"
        );
        assert_eq!(steps[1].1[0].usage_ratio, 0.9);
        assert_eq!(steps[1].1[0].at, times()[1]);
        assert_eq!(steps[1].1.len(), 1, "web-b has no limit series");
        assert!(steps[2].1.is_empty());
    }

    #[test]
    fn a_predicting_policy_reads_the_requests_served_beside_the_memory() {
        let query = range_query(&spec("prediction: {}"), "shop").unwrap();
        assert!(
            query.promql.contains("shortener_http_requests_total"),
            "{}",
            query.promql
        );
        let series = series_of_web_a;
        let data: Data = serde_json::from_value(json!({"resultType": "matrix", "result": [
            series("shortener_memory_resident_bytes", json!({}), json!([[100, "10"], [101, "20"]])),
            series("shortener_memory_limit_bytes", json!({}), json!([[100, "100"], [101, "100"]])),
            series("shortener_http_requests_total", json!({"route": "redirect"}), json!([[100, "7"], [101, "9"]])),
            series("shortener_http_requests_total", json!({"route": "create"}), json!([[101, "1"]])),
        ]}))
        .unwrap();
        let read: Vec<Vec<(u64, Option<f64>)>> = timeline(&query, &data, &times())
            .iter()
            .map(|(_, samples)| samples.iter().map(|s| (s.bytes, s.requests)).collect())
            .collect();
        assert_eq!(
            read,
            [vec![(10, Some(7.0))], vec![(20, Some(10.0))], vec![]]
        );
    }
}
