//! `memory-operator check`: strict parsing of policy files (unknown fields
//! are errors), then [`validate`].

use kube::Resource;
use serde::Deserialize;

use super::{FieldError, validate};
use crate::{Error, Result, crd::MemoryPolicy};

/// Just enough of a document to tell what kind of object it is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    api_version: Option<String>,
    kind: Option<String>,
}

/// Parses and validates every `---`-separated document in `yaml`; empty
/// documents are skipped. Each error names its document (counting from 1).
/// A syntax error ends the file: nothing after it can be trusted.
pub fn check_documents(yaml: &str) -> Vec<Result<MemoryPolicy>> {
    // serde_yaml keeps yielding documents after a syntax error (forever), so
    // a first pass finds how many documents can be read at all.
    let mut readable = 0;
    let mut syntax_error = None;
    for document in serde_yaml::Deserializer::from_str(yaml) {
        if let Err(error) = serde_yaml::Value::deserialize(document) {
            syntax_error = Some(Error::Yaml {
                document: readable + 1,
                error,
            });
            break;
        }
        readable += 1;
    }
    // A second pass reads only apiVersion and kind, so that another kind of
    // object is reported as such rather than as a policy missing fields.
    let headers = serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Option::<Header>::deserialize(d).ok().flatten());
    let mut results: Vec<_> = serde_yaml::Deserializer::from_str(yaml)
        .zip(headers)
        .take(readable)
        .enumerate()
        .filter_map(|(index, (document, header))| {
            check_document(index + 1, header, document).transpose()
        })
        .collect();
    results.extend(syntax_error.map(Err));
    results
}

fn check_document(
    document: usize,
    header: Option<Header>,
    yaml: serde_yaml::Deserializer,
) -> Result<Option<MemoryPolicy>> {
    if let Some(header) = header {
        let (api_version, kind) = (MemoryPolicy::api_version(&()), MemoryPolicy::kind(&()));
        if header.api_version.as_deref() != Some(&api_version)
            || header.kind.as_deref() != Some(&kind)
        {
            let or_none = |s: Option<String>| s.unwrap_or_else(|| "none".into());
            return Err(Error::WrongKind {
                document,
                expected: format!("apiVersion {api_version}, kind {kind}"),
                found: format!(
                    "apiVersion {}, kind {}",
                    or_none(header.api_version),
                    or_none(header.kind)
                ),
            });
        }
    }

    let mut unknown = Vec::new();
    let policy: Option<MemoryPolicy> = serde_ignored::deserialize(yaml, |path| {
        let path = dotted(&path);
        // The generated type writes these two itself rather than storing them.
        if path != "apiVersion" && path != "kind" {
            unknown.push(path);
        }
    })
    .map_err(|error| Error::Yaml { document, error })?;
    let Some(policy) = policy else {
        return Ok(None);
    };
    if !unknown.is_empty() {
        return Err(Error::UnknownFields {
            document,
            fields: unknown,
        });
    }

    let name = policy.metadata.name.clone().unwrap_or_default();
    let mut errors = validate(&policy.spec, policy.metadata.namespace.as_deref())
        .err()
        .unwrap_or_default();
    if name.is_empty() {
        let message = "metadata.name is required".to_owned();
        errors.insert(
            0,
            FieldError {
                path: "metadata.name".into(),
                message,
            },
        );
    }
    if errors.is_empty() {
        Ok(Some(policy))
    } else {
        Err(Error::Invalid {
            document,
            name,
            errors,
        })
    }
}

/// `spec.thresholds.lowWatermark`, `spec.x[2].y`: a path as the schema names it.
fn dotted(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", dotted(parent)),
        Path::Map { parent, key } => match dotted(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => dotted(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "apiVersion: shortener.dev/v1alpha1\nkind: MemoryPolicy\nmetadata: {name: p}\n\
                          spec:\n  targetRef: {apiVersion: apps/v1, kind: Deployment, name: shortener}\n";

    #[test]
    fn documents_are_checked_one_by_one_and_empty_ones_skipped() {
        let file = format!(
            "---\n{POLICY}---\n{}---\n",
            POLICY.replace("name: p}", "name: q}")
        );
        let names: Vec<_> = check_documents(&file)
            .into_iter()
            .map(|r| r.unwrap().metadata.name.unwrap())
            .collect();
        assert_eq!(names, ["p", "q"]);
    }

    #[test]
    fn a_custom_query_is_judged_against_the_documents_namespace() {
        let file = format!(
            "{}  metric: {{source: Custom, query: 'sum(my_bytes{{namespace=\"bank\"}})'}}\n",
            POLICY.replace("{name: p}", "{name: p, namespace: shop}")
        );
        let err = check_documents(&file).remove(0).unwrap_err().to_string();
        assert_eq!(
            err,
            "document 1 (p):\n  spec.metric.query reads series of namespace bank in \
             `my_bytes{namespace=\"bank\"}`, and a policy reads only its own namespace (shop)"
        );
        let elsewhere = file.replace("namespace: shop", "namespace: bank");
        assert!(check_documents(&elsewhere).remove(0).is_ok());
    }

    #[test]
    fn unknown_fields_are_errors_with_their_path() {
        let file = format!("{POLICY}  thresholds: {{lowWatermark: 10}}\nstatsu: {{}}\n");
        let err = check_documents(&file).remove(0).unwrap_err().to_string();
        assert_eq!(
            err,
            "document 1:\n  unknown field spec.thresholds.lowWatermark\n  unknown field statsu"
        );
    }

    #[test]
    fn another_kind_of_object_is_named_as_such() {
        let err = check_documents("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
            .remove(0)
            .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("found apiVersion v1, kind ConfigMap"),
            "{err}"
        );
    }

    #[test]
    fn a_policy_without_a_name_is_refused() {
        let err = check_documents(&POLICY.replace("{name: p}", "{}"))
            .remove(0)
            .unwrap_err();
        assert_eq!(err.to_string(), "document 1:\n  metadata.name is required");
    }

    #[test]
    fn a_syntax_error_is_reported_once_and_ends_the_file() {
        let file = format!("{POLICY}---\nmetadata: {{name: [\n---\n{POLICY}");
        let results = check_documents(&file);
        assert_eq!(results.len(), 2);
        assert!(results[0].is_ok());
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(err.starts_with("document 2: "), "{err}");
    }
}
