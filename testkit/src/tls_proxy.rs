//! An HTTPS reverse proxy with bearer-token auth, and optionally client certificates, in front
//! of a plain-HTTP server such as a real Prometheus: how managed Prometheus services are reached.
//! Each proxy makes its own CA, which signs its serving certificate and any client certificates.

use std::{
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose as Usage,
    IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::{
    RootCertStore, ServerConfig,
    crypto::ring,
    pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
    server::WebPkiClientVerifier,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;

use crate::{Error, Result};

/// How long to wait after a failed `accept` (such as too many open files) before the next, so
/// that a lasting failure does not spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// The body of a 401.
const REFUSAL: &str = "missing or wrong bearer token\n";

/// A running HTTPS proxy on a free loopback port; it stops when dropped.
pub struct TlsProxy {
    url: String,
    ca: CertifiedIssuer<'static, KeyPair>,
    shared: Arc<Shared>,
    _stop: DropGuard,
}

/// What the request handler and the [`TlsProxy`] handle share.
struct Shared {
    upstream: String,
    /// The current token: a watch channel, so that a rotation takes no lock that could be poisoned.
    token: watch::Sender<String>,
    refused: AtomicUsize,
    forwarded: AtomicUsize,
    client: Client<HttpConnector, Body>,
}

impl TlsProxy {
    /// Starts the proxy in front of `upstream` (such as "http://127.0.0.1:9090"), taking `token`.
    pub async fn start(upstream: &str, token: &str) -> Result<TlsProxy> {
        TlsProxy::serve(upstream, token, false).await
    }

    /// Like start, and also requires a client certificate signed by the proxy's CA (mutual TLS).
    pub async fn start_mutual(upstream: &str, token: &str) -> Result<TlsProxy> {
        TlsProxy::serve(upstream, token, true).await
    }

    /// Base URL, "https://localhost:PORT"; the certificate is for `localhost` and 127.0.0.1.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The PEM of the CA that signed the server certificate (and client certificates).
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A client certificate and its private key, PEM each, signed by the proxy's CA, for `name`.
    pub fn client_certificate(&self, name: &str) -> Result<(String, String)> {
        let (cert, key) = leaf(&self.ca, Vec::new(), name, Usage::ClientAuth)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// From now on the proxy accepts `token` only (the old one is refused): a rotation.
    pub fn rotate_token(&self, token: &str) {
        self.shared.token.send_replace(token.to_owned());
    }

    /// Requests answered 401 so far (missing or wrong bearer token).
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Requests forwarded upstream so far.
    pub fn forwarded(&self) -> usize {
        self.shared.forwarded.load(Ordering::Relaxed)
    }

    async fn serve(upstream: &str, token: &str, mutual: bool) -> Result<TlsProxy> {
        let ca = certificate_authority()?;
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&ca, mutual)?));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(Error::Port)?;
        let port = listener.local_addr().map_err(Error::Port)?.port();
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            token: watch::Sender::new(token.to_owned()),
            refused: AtomicUsize::new(0),
            forwarded: AtomicUsize::new(0),
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        let app = Router::new().fallback(proxy).with_state(shared.clone());
        let stop = CancellationToken::new();
        let span = tracing::debug_span!("tls_proxy", port);
        tokio::spawn(accept(listener, acceptor, app, stop.clone()).instrument(span));
        Ok(TlsProxy {
            url: format!("https://localhost:{port}"),
            ca,
            shared,
            _stop: stop.drop_guard(),
        })
    }
}

/// A fresh CA for one proxy.
fn certificate_authority() -> Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "testkit TLS proxy CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().map_err(tls)?).map_err(tls)
}

/// A certificate for `names` and `common_name`, for `usage`, signed by `ca`, with its key.
fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: Vec<String>,
    common_name: &str,
    usage: Usage,
) -> Result<(rcgen::Certificate, KeyPair)> {
    let mut params = CertificateParams::new(names).map_err(tls)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().map_err(tls)?;
    Ok((params.signed_by(&key, ca).map_err(tls)?, key))
}

/// Serving for `localhost` and 127.0.0.1 with a certificate from `ca`; if `mutual`, only to
/// clients with a certificate from `ca` too.
fn server_config(ca: &CertifiedIssuer<'static, KeyPair>, mutual: bool) -> Result<ServerConfig> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let (cert, key) = leaf(ca, names, "testkit TLS proxy", Usage::ServerAuth)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls)?;
    let builder = if mutual {
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).map_err(tls)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        builder.with_client_cert_verifier(verifier.build().map_err(tls)?)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(vec![cert.der().clone()], key)
        .map_err(tls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn tls(error: impl std::fmt::Display) -> Error {
    Error::Tls(error.to_string())
}

/// Accepts connections until `stop`, each served by a task of its own that also ends at `stop`.
async fn accept(listener: TcpListener, tls: TlsAcceptor, app: Router, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let connection = connection(stream, tls.clone(), app.clone());
                let stop = stop.clone();
                tokio::spawn(
                    async move { stop.run_until_cancelled(connection).await }
                        .instrument(tracing::debug_span!("connection", %peer)),
                );
            }
            Err(error) => {
                tracing::debug!(%error, "could not accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Serves one connection; a failed handshake drops it and concerns no other connection.
async fn connection(stream: TcpStream, acceptor: TlsAcceptor, app: Router) {
    let tls = match acceptor.accept(stream).await {
        Ok(tls) => tls,
        Err(error) => {
            tracing::debug!(%error, "TLS handshake failed; dropping the connection");
            return;
        }
    };
    let served = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "the connection ended with an error");
    }
}

/// Refuses a request without the current bearer token, else forwards it and streams the answer.
async fn proxy(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let presented = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let accepted = presented == Some(shared.token.borrow().as_str());
    if !accepted {
        shared.refused.fetch_add(1, Ordering::Relaxed);
        let challenge = [(header::WWW_AUTHENTICATE, "Bearer")];
        return (StatusCode::UNAUTHORIZED, challenge, REFUSAL).into_response();
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = match format!("{}{path}", shared.upstream).parse() {
        Ok(uri) => uri,
        Err(error) => return bad_gateway(&error),
    };
    let mut onward = Request::new(body);
    *onward.method_mut() = parts.method;
    *onward.uri_mut() = uri;
    onward.headers_mut().extend(content_type(&parts.headers));
    let answer = match shared.client.request(onward).await {
        Ok(answer) => answer,
        Err(error) => return bad_gateway(&error),
    };
    shared.forwarded.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = answer.into_parts();
    let content_type = content_type(&parts.headers).map(|header| [header]);
    (parts.status, content_type, Body::new(body)).into_response()
}

/// The one header passed on each way: requests and answers are otherwise the proxy's own.
fn content_type(headers: &HeaderMap) -> Option<(HeaderName, HeaderValue)> {
    let value = headers.get(header::CONTENT_TYPE)?;
    Some((header::CONTENT_TYPE, value.clone()))
}

fn bad_gateway(error: &dyn std::error::Error) -> Response {
    let message = format!("the TLS proxy could not reach its upstream: {error}\n");
    (StatusCode::BAD_GATEWAY, message).into_response()
}

#[cfg(test)]
mod tests {
    use axum::{
        http::{Method, Uri},
        routing::get,
    };
    use hyper_util::rt::TokioExecutor;
    use rustls::{
        ClientConfig,
        pki_types::{CertificateDer, pem::PemObject},
    };

    use super::*;

    /// A plain-HTTP upstream that echoes method, path, query and body; `/teapot` answers 418.
    async fn upstream() -> String {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/teapot", get(|| async { StatusCode::IM_A_TEAPOT }))
            .fallback(|method: Method, uri: Uri, body: String| async move {
                format!("{method} {uri} {body}")
            });
        tokio::spawn(axum::serve(listener, app).into_future());
        format!("http://{address}")
    }

    type TestClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, String>;

    /// A proxy accepting `token` in front of a fresh upstream, its URL and a client trusting it.
    async fn started(token: &str) -> (TlsProxy, String, TestClient) {
        let proxy = TlsProxy::start(&upstream().await, token).await.unwrap();
        let client = client(Some(&proxy.ca_pem()), None);
        let url = proxy.url();
        (proxy, url, client)
    }

    /// A client trusting `ca` (nothing when `None`), presenting `identity` (cert, key) if given.
    fn client(ca: Option<&str>, identity: Option<(String, String)>) -> TestClient {
        let mut roots = RootCertStore::empty();
        if let Some(pem) = ca {
            roots
                .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
                .unwrap();
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let cert = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
                builder.with_client_auth_cert(vec![cert], key).unwrap()
            }
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .build();
        Client::builder(TokioExecutor::new()).build(https)
    }

    /// The answer to `method url` with `token` as bearer token (none when empty) and `body`.
    async fn send(
        client: &TestClient,
        method: &str,
        url: &str,
        token: &str,
        body: &str,
    ) -> Result<Response<String>, hyper_util::client::legacy::Error> {
        let mut request = axum::http::Request::builder().method(method).uri(url);
        if !token.is_empty() {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let answer = client
            .request(request.body(body.to_owned()).unwrap())
            .await?;
        let (parts, body) = answer.into_parts();
        let bytes = http_body_util::BodyExt::collect(body)
            .await
            .unwrap()
            .to_bytes();
        Ok(Response::from_parts(
            parts,
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
    }

    /// The status of `GET url` with `token` as bearer token.
    async fn status(
        client: &TestClient,
        url: &str,
        token: &str,
    ) -> Result<u16, hyper_util::client::legacy::Error> {
        Ok(send(client, "GET", url, token, "").await?.status().as_u16())
    }

    #[tokio::test]
    async fn a_request_with_the_token_is_forwarded_and_answered_by_the_upstream() {
        let (proxy, url, client) = started("secret").await;

        let query = format!("{url}/api/v1/query?query=up");
        let answer = send(&client, "POST", &query, "secret", "time=1").await;
        let answer = answer.unwrap();
        assert_eq!(answer.status().as_u16(), 200);
        let content_type = answer.headers()["content-type"].clone();
        assert_eq!(content_type, "text/plain; charset=utf-8");
        assert_eq!(answer.body(), "POST /api/v1/query?query=up time=1");

        let teapot = status(&client, &format!("{url}/teapot"), "secret").await;
        assert_eq!(teapot.unwrap(), 418);
        assert_eq!((proxy.forwarded(), proxy.refused()), (2, 0));
    }

    #[tokio::test]
    async fn a_request_without_or_with_a_wrong_token_is_refused_with_401_and_counted() {
        let (proxy, url, client) = started("secret").await;

        let without = send(&client, "GET", &url, "", "").await.unwrap();
        assert_eq!(without.status().as_u16(), 401);
        assert_eq!(without.headers()["www-authenticate"], "Bearer");
        assert_eq!(status(&client, &url, "guess").await.unwrap(), 401);
        assert_eq!((proxy.forwarded(), proxy.refused()), (0, 2));
    }

    #[tokio::test]
    async fn after_rotate_token_the_old_token_is_refused_and_the_new_one_accepted() {
        let (proxy, url, client) = started("old").await;
        assert_eq!(status(&client, &url, "old").await.unwrap(), 200);

        proxy.rotate_token("new");
        assert_eq!(status(&client, &url, "old").await.unwrap(), 401);
        assert_eq!(status(&client, &url, "new").await.unwrap(), 200);
        assert_eq!((proxy.forwarded(), proxy.refused()), (2, 1));
    }

    #[tokio::test]
    async fn a_client_that_does_not_trust_the_ca_fails_the_handshake_and_the_next_is_served() {
        let (proxy, url, trusting) = started("secret").await;
        let (other, _, _) = started("secret").await;

        for untrusting in [client(None, None), client(Some(&other.ca_pem()), None)] {
            let failed = status(&untrusting, &url, "secret").await;
            assert!(failed.unwrap_err().is_connect());
        }
        assert_eq!(status(&trusting, &url, "secret").await.unwrap(), 200);
        assert_eq!((proxy.forwarded(), proxy.refused()), (1, 0));
    }

    #[tokio::test]
    async fn in_mutual_mode_a_client_without_a_certificate_is_refused_and_one_with_is_served() {
        let upstream = upstream().await;
        let proxy = TlsProxy::start_mutual(&upstream, "secret").await.unwrap();
        let (other, _, _) = started("secret").await;
        let (url, ca) = (proxy.url(), proxy.ca_pem());

        let anonymous = client(Some(&ca), None);
        assert!(status(&anonymous, &url, "secret").await.is_err());
        let foreign = client(Some(&ca), Some(other.client_certificate("op").unwrap()));
        assert!(status(&foreign, &url, "secret").await.is_err());
        let known = client(Some(&ca), Some(proxy.client_certificate("op").unwrap()));
        assert_eq!(status(&known, &url, "secret").await.unwrap(), 200);
        assert_eq!((proxy.forwarded(), proxy.refused()), (1, 0));
    }

    #[tokio::test]
    async fn a_request_to_an_unreachable_upstream_is_answered_502_and_not_counted() {
        let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let upstream = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let proxy = TlsProxy::start(&upstream, "secret").await.unwrap();
        let client = client(Some(&proxy.ca_pem()), None);
        assert_eq!(status(&client, &proxy.url(), "secret").await.unwrap(), 502);
        assert_eq!((proxy.forwarded(), proxy.refused()), (0, 0));
    }

    #[tokio::test]
    async fn a_dropped_proxy_serves_no_more() {
        let (proxy, url, client) = started("secret").await;
        assert_eq!(status(&client, &url, "secret").await.unwrap(), 200);

        drop(proxy);
        assert!(status(&client, &url, "secret").await.is_err());
    }
}
