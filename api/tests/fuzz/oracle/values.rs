//! The oracle's own reading of the values a policy is written in (durations, memory
//! quantities, growth rates), restated from the CRD's documentation rather than taken from
//! the crate, so that a wrong reading there is a disagreement.

/// Go's longest duration, i64::MAX nanoseconds, in whole milliseconds.
pub const MAX_DURATION_MILLIS: u64 = 9_223_372_036_854;

/// Go-style duration text in milliseconds: one or more runs of digits each
/// followed by a unit (`ms`, `s`, `m`, `h`), the total within `u64`.
pub fn millis(text: &str) -> Option<u64> {
    let mut rest = text;
    let mut total: u128 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let unit_start = rest.find(|c: char| !c.is_ascii_digit())?;
        let (digits, after) = rest.split_at(unit_start);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let scale = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return None,
        };
        if digits.is_empty() {
            return None;
        }
        let value: u128 = digits.parse().unwrap_or(u128::MAX);
        total = total.saturating_add(value.saturating_mul(scale));
        rest = next;
    }
    u64::try_from(total).ok()
}

/// Kubernetes' binary and decimal suffixes; kilo is `k`. Restated rather than
/// taken from `crd::quantity`, so that a wrong multiplier there is a disagreement.
const SCALES: [(&str, u128); 13] = [
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("Pi", 1 << 50),
    ("Ei", 1 << 60),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
    ("E", 1_000_000_000_000_000_000),
    ("", 1),
];

/// Memory quantity text in bytes, rounded up: a decimal number (at most 18
/// decimals) and a suffix, the total within `u64`; `None` for anything else.
pub fn bytes(text: &str) -> Option<u64> {
    SCALES.iter().find_map(|(suffix, scale)| {
        let number = text.strip_suffix(suffix)?;
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let decimal = |digits: &str| digits.bytes().all(|b| b.is_ascii_digit());
        if !decimal(whole) || !decimal(fraction) || whole.len() + fraction.len() == 0 {
            return None;
        }
        if fraction.len() > 18 {
            return None;
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        if whole > u128::from(u64::MAX) {
            return None;
        }
        let (numerator, denominator) = match fraction {
            "" => (0, 1),
            digits => (
                digits.parse::<u128>().ok()?,
                10u128.pow(digits.len() as u32),
            ),
        };
        u64::try_from(whole * scale + (numerator * scale).div_ceil(denominator)).ok()
    })
}

/// Growth-rate text (`1Mi/min`, `512Ki/s`, `64Mi/h`) in bytes a minute, an hour's rounded
/// up: a memory quantity above zero, written with a digit before any point and one after
/// it, per `s`, `min` or `h`; the bytes a minute within `u64`; `None` for anything else.
pub fn growth(text: &str) -> Option<u64> {
    let (amount, per) = text.split_once('/')?;
    let number = SCALES
        .iter()
        .find_map(|(suffix, _)| amount.strip_suffix(suffix))?;
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (number, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return None;
    }
    // No growth is not a rate, however it is written.
    if !number.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        return None;
    }
    let bytes = bytes(amount)?;
    match per {
        "s" => bytes.checked_mul(60),
        "min" => Some(bytes),
        "h" => Some(bytes.div_ceil(60)),
        _ => None,
    }
}
