//! Creating, reading, deleting and following links.

use std::sync::Arc;

use axum::{
    Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{admin::Admin, error::ApiError, json::JsonBody};
use crate::{
    cache::CachedLink,
    links,
    state::AppState,
    store::{Inserted, Link},
};

/// Generated codes collide with a chance of one in trillions; a few tries always suffice.
const CODE_ATTEMPTS: usize = 5;

/// The body of `POST /api/v1/links`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateLink {
    url: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

/// A link as the API shows it.
#[derive(Debug, Serialize)]
pub struct LinkView {
    code: String,
    short_url: String,
    url: String,
    created_at: String,
    expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clicks: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expired: Option<bool>,
}

/// `POST /api/v1/links`: 201 once the link is durable.
pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<CreateLink>,
) -> Result<Response, ApiError> {
    if state.memory.is_shedding() {
        state.metrics.record_shed();
        return Err(ApiError::overloaded(state.settings.retry_after_secs));
    }
    let url =
        links::normalize_url(&request.url).map_err(|detail| ApiError::invalid("url", detail))?;
    let now = now_ms();
    let expires_at = request.expires_at.map(to_ms);
    if expires_at.is_some_and(|at| at <= now) {
        return Err(ApiError::invalid(
            "expires_at",
            "expires_at must be in the future",
        ));
    }
    let mut link = Link {
        code: String::new(),
        url,
        created_at: now,
        expires_at,
        clicks: 0,
    };
    if let Some(code) = request.code {
        links::validate_custom_code(&code).map_err(|detail| ApiError::invalid("code", detail))?;
        link.code = code;
        if state.store.insert(&link).await? == Inserted::CodeTaken {
            return Err(ApiError::conflict(format!(
                "code `{}` is already taken; choose another or omit it",
                link.code
            )));
        }
    } else {
        insert_with_generated_code(&state, &mut link).await?;
    }
    let view = view(&state, &headers, &link, None);
    // A new link is usually followed soon after it is shared: its first redirect should not
    // wait for the database.
    if let Some(link) = cached(&state, link) {
        state.cache.insert(link);
    }
    let location = HeaderValue::from_str(&view.short_url).ok();
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn insert_with_generated_code(state: &AppState, link: &mut Link) -> Result<(), ApiError> {
    for _ in 0..CODE_ATTEMPTS {
        link.code = links::generate_code();
        if state.store.insert(link).await? == Inserted::Created {
            return Ok(());
        }
    }
    Err(ApiError::conflict(
        "no free code was found; retry the request",
    ))
}

/// The link a `GET` of `path` follows when the cache holds it and it has not expired, its
/// click counted; none when `path` is not a code's, or the link must be read from the
/// database or answered as gone. The front door asks before routing (`front.rs`).
pub fn follow_cached(state: &AppState, path: &str) -> Option<Arc<CachedLink>> {
    let code = path.strip_prefix('/')?;
    if !links::is_code_shaped(code) {
        return None;
    }
    let link = state.cache.get(code)?;
    if link.is_expired(now_ms) {
        return None;
    }
    link.click();
    Some(link)
}

/// `GET /{code}` for a link the cache does not hold: read from the database and cached.
/// Never writes to the database: clicks are counted in memory.
pub async fn redirect(State(state): State<Arc<AppState>>, uri: Uri) -> Result<Response, ApiError> {
    let code = uri.path().trim_start_matches('/');
    if !links::is_code_shaped(code) {
        return Err(unknown(code));
    }
    let link = match state.cache.get(code) {
        Some(link) => link,
        None => {
            let stored = state.store.find(code).await?.ok_or_else(|| unknown(code))?;
            let link = cached(&state, stored).ok_or_else(|| {
                ApiError::internal(format!("stored url of `{code}` is not a valid header"))
            })?;
            state.cache.insert(link.clone());
            link
        }
    };
    follow(&state, &link)
}

/// The answer to following `link`: its click counted and a redirect, or gone if it expired.
fn follow(state: &AppState, link: &CachedLink) -> Result<Response, ApiError> {
    if link.is_expired(now_ms) {
        return Err(ApiError::gone(format!("link `{}` has expired", link.code)));
    }
    link.click();
    Ok(redirect_to(link, state.settings.redirect_status))
}

/// The redirect to `link`'s target with `status`.
pub fn redirect_to(link: &CachedLink, status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::LOCATION, link.location.clone());
    response
}

/// `GET /api/v1/links/{code}`: metadata with the click count, including clicks not yet flushed.
pub async fn show(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Result<Json<LinkView>, ApiError> {
    let link = state
        .store
        .find(&code)
        .await?
        .ok_or_else(|| unknown(&code))?;
    let clicks = u64::try_from(link.clicks).unwrap_or(0) + state.pending_clicks(&code);
    Ok(Json(view(&state, &headers, &link, Some(clicks))))
}

/// `DELETE /api/v1/links/{code}` (admin).
pub async fn delete(
    _admin: Admin,
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !state.store.delete(&code).await? {
        return Err(unknown(&code));
    }
    // The cache entry hands its clicks to the buffer as it goes, and the buffer forgets them.
    state.cache.remove(&code);
    state.clicks.forget(&code);
    Ok(StatusCode::NO_CONTENT)
}

/// A stored link as the redirect cache keeps it; none if its URL cannot be a header (a
/// normalized URL always can).
fn cached(state: &AppState, link: Link) -> Option<Arc<CachedLink>> {
    let location = HeaderValue::from_str(&link.url).ok()?;
    Some(Arc::new(CachedLink::new(
        link.code.into(),
        location,
        link.expires_at,
        &state.clicks,
    )))
}

fn unknown(code: &str) -> ApiError {
    ApiError::not_found(format!("no link has the code `{code}`"))
}

fn view(state: &AppState, headers: &HeaderMap, link: &Link, clicks: Option<u64>) -> LinkView {
    let base = match &state.settings.base_url {
        Some(base) => base.clone(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    };
    LinkView {
        code: link.code.clone(),
        short_url: format!("{base}/{}", link.code),
        url: link.url.clone(),
        created_at: format_ms(link.created_at),
        expires_at: link.expires_at.map(format_ms),
        clicks,
        expired: clicks.map(|_| link.expires_at.is_some_and(|at| at <= now_ms())),
    }
}

fn now_ms() -> i64 {
    to_ms(OffsetDateTime::now_utc())
}

fn to_ms(time: OffsetDateTime) -> i64 {
    (time.unix_timestamp_nanos() / 1_000_000) as i64
}

fn format_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_default()
}
