//! The Prometheus adapter against a real Prometheus scraping real shortener servers.

use std::{collections::HashMap, time::Duration};

use memory_operator::prometheus::{Prometheus, build_query, samples_from};
use memory_policy_api::crd::{MemoryPolicySpec, MetricSource};
use prometheus_http_query::response::Data;
use shortener::{Config, Server, units::ByteSize};
use testkit::{PromServer, Target};
use tokio_util::sync::CancellationToken;

const MIB: u64 = 1 << 20;

/// A shortener serving on a free port until the returned token is cancelled.
async fn shortener(limit: u64, dir: &tempfile::TempDir, name: &str) -> (String, CancellationToken) {
    let url = format!("sqlite:{}", dir.path().join(format!("{name}.db")).display());
    let mut config = Config::with_database(url);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.max_memory = Some(ByteSize(limit));
    let server = Server::bind(config).await.expect("a shortener");
    let address = server.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    tokio::spawn(server.serve(stop.clone()));
    (address, stop)
}

fn policy() -> MemoryPolicySpec {
    serde_yaml::from_str(
        "targetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\nthresholds: {staleAfter: 10s}",
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_query_reads_every_current_pod_and_a_dead_prometheus_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut targets = Vec::new();
    let mut stops = Vec::new();
    for (pod, limit) in [
        ("web-a", 64 * MIB),
        ("web-b", 128 * MIB),
        ("web-old", 256 * MIB),
    ] {
        let (address, stop) = shortener(limit, &dir, pod).await;
        targets.push(Target::new(address, [("pod", pod), ("namespace", "shop")]));
        stops.push(stop);
    }
    let mut prometheus = PromServer::start(&targets).expect("a throwaway Prometheus");
    prometheus
        .wait_for_targets_up(3, Duration::from_secs(60))
        .expect("targets scraped");

    let spec = policy();
    let current = vec!["web-a".to_owned(), "web-b".to_owned()];
    let query = build_query(&spec, "shop", &current).unwrap();
    let client = Prometheus::at(&prometheus.url()).unwrap();
    let (data, _) = client.query(&spec, &query).await.expect("an answer");
    let Data::Matrix(series) = &data else {
        panic!("a matrix: {data:?}")
    };
    let mut answered: Vec<&str> = series.iter().map(|s| s.metric()["pod"].as_str()).collect();
    answered.sort_unstable();
    answered.dedup();
    assert_eq!(
        answered,
        ["web-a", "web-b"],
        "Prometheus answers for the current pods only"
    );
    let samples = samples_from(&query, &data, &current, &HashMap::new());
    // Every scrape of the staleness window comes; each pod's newest is what the levels judge.
    let newest = memory_engine::newest(&samples);
    let pods: Vec<&str> = newest.iter().map(|s| s.pod.as_str()).collect();
    assert_eq!(
        pods,
        ["web-a", "web-b"],
        "the replaced pod web-old is not asked for"
    );
    assert_eq!(newest[0].limit_bytes, 64 * MIB);
    assert_eq!(newest[1].limit_bytes, 128 * MIB);
    for sample in &newest {
        assert!(sample.bytes > MIB, "{sample:?}");
        let expected = sample.bytes as f64 / sample.limit_bytes as f64;
        assert!((sample.usage_ratio - expected).abs() < 1e-9);
        let age = jiff::Timestamp::now().duration_since(sample.at);
        assert!(age.as_secs() < 10, "sample is {age:?} old");
    }

    // A custom query is sent held to the policy's namespace, and a real Prometheus reads it.
    let mut custom = spec.clone();
    custom.metric.source = MetricSource::Custom;
    custom.metric.query = Some("max by (pod) (shortener_memory_resident_bytes)".into());
    for (namespace, pods) in [("shop", 3), ("bank", 0)] {
        let query = build_query(&custom, namespace, &current).unwrap();
        assert!(
            query.promql.contains(&format!("namespace=\"{namespace}\"")),
            "{}",
            query.promql
        );
        let (data, _) = client.query(&custom, &query).await.expect("an answer");
        let Data::Vector(series) = &data else {
            panic!("a vector: {data:?}")
        };
        assert_eq!(series.len(), pods, "{namespace}: {data:?}");
    }

    prometheus.stop().unwrap();
    let error = client.query(&spec, &query).await.unwrap_err();
    assert!(error.to_string().contains(&prometheus.url()), "{error}");
    for stop in stops {
        stop.cancel();
    }
}
