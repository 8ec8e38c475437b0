//! The HTTP face: one handler that logs, injects failures, and dispatches to the verbs.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, Method, Uri, header},
    response::{IntoResponse, Response},
};

use super::{
    Shared,
    path::{Target, parse_path},
    selector::Selectors,
    status::Failure,
    store::Scope,
    verbs, watch,
};

/// Every request goes through one handler: the API's URL space is easier to parse than route.
pub(crate) fn app(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), ToString::to_string);
    if let Some(failure) = shared.admit(method.as_str(), &path_and_query) {
        return failure.into_response();
    }
    let Some(target) = parse_path(uri.path()) else {
        return Failure::path_not_found().into_response();
    };
    let request = Request {
        method,
        target,
        query,
        headers,
        body,
    };
    dispatch(&shared, &request).unwrap_or_else(IntoResponse::into_response)
}

/// One request, parsed as far as every verb needs.
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) target: Target,
    pub(crate) query: HashMap<String, String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Request {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }

    /// Whether the client asked for `PartialObjectMetadata` instead of whole objects.
    pub(crate) fn metadata_only(&self) -> bool {
        let accept = self
            .headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok());
        accept.is_some_and(|a| a.contains("as=PartialObjectMetadata"))
    }

    pub(crate) fn selectors(&self) -> Result<Selectors, Failure> {
        Selectors::parse(self.param("labelSelector"), self.param("fieldSelector"))
            .map_err(Failure::bad_request)
    }
}

fn dispatch(shared: &Arc<Shared>, request: &Request) -> Result<Response, Failure> {
    if request.param("dryRun").is_some() {
        return Err(Failure::bad_request(
            "dryRun is not supported by the fake API server",
        ));
    }
    let target = &request.target;
    let rt = target.rt;
    let collection_in_scope = target.namespace.is_some() || !rt.namespaced;
    let method = request.method.as_str();
    match (
        target.name.as_deref(),
        target.subresource.as_deref(),
        method,
    ) {
        (None, _, "GET") if request.flag("watch") => watch::serve(shared, request),
        (None, _, "GET") => verbs::list(shared, request),
        (None, _, "POST") if collection_in_scope => verbs::create(shared, request),
        (Some(name), None, "GET") => verbs::get(shared, request, name),
        (Some(name), None, "PUT") => verbs::replace(shared, request, name, Scope::Object),
        (Some(name), None, "PATCH") => verbs::patch(shared, request, name, Scope::Object),
        (Some(name), None, "DELETE") => verbs::delete(shared, request, name),
        (Some(name), Some("status"), _) if rt.status_subresource => match method {
            "GET" => verbs::get(shared, request, name),
            "PUT" => verbs::replace(shared, request, name, Scope::Status),
            "PATCH" => verbs::patch(shared, request, name, Scope::Status),
            _ => Err(Failure::method_not_allowed(method)),
        },
        (Some(name), Some("scale"), _) if rt.scale_subresource => {
            verbs::scale(shared, request, name)
        }
        (Some(name), Some("eviction"), "POST") if rt.kind == "Pod" => {
            verbs::evict(shared, request, name)
        }
        (Some(_), Some("eviction"), _) if rt.kind == "Pod" => {
            Err(Failure::method_not_allowed(method))
        }
        (Some(_), Some(_), _) => Err(Failure::path_not_found()),
        _ => Err(Failure::method_not_allowed(method)),
    }
}
