//! What `check` should say about a draft, worked out from the rules as the
//! CRD documents them rather than from the code that enforces them.

mod values;

pub use values::{MAX_DURATION_MILLIS, bytes, growth, millis};

use super::draft::{Draft, Leaf, Raw};

/// What a field holds, which decides what it can be written as.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    U32,
    I32,
    Duration,
    Quantity,
    /// A memory quantity per `s`, `min` or `h`.
    Growth,
    Choice(&'static [&'static str]),
    Flag,
}

/// Every field a policy has, as the schema names it.
const FIELDS: [(&str, Kind); 40] = [
    ("apiVersion", Kind::Text),
    ("kind", Kind::Text),
    ("metadata.name", Kind::Text),
    ("spec.targetRef.apiVersion", Kind::Text),
    ("spec.targetRef.kind", Kind::Text),
    ("spec.targetRef.name", Kind::Text),
    ("spec.prometheus.source", Kind::Text),
    ("spec.prometheus.url", Kind::Text),
    ("spec.prometheus.timeout", Kind::Duration),
    (
        "spec.metric.source",
        Kind::Choice(&["Service", "Container", "Custom"]),
    ),
    ("spec.metric.query", Kind::Text),
    ("spec.interval", Kind::Duration),
    ("spec.thresholds.lowWaterMark", Kind::U32),
    ("spec.thresholds.highWaterMark", Kind::U32),
    ("spec.thresholds.critical", Kind::U32),
    ("spec.thresholds.for", Kind::Duration),
    ("spec.thresholds.staleAfter", Kind::Duration),
    ("spec.limits.container", Kind::Text),
    ("spec.limits.request", Kind::Quantity),
    ("spec.limits.limit", Kind::Quantity),
    ("spec.limits.raise.step", Kind::Quantity),
    ("spec.limits.raise.max", Kind::Quantity),
    ("spec.limits.raise.allowRestart", Kind::Flag),
    ("spec.limits.raise.timeout", Kind::Duration),
    (
        "spec.onHigh",
        Kind::Choice(&["ScaleOut", "AlertOnly", "RaiseLimit"]),
    ),
    (
        "spec.onCritical",
        Kind::Choice(&["RestartPod", "RollingRestart", "AlertOnly"]),
    ),
    ("spec.prediction.window", Kind::Duration),
    ("spec.prediction.horizon", Kind::Duration),
    ("spec.prediction.minGrowth", Kind::Growth),
    ("spec.scaling.minReplicas", Kind::I32),
    ("spec.scaling.maxReplicas", Kind::I32),
    ("spec.scaling.step", Kind::I32),
    ("spec.scaling.scaleInStabilization", Kind::Duration),
    ("spec.safety.cooldown", Kind::Duration),
    ("spec.safety.maxRestartsPerHour", Kind::U32),
    ("spec.safety.maxUnavailable", Kind::I32),
    ("spec.dryRun", Kind::Flag),
    ("spec.suspend", Kind::Flag),
    // Known, never written by a draft.
    ("status.state", Kind::Text),
    ("metadata.namespace", Kind::Text),
];

/// The fields a section cannot do without once it is written: the document is unreadable
/// where that section ends.
const REQUIRED: [&str; 5] = [
    "spec.targetRef.apiVersion",
    "spec.targetRef.kind",
    "spec.targetRef.name",
    "spec.limits.raise.step",
    "spec.limits.raise.max",
];

/// The sections a draft may add an unknown field to (`""` is the top level).
pub const SECTIONS: [&str; 11] = [
    "",
    "spec",
    "spec.targetRef",
    "spec.prometheus",
    "spec.metric",
    "spec.thresholds",
    "spec.limits",
    "spec.limits.raise",
    "spec.prediction",
    "spec.scaling",
    "spec.safety",
];

/// The verdict on one document.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// The first field, in document order, whose value its type cannot hold.
    Unreadable(String),
    /// Every field the policy does not have.
    Unknown(Vec<String>),
    /// The path of every rule broken, sorted.
    Unsound(Vec<String>),
}

/// Whether `path` is a field, or a section of fields, of a policy.
pub fn is_known(path: &str) -> bool {
    FIELDS
        .iter()
        .any(|(field, _)| field == &path || field.starts_with(&format!("{path}.")))
}

fn kind(path: &str) -> Option<Kind> {
    FIELDS
        .iter()
        .find(|(field, _)| *field == path)
        .map(|(_, kind)| *kind)
}

/// The verdict `check` should give `draft`.
pub fn verdict(draft: &Draft) -> Verdict {
    if let Some(path) = first_unreadable(draft) {
        return Verdict::Unreadable(path);
    }
    let unknown: Vec<String> = draft
        .leaves
        .iter()
        // A section written empty is known by its name alone.
        .filter(|leaf| {
            kind(&leaf.path).is_none() && !(leaf.raw == Raw::EmptySection && is_known(&leaf.path))
        })
        .map(|leaf| leaf.path.clone())
        .collect();
    if !unknown.is_empty() {
        return Verdict::Unknown(unknown);
    }
    let mut broken = broken_rules(draft);
    broken.sort();
    if broken.is_empty() {
        Verdict::Accepted
    } else {
        Verdict::Unsound(broken)
    }
}

/// The leaves in the order the document holds them: a section sits where its first field
/// was written, and keeps every field written to it later.
fn in_document_order(leaves: &[Leaf]) -> Vec<&Leaf> {
    let first = |prefix: &str| {
        leaves
            .iter()
            .position(|leaf| leaf.path == prefix || leaf.path.starts_with(&format!("{prefix}.")))
    };
    let mut ordered: Vec<(Vec<Option<usize>>, &Leaf)> = leaves
        .iter()
        .map(|leaf| {
            let ends = leaf.path.match_indices('.').map(|(at, _)| at);
            let sections = ends.chain([leaf.path.len()]);
            (sections.map(|end| first(&leaf.path[..end])).collect(), leaf)
        })
        .collect();
    ordered.sort_by(|a, b| a.0.cmp(&b.0));
    ordered.into_iter().map(|(_, leaf)| leaf).collect()
}

/// The path of the first thing in the document its type cannot hold: a value, or a section
/// missing a required field (noticed where the section ends).
fn first_unreadable(draft: &Draft) -> Option<String> {
    let leaves = in_document_order(&draft.leaves);
    for (at, leaf) in leaves.iter().enumerate() {
        if !readable(leaf) {
            return Some(leaf.path.clone());
        }
        for field in REQUIRED {
            let (section, _) = field
                .rsplit_once('.')
                .expect("a required field has a section");
            let within = |path: &str| path.starts_with(&format!("{section}."));
            let ends =
                within(&leaf.path) && leaves.get(at + 1).is_none_or(|next| !within(&next.path));
            if ends && draft.get(field).is_none() {
                return Some(section.to_owned());
            }
        }
    }
    None
}

/// YAML reads a plain number as text where text is expected.
fn as_text(raw: &Raw) -> Option<String> {
    match raw {
        Raw::Text(text) => Some(text.clone()),
        Raw::Int(n) => Some(n.to_string()),
        Raw::Flag(_) | Raw::EmptySection => None,
    }
}

/// A quantity as YAML reads it: text, or a plain number taken as text.
pub fn bytes_of(raw: &Raw) -> Option<u64> {
    as_text(raw).and_then(|text| bytes(&text))
}

fn readable(leaf: &Leaf) -> bool {
    let Some(kind) = kind(&leaf.path) else {
        return true;
    };
    match (kind, &leaf.raw) {
        (Kind::Text | Kind::Quantity, raw) => as_text(raw).is_some(),
        (Kind::U32, Raw::Int(n)) => u32::try_from(*n).is_ok(),
        (Kind::I32, Raw::Int(n)) => i32::try_from(*n).is_ok(),
        (Kind::Duration, raw) => as_text(raw).is_some_and(|text| millis(&text).is_some()),
        (Kind::Growth, raw) => as_text(raw).is_some_and(|text| growth(&text).is_some()),
        (Kind::Choice(options), Raw::Text(text)) => options.contains(&text.as_str()),
        (Kind::Flag, Raw::Flag(_)) => true,
        _ => false,
    }
}

/// `thresholds.staleAfter` when left out, in milliseconds.
pub const DEFAULT_STALE_AFTER_MILLIS: u64 = 45_000;

/// `prediction.window` when left out, in milliseconds.
pub const DEFAULT_WINDOW_MILLIS: u64 = 600_000;

/// What a readable draft's `prediction` section asks for, its defaults (`15m`, `1Mi/min`)
/// standing in for what it leaves out.
#[derive(Debug, PartialEq, Eq)]
pub struct Prediction {
    /// `window`, in milliseconds.
    pub window_millis: u64,
    /// `horizon`, in milliseconds.
    pub horizon_millis: u64,
    /// `minGrowth`, in bytes a minute.
    pub growth_per_minute: u64,
}

/// The prediction `draft` asks for, or `None` when it leaves the section out.
pub fn prediction(draft: &Draft) -> Option<Prediction> {
    if !draft.has("spec.prediction") {
        return None;
    }
    let text = |path: &str| draft.get(path).and_then(as_text);
    let millis_or = |path: &str, default| text(path).and_then(|d| millis(&d)).unwrap_or(default);
    Some(Prediction {
        window_millis: millis_or("spec.prediction.window", DEFAULT_WINDOW_MILLIS),
        horizon_millis: millis_or("spec.prediction.horizon", 900_000),
        growth_per_minute: text("spec.prediction.minGrowth")
            .and_then(|g| growth(&g))
            .unwrap_or(1 << 20),
    })
}

/// The path of every rule `draft` breaks, once for each time it breaks it.
fn broken_rules(draft: &Draft) -> Vec<String> {
    let text = |path: &str| draft.get(path).and_then(as_text);
    let int = |path: &str, default: i128| match draft.get(path) {
        Some(Raw::Int(n)) => *n,
        _ => default,
    };
    let mut broken = Vec::new();
    let mut check = |path: &str, sound: bool| {
        if !sound {
            broken.push(path.to_owned());
        }
    };

    check(
        "metadata.name",
        text("metadata.name").is_some_and(|n| !n.is_empty()),
    );
    check(
        "spec.targetRef.apiVersion",
        text("spec.targetRef.apiVersion").as_deref() == Some("apps/v1"),
    );
    check(
        "spec.targetRef.kind",
        text("spec.targetRef.kind").as_deref() == Some("Deployment"),
    );
    check(
        "spec.targetRef.name",
        text("spec.targetRef.name").is_some_and(|n| !n.is_empty()),
    );
    check("spec.prometheus.url", text("spec.prometheus.url").is_none());
    check(
        "spec.prometheus.source",
        text("spec.prometheus.source").is_none_or(|name| {
            let inner = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
            (1..=63).contains(&name.len())
                && name.starts_with(inner)
                && name.ends_with(inner)
                && name.chars().all(|c| inner(c) || c == '-')
        }),
    );

    let custom = text("spec.metric.source").as_deref() == Some("Custom");
    let query = text("spec.metric.query");
    check(
        "spec.metric.query",
        if custom {
            // PromQL, matching no namespaces by pattern or exclusion (a draft names no
            // namespace of its own, so one named plainly is judged at run time only).
            query.is_some_and(|q| {
                !q.is_empty()
                    && promql_parser::parser::parse(&q).is_ok()
                    && !q.contains("namespace=~")
                    && !q.contains("namespace!")
            })
        } else {
            query.is_none()
        },
    );

    for (path, kind) in FIELDS {
        if let (Kind::Duration, Some(duration)) = (kind, text(path)) {
            // Positive, and no longer than Go's durations (i64 nanoseconds) reach.
            check(
                path,
                millis(&duration).is_none_or(|ms| ms > 0 && ms <= MAX_DURATION_MILLIS),
            );
        }
    }

    let [low, high, critical] = [
        ("spec.thresholds.lowWaterMark", 60),
        ("spec.thresholds.highWaterMark", 80),
        ("spec.thresholds.critical", 95),
    ]
    .map(|(path, default)| (path, int(path, default)));
    for (path, percent) in [low, high, critical] {
        check(path, (1..=100).contains(&percent));
    }
    check(low.0, low.1 < high.1);
    check(high.0, high.1 < critical.1);

    let request = text("spec.limits.request").map(|q| bytes(&q));
    let limit = text("spec.limits.limit").map(|q| bytes(&q));
    check("spec.limits.request", request != Some(None));
    check("spec.limits.limit", limit != Some(None));
    if let (Some(Some(request)), Some(Some(limit))) = (request, limit) {
        check("spec.limits.request", request <= limit);
    }

    // Raising limits in place needs its bounds, and its bounds are for nothing else.
    check(
        "spec.limits.raise",
        draft.has("spec.limits.raise") == (text("spec.onHigh").as_deref() == Some("RaiseLimit")),
    );
    let step = text("spec.limits.raise.step").map(|q| bytes(&q));
    let max = text("spec.limits.raise.max").map(|q| bytes(&q));
    check("spec.limits.raise.step", step != Some(None));
    check("spec.limits.raise.max", max != Some(None));
    if let Some(Some(step)) = step {
        // A raise adds something.
        check("spec.limits.raise.step", step > 0);
    }
    if let (Some(Some(step)), Some(Some(max))) = (step, max) {
        // One step fits below the max.
        check("spec.limits.raise.max", max >= step);
    }
    if let (Some(Some(max)), Some(Some(limit))) = (max, limit) {
        // A pod at the policy's own limit can still be raised.
        check("spec.limits.raise.max", max > limit);
    }

    if let Some(prediction) = prediction(draft) {
        let stale_after = text("spec.thresholds.staleAfter").and_then(|d| millis(&d));
        // A window holds the samples a trend is read from, and staleAfter is the longest gap
        // allowed between two of them.
        check(
            "spec.prediction.window",
            prediction.window_millis > stale_after.unwrap_or(DEFAULT_STALE_AFTER_MILLIS),
        );
    }

    let min = int("spec.scaling.minReplicas", 1);
    let max = int("spec.scaling.maxReplicas", 10);
    check("spec.scaling.minReplicas", min >= 1);
    check("spec.scaling.maxReplicas", max >= 1);
    check("spec.scaling.minReplicas", min <= max);
    check("spec.scaling.step", int("spec.scaling.step", 1) >= 1);
    check(
        "spec.safety.maxUnavailable",
        int("spec.safety.maxUnavailable", 1) >= 1,
    );
    broken
}
