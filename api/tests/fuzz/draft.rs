//! Policy documents built from random field values, in range or not, kept as
//! ordered leaves (`spec.thresholds.lowWaterMark: -5`) that the oracle can
//! judge one by one.

mod fields;
mod prediction;
mod raise;

use proptest::prelude::*;
use proptest::sample::select;
use serde_yaml::{Mapping, Value};

use fields::{count, duration, edges, flag, metric, scaling, thresholds, unknown};
use prediction::stale_after_and_prediction;
use raise::limits_and_on_high;

/// A sound field is written fifteen times for each broken one: about one
/// draft in seven is accepted, and most others break one or two rules,
/// so each rule is seen alone as well as with others.
const SOUND_WEIGHT: u32 = 15;

/// A value as written in the document.
#[derive(Clone, Debug, PartialEq)]
pub enum Raw {
    Int(i128),
    Text(String),
    Flag(bool),
    /// `{}`: a section written with none of its fields.
    EmptySection,
}

impl Raw {
    fn to_value(&self) -> Value {
        match self {
            Raw::Int(n) => match (i64::try_from(*n), u64::try_from(*n)) {
                (Ok(n), _) => Value::from(n),
                (_, Ok(n)) => Value::from(n),
                _ => unreachable!("drafts only hold integers YAML can write"),
            },
            Raw::Text(text) => Value::from(text.as_str()),
            Raw::Flag(flag) => Value::from(*flag),
            Raw::EmptySection => Mapping::new().into(),
        }
    }
}

/// One field of a document, by its dotted path.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub path: String,
    pub raw: Raw,
}

/// A `MemoryPolicy` document, its fields in the order they are written.
#[derive(Clone, Debug)]
pub struct Draft {
    pub leaves: Vec<Leaf>,
}

impl Draft {
    /// The value written at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&Raw> {
        self.leaves
            .iter()
            .find(|leaf| leaf.path == path)
            .map(|leaf| &leaf.raw)
    }

    /// Whether the document holds `section`, with fields or empty.
    pub fn has(&self, section: &str) -> bool {
        self.leaves
            .iter()
            .any(|leaf| leaf.path == section || leaf.path.starts_with(&format!("{section}.")))
    }

    /// The document as `memory-operator check` reads it.
    pub fn to_yaml(&self) -> String {
        let mut root = Mapping::new();
        for leaf in &self.leaves {
            let mut sections: Vec<&str> = leaf.path.split('.').collect();
            let name = sections.pop().expect("a path ends in a name");
            let mut mapping = &mut root;
            for section in sections {
                mapping = mapping
                    .entry(section.into())
                    .or_insert_with(|| Mapping::new().into())
                    .as_mapping_mut()
                    .expect("sections are mappings");
            }
            mapping.insert(name.into(), leaf.raw.to_value());
        }
        root.entry("metadata".into())
            .or_insert_with(|| Mapping::new().into());
        serde_yaml::to_string(&root).expect("a mapping is YAML")
    }
}

/// Any draft: most fields sound, some out of range, inverted, of the wrong
/// type, unknown, or garbage.
pub fn draft() -> impl Strategy<Value = Draft> {
    drafted(false)
}

/// A draft that breaks no rule, with values up to the edges of their range.
pub fn sound_draft() -> impl Strategy<Value = Draft> {
    drafted(true)
}

type Leaves = BoxedStrategy<Vec<Leaf>>;

fn drafted(sound: bool) -> impl Strategy<Value = Draft> {
    let fields: Vec<Leaves> = vec![
        leaf("apiVersion", Just(text("shortener.dev/v1alpha1"))),
        leaf("kind", Just(text("MemoryPolicy"))),
        either(
            sound,
            leaf("metadata.name", texts("[a-z][a-z0-9-]{0,15}")),
            prop_oneof![Just(Vec::new()), leaf("metadata.name", Just(text("")))].boxed(),
        ),
        leaf(
            "spec.targetRef.apiVersion",
            one_of(sound, &["apps/v1"], &["apps/v1beta2", "v1", "", "Apps/v1"]),
        ),
        leaf(
            "spec.targetRef.kind",
            one_of(sound, &["Deployment"], &["StatefulSet", "deployment", ""]),
        ),
        leaf(
            "spec.targetRef.name",
            either(sound, texts("[a-z][a-z0-9-]{0,20}"), Just(text("")).boxed()),
        ),
        optional(
            "spec.prometheus.source",
            either(
                sound,
                texts("[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?"),
                pick(&["", "Default", "team_a", "-a", "a-", "a.b", "http://p:9090"]),
            ),
        ),
        // No longer accepted at all: a sound draft never carries one, and a broken one carries
        // the addresses a team could aim the operator at.
        either(
            sound,
            Just(Vec::new()).boxed(),
            leaf(
                "spec.prometheus.url",
                prop_oneof![
                    texts("https?://[a-z]{1,10}(:[0-9]{2,5})?(/[a-z]{0,6})?"),
                    pick(&[
                        "http://169.254.169.254/latest/meta-data/",
                        "http://[fd00:ec2::254]/latest/",
                        "http://metadata.google.internal/computeMetadata/v1/",
                        "https://kubernetes.default.svc/api/v1/secrets",
                        "http://127.0.0.1:10250/pods",
                        "file:///etc/passwd",
                        "prometheus:9090",
                        "",
                    ]),
                ],
            ),
        ),
        optional("spec.prometheus.timeout", duration(sound)),
        metric(sound),
        optional("spec.interval", duration(sound)),
        thresholds(sound),
        optional("spec.thresholds.for", duration(sound)),
        stale_after_and_prediction(sound),
        limits_and_on_high(sound),
        optional(
            "spec.onCritical",
            either(
                sound,
                pick(&["RestartPod", "RollingRestart", "AlertOnly"]),
                texts("[A-Za-z]{0,14}"),
            ),
        ),
        scaling(sound),
        optional("spec.scaling.scaleInStabilization", duration(sound)),
        optional("spec.safety.cooldown", duration(sound)),
        optional(
            "spec.safety.maxRestartsPerHour",
            either(sound, ints(0..=i128::from(u32::MAX)), edges()),
        ),
        optional(
            "spec.safety.maxUnavailable",
            either(sound, count(), edges()),
        ),
        optional("spec.dryRun", flag(sound)),
        optional("spec.suspend", flag(sound)),
        either(sound, Just(Vec::new()).boxed(), unknown()),
    ];
    fields.prop_map(|fields| Draft {
        leaves: fields.into_iter().flatten().collect(),
    })
}

fn text(value: &str) -> Raw {
    Raw::Text(value.to_owned())
}

/// Text matching a regular expression.
fn texts(regex: &'static str) -> BoxedStrategy<Raw> {
    regex.prop_map(Raw::Text).boxed()
}

fn pick(values: &'static [&'static str]) -> BoxedStrategy<Raw> {
    select(values).prop_map(text).boxed()
}

fn ints(range: std::ops::RangeInclusive<i128>) -> BoxedStrategy<Raw> {
    range.prop_map(Raw::Int).boxed()
}

/// `good` always when the draft must be sound, else now and then `bad`.
fn either<T: Clone + std::fmt::Debug + 'static>(
    sound: bool,
    good: BoxedStrategy<T>,
    bad: BoxedStrategy<T>,
) -> BoxedStrategy<T> {
    weighted(sound, SOUND_WEIGHT, good, bad)
}

/// Like [`either`], but half the time `bad`: for fields written together,
/// whose broken values are mostly in range and only out of order.
fn either_half<T: Clone + std::fmt::Debug + 'static>(
    sound: bool,
    good: BoxedStrategy<T>,
    bad: BoxedStrategy<T>,
) -> BoxedStrategy<T> {
    weighted(sound, 1, good, bad)
}

fn weighted<T: Clone + std::fmt::Debug + 'static>(
    sound: bool,
    good_weight: u32,
    good: BoxedStrategy<T>,
    bad: BoxedStrategy<T>,
) -> BoxedStrategy<T> {
    if sound {
        good
    } else {
        prop_oneof![good_weight => good, 1 => bad].boxed()
    }
}

fn one_of(
    sound: bool,
    good: &'static [&'static str],
    bad: &'static [&'static str],
) -> BoxedStrategy<Raw> {
    either(sound, pick(good), pick(bad))
}

fn leaf(path: &'static str, raw: impl Strategy<Value = Raw> + 'static) -> Leaves {
    raw.prop_map(move |raw| {
        vec![Leaf {
            path: path.to_owned(),
            raw,
        }]
    })
    .boxed()
}

/// Written two times in three; left out, the field takes its default.
fn optional(path: &'static str, raw: impl Strategy<Value = Raw> + 'static) -> Leaves {
    prop_oneof![1 => Just(Vec::new()), 2 => leaf(path, raw)].boxed()
}

fn leaves(fields: Vec<(&'static str, Option<Raw>)>) -> Vec<Leaf> {
    fields
        .into_iter()
        .filter_map(|(path, raw)| {
            Some(Leaf {
                path: path.to_owned(),
                raw: raw?,
            })
        })
        .collect()
}
