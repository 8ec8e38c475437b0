//! Leader election on the real Lease API, and start-up on a control plane that has no
//! MemoryPolicy CRD (this binary never installs it).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api, Client,
    config::{KubeConfigOptions, Kubeconfig},
};
use memory_operator::leader::Elector;
use testkit::ControlPlane;

async fn admin_config() -> kube::Config {
    let plane = ControlPlane::shared().expect("the control plane starts");
    let kubeconfig = Kubeconfig::read_from(plane.kubeconfig()).unwrap();
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap()
}

/// A namespace of the test's own and a candidate factory for Lease `memory-operator` in it.
async fn candidates() -> (String, impl Fn(&str) -> Elector) {
    let plane = ControlPlane::shared().expect("the control plane starts");
    let namespace = plane.create_namespace("lease").unwrap();
    let client = Client::try_from(admin_config().await).unwrap();
    let ns = namespace.clone();
    let elector = move |identity: &str| {
        Elector::new(
            client.clone(),
            &ns,
            "memory-operator",
            identity,
            Duration::from_secs(2),
        )
    };
    (namespace, elector)
}

#[tokio::test]
async fn one_replica_leads_and_a_standby_takes_over_an_expired_lease() {
    let (namespace, elector) = candidates().await;
    let (a, b) = (elector("a"), elector("b"));
    assert!(
        a.try_lead().await.unwrap(),
        "the first candidate takes a free lease"
    );
    assert!(!b.try_lead().await.unwrap(), "a held lease is respected");
    assert!(a.try_lead().await.unwrap(), "the holder renews");

    // a stops renewing; after the lease duration b takes over.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    assert!(b.try_lead().await.unwrap());
    assert!(!a.try_lead().await.unwrap(), "the old leader sees it lost");
    let client = Client::try_from(admin_config().await).unwrap();
    let lease = Api::<Lease>::namespaced(client, &namespace)
        .get("memory-operator")
        .await
        .unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
}

#[tokio::test]
async fn two_candidates_racing_for_a_free_lease_end_with_exactly_one_leader() {
    for _ in 0..5 {
        let (_, elector) = candidates().await;
        let (a, b) = (elector("a"), elector("b"));
        let (a_leads, b_leads) = tokio::join!(a.try_lead(), b.try_lead());
        let (a_leads, b_leads) = (a_leads.unwrap(), b_leads.unwrap());
        assert!(a_leads != b_leads, "a leads: {a_leads}, b leads: {b_leads}");
        let leader = if a_leads { &a } else { &b };
        assert!(
            leader.try_lead().await.unwrap(),
            "the winner keeps the lease"
        );
    }
}

#[tokio::test]
async fn start_up_fails_fast_when_the_crd_is_not_installed() {
    let reporter = kube::runtime::events::Reporter {
        controller: "memory-operator".into(),
        instance: None,
    };
    let metrics = std::sync::Arc::new(memory_operator::metrics::Metrics::default());
    let prometheus = memory_operator::prometheus::Prometheus::at("http://127.0.0.1:9").unwrap();
    let ctx =
        memory_operator::context::Context::new(admin_config().await, prometheus, metrics, reporter)
            .unwrap();
    let error = memory_operator::controller::run(ctx, None, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("is the CRD installed?"),
        "{error}"
    );
}
