//! Reading an answer into the engine's samples: every reading of each current pod in the
//! window (the newest is what the levels judge, the others are the pod's recent history for
//! its growth), the limit that held at each, and the pod's request count at the same scrape.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use prometheus_http_query::response::{Data, Sample as Point};

use super::{MetricsQuery, Reading};
use memory_engine::Sample;

/// Reads the samples of the current `pods` out of an answer; readings without a limit are
/// left out. `pod_limits` gives the limit for custom queries.
pub fn samples_from(
    query: &MetricsQuery,
    data: &Data,
    pods: &[String],
    pod_limits: &HashMap<String, u64>,
) -> Vec<Sample> {
    let wanted = |pod: &str| pods.iter().any(|p| p == pod);
    match (&query.reading, data) {
        (
            Reading::UsageAndLimit {
                usage,
                limit,
                requests,
            },
            Data::Matrix(series),
        ) => {
            let mut containers: BTreeMap<(&str, &str), UsageAndLimit> = BTreeMap::new();
            // Per pod and scrape time: the requests served, summed over the counter's labels.
            let mut served: HashMap<(&str, i64), f64> = HashMap::new();
            for range in series {
                let labels = range.metric();
                let Some(pod) = labels.get("pod").filter(|p| wanted(p)) else {
                    continue;
                };
                let name = labels.get("__name__").map(String::as_str);
                if name.is_some() && name == *requests {
                    for point in range.samples() {
                        *served.entry((pod, millis(point))).or_default() += point.value();
                    }
                    continue;
                }
                let container = labels.get("container").map_or("", String::as_str);
                let entry = containers.entry((pod, container)).or_default();
                match name {
                    Some(name) if name == *usage => entry.0 = range.samples(),
                    Some(name) if name == *limit => entry.1 = range.samples(),
                    _ => {}
                }
            }
            let readings = containers
                .into_iter()
                .flat_map(|((pod, _), (used, limits))| {
                    used.iter().filter_map(move |point| {
                        // The limit that held then; both are scraped together, and a reading
                        // with an older limit is as old as that limit.
                        let limit = limits
                            .iter()
                            .take_while(|l| l.timestamp() <= point.timestamp())
                            .last()?;
                        let at = timestamp(point.timestamp().min(limit.timestamp()));
                        Some((pod.to_owned(), point.value(), limit.value(), at))
                    })
                })
                .collect::<Vec<_>>();
            let mut samples = most_pressed(readings);
            if requests.is_some() {
                for sample in &mut samples {
                    let key = (sample.pod.as_str(), sample.at.as_millisecond());
                    sample.requests = served.get(&key).copied();
                }
            }
            samples
        }
        (Reading::Custom, Data::Vector(series)) => series
            .iter()
            .filter_map(|instant| {
                let pod = instant.metric().get("pod").filter(|p| wanted(p))?;
                custom(pod, instant.sample(), pod_limits)
            })
            .collect(),
        (Reading::Custom, Data::Matrix(series)) => series
            .iter()
            .filter_map(|range| Some((range.metric().get("pod").filter(|p| wanted(p))?, range)))
            .flat_map(|(pod, range)| {
                range
                    .samples()
                    .iter()
                    .filter_map(|point| custom(pod, point, pod_limits))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// One container's usage readings and limit readings.
type UsageAndLimit<'a> = (&'a [Point], &'a [Point]);

/// A custom query's reading of `pod`, against the limit in its spec.
fn custom(pod: &str, point: &Point, pod_limits: &HashMap<String, u64>) -> Option<Sample> {
    let limit = *pod_limits.get(pod).filter(|l| **l > 0)?;
    let bytes = point.value();
    Some(Sample {
        pod: pod.to_owned(),
        usage_ratio: bytes / limit as f64,
        bytes: bytes as u64,
        limit_bytes: limit,
        at: timestamp(point.timestamp()),
        requests: None,
    })
}

/// One sample per pod and time from (pod, bytes, limit, time) readings, one per container: the
/// most pressed container speaks for its pod, and a zero limit (unlimited) gives no ratio, so
/// no sample. By pod, oldest first.
pub fn most_pressed(
    readings: impl IntoIterator<Item = (String, f64, f64, Timestamp)>,
) -> Vec<Sample> {
    let mut best: BTreeMap<(String, Timestamp), Sample> = BTreeMap::new();
    for (pod, bytes, limit, at) in readings {
        if limit <= 0.0 {
            continue;
        }
        let sample = Sample {
            pod: pod.clone(),
            usage_ratio: bytes / limit,
            bytes: bytes as u64,
            limit_bytes: limit as u64,
            at,
            requests: None,
        };
        let key = (pod, at);
        if best
            .get(&key)
            .is_none_or(|b| sample.usage_ratio > b.usage_ratio)
        {
            best.insert(key, sample);
        }
    }
    best.into_values().collect()
}

/// A point's time in whole milliseconds, as [`timestamp`] keeps it.
fn millis(point: &Point) -> i64 {
    (point.timestamp() * 1000.0) as i64
}

fn timestamp(seconds: f64) -> Timestamp {
    Timestamp::from_millisecond((seconds * 1000.0) as i64).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::prometheus::{
        build_query,
        tests::{pods, series_of_web_a, spec},
    };

    fn matrix(value: serde_json::Value) -> Data {
        serde_json::from_value(json!({"resultType": "matrix", "result": value})).unwrap()
    }

    #[test]
    fn the_newest_sample_of_each_current_pod_becomes_its_reading() {
        let query = build_query(&spec(""), "shop", &pods(&["web-a"])).unwrap();
        let series = |name: &str, pod: &str, points: serde_json::Value| json!({"metric": {"__name__": name, "pod": pod, "namespace": "shop"}, "values": points});
        let data = matrix(json!([
            series(
                "shortener_memory_resident_bytes",
                "web-a",
                json!([[100.0, "10"], [101.0, "50"]])
            ),
            series(
                "shortener_memory_limit_bytes",
                "web-a",
                json!([[101.0, "100"]])
            ),
            series(
                "shortener_memory_resident_bytes",
                "web-b",
                json!([[101.0, "20"]])
            ),
            series(
                "shortener_memory_limit_bytes",
                "web-b",
                json!([[101.0, "100"]])
            ),
            series(
                "shortener_memory_resident_bytes",
                "gone-c",
                json!([[101.0, "99"]])
            ),
            series(
                "shortener_memory_limit_bytes",
                "gone-c",
                json!([[101.0, "100"]])
            ),
        ]));
        let samples = samples_from(&query, &data, &pods(&["web-a", "web-b"]), &HashMap::new());
        assert_eq!(samples.len(), 2, "pods not in the Deployment are ignored");
        assert_eq!(samples[0].pod, "web-a");
        assert_eq!(samples[0].usage_ratio, 0.5);
        assert_eq!(samples[0].at, Timestamp::from_second(101).unwrap());
        assert_eq!(samples[1].bytes, 20);
    }

    #[test]
    fn a_pod_without_a_limit_reading_has_no_sample() {
        let query = build_query(&spec(""), "shop", &pods(&["web-a"])).unwrap();
        let data = matrix(json!([{
            "metric": {"__name__": "shortener_memory_resident_bytes", "pod": "web-a"},
            "values": [[101.0, "50"]]
        }]));
        assert!(samples_from(&query, &data, &pods(&["web-a"]), &HashMap::new()).is_empty());
    }

    #[test]
    fn custom_queries_take_the_limit_from_the_pod_spec() {
        let yaml = "metric: {source: Custom, query: 'my_bytes'}";
        let query = build_query(&spec(yaml), "shop", &pods(&["web-a"])).unwrap();
        assert_eq!(query.promql, r#"my_bytes{namespace="shop"}"#);
        let data: Data = serde_json::from_value(json!({"resultType": "vector", "result": [
            {"metric": {"pod": "web-a"}, "value": [101.0, "30"]}
        ]}))
        .unwrap();
        let limits = HashMap::from([("web-a".to_owned(), 60)]);
        let samples = samples_from(&query, &data, &pods(&["web-a"]), &limits);
        assert_eq!(samples[0].usage_ratio, 0.5);
    }

    #[test]
    fn a_predicting_query_reads_every_scrape_with_the_limit_then_and_the_requests_served() {
        let query = build_query(&spec("prediction: {}"), "shop", &pods(&["web-a"])).unwrap();
        let series = series_of_web_a;
        let data = matrix(json!([
            series(
                "shortener_memory_resident_bytes",
                json!({}),
                json!([[100.0, "10"], [115.0, "20"], [130.0, "30"]])
            ),
            series(
                "shortener_memory_limit_bytes",
                json!({}),
                json!([[100.0, "100"], [115.0, "200"], [130.0, "200"]])
            ),
            series(
                "shortener_http_requests_total",
                json!({"route": "redirect", "status": "302"}),
                json!([[100.0, "5"], [115.0, "9"], [130.0, "12"]])
            ),
            series(
                "shortener_http_requests_total",
                json!({"route": "create", "status": "201"}),
                json!([[115.0, "1"], [130.0, "2"]])
            ),
        ]));
        let samples = samples_from(&query, &data, &pods(&["web-a"]), &HashMap::new());
        let read: Vec<(i64, u64, u64, Option<f64>)> = samples
            .iter()
            .map(|s| (s.at.as_second(), s.bytes, s.limit_bytes, s.requests))
            .collect();
        assert_eq!(
            read,
            [
                (100, 10, 100, Some(5.0)),
                (115, 20, 200, Some(10.0)),
                (130, 30, 200, Some(14.0)),
            ]
        );
    }

    #[test]
    fn a_predicting_custom_query_reads_its_subquery_s_points() {
        let yaml = "metric: {source: Custom, query: 'my_bytes'}\nprediction: {window: 5m}";
        let query = build_query(&spec(yaml), "shop", &pods(&["web-a"])).unwrap();
        assert_eq!(query.promql, r#"(my_bytes{namespace="shop"})[5m:15s]"#);
        let data = matrix(json!([
            {"metric": {"pod": "web-a"}, "values": [[100.0, "30"], [115.0, "36"]]},
            {"metric": {"pod": "gone"}, "values": [[100.0, "30"]]},
        ]));
        let limits = HashMap::from([("web-a".to_owned(), 60)]);
        let ratios: Vec<f64> = samples_from(&query, &data, &pods(&["web-a"]), &limits)
            .iter()
            .map(|s| s.usage_ratio)
            .collect();
        assert_eq!(ratios, [0.5, 0.6]);
    }
}
