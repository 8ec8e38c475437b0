//! What an apiserver says about an object under a CRD version's OpenAPI schema, as far as the
//! operator's tests need it: numeric bounds, minimum lengths, and the `x-kubernetes-validations`
//! CEL rules (compiled once, through `kube-cel`).

use kube_cel::{CompiledSchema, Validator, compile_schema};
use serde_json::Value;

/// A schema ready to check objects against.
pub struct SchemaCheck {
    schema: Value,
    rules: CompiledSchema,
    cel: Validator,
}

impl SchemaCheck {
    /// Compiles the rules of `schema`, a CRD version's `openAPIV3Schema` as JSON.
    pub fn new(schema: Value) -> Self {
        SchemaCheck {
            rules: compile_schema(&schema),
            schema,
            cel: Validator::new(),
        }
    }

    /// Every complaint about `object`, each naming its field; empty when it would be admitted.
    pub fn problems(&self, object: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        bounds(&self.schema, object, "", &mut problems);
        if let Err(errors) = self.cel.validate_compiled(&self.rules, object, None) {
            problems.extend(errors.as_slice().iter().map(ToString::to_string));
        }
        problems
    }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bounds_lengths_and_rules_are_each_reported_by_field() {
        let check = SchemaCheck::new(json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "low": {"type": "integer", "minimum": 1, "maximum": 100},
                        "high": {"type": "integer"},
                        "name": {"type": "string", "minLength": 1},
                    },
                    "x-kubernetes-validations": [
                        {"rule": "self.low < self.high", "message": "low must be below high"}
                    ],
                }
            }
        }));
        assert!(
            check
                .problems(&json!({"spec": {"low": 10, "high": 20, "name": "a"}}))
                .is_empty()
        );
        let problems = check.problems(&json!({"spec": {"low": 0, "high": -1, "name": ""}}));
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("spec.low: 0 is out of bounds"));
        assert!(problems[1].starts_with("spec.name: shorter than 1"));
        assert!(
            problems[2].contains("low must be below high"),
            "{problems:?}"
        );
    }
}
