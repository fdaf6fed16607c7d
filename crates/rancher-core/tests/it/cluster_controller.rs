//! The cluster controller gives a new cluster its first conditions.

use std::sync::Arc;
use std::time::Duration;

use rancher_core::cluster::{ClusterController, WAITING_FOR_AGENT};
use rancher_core::model::{Cluster, ClusterSpec, ClusterState};
use rancher_core::store::{Api, MemoryStore};
use rancher_core::{ConditionStatus, Conditions};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cluster_waits_for_its_agent() {
    let store = Arc::new(MemoryStore::new());
    let clusters: Api<Cluster> = Api::all(store.clone());
    // One with conditions already is left alone.
    let mut observed = Cluster::new("observed", ClusterSpec::default());
    observed.status.conditions.set_condition("Ready", ConditionStatus::True, "", "");
    let observed = clusters.create(&observed).await.unwrap();

    let stop = CancellationToken::new();
    let run = tokio::spawn(ClusterController::new(store.clone()).run(stop.clone()));
    let created = clusters.create(&Cluster::new("demo", ClusterSpec::default())).await.unwrap();
    assert_eq!(created.state(), ClusterState::Pending);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let demo = loop {
        let c = clusters.get("demo").await.unwrap();
        if !c.status.conditions.is_empty() {
            break c;
        }
        assert!(tokio::time::Instant::now() < deadline, "no conditions set");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let provisioned = demo.status.conditions.get_condition("Provisioned").unwrap();
    assert_eq!(provisioned.status, ConditionStatus::Unknown);
    let waiting = demo.status.conditions.get_condition("Waiting").unwrap();
    assert_eq!(waiting.status, ConditionStatus::Unknown);
    assert_eq!(waiting.message, WAITING_FOR_AGENT);
    assert_eq!(demo.state(), ClusterState::Waiting);
    // It leaves it there (no update loop), and did not touch the other cluster.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(clusters.get("demo").await.unwrap().metadata.resource_version, demo.metadata.resource_version);
    assert_eq!(clusters.get("observed").await.unwrap(), observed);
    stop.cancel();
    run.await.unwrap();
}
