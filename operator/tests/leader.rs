//! Leader election on a Lease in the fake API server.

use std::time::Duration;

use kube::Client;
use memory_operator::leader::Elector;
use testkit::FakeApiServer;

fn elector(api: &FakeApiServer, identity: &str) -> Elector {
    let client = Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
    Elector::new(
        client,
        "ops",
        "memory-operator",
        identity,
        Duration::from_secs(2),
    )
}

#[tokio::test]
async fn one_replica_leads_and_a_standby_takes_over_an_expired_lease() {
    let api = FakeApiServer::start().await.unwrap();
    let (a, b) = (elector(&api, "a"), elector(&api, "b"));
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
    let lease = api
        .get("coordination.k8s.io/v1", "Lease", "ops", "memory-operator")
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
}

#[tokio::test]
async fn losing_a_race_for_the_lease_means_standing_by() {
    let api = FakeApiServer::start().await.unwrap();
    let a = elector(&api, "a");
    api.fail_next("POST", "/leases", 409, 1);
    assert!(
        !a.try_lead().await.unwrap(),
        "a 409 on create means another replica won"
    );
    assert!(a.try_lead().await.unwrap());
}
