//! The metrics sources a policy may name: defined by the operator's administrator, never by a
//! policy, so that no MemoryPolicy can make the operator (which holds eviction and scaling
//! rights across the cluster) connect anywhere its administrator did not configure.
//!
//! Each source is a name, a URL, and how to reach it: a timeout that caps every policy's, a
//! bearer token read from a file at every query (a projected service-account token or a
//! mounted Secret is rotated by the kubelet under the operator's feet), a CA bundle that is
//! then the only one trusted, and a client certificate. Files other than the token are read
//! once, at start: a source that cannot be built stops the operator with a message naming the
//! source and the file, rather than failing one evaluation at a time.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use http::{Response, header::HeaderValue};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use serde::Deserialize;
use url::Url;

use super::answer::{self, HttpClient};
use crate::{Error, Result};
use memory_policy_api::crd::{self, DEFAULT_SOURCE};

/// A source as its administrator writes it, in the file `--sources` names.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceConfig {
    /// What policies call it (`spec.prometheus.source`).
    pub name: String,
    /// Prometheus's base URL, `http://` or `https://`.
    pub url: String,
    /// The longest a query may run, whatever a policy's `prometheus.timeout` says.
    #[serde(default)]
    pub timeout: Option<crd::Duration>,
    /// A file holding the bearer token to send, read at every query.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// PEM certificates: the only CAs trusted for this source.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS, with `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

/// The file `--sources` names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesFile {
    sources: Vec<SourceConfig>,
}

/// One metrics source, ready to query.
#[derive(Debug)]
pub struct Source {
    name: String,
    url: String,
    /// `url`, ending in `/`, so that API paths are joined below it.
    base: Url,
    /// One client per source, its TLS settings built in, so that connections are reused.
    http: HttpClient,
    timeout: Option<Duration>,
    bearer_token_file: Option<PathBuf>,
}

impl Source {
    /// Builds the source `config` describes, reading its CA and client certificate files.
    pub fn new(config: &SourceConfig) -> Result<Source> {
        let invalid = |message: String| Error::InvalidSource {
            name: config.name.clone(),
            message,
        };
        if !crd::is_dns_label(&config.name) {
            return Err(invalid(
                "a source's name must be a DNS label (lower-case letters, digits and '-', \
                 at most 63 characters), as policies write it in spec.prometheus.source"
                    .into(),
            ));
        }
        let url =
            Url::parse(&config.url).map_err(|e| invalid(format!("url {:?}: {e}", config.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "url {:?} must start with http:// or https://",
                config.url
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            // The URL appears in policies' status messages, which their teams read.
            return Err(invalid(
                "the url must not carry credentials: use bearerTokenFile".into(),
            ));
        }
        let timeout = config.timeout.map(Duration::from);
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(invalid("timeout must be a positive duration".into()));
        }

        let tls = tls_config(config, url.scheme() == "https").map_err(invalid)?;
        let mut tcp = HttpConnector::new();
        // Requests are small and answered at once: no waiting to fill a segment.
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Source {
            name: config.name.clone(),
            url: config.url.clone(),
            base: with_trailing_slash(url),
            http,
            timeout,
            bearer_token_file: config.bearer_token_file.clone(),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// GETs `path` (such as `api/v1/query`) with `params` from this source, with its
    /// credentials; redirects are followed within the source only.
    pub async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Response<Incoming>> {
        let mut url = self.base.join(path).map_err(|e| Error::PrometheusFailed {
            url: self.url.clone(),
            message: format!("{path}: {e}"),
        })?;
        url.query_pairs_mut()
            .extend_pairs(params.iter().map(|(name, value)| (*name, value.as_str())));
        let authorization = self.authorization().await?;
        answer::follow(&self.http, &self.url, url, authorization.as_ref()).await
    }

    /// How long a query asking for `wanted` may run here: the shorter of the two.
    pub fn timeout(&self, wanted: Duration) -> Duration {
        self.timeout.map_or(wanted, |cap| cap.min(wanted))
    }

    /// The `Authorization` header to send, read from the token file now: a rotated token is
    /// used from the next query on.
    pub async fn authorization(&self) -> Result<Option<HeaderValue>> {
        let Some(path) = &self.bearer_token_file else {
            return Ok(None);
        };
        let unreadable = |message: String| Error::SourceCredentials {
            name: self.name.clone(),
            path: path.clone(),
            message,
        };
        let token = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| unreadable(e.to_string()))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(unreadable("the file is empty".into()));
        }
        let mut value = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| unreadable("the token holds characters a header cannot".into()))?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

/// Every source the operator knows, by name.
#[derive(Debug)]
pub struct Sources(BTreeMap<String, Source>);

impl Sources {
    /// The sources of the file at `path` (`sources:`, a list of [`SourceConfig`]).
    pub fn load(path: &Path) -> Result<Sources> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let file: SourcesFile = serde_path_to_error::deserialize(
            serde_yaml::Deserializer::from_str(&text),
        )
        .map_err(|e| Error::SourcesFile {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Sources::new(&file.sources).map_err(|e| Error::SourcesFile {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// One source, `default`, at `url`: the operator's `--prometheus-url`.
    pub fn single(url: &str) -> Result<Sources> {
        Sources::new(&[SourceConfig {
            name: DEFAULT_SOURCE.to_owned(),
            url: url.to_owned(),
            timeout: None,
            bearer_token_file: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
        }])
    }

    /// The sources `configs` describe: at least one, each name once.
    pub fn new(configs: &[SourceConfig]) -> Result<Sources> {
        if configs.is_empty() {
            return Err(Error::NoSources);
        }
        let mut sources = BTreeMap::new();
        for config in configs {
            let source = Source::new(config)?;
            if sources.insert(config.name.clone(), source).is_some() {
                return Err(Error::InvalidSource {
                    name: config.name.clone(),
                    message: "defined twice".into(),
                });
            }
        }
        Ok(Sources(sources))
    }

    /// The source called `name`.
    pub fn get(&self, name: &str) -> Result<&Source> {
        self.0.get(name).ok_or_else(|| Error::UnknownSource {
            name: name.to_owned(),
            known: self.0.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }
}

/// `url` with a path ending in `/`.
fn with_trailing_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// The TLS settings of a source: its CA bundle as the only roots (else the system's, for an
/// `https` source), and its client certificate; with ring, the provider kube's connections use
/// too. An error says what is wrong, naming the file.
fn tls_config(config: &SourceConfig, https: bool) -> Result<ClientConfig, String> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let mut roots = RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let pem = read_file(path)?;
            let certificates = certificates(&pem, "caFile", path)?;
            let (_, unusable) = roots.add_parsable_certificates(certificates);
            if roots.is_empty() || unusable > 0 {
                return Err(format!(
                    "caFile {}: {unusable} certificate(s) cannot be used as a CA",
                    path.display()
                ));
            }
        }
        None if https => {
            // Roots that cannot be read are left out, as a browser would.
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
        // Plain HTTP: no TLS, so no roots to hold in memory.
        None => {}
    }
    let builder = builder.with_root_certificates(roots);
    match (&config.client_cert_file, &config.client_key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(certificate), Some(key)) => {
            let chain = certificates(&read_file(certificate)?, "clientCertFile", certificate)?;
            let key = PrivateKeyDer::from_pem_slice(&read_file(key)?).map_err(|e| {
                format!(
                    "clientKeyFile {}: no PEM private key read ({e})",
                    key.display()
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                format!(
                    "clientCertFile {} with clientKeyFile: {e}",
                    certificate.display()
                )
            })
        }
        _ => Err("clientCertFile and clientKeyFile go together".into()),
    }
}

/// The PEM certificates of `pem`, the file `path` of setting `field`: at least one.
fn certificates(
    pem: &[u8],
    field: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{field} {}: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "{field} {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certificates)
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Vec<SourceConfig> {
        serde_yaml::from_str::<SourcesFile>(yaml).unwrap().sources
    }

    fn refusal(yaml: &str) -> String {
        Sources::new(&config(yaml)).unwrap_err().to_string()
    }

    #[test]
    fn sources_are_found_by_name_and_an_unknown_one_lists_the_known() {
        let sources = Sources::new(&config(
            "sources:\n- {name: default, url: 'http://prom:9090'}\n- {name: team-a, url: 'https://a.example', timeout: 2s}",
        ))
        .unwrap();
        assert_eq!(sources.get("team-a").unwrap().url(), "https://a.example");
        let error = sources.get("team-b").unwrap_err().to_string();
        assert!(error.contains("\"team-b\""), "{error}");
        assert!(error.contains("default, team-a"), "{error}");
    }

    #[test]
    fn a_sources_timeout_caps_the_policys() {
        let sources = Sources::new(&config(
            "sources:\n- {name: default, url: 'http://prom:9090', timeout: 2s}",
        ))
        .unwrap();
        let source = sources.get("default").unwrap();
        assert_eq!(
            source.timeout(Duration::from_secs(5)),
            Duration::from_secs(2)
        );
        assert_eq!(
            source.timeout(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        let single = Sources::single("http://prom:9090").unwrap();
        let default = single.get("default").unwrap();
        assert_eq!(
            default.timeout(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn a_bad_source_is_refused_with_its_name_and_what_is_wrong() {
        for (yaml, expected) in [
            ("sources: []", "no metrics source is defined"),
            (
                "sources:\n- {name: a, url: 'http://p'}\n- {name: a, url: 'http://q'}",
                "\"a\": defined twice",
            ),
            ("sources:\n- {name: Team, url: 'http://p'}", "DNS label"),
            (
                "sources:\n- {name: a, url: 'ftp://p'}",
                "must start with http://",
            ),
            (
                "sources:\n- {name: a, url: 'prometheus:9090'}",
                "must start with http://",
            ),
            (
                "sources:\n- {name: a, url: 'http://u:pw@p'}",
                "must not carry credentials",
            ),
            (
                "sources:\n- {name: a, url: 'http://p', timeout: 0s}",
                "positive",
            ),
            (
                "sources:\n- {name: a, url: 'https://p', caFile: /nonexistent/ca.crt}",
                "/nonexistent/ca.crt: No such file",
            ),
            (
                "sources:\n- {name: a, url: 'https://p', clientCertFile: /x}",
                "go together",
            ),
        ] {
            let error = refusal(yaml);
            assert!(error.contains(expected), "{yaml}: {error}");
        }
    }

    #[test]
    fn no_source_at_all_is_told_without_naming_one() {
        let error = refusal("sources: []");
        assert_eq!(
            error,
            "no metrics source is defined; define at least one, usually `default`"
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "not a certificate").unwrap();
        let yaml = format!(
            "sources:\n- {{name: a, url: 'https://p', caFile: {}}}",
            file.path().display()
        );
        assert!(refusal(&yaml).contains("holds no PEM certificate"));
    }

    #[test]
    fn a_misspelt_setting_is_refused_with_its_place() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            "sources:\n- name: a\n  url: http://p\n  bearerTokenFlie: /t\n",
        )
        .unwrap();
        let error = Sources::load(file.path()).unwrap_err().to_string();
        assert!(error.contains("sources[0]"), "{error}");
        assert!(error.contains("bearerTokenFlie"), "{error}");
    }

    #[tokio::test]
    async fn the_token_is_read_at_every_query() {
        let token = tempfile::NamedTempFile::new().unwrap();
        let yaml = format!(
            "sources:\n- {{name: a, url: 'http://p', bearerTokenFile: {}}}",
            token.path().display()
        );
        let sources = Sources::new(&config(&yaml)).unwrap();
        let source = sources.get("a").unwrap();
        let error = source.authorization().await.unwrap_err().to_string();
        assert!(error.contains("empty"), "{error}");
        std::fs::write(token.path(), "first\n").unwrap();
        let first = source.authorization().await.unwrap().unwrap();
        assert_eq!(first, "Bearer first");
        assert!(first.is_sensitive());
        std::fs::write(token.path(), "second").unwrap();
        assert_eq!(
            source.authorization().await.unwrap().unwrap(),
            "Bearer second"
        );
        drop(token);
        let error = source.authorization().await.unwrap_err().to_string();
        assert!(error.contains("source \"a\""), "{error}");
    }
}
