//! What the Prometheus adapter reads, and for how long, from servers that misbehave: an
//! answer of 100 MB, an answer that trickles in, a redirect to another server, too many
//! series. Each is refused with its own error and condition reason, within the query's
//! timeout, and a well-behaved server is answered meanwhile.

use std::time::{Duration, Instant};

use memory_operator::{
    Error,
    prometheus::{Bounds, Prometheus, SourceConfig, Sources, build_query},
};
use memory_policy_api::crd::MemoryPolicySpec;
use prometheus_http_query::response::Data;
use testkit::{HostilePrometheus, Misbehaviour, ScriptedPrometheus};

const TIMEOUT: Duration = Duration::from_secs(2);

/// A custom query (one vector series a pod), with the test's timeout.
fn spec() -> MemoryPolicySpec {
    serde_yaml::from_str(&format!(
        "targetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\n\
         metric: {{source: Custom, query: 'my_bytes'}}\n\
         prometheus: {{timeout: {}s}}",
        TIMEOUT.as_secs()
    ))
    .unwrap()
}

/// The error of one query against `server` read within `bounds`, and how long it took to come.
async fn refusal(bounds: Bounds, server: &HostilePrometheus) -> (Error, Duration) {
    let prometheus = Prometheus::at(&server.url()).unwrap().with_bounds(bounds);
    refusal_by(&prometheus, &spec()).await
}

/// The error of the query of `spec` on `prometheus`, and how long it took to come.
async fn refusal_by(prometheus: &Prometheus, spec: &MemoryPolicySpec) -> (Error, Duration) {
    let query = build_query(spec, "shop", &["web-a".to_owned()]).unwrap();
    let started = Instant::now();
    let error = prometheus.query(spec, &query).await.expect_err("a refusal");
    (error, started.elapsed())
}

async fn hostile(misbehaviour: Misbehaviour) -> HostilePrometheus {
    HostilePrometheus::start(misbehaviour)
        .await
        .expect("a hostile server")
}

#[tokio::test]
async fn an_answer_of_100_mb_is_refused_once_the_cap_is_read() {
    let server = hostile(Misbehaviour::Huge { bytes: 100_000_000 }).await;
    let (error, took) = refusal(Bounds::default(), &server).await;
    assert!(
        matches!(error, Error::PrometheusAnswerTooLarge { limit, .. } if limit == Bounds::default().max_answer_bytes),
        "{error}"
    );
    assert_eq!(error.metrics_reason(), "AnswerTooLarge");
    assert!(took < TIMEOUT, "refused after {took:?}");
}

#[tokio::test]
async fn an_answer_that_trickles_in_is_abandoned_at_the_timeout() {
    let server = hostile(Misbehaviour::Trickle {
        every: Duration::from_millis(100),
    })
    .await;
    let (error, took) = refusal(Bounds::default(), &server).await;
    assert!(matches!(error, Error::PrometheusTimeout { .. }), "{error}");
    assert_eq!(error.metrics_reason(), "QueryTimedOut");
    assert!(
        took >= TIMEOUT && took < TIMEOUT + Duration::from_secs(1),
        "abandoned after {took:?}"
    );
}

#[tokio::test]
async fn a_redirect_to_another_server_is_not_followed() {
    let elsewhere = ScriptedPrometheus::start().await.unwrap();
    let server = hostile(Misbehaviour::RedirectTo {
        base: elsewhere.url(),
    })
    .await;
    let (error, _) = refusal(Bounds::default(), &server).await;
    assert!(
        matches!(&error, Error::PrometheusRedirectRefused { refused, .. } if refused.to.starts_with(&elsewhere.url())),
        "{error}"
    );
    assert_eq!(error.metrics_reason(), "RedirectRefused");
    assert!(
        error
            .to_string()
            .contains("only the configured server is queried"),
        "{error}"
    );
    assert_eq!(elsewhere.queries(), 0, "the other server was never asked");
}

#[tokio::test]
async fn more_series_than_the_cap_are_refused() {
    let server = hostile(Misbehaviour::Series { series: 50 }).await;
    let bounded = Bounds {
        max_series: 49,
        ..Bounds::default()
    };
    let (error, _) = refusal(bounded, &server).await;
    assert!(
        matches!(
            error,
            Error::PrometheusTooManySeries {
                series: 50,
                limit: 49,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(error.metrics_reason(), "TooManySeries");

    let spec = spec();
    let query = build_query(&spec, "shop", &["web-a".to_owned()]).unwrap();
    let (data, _) = Prometheus::at(&server.url())
        .unwrap()
        .query(&spec, &query)
        .await
        .expect("50 series are within the default cap");
    assert!(matches!(data, Data::Vector(series) if series.len() == 50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_does_not_hold_up_queries_to_others() {
    let slow = hostile(Misbehaviour::Trickle {
        every: Duration::from_millis(100),
    })
    .await;
    let healthy = ScriptedPrometheus::start().await.unwrap();
    healthy.set("shop", "web-a", 30.0, 100.0);
    let sources: Vec<SourceConfig> = serde_yaml::from_str(&format!(
        "[{{name: slow, url: '{}'}}, {{name: healthy, url: '{}'}}]",
        slow.url(),
        healthy.url()
    ))
    .unwrap();
    let prometheus = Prometheus::new(Sources::new(&sources).unwrap());
    let stuck = tokio::spawn({
        let prometheus = prometheus.clone();
        let mut spec = spec();
        spec.prometheus.source = "slow".into();
        async move { refusal_by(&prometheus, &spec).await }
    });
    let mut spec = spec();
    spec.prometheus.source = "healthy".into();
    let query = build_query(&spec, "shop", &["web-a".to_owned()]).unwrap();
    let started = Instant::now();
    prometheus
        .query(&spec, &query)
        .await
        .expect("the healthy server answers");
    assert!(started.elapsed() < TIMEOUT / 2, "{:?}", started.elapsed());
    assert!(!stuck.is_finished(), "the slow query is still being read");
    let (error, _) = stuck.await.unwrap();
    assert!(matches!(error, Error::PrometheusTimeout { .. }), "{error}");
}
