//! Plain helpers on JSON objects: merge patches, metadata fields, server-made values.

use rand::Rng;
use serde_json::{Map, Value, json};

/// Applies an RFC 7386 JSON merge patch: objects merge key by key, `null` deletes a key, and
/// anything else (lists included) replaces the target.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        unreachable!("made an object just above")
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The object as the client asked for it: whole, or only its metadata.
pub(crate) fn present(object: &Value, metadata_only: bool) -> Value {
    if metadata_only {
        json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": object["metadata"],
        })
    } else {
        object.clone()
    }
}

/// A string field of `metadata`, such as `name` or `resourceVersion`.
pub(crate) fn meta<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object
        .get("metadata")?
        .get(field)?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// `metadata`, made an object if it was missing.
pub(crate) fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = Value::Object(Map::new());
    }
    object["metadata"]
        .as_object_mut()
        .expect("made an object just above")
}

/// Whether `metadata.finalizers` still holds anything.
pub(crate) fn has_finalizers(object: &Value) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

/// The current time as the API writes `metav1.Time`: RFC 3339, whole seconds, UTC.
pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A random version-4 UUID, like the ones the API server stamps into `metadata.uid`.
pub(crate) fn new_uid() -> String {
    // The version nibble (4) and the variant bits (10) sit at these offsets from the low end.
    const VERSION: u128 = 0xf << 76;
    const VARIANT: u128 = 0xc << 60;
    let bits = (rand::random::<u128>() & !VERSION & !VARIANT) | (0x4 << 76) | (0x8 << 60);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The five characters the API server appends to `metadata.generateName`.
pub(crate) fn name_suffix() -> String {
    // The API's alphabet: no vowels (no accidental words) and no look-alike characters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_merges_objects_deletes_nulls_and_replaces_lists() {
        let mut target = json!({
            "a": "b",
            "c": { "d": "e", "f": "g" },
            "list": [1, 2, 3],
        });
        merge_patch(
            &mut target,
            &json!({ "a": "z", "c": { "f": null, "h": 1 }, "list": [4], "new": { "x": null } }),
        );
        assert_eq!(
            target,
            json!({ "a": "z", "c": { "d": "e", "h": 1 }, "list": [4], "new": {} })
        );
    }

    #[test]
    fn merge_patch_follows_the_rfc_examples_for_non_objects() {
        let mut target = json!({ "a": "b" });
        merge_patch(&mut target, &json!(["c"]));
        assert_eq!(target, json!(["c"]));
        let mut target = json!(["a"]);
        merge_patch(&mut target, &json!({ "a": "b" }));
        assert_eq!(target, json!({ "a": "b" }));
    }

    #[test]
    fn uids_look_like_version_4_uuids() {
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4");
        assert!("89ab".contains(&uid[19..20]), "{uid}");
        assert_ne!(uid, new_uid());
    }

    #[test]
    fn timestamps_are_whole_seconds_in_utc() {
        let now = now();
        assert_eq!(now.len(), "2024-01-02T03:04:05Z".len(), "{now}");
        assert!(now.ends_with('Z'));
    }

    #[test]
    fn empty_metadata_strings_count_as_missing() {
        let object = json!({ "metadata": { "name": "web", "resourceVersion": "" } });
        assert_eq!(meta(&object, "name"), Some("web"));
        assert_eq!(meta(&object, "resourceVersion"), None);
    }
}
