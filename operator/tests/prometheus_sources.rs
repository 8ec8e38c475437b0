//! Metrics sources as a managed Prometheus asks to be reached: a real Prometheus, scraping a
//! real shortener, behind a TLS listener that wants a bearer token (and, for one source, a
//! client certificate). The token file rotates under the operator, a CA that does not match
//! is refused, and a refused credential is its own `MetricsAvailable=False` reason.

use std::{collections::HashMap, path::Path, time::Duration};

use memory_operator::{
    Error,
    prometheus::{Prometheus, SourceConfig, Sources, build_query, samples_from},
};
use memory_policy_api::crd::MemoryPolicySpec;
use shortener::{Config, Server, units::ByteSize};
use testkit::{PromServer, Target, TlsProxy};
use tokio_util::sync::CancellationToken;

/// A real Prometheus scraping one shortener, `web-a` in namespace `shop`.
struct Scraped {
    prometheus: PromServer,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Scraped {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn scraped() -> Scraped {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        Config::with_database(format!("sqlite:{}", dir.path().join("web-a.db").display()));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.max_memory = Some(ByteSize(64 << 20));
    let server = Server::bind(config).await.expect("a shortener");
    let address = server.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    tokio::spawn(server.serve(stop.clone()));
    let prometheus = PromServer::start(&[Target::new(
        address,
        [("pod", "web-a"), ("namespace", "shop")],
    )])
    .expect("a throwaway Prometheus");
    prometheus
        .wait_for_targets_up(1, Duration::from_secs(60))
        .expect("the shortener scraped");
    Scraped {
        prometheus,
        stop,
        _dir: dir,
    }
}

/// A policy on `web` reading the shortener's own series from `source`.
fn policy(source: &str) -> MemoryPolicySpec {
    serde_yaml::from_str(&format!(
        "targetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}\n\
         thresholds: {{staleAfter: 30s}}\nprometheus: {{source: {source}, timeout: 5s}}"
    ))
    .unwrap()
}

/// `contents` in a file of `dir` called `name`.
fn file(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

/// The sources of `yaml`, a list of source settings.
fn sources(yaml: &str) -> Result<Prometheus, Error> {
    let configs: Vec<SourceConfig> = serde_yaml::from_str(yaml).unwrap();
    Ok(Prometheus::new(Sources::new(&configs)?))
}

/// How many pods (of `web-a` alone) have a reading through `source`, or why none does.
async fn read(prometheus: &Prometheus, source: &str) -> Result<usize, Error> {
    let spec = policy(source);
    let pods = vec!["web-a".to_owned()];
    let query = build_query(&spec, "shop", &pods).unwrap();
    let (data, _) = prometheus.query(&spec, &query).await?;
    let samples = samples_from(&query, &data, &pods, &HashMap::new());
    Ok(memory_engine::newest(&samples).len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_behind_tls_with_a_rotating_bearer_token_is_read_and_a_stale_token_says_so() {
    let scraped = scraped().await;
    let proxy = TlsProxy::start(&scraped.prometheus.url(), "first")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = file(dir.path(), "ca.crt", &proxy.ca_pem());
    let token = file(dir.path(), "token", "first\n");
    let prometheus = sources(&format!(
        "[{{name: managed, url: '{}', caFile: '{ca}', bearerTokenFile: '{token}'}}]",
        proxy.url()
    ))
    .unwrap();

    assert_eq!(read(&prometheus, "managed").await.unwrap(), 1);
    assert_eq!(proxy.forwarded(), 1);

    // The server moves to a new token before the file does: refused, and said so.
    proxy.rotate_token("second");
    let error = read(&prometheus, "managed").await.unwrap_err();
    assert!(
        matches!(error, Error::PrometheusUnauthorized { status: 401, .. }),
        "{error}"
    );
    assert_eq!(error.metrics_reason(), "Unauthorized");
    assert_eq!(proxy.refused(), 1);

    // The kubelet rewrites the file: the next query carries the new token, no restart.
    std::fs::write(dir.path().join("token"), "second").unwrap();
    assert_eq!(read(&prometheus, "managed").await.unwrap(), 1);

    // A token file that disappears is the same reason, naming the source and the file.
    std::fs::remove_file(dir.path().join("token")).unwrap();
    let error = read(&prometheus, "managed").await.unwrap_err();
    assert_eq!(error.metrics_reason(), "Unauthorized");
    assert!(error.to_string().contains("source \"managed\""), "{error}");
    assert_eq!(proxy.forwarded(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_certificate_another_ca_signed_is_refused() {
    let scraped = scraped().await;
    let proxy = TlsProxy::start(&scraped.prometheus.url(), "t")
        .await
        .unwrap();
    let stranger = TlsProxy::start(&scraped.prometheus.url(), "t")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let other_ca = file(dir.path(), "other.crt", &stranger.ca_pem());
    let token = file(dir.path(), "token", "t");
    let prometheus = sources(&format!(
        "[{{name: pinned, url: '{url}', caFile: '{other_ca}', bearerTokenFile: '{token}'}},\
          {{name: system, url: '{url}', bearerTokenFile: '{token}'}}]",
        url = proxy.url()
    ))
    .unwrap();
    for source in ["pinned", "system"] {
        let error = read(&prometheus, source).await.unwrap_err();
        assert_eq!(error.metrics_reason(), "QueryFailed", "{source}: {error}");
        assert!(
            error.to_string().to_lowercase().contains("certificate"),
            "{source}: {error}"
        );
    }
    assert_eq!(proxy.forwarded(), 0, "no query reached the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_wants_a_client_certificate_is_read_with_the_one_configured() {
    let scraped = scraped().await;
    let proxy = TlsProxy::start_mutual(&scraped.prometheus.url(), "t")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = file(dir.path(), "ca.crt", &proxy.ca_pem());
    let token = file(dir.path(), "token", "t");
    let (certificate, key) = proxy.client_certificate("memory-operator").unwrap();
    let certificate = file(dir.path(), "tls.crt", &certificate);
    let key = file(dir.path(), "tls.key", &key);
    let prometheus = sources(&format!(
        "[{{name: mutual, url: '{url}', caFile: '{ca}', bearerTokenFile: '{token}', \
           clientCertFile: '{certificate}', clientKeyFile: '{key}'}},\
          {{name: anonymous, url: '{url}', caFile: '{ca}', bearerTokenFile: '{token}'}}]",
        url = proxy.url()
    ))
    .unwrap();
    assert_eq!(read(&prometheus, "mutual").await.unwrap(), 1);
    let error = read(&prometheus, "anonymous").await.unwrap_err();
    assert_eq!(error.metrics_reason(), "QueryFailed", "{error}");
    assert_eq!(proxy.forwarded(), 1);
}

#[test]
fn a_client_key_that_does_not_parse_stops_the_source_from_being_built() {
    let dir = tempfile::tempdir().unwrap();
    let certificate = file(
        dir.path(),
        "tls.crt",
        "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
    );
    let key = file(dir.path(), "tls.key", "not a key");
    let error = sources(&format!(
        "[{{name: broken, url: 'https://p', clientCertFile: '{certificate}', clientKeyFile: '{key}'}}]"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        error.starts_with("metrics source \"broken\": clientKeyFile"),
        "{error}"
    );
    assert!(error.contains("no PEM private key"), "{error}");
}
