//! Traffic for the playground's pods: distinct long links created and followed, so that each
//! pod's redirect cache, and with it its memory, grows with every link it serves.

use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, api::ListParams};
use serde_json::json;

use crate::cluster::APP_NAMESPACE;

/// Above this share of its memory limit a pod is fed slowly.
const SLOW_ABOVE: f64 = 0.75;
/// Links a second once a pod is above [`SLOW_ABOVE`]: about 80 kB of cache a second, so the
/// last 5 % of a 64 MiB limit take some 40 s, longer than the playground policy's `for` (15 s)
/// and two of its intervals (5 s each). Unpaced, the pod reaches its limit and the kernel's
/// OOM killer ends it before the operator could see it critical for `for`.
const SLOW_RATE: u32 = 40;
/// How often, in links, the pod's memory is looked at.
const LOOK_EVERY: usize = 200;

/// A pod to drive: its name and address.
pub struct Target {
    pub pod: String,
    pub ip: String,
}

/// The shortener's Ready pods, by name, from the cluster `KUBECONFIG` names.
pub async fn targets() -> anyhow::Result<Vec<Target>> {
    let client = Client::try_default()
        .await
        .context("reading KUBECONFIG (export the path the playground printed)")?;
    let pods: Api<Pod> = Api::namespaced(client, APP_NAMESPACE);
    let list = pods.list(&ListParams::default()).await?;
    let mut targets: Vec<Target> = list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let status = p.status?;
            let ready = status
                .conditions?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then(|| Target {
                pod: p.metadata.name.unwrap_or_default(),
                ip: status.pod_ip.unwrap_or_default(),
            })
        })
        .collect();
    targets.sort_by(|a, b| a.pod.cmp(&b.pod));
    if targets.is_empty() {
        bail!("no Ready shortener pod in namespace {APP_NAMESPACE}; is the playground running?");
    }
    Ok(targets)
}

/// Creates and follows `links` distinct ~1.5 kB links through `target`, printing progress,
/// fast while the pod is under [`SLOW_ABOVE`] of its limit and at [`SLOW_RATE`] above it;
/// stops early when the pod stops answering (evicted, say).
pub async fn drive(target: &Target, links: usize) -> anyhow::Result<usize> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()?;
    let base = format!("http://{}:8080", target.ip);
    let padding = "x".repeat(1500);
    let mut pace = None;
    for i in 0..links {
        if i % LOOK_EVERY == 0 {
            // The shortener trims its cache once on its way up: fast again below the mark.
            let slow = usage_ratio(&http, &base)
                .await
                .is_some_and(|r| r > SLOW_ABOVE);
            if slow && pace.is_none() {
                println!(
                    "{}: over {:.0} % of its limit; {SLOW_RATE} links/s while it stays there, as a slow leak grows",
                    target.pod,
                    SLOW_ABOVE * 100.0
                );
            }
            pace = slow.then(|| Duration::from_secs(1) / SLOW_RATE);
        }
        if let Some(pause) = pace {
            tokio::time::sleep(pause).await;
        }
        let url = format!("https://example.com/{}/{i}/{padding}", target.pod);
        let created = http
            .post(format!("{base}/api/v1/links"))
            .json(&json!({ "url": url }))
            .send()
            .await;
        let Ok(created) = created else {
            println!("{}: stopped answering after {i} links", target.pod);
            return Ok(i);
        };
        let body: serde_json::Value = created.json().await.unwrap_or_default();
        if let Some(code) = body["code"].as_str() {
            let _ = http.get(format!("{base}/{code}")).send().await;
        }
        if i % 2000 == 0 {
            println!("{}: {i} links", target.pod);
        }
    }
    Ok(links)
}

/// The pod's own `shortener_memory_usage_ratio`, when it answers.
async fn usage_ratio(http: &reqwest::Client, base: &str) -> Option<f64> {
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("shortener_memory_usage_ratio "))
        .and_then(|value| value.trim().parse().ok())
}
