//! The process kubelet on the real control plane: pods of a Deployment run as processes on
//! addresses of their own, with their environment, probes, restarts, memory limits and
//! deletion, and report all of it in their status.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::OnceLock,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::{Value, json};
use testkit::{ControlPlane, KubeletConfig, ProcessKubelet};

fn plane() -> &'static ControlPlane {
    ControlPlane::shared().expect("the control plane starts")
}

async fn client() -> Client {
    let kubeconfig = Kubeconfig::read_from(plane().kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// One kubelet per test, each with a Node of its own (named for the test's namespace): each
/// test runs in its own tokio runtime.
async fn kubelet(client: Client, namespace: &str) -> ProcessKubelet {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap().keep());
    let images = BTreeMap::from([("sh".to_owned(), PathBuf::from("/bin/sh"))]);
    let config = KubeletConfig {
        node: namespace.to_owned(),
        images,
        restart_backoff: Duration::from_millis(500),
        dir: dir.clone(),
        api_server: Some((plane().server(), plane().ca_file().to_owned())),
    };
    ProcessKubelet::start(client, config).await.unwrap()
}

/// A one-replica Deployment `name` running `sh -c script` with `extra` container fields.
async fn deploy(client: &Client, namespace: &str, name: &str, script: &str, extra: Value) {
    let mut container = json!({"name": "app", "image": "sh:latest", "args": ["-c", script]});
    for (k, v) in extra.as_object().unwrap() {
        container[k] = v.clone();
    }
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"nodeSelector": {"kubernetes.io/hostname": namespace},
                    "terminationGracePeriodSeconds": 3, "containers": [container]}}}
    });
    let api: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), namespace);
    api.patch(
        name,
        &PatchParams::apply("kubelet-test").force(),
        &Patch::Apply(deployment),
    )
    .await
    .unwrap();
}

/// Polls until `check` finds a pod of `app` it likes; returns that pod.
async fn pod_where(
    client: &Client,
    namespace: &str,
    app: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pods = api
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .unwrap();
        let found = pods
            .items
            .iter()
            .map(|p| serde_json::to_value(p).unwrap())
            .find(|p| check(p));
        if let Some(pod) = found {
            return pod;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:#?}",
            pods.items.iter().map(|p| &p.status).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_on_its_own_address_with_its_environment_and_turns_ready_from_its_probe() {
    let client = client().await;
    let namespace = plane().create_namespace("kubelet").unwrap();
    let _kubelet = kubelet(client.clone(), &namespace).await;
    plane()
        .run_kubectl(&[
            "create",
            "secret",
            "generic",
            "greeting",
            "-n",
            &namespace,
            "--from-literal=text=hello",
        ])
        .unwrap();
    // Serves its environment on its pod's address, port 8080.
    let script = "mkdir -p /tmp/$POD_NAME && env > /tmp/$POD_NAME/env && cd /tmp/$POD_NAME && exec python3 -m http.server --bind $LISTEN_IP 8080";
    deploy(
        &client,
        &namespace,
        "web",
        script,
        json!({
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "LISTEN_IP", "value": "$(POD_IP)"},
                {"name": "GREETING", "valueFrom": {"secretKeyRef": {"name": "greeting", "key": "text"}}}
            ],
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/env", "port": "http"}, "periodSeconds": 1}
        }),
    )
    .await;
    let pod = pod_where(&client, &namespace, "web", "a Ready pod", ready).await;
    let ip = pod["status"]["podIP"].as_str().unwrap().to_owned();
    assert!(ip.starts_with("127.1."), "{ip}");
    let body = reqwest::get(format!("http://{ip}:8080/env"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("GREETING=hello"), "{body}");
    assert!(body.contains(&format!("LISTEN_IP={ip}")), "{body}");
    // Its service account's token, bound to the pod, as a kubeconfig.
    let kubeconfig = body
        .lines()
        .find_map(|l| l.strip_prefix("KUBECONFIG="))
        .expect("KUBECONFIG in the environment");
    let whoami = plane()
        .kubectl()
        .env("KUBECONFIG", kubeconfig)
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&whoami.stdout),
        format!("system:serviceaccount:{namespace}:default")
    );
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(status["ready"], true);
    assert!(
        status["state"]["running"]["startedAt"].is_string(),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_exits_is_restarted_and_its_last_exit_reported() {
    let client = client().await;
    let namespace = plane().create_namespace("kubelet").unwrap();
    let _kubelet = kubelet(client.clone(), &namespace).await;
    deploy(&client, &namespace, "flaky", "sleep 0.2; exit 3", json!({})).await;
    let pod = pod_where(&client, &namespace, "flaky", "two restarts", |p| {
        p["status"]["containerStatuses"][0]["restartCount"].as_u64() >= Some(2)
    })
    .await;
    let last = &pod["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 3, "{last}");
    assert_eq!(last["reason"], "Error", "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_over_its_memory_limit_is_oom_killed_by_the_kernel() {
    let client = client().await;
    let namespace = plane().create_namespace("kubelet").unwrap();
    let kubelet = kubelet(client.clone(), &namespace).await;
    if let Err(why) = kubelet.memory_cgroups() {
        eprintln!("skipping the real OOM kill: no memory cgroups here ({why})");
        return;
    }
    let script = "exec python3 -c 'import time; x = bytearray(256 * 1024 * 1024); time.sleep(60)'";
    deploy(
        &client,
        &namespace,
        "hog",
        script,
        json!({"resources": {"limits": {"memory": "64Mi"}}}),
    )
    .await;
    let pod = pod_where(&client, &namespace, "hog", "an OOM kill", |p| {
        p["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"] == "OOMKilled"
    })
    .await;
    let last = &pod["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_gets_sigterm_and_is_removed_and_replaced() {
    let client = client().await;
    let namespace = plane().create_namespace("kubelet").unwrap();
    let _kubelet = kubelet(client.clone(), &namespace).await;
    // Says goodbye on SIGTERM, where the test can read it.
    let script = "trap 'echo bye > /tmp/$POD_NAME.bye; exit 0' TERM; while :; do sleep 0.1; done";
    deploy(
        &client,
        &namespace,
        "polite",
        script,
        json!({"env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}),
    )
    .await;
    let first = pod_where(&client, &namespace, "polite", "a Ready pod", ready).await;
    let name = first["metadata"]["name"].as_str().unwrap().to_owned();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    pods.delete(&name, &DeleteParams::default()).await.unwrap();
    let replacement = pod_where(&client, &namespace, "polite", "a replacement", |p| {
        p["metadata"]["name"] != name.as_str() && ready(p)
    })
    .await;
    assert_ne!(replacement["metadata"]["name"], name.as_str());
    let deadline = Instant::now() + Duration::from_secs(30);
    while pods.get_opt(&name).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "{name} was never removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let said = std::fs::read_to_string(format!("/tmp/{name}.bye")).unwrap_or_default();
    assert_eq!(said.trim(), "bye", "the container did not get SIGTERM");
    let _ = std::fs::remove_file(format!("/tmp/{name}.bye"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_discovers_the_pods_and_labels_them_with_namespace_and_pod() {
    let client = client().await;
    let namespace = plane().create_namespace("kubelet").unwrap();
    let _kubelet = kubelet(client.clone(), &namespace).await;
    // A service account that may read pods, as a cluster's Prometheus has.
    let pods = plane().pod_reader(&namespace, "prometheus").unwrap();
    let prometheus = testkit::PromServer::discovering(&pods).unwrap();

    let script = "mkdir -p /tmp/$POD_NAME && cd /tmp/$POD_NAME && echo 'demo_value 42' > metrics && exec python3 -m http.server --bind $POD_IP 8080";
    deploy(
        &client,
        &namespace,
        "exporter",
        script,
        json!({
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
            ],
            "ports": [{"name": "http", "containerPort": 8080}, {"name": "other", "containerPort": 9999}]
        }),
    )
    .await;
    let pod = pod_where(&client, &namespace, "exporter", "a Ready pod", ready).await;
    let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    let query = format!("{}/api/v1/query?query=demo_value", prometheus.url());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = reqwest::get(&query).await.unwrap().text().await.unwrap();
        if body.contains("\"42\"") {
            assert!(
                body.contains(&format!("\"namespace\":\"{namespace}\"")),
                "{body}"
            );
            assert!(body.contains(&format!("\"pod\":\"{name}\"")), "{body}");
            break;
        }
        if Instant::now() > deadline {
            let targets = format!("{}/api/v1/targets", prometheus.url());
            let targets = reqwest::get(&targets).await.unwrap().text().await.unwrap();
            panic!("never scraped: {body}\ntargets: {targets}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_limit_resized_in_place_reaches_the_running_container_and_too_much_is_infeasible()
{
    let client = client().await;
    let namespace = plane().create_namespace("kubelet").unwrap();
    let kubelet = kubelet(client.clone(), &namespace).await;
    if let Err(why) = kubelet.memory_cgroups() {
        eprintln!("SKIPPED: no memory cgroups here ({why}), so no limit to resize");
        return;
    }
    // Writes the limit of its own memory cgroup (v1 or v2) where the test can read it.
    let script = r#"
        v1=$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)
        if [ -n "$v1" ]; then file=/sys/fs/cgroup/memory$v1/memory.limit_in_bytes
        else file=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)/memory.max; fi
        while :; do cat "$file" > "/tmp/$POD_NAME.limit.new"; mv "/tmp/$POD_NAME.limit.new" "/tmp/$POD_NAME.limit"; sleep 0.1; done"#;
    deploy(
        &client,
        &namespace,
        "grow",
        script,
        json!({
            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "resources": {"limits": {"memory": "64Mi"}},
            "resizePolicy": [{"resourceName": "memory", "restartPolicy": "NotRequired"}],
        }),
    )
    .await;
    let pod = pod_where(&client, &namespace, "grow", "a running pod", |p| {
        p["status"]["containerStatuses"][0]["state"]["running"].is_object()
    })
    .await;
    let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    let uid = pod["metadata"]["uid"].clone();
    let limit_file = format!("/tmp/{name}.limit");
    let seen_limit = || {
        std::fs::read_to_string(&limit_file)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
    };
    let wait_for_limit = async |bytes: u64| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen_limit() != Some(bytes) {
            assert!(
                Instant::now() < deadline,
                "the container sees {:?}",
                seen_limit()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    wait_for_limit(64 << 20).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let resize = async |limit: &str| {
        let patch = json!({"spec": {"containers": [{"name": "app",
            "resources": {"limits": {"memory": limit}}}]}});
        pods.patch_subresource(
            "resize",
            &name,
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
        .unwrap();
    };
    resize("96Mi").await;
    wait_for_limit(96 << 20).await;
    let pod = pod_where(&client, &namespace, "grow", "the new limit reported", |p| {
        p["status"]["containerStatuses"][0]["resources"]["limits"]["memory"] == "96Mi"
    })
    .await;
    assert_eq!(pod["metadata"]["uid"], uid, "the same pod");
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);

    resize("300Gi").await;
    let pod = pod_where(&client, &namespace, "grow", "an infeasible resize", |p| {
        p["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "PodResizePending"))
    })
    .await;
    let pending = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodResizePending")
        .unwrap()
        .clone();
    assert_eq!(pending["reason"], "Infeasible", "{pending}");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["resources"]["limits"]["memory"],
        "96Mi"
    );
    assert_eq!(
        seen_limit(),
        Some(96 << 20),
        "the running limit is unchanged"
    );
    let _ = std::fs::remove_file(&limit_file);
}
