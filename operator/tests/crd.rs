//! The generated CRD, the `crd` and `check` subcommands, and agreement
//! between the CRD's own rules and `validate`, offline (kube-cel) and on the real apiserver.

mod support;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResourceExt;
use memory_policy_api::crd::{
    Duration, HighAction, Limits, MemoryPolicy, MemoryPolicySpec, MetricSource, Prediction, Raise,
};
use memory_policy_api::validate::validate;

/// A duration the schema's pattern accepts but its CEL rules refuse.
const ZERO: Duration = Duration::from_secs(0);

const REGENERATE: &str = "cargo run -p memory-operator -- crd > crds/memorypolicy.yaml";

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn memory_operator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memory-operator"))
        .args(args)
        .output()
        .expect("memory-operator runs")
}

/// Runs `memory-operator check` on a temporary file holding `yaml`.
fn check(yaml: &str) -> (bool, String, String) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(yaml.as_bytes()).unwrap();
    let out = memory_operator(&["check", file.path().to_str().unwrap()]);
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

/// A policy document with `extra` appended, indented, under `spec`.
fn policy(extra: &str) -> String {
    format!(
        "apiVersion: shortener.dev/v1alpha1\nkind: MemoryPolicy\nmetadata: {{name: shortener}}\nspec:\n  \
         targetRef: {{apiVersion: apps/v1, kind: Deployment, name: shortener}}\n{extra}"
    )
}

#[test]
fn the_checked_in_crd_matches_the_generated_one() {
    let generated = serde_yaml::to_string(&MemoryPolicy::crd()).unwrap();
    let checked_in =
        std::fs::read_to_string(repo_file("crds/memorypolicy.yaml")).unwrap_or_default();
    assert!(
        checked_in == generated,
        "crds/memorypolicy.yaml is out of date with the MemoryPolicy types; run `{REGENERATE}`"
    );
}

#[test]
fn the_crd_subcommand_prints_the_generated_crd() {
    let out = memory_operator(&["crd"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        serde_yaml::to_string(&MemoryPolicy::crd()).unwrap()
    );
}

#[test]
fn a_minimal_policy_passes_check() {
    let (ok, stdout, stderr) = check(&policy(""));
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "ok: shortener\n");
}

#[test]
fn the_example_policy_passes_check() {
    let example = repo_file("operator/examples/policy.yaml");
    let out = memory_operator(&["check", example.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn thresholds_out_of_order_fail_check_naming_both_values() {
    let (ok, _, stderr) = check(&policy(
        "  thresholds: {lowWaterMark: 80, highWaterMark: 60}\n",
    ));
    assert!(!ok);
    assert!(
        stderr.contains("spec.thresholds.lowWaterMark (80) must be below highWaterMark (60)"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_on_critical_value_fails_check_naming_the_field() {
    let (ok, _, stderr) = check(&policy("  onCritical: Explode\n"));
    assert!(!ok);
    assert!(
        stderr.contains("spec.onCritical: unknown variant `Explode`"),
        "{stderr}"
    );
}

#[test]
fn a_policy_without_a_target_ref_is_refused() {
    let yaml = "apiVersion: shortener.dev/v1alpha1\nkind: MemoryPolicy\nmetadata: {name: p}\nspec: {dryRun: true}\n";
    let (ok, _, stderr) = check(yaml);
    assert!(!ok);
    assert!(stderr.contains("missing field `targetRef`"), "{stderr}");
}

#[test]
fn every_bad_document_is_reported_and_every_good_one_named() {
    let yaml = format!(
        "{}---\n{}---\n{}",
        policy(""),
        policy("  interval: 0s\n"),
        policy("  sepc: 1\n")
    );
    let (ok, stdout, stderr) = check(&yaml);
    assert!(!ok);
    assert_eq!(stdout, "ok: shortener\n");
    assert!(
        stderr
            .contains("document 2 (shortener):\n  spec.interval (0s) must be a positive duration"),
        "{stderr}"
    );
    assert!(
        stderr.contains("document 3:\n  unknown field spec.sepc"),
        "{stderr}"
    );
}

#[test]
fn an_unreadable_file_is_named() {
    let out = memory_operator(&["check", "/nonexistent/policy.yaml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/policy.yaml"));
}

/// What an apiserver would say about `spec`.
fn apiserver_verdict(spec: &MemoryPolicySpec) -> Vec<String> {
    let crd = MemoryPolicy::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .unwrap();
    let check = testkit::SchemaCheck::new(serde_json::to_value(schema).unwrap());
    check.problems(&serde_json::to_value(MemoryPolicy::new("p", spec.clone())).unwrap())
}

/// A named change to a sound policy.
type Case = (&'static str, fn(&mut MemoryPolicySpec));

/// Sound and unsound policies, each a change to the defaults.
fn cases() -> Vec<Case> {
    vec![
        ("defaults", |_| {}),
        ("low above high", |s| {
            (s.thresholds.low_water_mark, s.thresholds.high_water_mark) = (80, 60)
        }),
        ("low equals high", |s| s.thresholds.low_water_mark = 80),
        ("high equals critical", |s| {
            s.thresholds.high_water_mark = 95
        }),
        ("critical above 100", |s| s.thresholds.critical = 101),
        ("critical at 100", |s| s.thresholds.critical = 100),
        ("low at 0", |s| s.thresholds.low_water_mark = 0),
        ("min above max", |s| {
            (s.scaling.min_replicas, s.scaling.max_replicas) = (4, 3)
        }),
        ("min equals max", |s| {
            (s.scaling.min_replicas, s.scaling.max_replicas) = (3, 3)
        }),
        ("min at 0", |s| s.scaling.min_replicas = 0),
        ("step at 0", |s| s.scaling.step = 0),
        ("maxUnavailable at 0", |s| s.safety.max_unavailable = 0),
        ("no restarts", |s| s.safety.max_restarts_per_hour = 0),
        ("custom without query", |s| {
            s.metric.source = MetricSource::Custom
        }),
        ("custom with empty query", |s| {
            (s.metric.source, s.metric.query) = (MetricSource::Custom, Some(String::new()))
        }),
        ("custom with query", |s| {
            (s.metric.source, s.metric.query) = (MetricSource::Custom, Some("up".into()))
        }),
        ("query without custom", |s| {
            s.metric.query = Some("up".into())
        }),
        ("a StatefulSet", |s| {
            s.target_ref.kind = "StatefulSet".into()
        }),
        ("apps/v1beta1", |s| {
            s.target_ref.api_version = "apps/v1beta1".into()
        }),
        ("no name", |s| s.target_ref.name.clear()),
        ("zero interval", |s| s.interval = ZERO),
        ("zero for", |s| s.thresholds.r#for = ZERO),
        ("zero staleAfter", |s| s.thresholds.stale_after = ZERO),
        ("zero timeout", |s| s.prometheus.timeout = ZERO),
        ("a named source", |s| s.prometheus.source = "team-a".into()),
        ("an empty source", |s| s.prometheus.source.clear()),
        ("a source in capitals", |s| {
            s.prometheus.source = "Team".into()
        }),
        ("a source of 64 characters", |s| {
            s.prometheus.source = "a".repeat(64)
        }),
        ("a Prometheus URL", |s| {
            s.prometheus.url = Some("http://prometheus.monitoring:9090".into())
        }),
        ("a cloud metadata URL", |s| {
            s.prometheus.url = Some("http://169.254.169.254/latest/meta-data/".into())
        }),
        ("zero stabilization", |s| {
            s.scaling.scale_in_stabilization = ZERO
        }),
        ("zero cooldown", |s| s.safety.cooldown = ZERO),
        ("sub-second interval", |s| {
            s.interval = Duration::from_millis(500)
        }),
        ("raising limits with bounds", |s| raising(s, ONE_MINUTE)),
        ("raising limits without bounds", |s| {
            s.on_high = HighAction::RaiseLimit
        }),
        ("bounds without raising limits", |s| {
            raising(s, ONE_MINUTE);
            s.on_high = HighAction::AlertOnly;
        }),
        ("raising limits with a zero timeout", |s| raising(s, ZERO)),
        ("prediction with its defaults", |s| {
            s.prediction = Some(Prediction::default())
        }),
        ("a prediction window as long as staleAfter", |s| {
            s.prediction = Some(Prediction {
                window: s.thresholds.stale_after,
                ..Prediction::default()
            })
        }),
        ("a prediction window just over staleAfter", |s| {
            s.prediction = Some(Prediction {
                window: Duration::from_secs(46),
                ..Prediction::default()
            })
        }),
        ("a prediction with a zero horizon", |s| {
            s.prediction = Some(Prediction {
                horizon: ZERO,
                ..Prediction::default()
            })
        }),
        ("a prediction growing by 512Ki/s", |s| {
            s.prediction = Some(Prediction {
                min_growth: "512Ki/s".parse().unwrap(),
                ..Prediction::default()
            })
        }),
    ]
}

const ONE_MINUTE: Duration = Duration::from_secs(60);

/// `onHigh: RaiseLimit` by 64Mi up to 512Mi, giving a resize `timeout`.
fn raising(spec: &mut MemoryPolicySpec, timeout: Duration) {
    spec.on_high = HighAction::RaiseLimit;
    spec.limits = Some(Limits {
        raise: Some(Raise {
            step: Quantity("64Mi".into()),
            max: Quantity("512Mi".into()),
            allow_restart: false,
            timeout,
        }),
        ..Limits::default()
    });
}

#[test]
fn the_crd_rules_and_validate_give_the_same_verdicts() {
    for (name, change) in cases() {
        let mut spec = MemoryPolicySpec::for_deployment("shortener");
        change(&mut spec);
        let offline = validate(&spec, None).err().unwrap_or_default();
        let apiserver = apiserver_verdict(&spec);
        assert_eq!(
            offline.is_empty(),
            apiserver.is_empty(),
            "{name}: validate {offline:?}, apiserver {apiserver:?}"
        );
        for error in &offline {
            let field = error.path.trim_start_matches("spec.");
            assert!(
                apiserver.iter().any(|m| m.contains(field)),
                "{name}: no apiserver message names {field}"
            );
        }
    }
}

/// What the real apiserver says when `spec` is created (as a dry run): its message, if refused.
async fn real_apiserver_verdict(
    client: &kube::Client,
    namespace: &str,
    spec: &MemoryPolicySpec,
) -> Option<String> {
    let api: kube::Api<MemoryPolicy> = kube::Api::namespaced(client.clone(), namespace);
    let params = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    match api
        .create(&params, &MemoryPolicy::new("p", spec.clone()))
        .await
    {
        Ok(_) => None,
        Err(kube::Error::Api(status)) => Some(status.message),
        Err(error) => panic!("the apiserver did not answer: {error}"),
    }
}

#[tokio::test]
async fn the_real_apiserver_gives_the_same_verdicts_as_validate() {
    let plane = support::installed().plane;
    let namespace = plane.create_namespace("crd").unwrap();
    let client = support::admin().await;
    for (name, change) in cases() {
        let mut spec = MemoryPolicySpec::for_deployment("shortener");
        change(&mut spec);
        let offline = validate(&spec, None).err().unwrap_or_default();
        let apiserver = real_apiserver_verdict(&client, &namespace, &spec).await;
        assert_eq!(
            offline.is_empty(),
            apiserver.is_none(),
            "{name}: validate {offline:?}, apiserver {apiserver:?}"
        );
        for error in &offline {
            let field = error.path.trim_start_matches("spec.");
            let message = apiserver.as_deref().unwrap_or_default();
            assert!(
                message.contains(field),
                "{name}: {message:?} does not name {field}"
            );
        }
    }
}

#[tokio::test]
async fn a_policy_carrying_a_url_is_refused_by_check_and_the_apiserver_naming_the_replacement() {
    let (ok, _, stderr) = check(&policy(
        "  prometheus: {url: 'http://169.254.169.254/latest/meta-data/'}\n",
    ));
    assert!(!ok);
    assert!(
        stderr.contains("spec.prometheus.url is no longer supported"),
        "{stderr}"
    );
    assert!(
        stderr.contains("name one in spec.prometheus.source"),
        "{stderr}"
    );

    let namespace = support::installed().plane.create_namespace("crd").unwrap();
    let mut spec = MemoryPolicySpec::for_deployment("shortener");
    spec.prometheus.url = Some("http://prometheus.monitoring:9090".into());
    let refused = real_apiserver_verdict(&support::admin().await, &namespace, &spec)
        .await
        .expect("refused");
    assert!(
        refused.contains("name one in spec.prometheus.source"),
        "{refused}"
    );
}

#[tokio::test]
async fn only_validate_compares_the_request_with_the_limit() {
    // The schema cannot compare two quantities: kube-cel and the real apiserver both let it by.
    let mut spec = MemoryPolicySpec::for_deployment("shortener");
    let q = |v: &str| Some(Quantity(v.into()));
    spec.limits = Some(Limits {
        request: q("512Mi"),
        limit: q("256Mi"),
        ..Limits::default()
    });
    assert!(validate(&spec, None).is_err());
    assert_eq!(apiserver_verdict(&spec), Vec::<String>::new());
    let namespace = support::installed().plane.create_namespace("crd").unwrap();
    let client = support::admin().await;
    assert_eq!(
        real_apiserver_verdict(&client, &namespace, &spec).await,
        None
    );
}

/// `kubectl apply --dry-run=server` on `yaml`: whether it was accepted, and what it said.
fn kubectl_apply_dry_run(namespace: &str, yaml: &str) -> (bool, String) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(yaml.as_bytes()).unwrap();
    let out = support::installed()
        .plane
        .kubectl()
        .args(["apply", "--dry-run=server", "-n", namespace, "-f"])
        .arg(file.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn kubectl_apply_dry_run_agrees_with_check_on_every_check_case() {
    // A dry run stores nothing, and the example names `default`.
    let namespace = "default";
    let documents = [
        ("minimal", policy("")),
        ("thresholds out of order", policy("  thresholds: {lowWaterMark: 80, highWaterMark: 60}\n")),
        ("unknown onCritical", policy("  onCritical: Explode\n")),
        ("zero interval", policy("  interval: 0s\n")),
        ("unknown field", policy("  sepc: 1\n")),
        ("prediction on", policy("  prediction: {}\n")),
        ("growth per day", policy("  prediction: {minGrowth: 1Mi/day}\n")),
        ("no growth", policy("  prediction: {minGrowth: 0Mi/min}\n")),
        ("growth of a half Ki an hour", policy("  prediction: {minGrowth: 0.5Ki/h}\n")),
        ("a window as long as staleAfter", policy("  prediction: {window: 45s}\n")),
        (
            "a window over a longer staleAfter",
            policy("  prediction: {window: 2m}\n  thresholds: {staleAfter: 1m}\n"),
        ),
        (
            "a window under a longer staleAfter",
            policy("  prediction: {window: 2m}\n  thresholds: {staleAfter: 3m}\n"),
        ),
        (
            "no targetRef",
            "apiVersion: shortener.dev/v1alpha1\nkind: MemoryPolicy\nmetadata: {name: p}\nspec: {dryRun: true}\n"
                .to_owned(),
        ),
        (
            "the example",
            std::fs::read_to_string(repo_file("operator/examples/policy.yaml")).unwrap(),
        ),
    ];
    for (name, yaml) in documents {
        let (checked, _, problems) = check(&yaml);
        let (applied, said) = kubectl_apply_dry_run(namespace, &yaml);
        assert_eq!(
            checked, applied,
            "{name}: check says {checked} ({problems}), kubectl apply --dry-run=server says {applied} ({said})"
        );
    }
}

#[tokio::test]
async fn the_schema_defaults_what_the_types_default() {
    let plane = support::installed().plane;
    let namespace = plane.create_namespace("crd").unwrap();
    let client = support::admin().await;
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        client,
        &namespace,
        &kube::api::ApiResource::erase::<MemoryPolicy>(&()),
    );
    let minimal: kube::api::DynamicObject = serde_yaml::from_str(&policy("")).unwrap();
    let params = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    let stored = api.create(&params, &minimal).await.unwrap();
    let documented = serde_json::to_value(MemoryPolicySpec::for_deployment("shortener")).unwrap();
    assert_eq!(stored.data["spec"], documented);
}
