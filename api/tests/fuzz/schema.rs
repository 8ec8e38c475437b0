//! What an apiserver would say about a spec: testkit's [`SchemaCheck`] on the
//! generated CRD, compiled once per thread. The same verdict as
//! `operator/tests/crd.rs` gives its hand-written cases.

use kube::CustomResourceExt;
use testkit::SchemaCheck;

use memory_policy_api::crd::{MemoryPolicy, MemoryPolicySpec};

thread_local! {
    static APISERVER: SchemaCheck = {
        let crd = MemoryPolicy::crd();
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("the CRD has a schema");
        SchemaCheck::new(serde_json::to_value(schema).expect("a schema is JSON"))
    };
}

/// Every complaint an apiserver would have about `spec`.
pub fn verdict(spec: &MemoryPolicySpec) -> Vec<String> {
    let object =
        serde_json::to_value(MemoryPolicy::new("p", spec.clone())).expect("a policy is JSON");
    APISERVER.with(|apiserver| apiserver.problems(&object))
}
