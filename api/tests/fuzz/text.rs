//! Text for `check` that no one would write on purpose: any unicode,
//! YAML-ish lines built from policy fragments, and sound policies with
//! random edits.

use proptest::prelude::*;
use proptest::sample::select;

use super::draft::sound_draft;

/// Pieces of YAML syntax and of policies, so that random text often gets
/// past the parser and into the policy's own rules.
const FRAGMENTS: [&str; 57] = [
    "---",
    "...",
    "- ",
    ": ",
    ":",
    "{",
    "}",
    "[",
    "]",
    ", ",
    "'",
    "\"",
    "# ",
    "&a ",
    "*a",
    "<<: *a",
    "!!str ",
    "!!binary ",
    "!Custom ",
    "? ",
    "| ",
    "> ",
    "%YAML 1.2",
    "~",
    "null",
    "true",
    "\t",
    "\r",
    "\u{feff}",
    "apiVersion: shortener.dev/v1alpha1",
    "kind: MemoryPolicy",
    "metadata:",
    "name: p",
    "spec:",
    "targetRef: {apiVersion: apps/v1, kind: Deployment, name: s}",
    "thresholds:",
    "lowWaterMark: ",
    "highWaterMark: ",
    "critical: ",
    "for: ",
    "interval: ",
    "scaling:",
    "minReplicas: ",
    "maxReplicas: ",
    "limits:",
    "request: ",
    "raise: {step: 64Mi, max: 1Gi}",
    "step: ",
    "max: ",
    "allowRestart: ",
    "onHigh: RaiseLimit",
    "onCritical: ",
    "safety:",
    "cooldown: ",
    "status:",
    "0s",
    "64Mi",
];

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(&FRAGMENTS[..]).prop_map(str::to_owned),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        1 => "[0-9]{1,4}(ms|s|m|h|Mi|Gi|\\.5)?",
        1 => ".{0,6}",
    ]
}

/// Lines of fragments, each indented by zero to four levels.
fn yaml_ish() -> impl Strategy<Value = String> {
    let line = (0..5usize, prop::collection::vec(fragment(), 0..5))
        .prop_map(|(depth, fragments)| format!("{}{}", "  ".repeat(depth), fragments.concat()));
    prop::collection::vec(line, 0..30).prop_map(|lines| lines.join("\n"))
}

/// One edit at a position given as a fraction of the text's length.
#[derive(Clone, Debug)]
enum Edit {
    Insert(f64, String),
    Delete(f64, usize),
}

/// One to three sound policies, then a few random edits.
fn edited() -> impl Strategy<Value = String> {
    let edit = prop_oneof![
        (0.0..1.0, fragment()).prop_map(|(at, text)| Edit::Insert(at, text)),
        (0.0..1.0, 1..12usize).prop_map(|(at, len)| Edit::Delete(at, len)),
    ];
    (
        prop::collection::vec(sound_draft(), 1..4),
        prop::collection::vec(edit, 0..4),
    )
        .prop_map(|(drafts, edits)| {
            let mut text = drafts
                .iter()
                .map(|draft| draft.to_yaml())
                .collect::<Vec<_>>()
                .join("---\n");
            for edit in edits {
                match edit {
                    Edit::Insert(at, fragment) => {
                        let at = boundary(&text, at);
                        text.insert_str(at, &fragment);
                    }
                    Edit::Delete(at, len) => {
                        let start = boundary(&text, at);
                        let end = text[start..]
                            .char_indices()
                            .nth(len)
                            .map_or(text.len(), |(i, _)| start + i);
                        text.replace_range(start..end, "");
                    }
                }
            }
            text
        })
}

/// The char boundary at or before `fraction` of the way through `text`.
fn boundary(text: &str, fraction: f64) -> usize {
    let mut at = (text.len() as f64 * fraction) as usize;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Anything at all, weighted towards text that gets far into `check`.
pub fn anything() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => "(?s).{0,300}",
        3 => yaml_ish(),
        3 => edited(),
    ]
}
