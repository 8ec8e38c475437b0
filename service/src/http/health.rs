//! Liveness, readiness and the detailed health report.

use std::{sync::Arc, time::Instant};

use axum::{Json, extract::State, http::StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::error::ApiError;
use crate::state::AppState;

/// `GET /healthz`: the process is alive and serving.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the database answers and memory is not critical.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    if state.memory.is_shedding() {
        return Err(ApiError::unavailable(
            "memory usage is critical: shedding load until it is back under the high water mark",
        ));
    }
    if let Err(error) = state.store.ping().await {
        return Err(ApiError::unavailable(format!(
            "database unreachable: {error}"
        )));
    }
    Ok(Json(json!({ "status": "ready" })))
}

#[derive(Serialize)]
struct DatabaseHealth {
    status: &'static str,
    latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `GET /health`: every dependency and the memory state, 503 when the service cannot work.
pub async fn health(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let started = Instant::now();
    let ping = state.store.ping().await;
    let database = DatabaseHealth {
        status: if ping.is_ok() { "up" } else { "down" },
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        error: ping.err().map(|e| e.to_string()),
    };
    let memory = state.memory.snapshot();
    let (status, code) = if database.error.is_some() || memory.shedding {
        ("unhealthy", StatusCode::SERVICE_UNAVAILABLE)
    } else if memory.pressure != "ok" {
        ("degraded", StatusCode::OK)
    } else {
        ("ok", StatusCode::OK)
    };
    let body = json!({
        "status": status,
        "time": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        "services": {
            "database": database,
            "memory": {
                "status": memory.pressure,
                "usage_ratio": memory.usage_ratio,
                "resident_bytes": memory.resident_bytes,
                "limit_bytes": memory.limit_bytes,
                "limit_source": memory.limit_source,
                "shedding": memory.shedding,
            },
        },
    });
    (code, Json(body))
}
