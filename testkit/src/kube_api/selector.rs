//! Label and field selectors: the query-string forms and the `LabelSelector` object form.

use serde_json::Value;

/// One term of a label selector.
#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &Value) -> bool {
        let label = |key: &str| labels.get(key).and_then(Value::as_str);
        match self {
            Requirement::Equals(key, value) => label(key) == Some(value.as_str()),
            Requirement::NotEquals(key, value) => label(key) != Some(value.as_str()),
            Requirement::In(key, values) => {
                label(key).is_some_and(|l| values.iter().any(|v| v == l))
            }
            Requirement::NotIn(key, values) => {
                !label(key).is_some_and(|l| values.iter().any(|v| v == l))
            }
            Requirement::Exists(key) => label(key).is_some(),
            Requirement::DoesNotExist(key) => label(key).is_none(),
        }
    }
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Parses the `labelSelector` query form: `a=b,c!=d,e in (f,g),!h`.
    pub(crate) fn parse(selector: &str) -> Result<Self, String> {
        split_outside_parens(selector)
            .into_iter()
            .map(str::trim)
            .filter(|term| !term.is_empty())
            .map(parse_term)
            .collect::<Result<_, _>>()
            .map(LabelSelector)
    }

    /// Reads a `LabelSelector` object (`matchLabels`, `matchExpressions`), as PDBs carry.
    pub(crate) fn from_object(selector: &Value) -> Result<Self, String> {
        let mut requirements = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (key, value) in labels {
                let value = value
                    .as_str()
                    .ok_or(format!("matchLabels.{key} is not a string"))?;
                requirements.push(Requirement::Equals(key.clone(), value.to_owned()));
            }
        }
        let expressions = selector.get("matchExpressions").and_then(Value::as_array);
        for expression in expressions.into_iter().flatten() {
            let key = expression["key"]
                .as_str()
                .ok_or("matchExpressions[].key is missing")?;
            let values: Vec<String> = expression["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            let key = key.to_owned();
            requirements.push(match expression["operator"].as_str() {
                Some("In") => Requirement::In(key, values),
                Some("NotIn") => Requirement::NotIn(key, values),
                Some("Exists") => Requirement::Exists(key),
                Some("DoesNotExist") => Requirement::DoesNotExist(key),
                other => return Err(format!("unknown matchExpressions operator {other:?}")),
            });
        }
        Ok(LabelSelector(requirements))
    }

    /// Whether the object's `metadata.labels` satisfy every term.
    pub(crate) fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        self.0.iter().all(|requirement| requirement.matches(labels))
    }
}

fn split_outside_parens(selector: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0_i32, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    terms
}

fn parse_term(term: &str) -> Result<Requirement, String> {
    if let Some((head, set)) = term.split_once('(') {
        let set = set
            .strip_suffix(')')
            .ok_or(format!("unclosed set in {term:?}"))?;
        let values = set.split(',').map(|v| v.trim().to_owned()).collect();
        return match head.split_whitespace().collect::<Vec<_>>()[..] {
            [key, "in"] => Ok(Requirement::In(label_key(key)?, values)),
            [key, "notin"] => Ok(Requirement::NotIn(label_key(key)?, values)),
            _ => Err(format!("unknown set operator in {term:?}")),
        };
    }
    let pair = |op: &str| {
        term.split_once(op)
            .map(|(k, v)| (k.trim(), v.trim().to_owned()))
    };
    if let Some((key, value)) = pair("!=") {
        Ok(Requirement::NotEquals(label_key(key)?, value))
    } else if let Some((key, value)) = pair("==").or_else(|| pair("=")) {
        Ok(Requirement::Equals(label_key(key)?, value))
    } else if let Some(key) = term.strip_prefix('!') {
        Ok(Requirement::DoesNotExist(label_key(key.trim())?))
    } else {
        Ok(Requirement::Exists(label_key(term)?))
    }
}

fn label_key(key: &str) -> Result<String, String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || "-_./".contains(c);
    if !key.is_empty() && key.chars().all(valid) {
        Ok(key.to_owned())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

/// A parsed field selector: `metadata.name=x,metadata.namespace!=y`, any dotted path.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FieldSelector(Vec<(Vec<String>, bool, String)>);

impl FieldSelector {
    pub(crate) fn parse(selector: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, equal, value) = if let Some((path, value)) = term.split_once("!=") {
                (path, false, value)
            } else if let Some((path, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                (path, true, value)
            } else {
                return Err(format!("invalid field selector term {term:?}"));
            };
            let path = path.trim().split('.').map(str::to_owned).collect();
            terms.push((path, equal, value.trim().to_owned()));
        }
        Ok(FieldSelector(terms))
    }

    /// Whether every term holds; a missing field reads as the empty string, as in the API.
    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, equal, value)| {
            let field = path.iter().fold(object, |v, key| &v[key.as_str()]);
            let field = match field {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (field == *value) == *equal
        })
    }
}

/// The `labelSelector` and `fieldSelector` of a list or watch, both optional.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Selectors {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selectors {
    pub(crate) fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, String> {
        Ok(Selectors {
            labels: LabelSelector::parse(labels.unwrap_or_default())?,
            fields: FieldSelector::parse(fields.unwrap_or_default())?,
        })
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(labels: Value) -> Value {
        json!({ "metadata": { "name": "web-1", "namespace": "prod", "labels": labels } })
    }

    #[test]
    fn equality_terms_must_all_hold() {
        let selector = LabelSelector::parse("app=web,tier==front").unwrap();
        assert!(selector.matches(&pod(json!({ "app": "web", "tier": "front", "x": "y" }))));
        assert!(!selector.matches(&pod(json!({ "app": "web" }))));
    }

    #[test]
    fn inequality_matches_objects_without_the_label() {
        let selector = LabelSelector::parse("app!=web").unwrap();
        assert!(selector.matches(&pod(json!({}))));
        assert!(selector.matches(&pod(json!({ "app": "db" }))));
        assert!(!selector.matches(&pod(json!({ "app": "web" }))));
    }

    #[test]
    fn set_and_existence_terms_are_understood() {
        let selector =
            LabelSelector::parse("app in (web, api),tier notin (db),canary,!legacy").unwrap();
        assert!(selector.matches(&pod(json!({ "app": "api", "canary": "" }))));
        assert!(!selector.matches(&pod(json!({ "app": "api" }))));
        assert!(!selector.matches(&pod(json!({ "app": "api", "canary": "", "legacy": "1" }))));
        assert!(!selector.matches(&pod(json!({ "app": "api", "canary": "", "tier": "db" }))));
    }

    #[test]
    fn the_empty_selector_matches_everything_and_garbage_is_refused() {
        assert!(LabelSelector::parse("").unwrap().matches(&pod(Value::Null)));
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("a b=c").is_err());
    }

    #[test]
    fn selector_objects_combine_match_labels_and_expressions() {
        let selector = LabelSelector::from_object(&json!({
            "matchLabels": { "app": "web" },
            "matchExpressions": [{ "key": "track", "operator": "NotIn", "values": ["canary"] }],
        }))
        .unwrap();
        assert!(selector.matches(&pod(json!({ "app": "web", "track": "stable" }))));
        assert!(!selector.matches(&pod(json!({ "app": "web", "track": "canary" }))));
        assert!(
            LabelSelector::from_object(&json!({}))
                .unwrap()
                .matches(&pod(json!({})))
        );
    }

    #[test]
    fn field_selectors_read_dotted_paths() {
        let selector = FieldSelector::parse("metadata.name=web-1,metadata.namespace!=dev").unwrap();
        assert!(selector.matches(&pod(json!({}))));
        assert!(
            !FieldSelector::parse("metadata.name==other")
                .unwrap()
                .matches(&pod(json!({})))
        );
        assert!(
            FieldSelector::parse("spec.nodeName=")
                .unwrap()
                .matches(&pod(json!({})))
        );
        assert!(FieldSelector::parse("metadata.name").is_err());
    }
}
