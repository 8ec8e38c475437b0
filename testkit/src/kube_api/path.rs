//! The API's URL space: which kind, namespace, object and subresource a path names.

use super::registry::ResourceType;

/// Where a request points: a collection (`name` is `None`), an object, or its subresource.
#[derive(Debug, PartialEq)]
pub(crate) struct Target {
    pub(crate) rt: &'static ResourceType,
    /// `None` for cluster-scoped kinds and for lists and watches across namespaces.
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) subresource: Option<String>,
}

impl Target {
    /// The namespace as the store keys it: empty when there is none.
    pub(crate) fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or_default()
    }
}

/// The subresources the fake knows; any other is an unknown path.
const SUBRESOURCES: [&str; 3] = ["status", "scale", "eviction"];

/// Parses `/api/v1/...` and `/apis/{group}/{version}/...` paths.
pub(crate) fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments[..] {
        ["api", version, ref rest @ ..] => ("", version, rest),
        ["apis", group, version, ref rest @ ..] => (group, version, rest),
        _ => return None,
    };
    // `namespaces/{ns}/{plural}` unless `{plural}` is unknown: then it is a Namespace's own path.
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, ..]
            if ResourceType::by_path(group, version, plural).is_some() =>
        {
            (Some((*ns).to_owned()), &rest[2..])
        }
        _ => (None, rest),
    };
    let (plural, tail) = rest.split_first()?;
    let rt = ResourceType::by_path(group, version, plural)?;
    let (name, subresource) = match tail {
        [] => (None, None),
        [name] => (Some(*name), None),
        [name, subresource] if SUBRESOURCES.contains(subresource) => {
            (Some(*name), Some(*subresource))
        }
        _ => return None,
    };
    let scoped_right = match (rt.namespaced, &namespace) {
        (true, Some(_)) => true,
        (true, None) => name.is_none(),
        (false, Some(_)) => false,
        (false, None) => true,
    };
    scoped_right.then(|| Target {
        rt,
        namespace,
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parsed path as `Kind namespace/name/subresource`, with `-` for what is missing.
    fn target(path: &str) -> String {
        let part = |p: Option<String>| p.unwrap_or_else(|| "-".to_owned());
        parse_path(path).map_or("nowhere".to_owned(), |t| {
            let kind = t.rt.kind;
            format!(
                "{kind} {}/{}/{}",
                part(t.namespace),
                part(t.name),
                part(t.subresource)
            )
        })
    }

    #[test]
    fn core_and_group_paths_name_kind_namespace_name_and_subresource() {
        assert_eq!(target("/api/v1/namespaces/prod/pods"), "Pod prod/-/-");
        assert_eq!(
            target("/apis/apps/v1/namespaces/prod/deployments/web/scale"),
            "Deployment prod/web/scale"
        );
        assert_eq!(
            target("/apis/shortener.dev/v1alpha1/memorypolicies"),
            "MemoryPolicy -/-/-"
        );
    }

    #[test]
    fn namespaces_are_objects_too() {
        assert_eq!(target("/api/v1/namespaces"), "Namespace -/-/-");
        assert_eq!(
            target("/api/v1/namespaces/prod/status"),
            "Namespace -/prod/status"
        );
    }

    #[test]
    fn unknown_or_misscoped_paths_point_nowhere() {
        assert_eq!(target("/api/v1/namespaces/prod/secrets"), "nowhere");
        assert_eq!(target("/apis/apps/v1/deployments/web"), "nowhere");
        assert_eq!(
            target("/apis/apps/v2/namespaces/prod/deployments"),
            "nowhere"
        );
        assert_eq!(target("/healthz"), "nowhere");
        assert_eq!(
            target("/api/v1/namespaces/prod/pods/web/log/extra"),
            "nowhere"
        );
    }
}
