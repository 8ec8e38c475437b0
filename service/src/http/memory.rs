//! Memory figures, trims on demand, and heap profiles for the admin.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Query, State},
    http::header,
    response::IntoResponse,
};
use serde::Deserialize;

use super::{admin::Admin, error::ApiError};
use crate::{
    memory::{MemorySnapshot, TrimReport, allocator},
    state::AppState,
};

/// `GET /api/v1/memory/stats` (admin).
pub async fn stats(_admin: Admin, State(state): State<Arc<AppState>>) -> Json<MemorySnapshot> {
    Json(state.memory.snapshot())
}

/// Options of a manual trim.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrimOptions {
    /// Empty the redirect cache instead of shrinking it to the low water mark.
    #[serde(default)]
    clear_cache: bool,
}

/// `POST /api/v1/memory/trim[?clear_cache=true]` (admin): trims now, whatever the water marks say.
pub async fn trim(
    _admin: Admin,
    State(state): State<Arc<AppState>>,
    Query(options): Query<TrimOptions>,
) -> Json<TrimReport> {
    Json(state.memory.trim_now(options.clear_cache))
}

/// `GET /debug/pprof/heap` (admin, only with `SHORTENER_PPROF=true`): a gzipped
/// pprof profile for `go tool pprof`.
pub async fn heap_profile(
    _admin: Admin,
    State(state): State<Arc<AppState>>,
) -> Result<impl IntoResponse, ApiError> {
    if !state.settings.pprof {
        return Err(ApiError::not_found(
            "heap profiling is off: start the service with SHORTENER_PPROF=true",
        ));
    }
    let profile = allocator::heap_profile()
        .await
        .map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"heap.pb.gz\"",
            ),
        ],
        profile,
    ))
}
