//! A container's environment as a kubelet builds it: plain values, values from Secrets and
//! ConfigMaps and from the pod itself (the downward API), and `$(NAME)` references to earlier
//! variables expanded the way Kubernetes expands them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};

/// Where a `valueFrom` reads from, once the kubelet has fetched it.
pub(crate) trait Sources {
    /// Key `key` of Secret `name` in the pod's namespace, as text.
    fn secret(&self, name: &str, key: &str) -> Option<String>;
    /// Key `key` of ConfigMap `name` in the pod's namespace.
    fn config_map(&self, name: &str, key: &str) -> Option<String>;
}

/// The variables of `container` in order, or what keeps one from being set (as a kubelet
/// reports `CreateContainerConfigError`).
pub(crate) fn resolve(
    pod: &Pod,
    pod_ip: &str,
    container: &Container,
    sources: &impl Sources,
) -> Result<Vec<(String, String)>, String> {
    let mut resolved: Vec<(String, String)> = Vec::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => expand(value, &resolved),
            (None, Some(_)) => value_from(pod, pod_ip, var, sources)?,
            (None, None) => String::new(),
        };
        resolved.retain(|(name, _)| name != &var.name);
        resolved.push((var.name.clone(), value));
    }
    Ok(resolved)
}

fn value_from(
    pod: &Pod,
    pod_ip: &str,
    var: &EnvVar,
    sources: &impl Sources,
) -> Result<String, String> {
    let from = var.value_from.as_ref().expect("called for valueFrom");
    // A key of a Secret or ConfigMap: its value, empty when missing but optional, else an error.
    let keyed =
        |kind: &str, found: Option<String>, name: &str, key: &str, optional: Option<bool>| {
            match found {
                Some(value) => Ok(value),
                None if optional.unwrap_or(false) => Ok(String::new()),
                None => Err(format!("{}: {kind} {name:?} has no key {key:?}", var.name)),
            }
        };
    if let Some(k) = &from.secret_key_ref {
        let found = sources.secret(&k.name, &k.key);
        return keyed("secret", found, &k.name, &k.key, k.optional);
    }
    if let Some(k) = &from.config_map_key_ref {
        let found = sources.config_map(&k.name, &k.key);
        return keyed("configmap", found, &k.name, &k.key, k.optional);
    }
    if let Some(field) = &from.field_ref {
        let meta = &pod.metadata;
        return match field.field_path.as_str() {
            "metadata.name" => Ok(meta.name.clone().unwrap_or_default()),
            "metadata.namespace" => Ok(meta.namespace.clone().unwrap_or_default()),
            "metadata.uid" => Ok(meta.uid.clone().unwrap_or_default()),
            "spec.nodeName" => Ok(pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default()),
            "spec.serviceAccountName" => Ok(pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_default()),
            "status.podIP" | "status.hostIP" => Ok(pod_ip.to_owned()),
            other => Err(format!("{}: fieldRef {other} is not supported", var.name)),
        };
    }
    Err(format!(
        "{}: only secretKeyRef, configMapKeyRef and fieldRef are supported",
        var.name
    ))
}

/// Expands `$(NAME)` with the variables defined so far; `$$(NAME)` stands for a literal
/// `$(NAME)`, and a reference to an unknown name stays as written, as Kubernetes does.
pub(crate) fn expand(text: &str, defined: &[(String, String)]) -> String {
    let defined: BTreeMap<&str, &str> = defined
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(escaped) = after.strip_prefix('$') {
            out.push('$');
            rest = escaped;
        } else if let Some(reference) = after.strip_prefix('(')
            && let Some(end) = reference.find(')')
        {
            let name = &reference[..end];
            match defined.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &reference[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct Fixed;

    impl Sources for Fixed {
        fn secret(&self, name: &str, key: &str) -> Option<String> {
            (name == "db" && key == "url").then(|| "postgres://db".to_owned())
        }
        fn config_map(&self, name: &str, key: &str) -> Option<String> {
            (name == "settings" && key == "level").then(|| "debug".to_owned())
        }
    }

    fn pod_with(env: serde_json::Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop"},
            "spec": {"nodeName": "node-a", "containers": [{"name": "app", "env": env}]}
        }))
        .unwrap();
        let container = pod.spec.as_ref().unwrap().containers[0].clone();
        (pod, container)
    }

    #[test]
    fn values_secrets_config_maps_and_the_downward_api_resolve_in_order() {
        let (pod, container) = pod_with(json!([
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "LISTEN", "value": "$(POD_IP):8080"},
            {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "LITERAL", "value": "$$(POD) $(UNKNOWN) 5$"}
        ]));
        let env = resolve(&pod, "127.1.0.7", &container, &Fixed).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("LISTEN"), "127.1.0.7:8080");
        assert_eq!(get("DATABASE_URL"), "postgres://db");
        assert_eq!(get("LEVEL"), "debug");
        assert_eq!(get("POD"), "web-1");
        assert_eq!(get("LITERAL"), "$(POD) $(UNKNOWN) 5$");
    }

    #[test]
    fn a_missing_secret_key_names_the_variable_unless_it_is_optional() {
        let (pod, container) = pod_with(json!([
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "token"}}}
        ]));
        let error = resolve(&pod, "127.1.0.7", &container, &Fixed).unwrap_err();
        assert_eq!(error, r#"TOKEN: secret "db" has no key "token""#);
        let (pod, container) = pod_with(json!([
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "token", "optional": true}}}
        ]));
        let env = resolve(&pod, "127.1.0.7", &container, &Fixed).unwrap();
        assert_eq!(env, [("TOKEN".to_owned(), String::new())]);
    }
}
