//! The HTTP API: one file per resource, errors mapped in `error.rs`.

mod admin;
mod error;
mod health;
mod json;
mod links;
mod memory;
mod metrics;

use std::{sync::Arc, time::Instant};

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
};

pub use error::ApiError;

use crate::{metrics::Route, state::AppState};

/// Largest request body: a link request is far smaller, and a bound keeps memory bounded.
const MAX_BODY_BYTES: usize = 8 * 1024;

/// The whole API, ready to serve or to drive with `tower::ServiceExt::oneshot`.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v1/links", post(links::create))
        .route(
            "/api/v1/links/{code}",
            get(links::show).delete(links::delete),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/memory/stats", get(memory::stats))
        .route("/api/v1/memory/trim", post(memory::trim))
        .route("/debug/pprof/heap", get(memory::heap_profile))
        .route("/{code}", get(links::redirect))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Counts and times every request by route and status.
async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = Route::from_matched(
        request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
        request.method(),
    );
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.observe_request(
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found("nothing is served at this path")
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
