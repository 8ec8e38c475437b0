//! The HTTP API: one file per resource, errors mapped in `error.rs`.

mod admin;
mod error;
mod front;
mod health;
mod json;
mod links;
mod memory;
mod metrics;
mod track;

use std::sync::Arc;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};

pub use error::ApiError;
pub use front::Front;

use crate::state::AppState;

/// Largest request body: a link request is far smaller, and a bound keeps memory bounded.
const MAX_BODY_BYTES: usize = 8 * 1024;

/// The whole API, ready to serve or to drive with `tower::ServiceExt::oneshot`.
pub fn app(state: Arc<AppState>) -> Front {
    let router = Router::new()
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
        .layer(track::Track::new(state.metrics.clone()))
        .with_state(state.clone());
    Front::new(state, router)
}

async fn not_found() -> ApiError {
    ApiError::not_found("nothing is served at this path")
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
