//! What an apiserver would say about a spec: the CRD schema's numeric and
//! length bounds, then its CEL rules, compiled once per thread. The same
//! verdict as `operator/tests/crd.rs` gives its hand-written cases.

use kube::CustomResourceExt;
use kube_cel::{CompiledSchema, Validator, compile_schema};
use serde_json::Value;

use crate::crd::{MemoryPolicy, MemoryPolicySpec};

struct Apiserver {
    schema: Value,
    rules: CompiledSchema,
    cel: Validator,
}

thread_local! {
    static APISERVER: Apiserver = {
        let crd = MemoryPolicy::crd();
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("the CRD has a schema");
        let schema = serde_json::to_value(schema).expect("a schema is JSON");
        Apiserver {
            rules: compile_schema(&schema),
            schema,
            cel: Validator::new(),
        }
    };
}

/// Every complaint an apiserver would have about `spec`.
pub fn verdict(spec: &MemoryPolicySpec) -> Vec<String> {
    let object =
        serde_json::to_value(MemoryPolicy::new("p", spec.clone())).expect("a policy is JSON");
    APISERVER.with(|apiserver| {
        let mut problems = Vec::new();
        bounds(&apiserver.schema, &object, "", &mut problems);
        if let Err(errors) = apiserver
            .cel
            .validate_compiled(&apiserver.rules, &object, None)
        {
            problems.extend(errors.as_slice().iter().map(ToString::to_string));
        }
        problems
    })
}

fn bounds(schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    let limit = |key| schema.get(key).and_then(Value::as_f64);
    if let Some(n) = value.as_f64()
        && (limit("minimum").is_some_and(|min| n < min)
            || limit("maximum").is_some_and(|max| n > max))
    {
        problems.push(format!("{path}: {n} is out of bounds"));
    }
    if let (Some(s), Some(min)) = (value.as_str(), limit("minLength"))
        && (s.chars().count() as f64) < min
    {
        problems.push(format!("{path}: shorter than {min}"));
    }
    if let (Some(fields), Some(properties)) = (value.as_object(), schema.get("properties")) {
        for (name, field) in fields {
            if let Some(sub) = properties.get(name) {
                let path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                bounds(sub, field, &path, problems);
            }
        }
    }
}
