//! `meta/v1` `Status` bodies: every failure the fake answers with, in the API's own words.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::registry::ResourceType;

/// A failed request, answered as the API server would: a `Status` body with a reason.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Failure {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    /// `details` (name, group, kind, causes) when the failure is about one object.
    pub(crate) details: Option<Value>,
    pub(crate) retry_after: Option<u32>,
}

impl Failure {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Failure {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn about(mut self, rt: &ResourceType, name: &str) -> Self {
        self.details = Some(json!({ "name": name, "group": rt.group, "kind": rt.plural }));
        self
    }

    /// A failure with the reason the API uses for `code`, as injected by a test.
    pub(crate) fn for_code(code: u16, message: impl Into<String>) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            410 => "Expired",
            415 => "UnsupportedMediaType",
            422 => "Invalid",
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "Unknown",
        };
        let failure = Failure::new(code, reason, message);
        if code == 429 {
            failure.retry_after(1)
        } else {
            failure
        }
    }

    pub(crate) fn not_found(rt: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" not found", rt.qualified());
        Failure::new(404, "NotFound", message).about(rt, name)
    }

    pub(crate) fn already_exists(rt: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" already exists", rt.qualified());
        Failure::new(409, "AlreadyExists", message).about(rt, name)
    }

    /// The optimistic-concurrency failure: the writer's `resourceVersion` is stale.
    pub(crate) fn conflict(rt: &ResourceType, name: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
             please apply your changes to the latest version and try again",
            rt.qualified()
        );
        Failure::new(409, "Conflict", message).about(rt, name)
    }

    /// A failed delete precondition (`uid` or `resourceVersion`), also a 409 Conflict.
    pub(crate) fn precondition_failed(rt: &ResourceType, name: &str, why: String) -> Self {
        Failure::new(409, "Conflict", format!("Precondition failed: {why}")).about(rt, name)
    }

    pub(crate) fn invalid(rt: &ResourceType, name: &str, problem: &str) -> Self {
        let message = format!("{} \"{name}\" is invalid: {problem}", rt.kind);
        Failure::new(422, "Invalid", message).about(rt, name)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Failure::new(400, "BadRequest", message)
    }

    pub(crate) fn path_not_found() -> Self {
        Failure::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub(crate) fn method_not_allowed(method: &str) -> Self {
        let message =
            format!("the server does not allow this method on the requested resource: {method}");
        Failure::new(405, "MethodNotAllowed", message)
    }

    pub(crate) fn unsupported_media_type(content_type: &str) -> Self {
        let message = format!("the body of the request was in an unknown format: {content_type}");
        Failure::new(415, "UnsupportedMediaType", message)
    }

    pub(crate) fn too_many_requests(message: impl Into<String>) -> Self {
        Failure::new(429, "TooManyRequests", message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Failure::new(500, "InternalError", message)
    }

    /// A watch from a `resourceVersion` whose events were compacted away.
    pub(crate) fn gone(message: impl Into<String>) -> Self {
        Failure::new(410, "Expired", message)
    }

    pub(crate) fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub(crate) fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The `Status` object, as a response body or inside a watch `ERROR` event.
    pub(crate) fn body(&self) -> Value {
        let mut body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            body["details"] = details.clone();
        }
        if let Some(seconds) = self.retry_after {
            body["details"]["retryAfterSeconds"] = json!(seconds);
        }
        body
    }
}

/// The body of a successful eviction.
pub(crate) fn success(code: u16) -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code })
}

/// A JSON response with this status code.
pub(crate) fn json_response(code: u16, body: &Value) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    (code, headers, body.to_string()).into_response()
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = json_response(self.code, &self.body());
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_the_object_the_way_the_api_does() {
        let rt = ResourceType::by_kind("apps/v1", "Deployment").unwrap();
        let body = Failure::not_found(rt, "web").body();
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["status"], "Failure");
        assert_eq!(body["reason"], "NotFound");
        assert_eq!(body["code"], 404);
        assert_eq!(body["message"], "deployments.apps \"web\" not found");
        assert_eq!(
            body["details"],
            json!({ "name": "web", "group": "apps", "kind": "deployments" })
        );
    }

    #[test]
    fn injected_throttling_asks_to_retry_after_a_second() {
        let failure = Failure::for_code(429, "slow down");
        assert_eq!(failure.reason, "TooManyRequests");
        let response = failure.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn injected_failures_carry_the_reason_for_their_code() {
        assert_eq!(Failure::for_code(409, "x").reason, "Conflict");
        assert_eq!(Failure::for_code(500, "x").reason, "InternalError");
        assert_eq!(Failure::for_code(418, "x").reason, "Unknown");
    }
}
