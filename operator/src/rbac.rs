//! Every Kubernetes permission the operator uses, in one place: the Helm
//! chart's ClusterRole is checked against this list.

/// One RBAC rule: an API group, a resource (or `resource/subresource`) and its verbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permission {
    pub group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
}

/// What the operator does, and nothing more: `operator/tests/rbac.rs` runs the operator
/// through every kind of action on a real apiserver and fails on a verb it never used.
pub const PERMISSIONS: &[Permission] = &[
    // Watch policies and report on them.
    Permission {
        group: "shortener.dev",
        resource: "memorypolicies",
        verbs: &["list", "watch"],
    },
    Permission {
        group: "shortener.dev",
        resource: "memorypolicies/status",
        verbs: &["patch"],
    },
    // Read targets; roll them (restart annotation) and enforce container limits.
    Permission {
        group: "apps",
        resource: "deployments",
        verbs: &["list", "watch", "patch"],
    },
    // Scale out and in.
    Permission {
        group: "apps",
        resource: "deployments/scale",
        verbs: &["patch"],
    },
    // Map samples to the target's current pods; evict only the bloated ones.
    Permission {
        group: "",
        resource: "pods",
        verbs: &["list", "watch"],
    },
    Permission {
        group: "",
        resource: "pods/eviction",
        verbs: &["create"],
    },
    // Raise a running pod's memory limit in place.
    Permission {
        group: "",
        resource: "pods/resize",
        verbs: &["patch"],
    },
    // Tell humans what was done or held back.
    Permission {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
    },
    // Leader election, so two replicas can run.
    Permission {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update"],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_permission_uses_a_wildcard_or_repeats() {
        for (i, p) in PERMISSIONS.iter().enumerate() {
            assert!(
                !p.resource.contains('*') && !p.verbs.contains(&"*"),
                "{p:?}"
            );
            assert!(
                PERMISSIONS[i + 1..]
                    .iter()
                    .all(|q| (q.group, q.resource) != (p.group, p.resource)),
                "{p:?} is listed twice"
            );
        }
    }
}
