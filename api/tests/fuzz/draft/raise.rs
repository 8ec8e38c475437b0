//! `onHigh` and `limits.raise`, judged together: raising limits needs its bounds, its bounds
//! need it, and a sound raise's max passes `limits.limit`.

use proptest::prelude::*;
use proptest::sample::select;

use super::super::oracle;
use super::fields::{
    QUANTITY_SUFFIXES, any_quantity, broken_duration, flag, limits, quantity, sound_duration,
};
use super::{Leaves, Raw, leaves, pick, text, texts, weighted};

const RAISE: [&str; 4] = [
    "spec.limits.raise.step",
    "spec.limits.raise.max",
    "spec.limits.raise.allowRestart",
    "spec.limits.raise.timeout",
];

/// Sound `onHigh` and `limits.raise` three times for each broken pair: their rules are
/// several, and each needs the others kept to be seen alone.
const RAISE_SOUND_WEIGHT: u32 = 3;

/// `limits`, then `limits.raise` and `onHigh`: raising limits needs its bounds and its
/// bounds need it, and a sound raise's max passes `limits.limit`.
pub(super) fn limits_and_on_high(sound: bool) -> Leaves {
    limits(sound)
        .prop_flat_map(move |limits| {
            let limit = limits
                .iter()
                .find(|leaf| leaf.path == "spec.limits.limit")
                .and_then(|leaf| match &leaf.raw {
                    Raw::Text(q) => oracle::bytes(q),
                    _ => None,
                });
            on_high(sound, limit).prop_map(move |high| [limits.clone(), high].concat())
        })
        .boxed()
}

/// Where a broken draft's `limits.raise.max` lies.
#[derive(Clone, Debug)]
enum Max {
    Anywhere(String),
    /// This many bytes from the step.
    NearStep(i64),
    /// This many bytes from `limits.limit` (from the step when there is none).
    NearLimit(i64),
}

/// `limits.raise` and `onHigh`, given the bytes of `limits.limit`. Sound: both or neither,
/// the step above zero and the max at least the step and above the limit, up to a byte.
/// Broken: either without the other, a zero or unreadable step, a max anywhere or a byte
/// either side of the step or the limit, a bound left out, a bad flag or timeout.
fn on_high(sound: bool, limit: Option<u64>) -> Leaves {
    let fields = |raise: [Option<Raw>; 4], on_high: Option<Raw>| {
        leaves(
            RAISE
                .into_iter()
                .zip(raise)
                .chain([("spec.onHigh", on_high)])
                .collect(),
        )
    };
    let raising = (
        quantity(),
        quantity(),
        prop_oneof![Just(""), select(&QUANTITY_SUFFIXES[..])],
        prop::option::of(any::<bool>().prop_map(Raw::Flag)),
        prop::option::of(sound_duration()),
    )
        .prop_map(move |(step, max, unit, allow, timeout)| {
            let step_bytes = oracle::bytes(&step).expect("a sound quantity");
            let floor = limit.unwrap_or(0).max(step_bytes - 1);
            let max = if oracle::bytes(&max).is_some_and(|max| max > floor) {
                Some(max)
            } else {
                above(floor, unit)
            };
            match max {
                Some(max) => fields(
                    [Some(Raw::Text(step)), Some(Raw::Text(max)), allow, timeout],
                    Some(text("RaiseLimit")),
                ),
                // No raise goes past a limit of u64::MAX bytes.
                None => fields(Default::default(), None),
            }
        });
    let good = prop_oneof![
        2 => prop::option::of(pick(&["ScaleOut", "AlertOnly"]))
            .prop_map(move |on_high| fields(Default::default(), on_high)),
        3 => raising,
    ]
    .boxed();

    // Mostly paired, so that the bounds' own rules are seen alone too.
    let on_high = prop_oneof![
        6 => Just(Some(text("RaiseLimit"))),
        2 => prop::option::of(pick(&["ScaleOut", "AlertOnly"])),
        1 => texts("[A-Za-z]{0,12}").prop_map(Some),
    ];
    let step = prop_oneof![
        4 => quantity().prop_map(Raw::Text),
        // Zero written in several ways, and the least amount above it.
        1 => prop_oneof![
            Just(Raw::Int(0)),
            pick(&["0", "0Mi", "0.0Gi", "0.000Ki", "0.0001"]),
        ],
        1 => any_quantity().prop_map(Raw::Text),
    ];
    let max = prop_oneof![
        2 => any_quantity().prop_map(Max::Anywhere),
        1 => (-1i64..=1).prop_map(Max::NearStep),
        1 => (-1i64..=1).prop_map(Max::NearLimit),
    ];
    let timeout = prop_oneof![2 => sound_duration(), 1 => broken_duration()];
    let raise = (
        prop::option::weighted(0.95, step),
        prop::option::weighted(0.95, max),
        prop::option::of(flag(false)),
        prop::option::of(timeout),
    );
    let bad = (on_high, prop::option::weighted(0.8, raise))
        .prop_map(move |(on_high, raise)| {
            let Some((step, max, allow, timeout)) = raise else {
                return fields(Default::default(), on_high);
            };
            let step_bytes = step.as_ref().and_then(oracle::bytes_of);
            let near = |base: Option<u64>, by: i64| {
                base.and_then(|b| b.checked_add_signed(by))
                    .map(|b| Raw::Text(b.to_string()))
            };
            let max = max.map(|max| match max {
                Max::Anywhere(q) => Raw::Text(q),
                Max::NearStep(by) => near(step_bytes, by).unwrap_or(text("0")),
                Max::NearLimit(by) => near(limit.or(step_bytes), by).unwrap_or(text("0")),
            });
            fields([step, max, allow, timeout], on_high)
        })
        .boxed();
    weighted(sound, RAISE_SOUND_WEIGHT, good, bad)
}

/// The least amount in `unit`s above `floor` bytes, or else the byte above it.
fn above(floor: u64, unit: &str) -> Option<String> {
    let scale = oracle::bytes(&format!("1{unit}"))?;
    let amount = format!("{}{unit}", u128::from(floor / scale) + 1);
    match oracle::bytes(&amount) {
        Some(_) => Some(amount),
        None => floor.checked_add(1).map(|bytes| bytes.to_string()),
    }
}
