//! The cluster controller gives a new cluster its first conditions, also when another writer races
//! its write.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rancher_core::cluster::{ClusterController, WAITING_FOR_AGENT};
use rancher_core::model::{Cluster, ClusterSpec, ClusterState};
use rancher_core::store::{Api, MemoryStore, Store, StoreLayer, StoreResult};
use rancher_core::{ConditionStatus, Conditions};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Cluster `name` once it has conditions; fails after `within`.
async fn with_conditions(clusters: &Api<Cluster>, name: &str, within: Duration) -> Cluster {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let c = clusters.get(name).await.unwrap();
        if !c.status.conditions.is_empty() {
            return c;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name}: no conditions after {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

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

    let demo = with_conditions(&clusters, "demo", Duration::from_secs(30)).await;
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

/// A store in which another writer (as an agent's report does) changes cluster `raced` just before
/// the first update of it arrives, so that update conflicts.
struct Racing {
    inner: MemoryStore,
    raced: AtomicBool,
}

#[async_trait::async_trait]
impl StoreLayer for Racing {
    fn inner(&self) -> &dyn Store {
        &self.inner
    }
    async fn update(&self, resource: &str, object: Value) -> StoreResult<Value> {
        if object["metadata"]["name"] == "raced" && !self.raced.swap(true, Ordering::SeqCst) {
            let mut theirs = self.inner.get(resource, None, "raced").await?;
            theirs["metadata"]["annotations"] = serde_json::json!({"reported": "yes"});
            self.inner.update(resource, theirs).await?;
        }
        self.inner.update(resource, object).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_lost_a_race_is_made_again_on_the_new_version() {
    let store = Arc::new(Racing { inner: MemoryStore::new(), raced: AtomicBool::new(false) });
    let clusters: Api<Cluster> = Api::all(store.clone());
    clusters.create(&Cluster::new("raced", ClusterSpec::default())).await.unwrap();
    let stop = CancellationToken::new();
    let run = tokio::spawn(ClusterController::new(store.clone()).run(stop.clone()));

    // The new version the race left is reconciled in its turn: the conditions are written on it.
    let raced = with_conditions(&clusters, "raced", Duration::from_secs(10)).await;
    assert!(store.raced.load(Ordering::SeqCst), "the first write raced");
    assert_eq!(raced.state(), ClusterState::Waiting);
    assert_eq!(
        raced.metadata.annotations.get("reported").map(String::as_str),
        Some("yes"),
        "the other writer's change is kept"
    );
    stop.cancel();
    run.await.unwrap();
}
