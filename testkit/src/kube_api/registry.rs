//! The kinds the fake API server knows, and how their URLs are spelled.

/// One kind of object: where it is served and which subresources it has.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ResourceType {
    pub(crate) api_version: &'static str,
    pub(crate) kind: &'static str,
    /// Empty for the core group (`/api/v1`).
    pub(crate) group: &'static str,
    pub(crate) version: &'static str,
    pub(crate) plural: &'static str,
    pub(crate) namespaced: bool,
    /// Writes to `.status` go through `/status`; writes to the object keep the stored status.
    pub(crate) status_subresource: bool,
    /// Serves `/scale` as an `autoscaling/v1` `Scale` over `spec.replicas`.
    pub(crate) scale_subresource: bool,
    /// Whether a PUT without `metadata.resourceVersion` is allowed; custom resources refuse it.
    pub(crate) unconditional_update: bool,
}

const fn kind(
    api_version: &'static str,
    kind: &'static str,
    group: &'static str,
    version: &'static str,
    plural: &'static str,
) -> ResourceType {
    ResourceType {
        api_version,
        kind,
        group,
        version,
        plural,
        namespaced: true,
        status_subresource: false,
        scale_subresource: false,
        unconditional_update: true,
    }
}

/// Every kind the fake serves; anything else is a 404, as for a CRD that is not installed.
pub(crate) static REGISTRY: &[ResourceType] = &[
    ResourceType {
        status_subresource: true,
        ..kind("v1", "Pod", "", "v1", "pods")
    },
    kind("v1", "Event", "", "v1", "events"),
    ResourceType {
        namespaced: false,
        status_subresource: true,
        ..kind("v1", "Namespace", "", "v1", "namespaces")
    },
    ResourceType {
        status_subresource: true,
        scale_subresource: true,
        ..kind("apps/v1", "Deployment", "apps", "v1", "deployments")
    },
    ResourceType {
        status_subresource: true,
        ..kind(
            "policy/v1",
            "PodDisruptionBudget",
            "policy",
            "v1",
            "poddisruptionbudgets",
        )
    },
    ResourceType {
        status_subresource: true,
        unconditional_update: false,
        ..kind(
            "shortener.dev/v1alpha1",
            "MemoryPolicy",
            "shortener.dev",
            "v1alpha1",
            "memorypolicies",
        )
    },
    kind("events.k8s.io/v1", "Event", "events.k8s.io", "v1", "events"),
    kind(
        "coordination.k8s.io/v1",
        "Lease",
        "coordination.k8s.io",
        "v1",
        "leases",
    ),
];

impl ResourceType {
    /// The kind for `apiVersion` and `kind`, if the fake serves it.
    pub(crate) fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
        REGISTRY
            .iter()
            .find(|rt| rt.api_version == api_version && rt.kind == kind)
    }

    /// The kind served under `group`/`version` as `plural`.
    pub(crate) fn by_path(
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&'static ResourceType> {
        REGISTRY
            .iter()
            .find(|rt| rt.group == group && rt.version == version && rt.plural == plural)
    }

    /// The resource as the API names it in messages: `pods`, `deployments.apps`.
    pub(crate) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_event_kinds_are_told_apart_by_api_version() {
        let core = ResourceType::by_kind("v1", "Event").unwrap();
        let new = ResourceType::by_kind("events.k8s.io/v1", "Event").unwrap();
        assert_eq!(core.group, "");
        assert_eq!(new.group, "events.k8s.io");
        assert_eq!(
            ResourceType::by_path("events.k8s.io", "v1", "events"),
            Some(new)
        );
    }

    #[test]
    fn every_api_version_matches_its_group_and_version() {
        for rt in REGISTRY {
            let expected = if rt.group.is_empty() {
                rt.version.to_owned()
            } else {
                format!("{}/{}", rt.group, rt.version)
            };
            assert_eq!(rt.api_version, expected, "{}", rt.kind);
        }
    }

    #[test]
    fn messages_name_resources_with_their_group() {
        let deployments = ResourceType::by_kind("apps/v1", "Deployment").unwrap();
        assert_eq!(deployments.qualified(), "deployments.apps");
        assert_eq!(
            ResourceType::by_kind("v1", "Pod").unwrap().qualified(),
            "pods"
        );
    }
}
