//! Fuzzing, for a bounded time, the URL and code rules and the HTTP API
//! (through the router, on SQLite). Whatever comes in: normalization yields
//! a safe, stable redirect or a refusal; codes are judged by shape and
//! reserved words; the service never answers 5xx, every client error is a
//! problem document, and a created link redirects to its normalized URL.
//! `FUZZ_CASES` sets the cases per property, so CI can run longer than
//! `cargo test` does by default.

mod common;
#[path = "fuzz/inputs.rs"]
mod inputs;

use axum::{
    body::Body,
    http::{HeaderValue, Method, StatusCode, Uri, header},
};
use common::{Backend, Reply, TestApp, request};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use shortener::links::{
    MAX_CODE_LEN, MAX_URL_BYTES, MIN_CODE_LEN, is_code_shaped, normalize_url, validate_custom_code,
};

/// Cases per property by default: the four properties then take about 15 s
/// together in a debug build on two cores, within the 10 to 30 s a routine
/// `cargo test` may spend on fuzzing one crate.
const CASES: u32 = 8_000;

fn config() -> Config {
    Config::with_cases(testkit::fuzz_cases(CASES))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzzed_urls_become_safe_stable_redirects_or_are_refused(input in inputs::url()) {
        match normalize_url(&input) {
            Ok(normal) => {
                let parsed = url::Url::parse(&normal);
                prop_assert!(
                    parsed.as_ref().is_ok_and(|u| matches!(u.scheme(), "http" | "https")),
                    "{normal:?} from {input:?}"
                );
                prop_assert!(parsed.as_ref().is_ok_and(|u| u.host_str().is_some_and(|h| !h.is_empty())));
                prop_assert!(normal.len() <= MAX_URL_BYTES);
                prop_assert!(
                    normal.bytes().all(|b| b.is_ascii_graphic()),
                    "{normal:?} holds spaces, controls or non-ASCII"
                );
                prop_assert!(HeaderValue::from_str(&normal).is_ok());
                prop_assert_eq!(normalize_url(&normal), Ok(normal.clone()), "from {:?}", input);
            }
            Err(reason) => {
                prop_assert!(reason.starts_with("url "), "{reason}");
                prop_assert!(input.len() <= MAX_URL_BYTES || reason.contains(&MAX_URL_BYTES.to_string()));
            }
        }
    }

    #[test]
    fn fuzzed_codes_are_accepted_only_when_shaped_and_not_reserved(code in inputs::code()) {
        let shaped = (MIN_CODE_LEN..=MAX_CODE_LEN).contains(&code.len())
            && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let reserved = inputs::RESERVED.contains(&code.to_ascii_lowercase().as_str());
        prop_assert_eq!(is_code_shaped(&code), shaped);
        match validate_custom_code(&code) {
            Ok(()) => {
                prop_assert!(shaped && !reserved);
                let path = format!("/{code}");
                prop_assert!(path.parse::<Uri>().is_ok(), "{path}");
            }
            Err(reason) => {
                prop_assert!(!shaped || reserved);
                prop_assert!(reason.contains(if shaped { "reserved" } else { "characters" }), "{reason}");
            }
        }
    }
}

/// Runs `property` on every generated input against one app on a fresh
/// SQLite database, after `setup`, panicking with the smallest failing input.
fn fuzz_app<S: Strategy>(
    setup: impl AsyncFnOnce(&TestApp),
    strategy: S,
    property: impl AsyncFn(&TestApp, S::Value) -> Result<(), TestCaseError>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let app = runtime.block_on(TestApp::new(Backend::Sqlite));
    runtime.block_on(setup(&app));
    let config = Config {
        source_file: Some(file!()),
        ..config()
    };
    let outcome =
        TestRunner::new(config).run(&strategy, |input| runtime.block_on(property(&app, input)));
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

/// No 5xx, and every 4xx a problem document that says what went wrong.
fn served(reply: &Reply) -> Result<(), TestCaseError> {
    prop_assert!(
        !reply.status.is_server_error(),
        "{} {:?}",
        reply.status,
        reply.body
    );
    if reply.status.is_client_error() {
        prop_assert_eq!(reply.header("content-type"), "application/problem+json");
        prop_assert_eq!(&reply.body["status"], &Value::from(reply.status.as_u16()));
        prop_assert!(
            reply.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{:?}",
            reply.body
        );
    }
    Ok(())
}

/// The router's limit on request bodies.
const MAX_BODY_BYTES: usize = 8 * 1024;

/// Whether the API must create a link for this body: a JSON object with a
/// URL that normalizes and, at most, a code that is valid.
fn must_create(content_type: Option<&str>, body: &[u8]) -> bool {
    let Ok(Value::Object(fields)) = serde_json::from_slice(body) else {
        return false;
    };
    content_type == Some("application/json")
        && body.len() <= MAX_BODY_BYTES
        && fields.keys().all(|key| key == "url" || key == "code")
        && fields
            .get("url")
            .and_then(Value::as_str)
            .is_some_and(|url| normalize_url(url).is_ok())
        && fields.get("code").is_none_or(|code| {
            code.as_str()
                .is_some_and(|code| validate_custom_code(code).is_ok())
        })
}

#[test]
fn fuzzed_link_requests_are_judged_by_the_rules_and_never_fail_the_server() {
    let cases = (inputs::content_type(), inputs::body());
    fuzz_app(
        async |_| {},
        cases,
        async |app, (content_type, body)| {
            let mut post = request(Method::POST, "/api/v1/links");
            if let Some(content_type) = &content_type {
                post = post.header(header::CONTENT_TYPE, content_type);
            }
            let reply = app.send(post.body(Body::from(body.clone())).unwrap()).await;
            served(&reply)?;
            if reply.status != StatusCode::CREATED {
                let must = must_create(content_type.as_deref(), &body);
                prop_assert!(
                    reply.status.is_client_error()
                        && (!must || reply.status == StatusCode::CONFLICT),
                    "{} {:?} for {}",
                    reply.status,
                    reply.body,
                    String::from_utf8_lossy(&body)
                );
                return Ok(());
            }

            prop_assert!(content_type.is_some_and(|t| t.to_ascii_lowercase().contains("json")));
            let sent: Value = serde_json::from_slice(&body).unwrap_or_default();
            let normal = sent["url"].as_str().map(normalize_url);
            prop_assert!(
                matches!(normal, Some(Ok(_))),
                "created from {}",
                String::from_utf8_lossy(&body)
            );
            let normal = normal.and_then(Result::ok).unwrap_or_default();
            prop_assert_eq!(reply.body["url"].as_str(), Some(normal.as_str()));
            let code = reply.body["code"].as_str().unwrap_or_default();
            if let Some(chosen) = sent.get("code").and_then(Value::as_str) {
                prop_assert_eq!(code, chosen);
            }
            let followed = app.get(&format!("/{code}")).await;
            prop_assert_eq!(followed.status, StatusCode::FOUND);
            prop_assert_eq!(followed.header("location"), normal);
            Ok(())
        },
    );
}

/// Codes the path fuzz creates first, so that some paths lead somewhere.
const CODES: [&str; 3] = ["abc", "my-link_1", "Z9_z9-"];

#[test]
fn fuzzed_paths_never_fail_the_server_and_redirect_only_to_http() {
    let setup = async |app: &TestApp| {
        for code in CODES {
            let link =
                serde_json::json!({"url": format!("https://example.com/{code}"), "code": code});
            assert_eq!(app.create(link).await.status, StatusCode::CREATED);
        }
    };
    fuzz_app(setup, inputs::request_path(&CODES), async |app, path| {
        prop_assume!(path.parse::<Uri>().is_ok(), "not a request target");
        let reply = app.get(&path).await;
        served(&reply)?;
        if reply.status.is_redirection() {
            let location = reply.header("location");
            prop_assert_eq!(normalize_url(location), Ok(location.to_owned()));
        }
        Ok(())
    });
}
