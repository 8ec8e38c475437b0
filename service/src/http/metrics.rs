//! `GET /metrics`: Prometheus text, with memory figures sampled at scrape time.

use std::sync::Arc;

use axum::{extract::State, http::header, response::IntoResponse};

use crate::state::AppState;

/// Prometheus and OpenMetrics scrapers both accept this text format.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Samples memory, pool and click figures, then encodes every metric.
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    state.metrics.record_memory(&state.memory.snapshot());
    state.metrics.record_pool(state.store.pool_stats());
    state
        .metrics
        .record_clicks_pending(state.links_with_pending_clicks());
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.encode(),
    )
}
