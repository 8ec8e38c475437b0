//! `thresholds.staleAfter` and `prediction`, judged together: a prediction window is longer
//! than `staleAfter`, either of them perhaps left to its default.

use proptest::prelude::*;
use proptest::sample::select;

use super::super::oracle::{self, DEFAULT_STALE_AFTER_MILLIS, DEFAULT_WINDOW_MILLIS};
use super::fields::{
    QUANTITY_SUFFIXES, amount, any_quantity, broken_duration, duration, sound_duration,
};
use super::{Leaf, Leaves, Raw, leaves, pick, texts, weighted};

const STALE_AFTER: &str = "spec.thresholds.staleAfter";

const PREDICTION: [&str; 3] = [
    "spec.prediction.window",
    "spec.prediction.horizon",
    "spec.prediction.minGrowth",
];

/// Sound prediction sections three times for each broken one: a broken section breaks one
/// of several rules, and each needs the others kept to be seen alone.
const PREDICTION_SOUND_WEIGHT: u32 = 3;

/// The units of time a growth rate is written per.
const PER: [&str; 3] = ["s", "min", "h"];

/// Where a broken draft's `prediction.window` lies.
#[derive(Clone, Debug)]
enum Window {
    Anywhere(Raw),
    /// This many milliseconds from `staleAfter` (or its default).
    NearStaleAfter(i64),
}

/// `thresholds.staleAfter` (written two times in three), then `prediction`, given the
/// milliseconds of `staleAfter` as the check reads them.
pub(super) fn stale_after_and_prediction(sound: bool) -> Leaves {
    prop_oneof![1 => Just(None), 2 => duration(sound).prop_map(Some)]
        .prop_flat_map(move |stale_after| {
            let millis = match &stale_after {
                Some(Raw::Text(d)) => oracle::millis(d),
                _ => None,
            };
            let written = leaves(vec![(STALE_AFTER, stale_after)]);
            prediction(sound, millis.unwrap_or(DEFAULT_STALE_AFTER_MILLIS))
                .prop_map(move |prediction| [written.clone(), prediction].concat())
        })
        .boxed()
}

/// `prediction`, given `staleAfter` in milliseconds. Sound: often left out (prediction is
/// off by default), written empty, or some of its fields, the window longer than
/// `staleAfter` (down to a millisecond). Broken: a window a millisecond either side of
/// `staleAfter` or at it, zero or unreadable durations, growth rates the check cannot read.
fn prediction(sound: bool, stale_after: u64) -> Leaves {
    let empty = || {
        vec![Leaf {
            path: "spec.prediction".to_owned(),
            raw: Raw::EmptySection,
        }]
    };
    let fields = |fields: [Option<Raw>; 3]| leaves(PREDICTION.into_iter().zip(fields).collect());
    let written = (
        prop::option::of(sound_duration()),
        prop::option::of(sound_duration()),
        prop::option::of(sound_growth()),
        select(&["ms", "s", "m", "h"][..]),
    )
        .prop_map(move |(window, horizon, growth, unit)| {
            let millis = window.as_ref().and_then(|raw| match raw {
                Raw::Text(d) => oracle::millis(d),
                _ => None,
            });
            if millis.unwrap_or(DEFAULT_WINDOW_MILLIS) > stale_after {
                return fields([window, horizon, growth]);
            }
            match longer_than(stale_after, unit) {
                Some(window) => fields([Some(Raw::Text(window)), horizon, growth]),
                // No window is longer than Go's longest staleAfter.
                None => Vec::new(),
            }
        });
    // `prediction: {}` is sound only while staleAfter is below the default window.
    let defaults = if DEFAULT_WINDOW_MILLIS > stale_after {
        empty()
    } else {
        Vec::new()
    };
    let good = prop_oneof![
        3 => Just(Vec::new()),
        1 => Just(defaults),
        3 => written,
    ]
    .boxed();

    let window = prop_oneof![
        2 => sound_duration().prop_map(Window::Anywhere),
        1 => broken_duration().prop_map(Window::Anywhere),
        2 => (-1i64..=1).prop_map(Window::NearStaleAfter),
    ];
    let horizon = prop_oneof![3 => sound_duration(), 1 => broken_duration()];
    let growth = prop_oneof![1 => sound_growth(), 1 => broken_growth()];
    let broken = (
        prop::option::weighted(0.8, window),
        prop::option::of(horizon),
        prop::option::of(growth),
    )
        .prop_map(move |(window, horizon, growth)| {
            let window = window.map(|window| match window {
                Window::Anywhere(raw) => raw,
                Window::NearStaleAfter(by) => {
                    let millis = stale_after.checked_add_signed(by).unwrap_or(0);
                    Raw::Text(format!("{millis}ms"))
                }
            });
            fields([window, horizon, growth])
        });
    let bad = prop_oneof![1 => Just(empty()), 6 => broken].boxed();
    weighted(sound, PREDICTION_SOUND_WEIGHT, good, bad)
}

/// The least whole number of `unit`s longer than `floor` milliseconds, or else the
/// millisecond after it; `None` past Go's longest duration.
fn longer_than(floor: u64, unit: &str) -> Option<String> {
    let scale = oracle::millis(&format!("1{unit}"))?;
    let window = format!("{}{unit}", u128::from(floor / scale) + 1);
    match oracle::millis(&window) {
        Some(millis) if millis <= oracle::MAX_DURATION_MILLIS => Some(window),
        _ => (floor < oracle::MAX_DURATION_MILLIS).then(|| format!("{}ms", floor + 1)),
    }
}

/// A growth rate the check reads: an amount above zero, perhaps with a fraction, any
/// suffix, per `s`, `min` or `h`, up to the most bytes a minute `u64` holds.
fn sound_growth() -> BoxedStrategy<Raw> {
    let edges = [
        "1/h",
        "0.001/min",
        "0.5Ki/h",
        "15Ei/min",
        "256Pi/s",
        "18446744073709551615/min",
        "18446744073709551615/h",
        // u64::MAX / 60 bytes a second.
        "307445734561825860/s",
    ];
    let rate = (
        prop_oneof![3 => "[1-9][0-9]{0,3}", 1 => Just("0".to_owned())],
        prop::option::of("[0-9]{1,3}"),
        select(&QUANTITY_SUFFIXES[..]),
        select(&PER[..]),
    )
        .prop_map(|(whole, fraction, suffix, per)| {
            format!("{}/{per}", amount((whole, fraction, suffix)))
        });
    prop_oneof![5 => rate, 1 => select(edges.to_vec()).prop_map(str::to_owned)]
        .prop_filter("a growth rate the check reads", |rate| {
            oracle::growth(rate).is_some()
        })
        .prop_map(Raw::Text)
        .boxed()
}

/// A growth rate without its unit, per a day, of nothing, negative, misspelt, past `u64`
/// bytes a minute, a plain number, or garbage.
fn broken_growth() -> BoxedStrategy<Raw> {
    let per = prop_oneof![
        3 => select(&PER[..]),
        1 => select(&["day", "d", "m", "sec", "Min", "minute", "", "min/s"][..]),
    ];
    prop_oneof![
        3 => pick(&[
            "1Mi",
            "1Mi/day",
            "0Mi/min",
            "0.0/s",
            "00.000Ki/h",
            "0/min",
            "-1Mi/min",
            ".5Mi/min",
            "1.Mi/s",
            "1mi/min",
            "1MI/min",
            "Mi/min",
            "/min",
            "",
            "1 Mi/min",
            "1Mi / min",
            "1e3/min",
            "1Ei/s",
            "16Ei/min",
            "307445734561825861/s",
            "18446744073709551616/min",
            "1.0000000000000000001Mi/min",
        ]),
        2 => (any_quantity(), per).prop_map(|(amount, per)| Raw::Text(format!("{amount}/{per}"))),
        1 => texts("[0-9a-zA-Z./ -]{0,10}"),
        1 => prop_oneof![
            any::<u16>().prop_map(|n| Raw::Int(n.into())),
            pick(&["100", "1.5", "64Mi"]),
        ],
    ]
    .boxed()
}
