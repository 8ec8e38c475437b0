//! Rules for codes and target URLs, independent of HTTP and storage.

use rand::{Rng, distr::Alphanumeric};

/// Length of generated codes: 62^7 ≈ 3.5e12 codes, so guessing one of a
/// million links takes millions of tries, and random collisions are rare
/// enough that a few retries always find a free code.
pub const GENERATED_CODE_LEN: usize = 7;
/// Shortest custom code.
pub const MIN_CODE_LEN: usize = 3;
/// Longest custom code.
pub const MAX_CODE_LEN: usize = 32;
/// Longest target URL accepted, in bytes; browsers and proxies handle this everywhere.
pub const MAX_URL_BYTES: usize = 2048;

/// Paths the service itself serves, or may serve; never handed out as codes.
const RESERVED: &[&str] = &[
    "api", "admin", "debug", "health", "healthz", "readyz", "livez", "metrics", "static", "assets",
    "favicon", "robots",
];

/// A fresh random code from a cryptographically secure generator.
pub fn generate_code() -> String {
    loop {
        let code: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(GENERATED_CODE_LEN)
            .map(char::from)
            .collect();
        if !is_reserved(&code) {
            return code;
        }
    }
}

/// Whether `code` has the shape of a code; cheap, for rejecting paths early.
pub fn is_code_shaped(code: &str) -> bool {
    (MIN_CODE_LEN..=MAX_CODE_LEN).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks a code chosen by the client.
pub fn validate_custom_code(code: &str) -> Result<(), String> {
    if !is_code_shaped(code) {
        return Err(format!(
            "code must be {MIN_CODE_LEN} to {MAX_CODE_LEN} characters of A-Z, a-z, 0-9, '_' or '-'"
        ));
    }
    if is_reserved(code) {
        return Err(format!("code `{code}` is reserved; choose another"));
    }
    Ok(())
}

fn is_reserved(code: &str) -> bool {
    RESERVED.iter().any(|word| word.eq_ignore_ascii_case(code))
}

/// Checks a target URL and returns it in normal form, which is what redirects send.
pub fn normalize_url(input: &str) -> Result<String, String> {
    if input.len() > MAX_URL_BYTES {
        return Err(format!(
            "url is {} bytes; at most {MAX_URL_BYTES} are accepted",
            input.len()
        ));
    }
    let parsed = url::Url::parse(input.trim())
        .map_err(|e| format!("url is not an absolute URL ({e}); include http:// or https://"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "url scheme `{}` is not allowed; use http or https",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("url has no host".into());
    }
    let normal = String::from(parsed);
    if normal.len() > MAX_URL_BYTES {
        return Err(format!(
            "url is {} bytes once encoded; at most {MAX_URL_BYTES} are accepted",
            normal.len()
        ));
    }
    Ok(normal)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn urls_are_normalized_and_only_http_is_accepted() {
        assert_eq!(
            normalize_url("https://Example.com").unwrap(),
            "https://example.com/"
        );
        assert!(normalize_url("ftp://example.com/file").is_err());
        assert!(normalize_url("javascript:alert(1)").is_err());
        assert!(normalize_url("/relative/path").is_err());
        assert!(normalize_url("http://").is_err());
    }

    #[test]
    fn reserved_words_are_refused_in_any_case() {
        assert!(validate_custom_code("healthz").is_err());
        assert!(validate_custom_code("API").is_err());
        assert!(validate_custom_code("my-link_1").is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn generated_codes_are_always_valid_custom_codes(_seed in 0u32..1_000) {
            let code = generate_code();
            prop_assert_eq!(code.len(), GENERATED_CODE_LEN);
            prop_assert!(validate_custom_code(&code).is_ok());
        }

        #[test]
        fn any_code_shape_is_judged_by_length_and_alphabet(code in "\\PC{0,40}") {
            let valid_alphabet = code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            let valid_length = (MIN_CODE_LEN..=MAX_CODE_LEN).contains(&code.len());
            prop_assert_eq!(is_code_shaped(&code), valid_alphabet && valid_length);
        }

        #[test]
        fn well_formed_http_urls_are_accepted_and_stable(
            scheme in "https?",
            host in "[a-z][a-z0-9]{0,10}(-[a-z0-9]{1,8})?(\\.[a-z]{2,6}){1,2}",
            path in "(/[A-Za-z0-9._~-]{0,12}){0,5}",
            query in proptest::option::of("[a-z]{1,8}=[A-Za-z0-9]{0,8}"),
        ) {
            let mut url = format!("{scheme}://{host}{path}");
            if let Some(query) = query {
                url = format!("{url}?{query}");
            }
            let normal = normalize_url(&url).unwrap();
            let origin = format!("{scheme}://{host}");
            prop_assert!(normal.starts_with(&origin));
            prop_assert_eq!(normalize_url(&normal).unwrap(), normal.clone());
            prop_assert!(axum::http::HeaderValue::from_str(&normal).is_ok());
        }

        #[test]
        fn arbitrary_input_is_never_accepted_unless_it_is_http(input in "\\PC{0,200}") {
            if let Ok(normal) = normalize_url(&input) {
                prop_assert!(normal.starts_with("http://") || normal.starts_with("https://"));
                prop_assert!(normal.len() <= MAX_URL_BYTES);
                prop_assert!(axum::http::HeaderValue::from_str(&normal).is_ok());
            }
        }

        #[test]
        fn urls_over_the_limit_are_refused(extra in MAX_URL_BYTES..MAX_URL_BYTES + 500) {
            let url = format!("https://example.com/{}", "a".repeat(extra));
            prop_assert!(normalize_url(&url).is_err());
        }
    }

    #[test]
    fn generated_codes_do_not_repeat_in_a_large_sample() {
        let codes: std::collections::HashSet<String> =
            (0..100_000).map(|_| generate_code()).collect();
        assert_eq!(codes.len(), 100_000);
    }
}
