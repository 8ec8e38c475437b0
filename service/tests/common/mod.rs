//! Shared by the integration tests: a state on a fresh database of either
//! backend, and a one-call way to send a request through the router.
#![allow(dead_code)] // each test binary uses its own subset

use std::sync::Arc;

use axum::{
    body::Body,
    http::{HeaderMap, Method, Request, StatusCode, header},
};
use http_body_util::BodyExt;
use serde_json::Value;
use shortener::{AppState, Config, app, http::Front};
use tower::ServiceExt;

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Which database a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database of the given backend; the guard keeps a SQLite file alive.
pub fn database(backend: Backend) -> (String, Option<tempfile::TempDir>) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite:{}", dir.path().join("links.db").display());
            (url, Some(dir))
        }
        Backend::Postgres => (
            testkit::fresh_database_url().expect("a throwaway PostgreSQL database"),
            None,
        ),
    }
}

/// The configuration tests start from: an admin token and no surprises from the environment.
pub fn config(database_url: String) -> Config {
    let mut config = Config::with_database(database_url);
    config.admin_token = Some(ADMIN_TOKEN.into());
    config.base_url = None;
    config.max_memory = None;
    config.pprof = false;
    config
}

/// A router over a fresh database.
pub struct TestApp {
    pub state: Arc<AppState>,
    pub router: Front,
    _dir: Option<tempfile::TempDir>,
}

impl TestApp {
    pub async fn new(backend: Backend) -> TestApp {
        Self::with(backend, |_| {}).await
    }

    pub async fn with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let (url, dir) = database(backend);
        let mut app = Self::on(url, adjust).await;
        app._dir = dir;
        app
    }

    /// A router over the database at `url`.
    pub async fn on(url: String, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = config(url);
        adjust(&mut config);
        let state = AppState::build(&config).await.expect("state");
        TestApp {
            router: app(state.clone()),
            state,
            _dir: None,
        }
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            bytes: bytes.to_vec(),
        }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.send(request(Method::GET, uri).body(Body::empty()).unwrap())
            .await
    }

    pub async fn create(&self, body: Value) -> Reply {
        self.send(
            request(Method::POST, "/api/v1/links")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    pub async fn admin(&self, method: Method, uri: &str, token: Option<&str>) -> Reply {
        let mut builder = request(method, uri);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(builder.body(Body::empty()).unwrap()).await
    }
}

pub fn request(method: Method, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "sho.rt")
}

/// What came back.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub bytes: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Asserts a problem document with this status whose detail mentions `needle`.
    pub fn assert_problem(&self, status: StatusCode, needle: &str) {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(self.header("content-type"), "application/problem+json");
        let detail = self.body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(needle),
            "detail `{detail}` lacks `{needle}`"
        );
    }
}

/// Runs one async test body on both backends: `on_both_backends!(name, |backend| async { ... })`.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn on_sqlite() {
                ($body)(Backend::Sqlite).await
            }

            #[tokio::test]
            async fn on_postgres() {
                ($body)(Backend::Postgres).await
            }
        }
    };
}
