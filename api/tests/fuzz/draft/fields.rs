//! The fields of a draft, sound or broken: integers at the edges of their
//! types, durations, quantities, and the fields that are judged together.

use proptest::prelude::*;
use proptest::sample::{select, subsequence};

use super::super::oracle::{self, SECTIONS};
use super::{Leaf, Leaves, Raw, either, either_half, ints, leaves, pick, text, texts};

/// Integers at the edges of `u32`, `i32`, `i64` and `u64`, and anywhere in `i64`.
pub(super) fn edges() -> BoxedStrategy<Raw> {
    const EDGES: [i128; 9] = [
        i32::MIN as i128,
        -1,
        0,
        i32::MAX as i128,
        i32::MAX as i128 + 1,
        u32::MAX as i128,
        u32::MAX as i128 + 1,
        i64::MIN as i128,
        u64::MAX as i128,
    ];
    prop_oneof![
        select(&EDGES[..]).prop_map(Raw::Int),
        any::<i64>().prop_map(|n| Raw::Int(n.into())),
        Just(text("80")),
    ]
    .boxed()
}

/// A replica count: small, or anywhere up to `i32::MAX`.
pub(super) fn count() -> BoxedStrategy<Raw> {
    prop_oneof![3 => ints(1..=10), 1 => ints(1..=i128::from(i32::MAX))].boxed()
}

pub(super) fn flag(sound: bool) -> BoxedStrategy<Raw> {
    either(
        sound,
        any::<bool>().prop_map(Raw::Flag).boxed(),
        prop_oneof![Just(text("yes")), Just(text("true")), Just(Raw::Int(1))].boxed(),
    )
}

/// Go-style durations: short, compound, and Go's longest; or zero, garbage,
/// bare numbers, one second past Go's longest, and past `u64` milliseconds.
pub(super) fn duration(sound: bool) -> BoxedStrategy<Raw> {
    either(sound, sound_duration(), broken_duration())
}

/// Positive durations, up to Go's longest.
pub(super) fn sound_duration() -> BoxedStrategy<Raw> {
    // The shortest, and Go's longest in whole hours and in whole seconds.
    let edges = ["1ms", "2562047h", "2562047h47m16s"]
        .map(str::to_owned)
        .to_vec();
    prop_oneof![
        6 => texts("[1-9][0-9]{0,3}(ms|s|m|h)"),
        3 => texts("([0-9]{1,4}(h|m|s|ms)){1,4}"),
        1 => select(edges).prop_map(Raw::Text),
    ]
    .prop_filter(
        "a positive duration",
        |raw| matches!(raw, Raw::Text(t) if oracle::millis(t).is_some_and(|ms| ms > 0 && ms <= oracle::MAX_DURATION_MILLIS)),
    )
    .boxed()
}

/// Zero, garbage, bare numbers, one second past Go's longest, and past `u64` milliseconds.
pub(super) fn broken_duration() -> BoxedStrategy<Raw> {
    const UNITS: [(&str, u128); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];
    // The most of each unit that fits, or one more.
    let most =
        |extra| UNITS.map(|(unit, ms)| format!("{}{unit}", u128::from(u64::MAX) / ms + extra));
    prop_oneof![
        pick(&["0s", "0ms", "0h0m0s"]),
        texts("[0-9hms.+ -]{0,8}"),
        // Too long for Go, though within u64 milliseconds; and past u64.
        select([&["2562047h47m17s".to_owned()][..], &most(0), &most(1)].concat())
            .prop_map(Raw::Text),
        select(vec![
            String::new(),
            "15".into(),
            "1d".into(),
            "1.5s".into(),
            "-1s".into(),
            "1 m".into(),
            "15sec".into(),
            "1m30".into(),
            "99999999999999999999h".into(),
        ])
        .prop_map(Raw::Text),
        any::<u16>().prop_map(|n| Raw::Int(n.into())),
    ]
    .boxed()
}

/// `metric.source` and `metric.query` together, since each rule needs both.
pub(super) fn metric(sound: bool) -> Leaves {
    let source = |s: &'static str| ("spec.metric.source", Some(text(s)));
    let good = prop_oneof![
        Just(Vec::new()),
        select(&["Service", "Container"][..]).prop_map(move |s| leaves(vec![source(s)])),
        "[a-z_]{1,30}".prop_map(move |query| leaves(vec![
            source("Custom"),
            ("spec.metric.query", Some(Raw::Text(query)))
        ])),
    ]
    .boxed();
    let bad = (
        prop::option::of(pick(&[
            "Service",
            "Container",
            "Custom",
            "custom",
            "Prometheus",
            "",
        ])),
        prop::option::of(pick(&[
            "",
            "up",
            "sum(up",
            "up{pod=}",
            "up + * 2",
            r#"up{namespace=~".+"}"#,
            r#"sum(up{namespace!="mine"})"#,
            r#"up{namespace="elsewhere"}"#,
        ])),
    )
        .prop_map(|(source, query)| {
            leaves(vec![
                ("spec.metric.source", source),
                ("spec.metric.query", query),
            ])
        })
        .boxed();
    either(sound, good, bad)
}

const MARKS: [&str; 3] = [
    "spec.thresholds.lowWaterMark",
    "spec.thresholds.highWaterMark",
    "spec.thresholds.critical",
];

/// The three water marks: all defaults, in order, or each on its own.
pub(super) fn thresholds(sound: bool) -> Leaves {
    let percents: Vec<i128> = (1..=100).collect();
    let good = prop_oneof![
        Just(Vec::new()),
        subsequence(percents, 3).prop_map(|marks| {
            leaves(
                MARKS
                    .into_iter()
                    .zip(marks.into_iter().map(|m| Some(Raw::Int(m))))
                    .collect(),
            )
        }),
    ]
    .boxed();
    let mark = prop::option::of(prop_oneof![
        3 => ints(1..=100),
        1 => select(&[-1, 0, 101, 1_000][..]).prop_map(Raw::Int),
        1 => edges(),
    ]);
    let bad = [mark.clone(), mark.clone(), mark]
        .prop_map(|marks| leaves(MARKS.into_iter().zip(marks).collect()))
        .boxed();
    either_half(sound, good, bad)
}

const REPLICAS: [&str; 3] = [
    "spec.scaling.minReplicas",
    "spec.scaling.maxReplicas",
    "spec.scaling.step",
];

/// Replica bounds and step: all defaults, in order, or each on its own.
pub(super) fn scaling(sound: bool) -> Leaves {
    let good = prop_oneof![
        Just(Vec::new()),
        (count(), count(), count()).prop_map(|(min, max, step)| {
            let (Raw::Int(a), Raw::Int(b)) = (&min, &max) else {
                unreachable!("counts are integers")
            };
            let (min, max) = if a <= b { (min, max) } else { (max, min) };
            leaves(
                REPLICAS
                    .into_iter()
                    .zip([Some(min), Some(max), Some(step)])
                    .collect(),
            )
        }),
    ]
    .boxed();
    let one = prop::option::of(prop_oneof![2 => count(), 1 => ints(-3..=12), 1 => edges()]);
    let bad = [one.clone(), one.clone(), one]
        .prop_map(|replicas| leaves(REPLICAS.into_iter().zip(replicas).collect()))
        .boxed();
    either_half(sound, good, bad)
}

pub(super) const QUANTITY_SUFFIXES: [&str; 13] = [
    "", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
];

/// A quantity written from its whole part, fraction and suffix.
pub(super) fn amount((whole, fraction, suffix): (String, Option<String>, &str)) -> String {
    match fraction {
        Some(fraction) => format!("{whole}.{fraction}{suffix}"),
        None => format!("{whole}{suffix}"),
    }
}

/// A memory quantity the check reads: digits, maybe a fraction, a suffix,
/// at most `u64::MAX` bytes.
pub(super) fn quantity() -> BoxedStrategy<String> {
    (
        "[1-9][0-9]{0,3}",
        prop::option::of("[0-9]{1,3}"),
        select(&QUANTITY_SUFFIXES[..]),
    )
        .prop_map(amount)
        .prop_filter("a quantity of at most u64::MAX bytes", |q| {
            oracle::bytes(q).is_some()
        })
        .boxed()
}

/// Any quantity-like text: huge, over-precise, misspelt, or plain garbage.
pub(super) fn any_quantity() -> BoxedStrategy<String> {
    let whole = prop_oneof![
        "[0-9]{0,3}",
        "[0-9]{4,30}",
        select(vec![
            u64::MAX.to_string(),
            (u128::from(u64::MAX) + 1).to_string()
        ]),
    ];
    let suffix = prop_oneof![
        3 => select(&QUANTITY_SUFFIXES[..]),
        1 => select(&["m", "K", "mi", "KI", "e3", "i", "Mi2"][..]),
    ];
    prop_oneof![
        3 => quantity(),
        3 => (whole, prop::option::of("[0-9]{0,20}"), suffix).prop_map(amount),
        1 => select(&["", "Mi", "-1Gi", "+1", "1.2.3", ".", "64 Mi", "1e9", "0x10"][..]).prop_map(str::to_owned),
    ]
    .boxed()
}

/// `limits`: the request never above the limit when sound.
pub(super) fn limits(sound: bool) -> Leaves {
    let fields = |container: Option<String>, request: Option<String>, limit: Option<String>| {
        leaves(vec![
            ("spec.limits.container", container.map(Raw::Text)),
            ("spec.limits.request", request.map(Raw::Text)),
            ("spec.limits.limit", limit.map(Raw::Text)),
        ])
    };
    let container = prop::option::of("[a-z]{1,10}");
    let good = prop_oneof![
        Just(Vec::new()),
        (
            container.clone(),
            prop::option::of(quantity()),
            prop::option::of(quantity())
        )
            .prop_map(move |(container, mut request, mut limit)| {
                if let (Some(r), Some(l)) = (&request, &limit)
                    && oracle::bytes(r) > oracle::bytes(l)
                {
                    std::mem::swap(&mut request, &mut limit);
                }
                fields(container, request, limit)
            }),
    ]
    .boxed();
    // The same amount but for a fraction, so that rounding decides the order.
    let close = (
        "[0-9]{1,3}",
        "[0-9]{1,4}",
        select(&QUANTITY_SUFFIXES[..]),
        any::<bool>(),
    )
        .prop_map(|(whole, fraction, suffix, above)| {
            let (more, less) = (
                format!("{whole}.{fraction}{suffix}"),
                format!("{whole}{suffix}"),
            );
            if above {
                (Some(more), Some(less))
            } else {
                (Some(less), Some(more))
            }
        });
    let pair = prop_oneof![
        (
            prop::option::of(any_quantity()),
            prop::option::of(any_quantity())
        ),
        close,
    ];
    let bad = (container, pair)
        .prop_map(move |(container, (request, limit))| fields(container, request, limit))
        .boxed();
    either(sound, good, bad)
}

/// A field no section has: a typo of a real one, or any name.
pub(super) fn unknown() -> Leaves {
    let name = prop_oneof![
        select(
            &[
                "lowWatermark",
                "minReplica",
                "maxreplicas",
                "sepc",
                "statsu",
                "onhigh",
                "dryrun",
                "allowRestarts",
                "Kind"
            ][..]
        )
        .prop_map(str::to_owned),
        "[a-z][a-zA-Z]{0,10}",
    ];
    (select(&SECTIONS[..]), name)
        .prop_map(|(section, name)| match section {
            "" => name,
            section => format!("{section}.{name}"),
        })
        .prop_filter("a field the policy does not have", |path| {
            !oracle::is_known(path)
        })
        .prop_map(|path| {
            vec![Leaf {
                path,
                raw: Raw::Int(1),
            }]
        })
        .boxed()
}
