//! The operator's requests as the apiserver recorded them in its audit log.

use serde::Deserialize;
use testkit::ControlPlane;

/// One request, once answered.
#[derive(Clone, Debug)]
pub struct Request {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub code: i32,
}

impl Request {
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

/// Every request `username` made so far that was answered: a watch once its stream started,
/// anything else once complete.
pub fn requests(plane: &ControlPlane, username: &str) -> Vec<Request> {
    let text = std::fs::read_to_string(plane.audit_log()).unwrap_or_default();
    text.lines()
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
            Some(Request {
                verb: l.verb,
                group: object.api_group,
                resource: object.resource,
                subresource: object.subresource,
                namespace: object.namespace,
                name: object.name,
                code: l.response_status.map_or(0, |s| s.code),
            })
        })
        .collect()
}
