//! The requests an identity made, as the apiserver recorded them in its audit log.

use jiff::Timestamp;
use serde::Deserialize;

/// One request, once answered.
#[derive(Clone, Debug)]
pub struct AuditedRequest {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The HTTP status of the answer.
    pub code: i32,
    /// When the apiserver received it (microseconds).
    pub received: Timestamp,
}

impl AuditedRequest {
    /// `resource` or `resource/subresource`, as RBAC names it.
    pub fn resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    stage: String,
    verb: String,
    user: User,
    request_received_timestamp: Timestamp,
    #[serde(default)]
    object_ref: Option<ObjectRef>,
    #[serde(default)]
    response_status: Option<Status>,
}

#[derive(Deserialize)]
struct User {
    username: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef {
    #[serde(default)]
    api_group: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    subresource: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    code: i32,
}

/// Every request of `username` in `log` (the audit log's text) that was answered: a watch
/// once its stream started, anything else once complete; in the order they were answered.
pub(super) fn requests(log: &str, username: &str) -> Vec<AuditedRequest> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Line>(line).ok())
        .filter(|l| {
            let answered = match l.verb.as_str() {
                "watch" => l.stage == "ResponseStarted",
                _ => l.stage == "ResponseComplete",
            };
            answered && l.user.username == username
        })
        .filter_map(|l| {
            let object = l.object_ref?;
            Some(AuditedRequest {
                verb: l.verb,
                group: object.api_group,
                resource: object.resource,
                subresource: object.subresource,
                namespace: object.namespace,
                name: object.name,
                code: l.response_status.map_or(0, |s| s.code),
                received: l.request_received_timestamp,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_requests_of_one_user_are_read_with_their_time() {
        let log = [
            r#"{"stage":"RequestReceived","verb":"create","user":{"username":"op"},"requestReceivedTimestamp":"2026-12-02T09:00:00.123456Z","objectRef":{"resource":"pods","subresource":"eviction","namespace":"shop","name":"web-a"}}"#,
            r#"{"stage":"ResponseComplete","verb":"create","user":{"username":"op"},"requestReceivedTimestamp":"2026-12-02T09:00:00.123456Z","objectRef":{"resource":"pods","subresource":"eviction","namespace":"shop","name":"web-a"},"responseStatus":{"code":201}}"#,
            r#"{"stage":"ResponseComplete","verb":"get","user":{"username":"someone"},"requestReceivedTimestamp":"2026-12-02T09:00:01Z","objectRef":{"resource":"pods"},"responseStatus":{"code":200}}"#,
            r#"{"stage":"ResponseStarted","verb":"watch","user":{"username":"op"},"requestReceivedTimestamp":"2026-12-02T09:00:02Z","objectRef":{"apiGroup":"apps","resource":"deployments"},"responseStatus":{"code":200}}"#,
            "not json",
        ]
        .join("\n");
        let seen = requests(&log, "op");
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].resource(), "pods/eviction");
        assert_eq!((seen[0].name.as_str(), seen[0].code), ("web-a", 201));
        assert_eq!(seen[0].received.to_string(), "2026-12-02T09:00:00.123456Z");
        assert_eq!(
            (seen[1].group.as_str(), seen[1].verb.as_str()),
            ("apps", "watch")
        );
    }
}
