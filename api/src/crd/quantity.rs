//! Memory quantities (`64Mi`, `1.5Gi`, `500M`) in bytes.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Suffixes understood, with their multipliers; Kubernetes spells kilo `k`.
const SUFFIXES: [(&str, u128); 13] = [
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

/// The suffixes [`quantity_bytes`] understands, for messages.
pub const QUANTITY_SUFFIXES: &str = "k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi or Ei";

/// A memory quantity in bytes, rounded up; `None` for negative numbers,
/// exponents, `m` (milli) and anything else that is not a plain amount.
pub fn quantity_bytes(quantity: &Quantity) -> Option<u64> {
    let text = quantity.0.trim();
    let number_len = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_len);
    let (_, scale) = SUFFIXES.iter().find(|(s, _)| *s == suffix)?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') || fraction.len() > 18 {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let (numerator, denominator) = if fraction.is_empty() {
        (0, 1)
    } else {
        (
            fraction.parse::<u128>().ok()?,
            10u128.pow(u32::try_from(fraction.len()).ok()?),
        )
    };
    let bytes = whole
        .checked_mul(*scale)?
        .checked_add((numerator * scale).div_ceil(denominator))?;
    u64::try_from(bytes).ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_amount_is_read_without_panicking_and_never_below_its_whole_part(
            whole in "[0-9]{0,45}",
            fraction in proptest::option::of("[0-9]{0,20}"),
            suffix in proptest::sample::select(SUFFIXES.map(|(s, _)| s).to_vec()),
        ) {
            let text = match &fraction {
                Some(fraction) => format!("{whole}.{fraction}{suffix}"),
                None => format!("{whole}{suffix}"),
            };
            if let Some(bytes) = bytes(&text) {
                let scale = SUFFIXES.iter().find(|(s, _)| *s == suffix).unwrap().1;
                let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().unwrap() };
                prop_assert!(u128::from(bytes) >= whole * scale, "{text} read as {bytes}");
            }
        }
    }

    fn bytes(s: &str) -> Option<u64> {
        quantity_bytes(&Quantity(s.into()))
    }

    #[test]
    fn binary_and_decimal_suffixes_scale_as_kubernetes_does() {
        assert_eq!(bytes("64Mi"), Some(64 << 20));
        assert_eq!(bytes("1Gi"), Some(1 << 30));
        assert_eq!(bytes("2Ki"), Some(2048));
        assert_eq!(bytes("500M"), Some(500_000_000));
        assert_eq!(bytes("3k"), Some(3_000));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("1048576"), Some(1_048_576));
    }

    #[test]
    fn fractions_round_up_to_whole_bytes() {
        assert_eq!(bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(bytes("0.5Ki"), Some(512));
        assert_eq!(bytes(".5k"), Some(500));
        assert_eq!(bytes("1.5"), Some(2));
    }

    #[test]
    fn anything_else_is_not_understood() {
        for bad in [
            "",
            "Mi",
            "64K",
            "64mi",
            "100m",
            "-1Gi",
            "1e9",
            "1.2.3",
            ".",
            "64 Mi",
            "99999999999Ei",
            // Near u128's end: the whole part fits, adding the fraction does not.
            "340282366920938463463374607431768211455.5",
            "340282366920938463463.5E",
        ] {
            assert_eq!(bytes(bad), None, "{bad}");
        }
    }
}
