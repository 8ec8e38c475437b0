//! Fuzzing `memory-operator check` for a bounded time: any text never
//! panics and gets numbered, readable errors; generated policies get the
//! verdict an independent oracle predicts, which the CRD schema shares; and
//! every accepted policy drives the engine. `FUZZ_CASES` sets the cases per
//! property, so CI can run longer than `cargo test` does by default.

mod draft;
mod fleet;
mod oracle;
mod schema;
mod text;

use std::time::Duration;

use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use proptest::prelude::*;
use proptest::test_runner::Config;

use fleet::{LIMIT_BYTES, running_limit, start, ticks, workload};
use memory_engine::{Action, Memory, Outcome, Policy, Sample, Workload, decide};
use memory_policy_api::{
    Error, Result,
    crd::{MemoryPolicy, WINDOW_TOO_SHORT},
    reading::engine_policy,
    validate::{check_documents, validate},
};
use oracle::Verdict;

/// Cases per property by default: the four properties then take about 13 s
/// together in a debug build on two cores, within the 10 to 30 s a routine
/// `cargo test` may spend on fuzzing one crate.
const CASES: u32 = 2_000;

fn config() -> Config {
    Config::with_cases(testkit::fuzz_cases(CASES))
}

/// The number an error message starts with: `document 3: ...`.
fn document_number(message: &str) -> Option<usize> {
    let rest = message.strip_prefix("document ")?;
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..digits].parse().ok()
}

/// The verdict `check` gave, in the oracle's terms.
fn verdict_of(result: &Result<MemoryPolicy>) -> Verdict {
    match result {
        Ok(_) => Verdict::Accepted,
        Err(Error::Yaml { error, .. }) => {
            let message = error.to_string();
            let path = message.split_once(": ").map_or("", |(path, _)| path);
            Verdict::Unreadable(path.to_owned())
        }
        Err(Error::UnknownFields { fields, .. }) => Verdict::Unknown(fields.clone()),
        Err(Error::Invalid { errors, .. }) => {
            let mut paths: Vec<String> = errors.iter().map(|e| e.path.clone()).collect();
            paths.sort();
            Verdict::Unsound(paths)
        }
        Err(other) => Verdict::Unreadable(other.to_string()),
    }
}

/// How `check` says a duration is past Go's range, which the apiserver's CEL cannot read.
const PAST_GO: &str = "is longer than Kubernetes durations go";

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_gets_readable_errors_that_name_their_document(text in text::anything()) {
        let results = check_documents(&text);
        // A document starts at a marker, and a syntax error after the last
        // document counts as one more.
        let most = 2 + text.matches("---").count() + text.matches("...").count();
        let mut last = 0;
        for result in &results {
            match result {
                Ok(policy) => {
                    prop_assert!(validate(&policy.spec, None).is_ok());
                    prop_assert!(policy.metadata.name.as_deref().is_some_and(|n| !n.is_empty()));
                }
                Err(error) => {
                    let message = error.to_string();
                    let number = document_number(&message);
                    prop_assert!(
                        number.is_some_and(|n| n > last && n <= most),
                        "after document {last} of at most {most}: {message}"
                    );
                    last = number.unwrap_or_default();
                    let detail = message.split_once(':').map_or("", |(_, detail)| detail.trim());
                    prop_assert!(!detail.is_empty(), "{message}");
                }
            }
        }
    }

    #[test]
    fn generated_policies_get_the_verdict_the_rules_predict(draft in draft::draft()) {
        let yaml = draft.to_yaml();
        let mut results = check_documents(&yaml);
        prop_assert_eq!(results.len(), 1, "{}", yaml);
        let result = results.remove(0);
        let verdict = verdict_of(&result);
        prop_assert_eq!(&verdict, &oracle::verdict(&draft), "{}", yaml);
        if let Err(error) = result {
            let message = error.to_string();
            prop_assert_eq!(document_number(&message), Some(1));
            if let Error::Invalid { errors, .. } = &error {
                for e in errors {
                    prop_assert!(e.message.starts_with(&e.path), "{}", e.message);
                }
            }
            if let Verdict::Unknown(paths) | Verdict::Unsound(paths) = verdict {
                for path in paths {
                    prop_assert!(message.contains(&path), "{path} not in {message}");
                }
            }
        }
    }

    #[test]
    fn the_crd_schema_agrees_with_validate_on_generated_policies(draft in draft::draft()) {
        let Ok(policy) = serde_yaml::from_str::<MemoryPolicy>(&draft.to_yaml()) else {
            return Ok(());
        };
        let mut spec = policy.spec;
        // The schema can neither read nor compare quantities: those rules are offline only,
        // so the quantities are left out, or set to ones every rule accepts.
        if let Some(limits) = &mut spec.limits {
            (limits.request, limits.limit) = (None, None);
            if let Some(raise) = &mut limits.raise {
                (raise.step, raise.max) = (Quantity("1Mi".into()), Quantity("1Gi".into()));
            }
        }
        // The apiserver's CEL refuses durations past Go's range, but kube-cel reads them:
        // that rule is checked offline only. So is comparing a window with staleAfter when
        // either is that long, which kube-cel gets wrong where the apiserver fails the rule.
        let errors = validate(&spec, None).err().unwrap_or_default();
        let past_go = |path: &str| errors.iter().any(|e| e.path == path && e.message.contains(PAST_GO));
        let compared_offline = past_go("spec.prediction.window") || past_go("spec.thresholds.staleAfter");
        let offline_only = |message: &str| {
            message.contains(PAST_GO) || (compared_offline && message.contains(WINDOW_TOO_SHORT))
        };
        let offline: Vec<_> = errors
            .iter()
            .filter(|e| !offline_only(&e.message))
            // PromQL is parsed offline only: the schema cannot.
            .filter(|e| !promql_only(&e.message))
            .collect();
        let mut apiserver = schema::verdict(&spec);
        apiserver.retain(|m| !offline_only(m));
        prop_assert_eq!(offline.is_empty(), apiserver.is_empty(), "validate {:?}, apiserver {:?}", offline, apiserver);
        for error in &offline {
            let field = error.path.trim_start_matches("spec.");
            prop_assert!(apiserver.iter().any(|m| m.contains(field)), "no apiserver message names {field}: {apiserver:?}");
        }
    }

    #[test]
    fn every_accepted_policy_drives_the_engine(
        draft in draft::sound_draft(),
        workload in workload(),
        ticks in ticks(),
    ) {
        let yaml = draft.to_yaml();
        prop_assert_eq!(oracle::verdict(&draft), Verdict::Accepted, "{}", yaml);
        let policy = match check_documents(&yaml).remove(0) {
            Ok(policy) => policy,
            Err(error) => return Err(TestCaseError::fail(format!("{error}\n{yaml}"))),
        };
        let policy = engine_policy(&policy.spec);
        prop_assert_eq!(policy.raise.map(|r| (r.step, r.max)), raise_bounds(&draft), "{}", yaml);
        let prediction = policy.prediction.as_ref().map(|p| (p.window, p.horizon, p.min_growth_per_minute));
        prop_assert_eq!(prediction, predicted(&draft), "{}", yaml);
        let (mut memory, mut now) = (Memory::default(), start());
        for tick in ticks {
            now += tick.after;
            let samples: Vec<Sample> = tick
                .samples
                .iter()
                .map(|(pod, ratio, age)| {
                    let pod = format!("pod-{pod}");
                    let limit = running_limit(&workload, &pod).unwrap_or(LIMIT_BYTES);
                    Sample {
                        usage_ratio: *ratio,
                        bytes: (ratio * limit as f64) as u64,
                        limit_bytes: limit,
                        at: now - SignedDuration::from_secs(*age),
                        pod,
                        requests: None,
                    }
                })
                .collect();
            let mut decision = decide(&policy, &samples, &workload, &memory, now);
            prop_assert!(!decision.reasons.is_empty());
            let held_back = decision.held_back.as_ref().map(|held| &held.action);
            for action in decision.action.iter().chain(held_back) {
                raises_within_bounds(action, &policy, &workload)?;
                // A pod whose raise was refused is not raised again while that is remembered.
                if let Action::RaiseLimit { raises, .. } = action {
                    for raise in raises {
                        prop_assert!(!memory.refused_raises.contains_key(&raise.pod), "{raise} again");
                    }
                }
            }
            let pods = decision.pending().map(|p| p.pods.clone()).unwrap_or_default();
            let outcome = match (tick.answer, pods.first()) {
                (0, _) => Outcome::Refused("refused".into()),
                (1, Some(first)) => Outcome::Partly { refused: vec![first.clone()], why: "refused".into() },
                _ => Outcome::Applied,
            };
            decision.settle(&outcome);
            memory = decision.memory;
        }
    }
}

/// The step and max of a draft that raises limits, in bytes as the oracle reads them.
fn raise_bounds(draft: &draft::Draft) -> Option<(u64, u64)> {
    let bytes = |path| draft.get(path).and_then(oracle::bytes_of);
    Some((
        bytes("spec.limits.raise.step")?,
        bytes("spec.limits.raise.max")?,
    ))
}

/// The window, horizon and least growth in bytes a minute of a draft that predicts growth, as
/// the oracle reads them.
fn predicted(draft: &draft::Draft) -> Option<(Duration, Duration, u64)> {
    let prediction = oracle::prediction(draft)?;
    Some((
        Duration::from_millis(prediction.window_millis),
        Duration::from_millis(prediction.horizon_millis),
        prediction.growth_per_minute,
    ))
}

/// A raise only raises the workload's pods, each from the limit it runs with, by at most the
/// step and to at most the max, and the request (if it moves) with it.
fn raises_within_bounds(
    action: &Action,
    policy: &Policy,
    workload: &Workload,
) -> Result<(), TestCaseError> {
    let Action::RaiseLimit { raises, .. } = action else {
        return Ok(());
    };
    let bounds = policy.raise.ok_or_else(|| {
        TestCaseError::fail(format!("{action} under a policy without raise bounds"))
    })?;
    prop_assert!(!raises.is_empty(), "{action}");
    for raise in raises {
        prop_assert!(
            workload.pods.contains(&raise.pod),
            "{raise} of a foreign pod"
        );
        prop_assert_eq!(
            running_limit(workload, &raise.pod),
            Some(raise.from),
            "{}",
            raise
        );
        prop_assert!(
            raise.from < raise.to && raise.to <= bounds.max && raise.to - raise.from <= bounds.step,
            "{raise:?} beyond {bounds:?}"
        );
        // A request moves only with the limit, to the same size.
        prop_assert!(
            raise.request.is_none_or(|request| request == raise.to),
            "{raise:?}"
        );
    }
    Ok(())
}

/// A verdict on a custom query's PromQL, which only `check` and the operator give.
fn promql_only(message: &str) -> bool {
    [
        "does not parse",
        "matches namespaces",
        "reads series of namespace",
    ]
    .iter()
    .any(|what| message.starts_with(&format!("spec.metric.query {what}")))
}
