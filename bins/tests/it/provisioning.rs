//! A provisioner plugged into a real server through `ServerBuilder::provisioner`: its `validate`
//! turns a bad spec into a 422 naming the field (nothing stored), its progress reaches the cluster's
//! `status.provisioning` step by step and the `Provisioned` condition, transient failures are retried
//! with growing delays, deleting a cluster cancels a reconcile in flight and the cluster leaves the
//! store only after `remove` is done.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{ADMIN_PASSWORD, Api, client, install_crypto};
use async_trait::async_trait;
use futures::StreamExt;
use rancher::server::{Server, ServerError};
use rancher_core::model::{Cluster, ClusterSpec, ProvisioningProgress, StepState};
use rancher_core::store::{Api as StoreApi, MemoryStore, Store, TypedEvent, WatchOptions};
use rancher_core::{ConditionStatus, Conditions};
use rancher_provision::{Progress, ProvisionContext, ProvisionError, Provisioner};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const DRIVER: &str = "testbed";
const FINALIZER: &str = "controller.cattle.io/cluster-provisioner";

/// What the test provisioner saw and did, per cluster.
#[derive(Default)]
struct Record {
    /// When `reconcile` was called.
    calls: Vec<Instant>,
    /// `reconcile` is waiting for cancellation.
    hanging: bool,
    /// A reconcile saw its token fire.
    cancelled: bool,
    remove_calls: usize,
    /// `remove` returned `Done`.
    removed: bool,
}

/// Builds `spec.driverConfig.nodes` nodes, one per call; `failFirst` calls fail transiently first;
/// `hang` waits for cancellation. Removal takes two calls.
#[derive(Default)]
struct Testbed {
    records: Mutex<HashMap<String, Record>>,
}

impl Testbed {
    fn with<T>(&self, cluster: &str, f: impl FnOnce(&mut Record) -> T) -> T {
        f(self.records.lock().unwrap().entry(cluster.to_owned()).or_default())
    }
}

fn config(cluster: &Cluster, key: &str) -> Option<Value> {
    cluster.spec.driver_config.as_ref()?.get(key).cloned()
}

#[async_trait]
impl Provisioner for Testbed {
    fn driver(&self) -> &str {
        DRIVER
    }

    fn validate(&self, cluster: &Cluster) -> Result<(), ProvisionError> {
        match config(cluster, "nodes").and_then(|v| v.as_u64()) {
            Some(1..) => Ok(()),
            _ => Err(ProvisionError::invalid_spec("spec.driverConfig.nodes", "must be a number above 0")),
        }
    }

    async fn reconcile(&self, cluster: &Cluster, ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
        let name = cluster.metadata.name.clone();
        let attempt = self.with(&name, |r| {
            r.calls.push(Instant::now());
            r.calls.len() as u64
        });
        if config(cluster, "hang").is_some() {
            self.with(&name, |r| r.hanging = true);
            tokio::select! {
                () = ctx.cancel.cancelled() => {}
                () = tokio::time::sleep(Duration::from_secs(120)) => panic!("never cancelled"),
            }
            self.with(&name, |r| r.cancelled = true);
            return Err(ProvisionError::Cancelled);
        }
        let fail_first = config(cluster, "failFirst").and_then(|v| v.as_u64()).unwrap_or(0);
        if attempt <= fail_first {
            return Err(ProvisionError::transient("the testbed API is unavailable"));
        }
        let nodes = config(cluster, "nodes").and_then(|v| v.as_u64()).unwrap_or(1);
        let built = attempt - fail_first - 1;
        if built >= nodes {
            return Ok(Progress::Done);
        }
        let mut progress = ProvisioningProgress::new(format!("{built} of {nodes} nodes built"));
        for n in 0..nodes {
            let state = match n.cmp(&built) {
                std::cmp::Ordering::Less => StepState::Done,
                std::cmp::Ordering::Equal => StepState::Running,
                std::cmp::Ordering::Greater => StepState::Pending,
            };
            progress = progress.step(format!("node {n}"), state, "");
        }
        Ok(Progress::InProgress { progress, after: Duration::from_millis(100) })
    }

    async fn remove(&self, cluster: &Cluster, _ctx: &ProvisionContext) -> Result<Progress, ProvisionError> {
        self.with(&cluster.metadata.name, |r| {
            r.remove_calls += 1;
            if r.remove_calls < 2 {
                return Ok(Progress::InProgress {
                    progress: ProvisioningProgress::new("powering nodes off"),
                    after: Duration::from_millis(100),
                });
            }
            r.removed = true;
            Ok(Progress::Done)
        })
    }
}

struct Running {
    admin: Api,
    store: Arc<dyn Store>,
    testbed: Arc<Testbed>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start() -> Running {
        install_crypto();
        let dir = tempfile::tempdir().unwrap();
        let testbed = Arc::new(Testbed::default());
        let server = Server::builder()
            .data_dir(dir.path())
            .store(Arc::new(MemoryStore::new()))
            .https_listen("127.0.0.1:0".parse().unwrap())
            .bootstrap_password(ADMIN_PASSWORD)
            .provisioner(testbed.clone())
            .build()
            .await
            .unwrap();
        let anonymous = Api { http: client(server.ca_pem()), url: server.url(), token: None };
        let store = server.store();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move { server.run(s.cancelled_owned()).await.unwrap() });
        let admin = anonymous.logged_in("admin", ADMIN_PASSWORD).await;
        Running { admin, store, testbed, stop, task, _dir: dir }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }

    async fn create(&self, name: &str, driver_config: Value) -> crate::common::Answer {
        let body =
            json!({"metadata": {"name": name}, "spec": {"driver": DRIVER, "driverConfig": driver_config}});
        self.admin.post("/v3/clusters", &body).await
    }

    fn clusters(&self) -> StoreApi<Cluster> {
        StoreApi::all(self.store.clone())
    }
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every state of cluster `name` the store goes through until it is deleted, or `done` says stop.
/// Returns the states and whether the provisioner had removed it when the store deleted it.
/// The watch is opened before this returns, so nothing written afterwards is missed.
async fn follow(
    store: Arc<dyn Store>,
    name: &'static str,
    testbed: Arc<Testbed>,
    done: impl Fn(&Cluster) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<(Vec<Cluster>, Option<bool>)> {
    let mut events = StoreApi::<Cluster>::all(store).watch(WatchOptions::default()).await.unwrap();
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let deadline = tokio::time::sleep(Duration::from_secs(30));
        tokio::pin!(deadline);
        loop {
            let event = tokio::select! {
                () = &mut deadline => panic!("cluster {name}: timed out; saw {seen:#?}"),
                e = events.next() => e.expect("the watch ended").unwrap(),
            };
            match event {
                TypedEvent::Added(c) | TypedEvent::Modified(c) if c.metadata.name == name => {
                    let stop = done(&c);
                    seen.push(c);
                    if stop {
                        return (seen, None);
                    }
                }
                TypedEvent::Deleted(c) if c.metadata.name == name => {
                    let removed = testbed.with(name, |r| r.removed);
                    return (seen, Some(removed));
                }
                _ => {}
            }
        }
    })
}

fn provisioned(c: &Cluster) -> Option<ConditionStatus> {
    c.status.conditions.get_condition("Provisioned").map(|c| c.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugged_in_provisioner_validates_reports_progress_and_removes() {
    let s = Running::start().await;

    // validate → 422 naming the field, nothing stored.
    let bad = s.create("bad", json!({"nodes": 0})).await;
    crate::common::assert_status(&bad, 422, "Invalid");
    assert_eq!(bad.body["details"]["causes"][0]["field"], "spec.driverConfig.nodes", "{}", bad.body);
    assert_eq!(s.admin.get("/v3/clusters/bad").await.code, 404);
    // A driver nobody registered → 422 on spec.driver, listing what is.
    let unknown =
        s.admin.post("/v3/clusters", &json!({"metadata": {"name": "x"}, "spec": {"driver": "nope"}})).await;
    crate::common::assert_status(&unknown, 422, "Invalid");
    assert_eq!(unknown.body["details"]["causes"][0]["field"], "spec.driver", "{}", unknown.body);
    assert!(unknown.body["message"].as_str().unwrap().contains("testbed"), "{}", unknown.body);

    // A good spec: stored with its driver and the finalizer, then provisioned step by step.
    let watching =
        follow(s.store.clone(), "edge", s.testbed.clone(), |c| provisioned(c) == Some(ConditionStatus::True))
            .await;
    let created = s.create("edge", json!({"nodes": 3})).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let (seen, _) = watching.await.unwrap();
    let steps: BTreeSet<(usize, usize)> =
        seen.iter().filter_map(|c| c.status.provisioning.as_ref()).map(|p| (p.done(), p.total())).collect();
    assert_eq!(steps, BTreeSet::from([(0, 3), (1, 3), (2, 3), (3, 3)]), "every step was written");
    let in_progress: Vec<String> = seen
        .iter()
        .filter_map(|c| c.status.conditions.get_condition("Provisioned"))
        .filter(|p| p.status == ConditionStatus::Unknown && p.reason == "Provisioning")
        .map(|p| p.message.clone())
        .collect();
    assert!(in_progress.contains(&"1 of 3 nodes built".to_owned()), "{in_progress:?}");

    // What a client reads through /v3.
    let edge = s.admin.get("/v3/clusters/edge").await;
    assert_eq!(edge.code, 200, "{}", edge.body);
    let edge = edge.body;
    assert_eq!(edge["status"]["driver"], DRIVER, "{edge}");
    assert!(edge["metadata"]["finalizers"].as_array().unwrap().contains(&json!(FINALIZER)), "{edge}");
    let conditions = edge["status"]["conditions"].as_array().unwrap();
    assert!(conditions.iter().any(|c| c["type"] == "Provisioned" && c["status"] == "True"), "{edge}");
    let progress = &edge["status"]["provisioning"];
    assert_eq!(progress["message"], "provisioned", "{edge}");
    let states: Vec<&Value> = progress["steps"].as_array().unwrap().iter().map(|s| &s["state"]).collect();
    assert_eq!(states, [&json!("Done"), &json!("Done"), &json!("Done")], "{edge}");

    // The driver cannot change; a changed spec is validated.
    let mut body = json!({"metadata": {"name": "edge"}, "spec": {"driver": "imported"}});
    assert_eq!(s.admin.put("/v3/clusters/edge", &body).await.code, 422);
    body["spec"] = json!({"driverConfig": {"nodes": -1}});
    let a = s.admin.put("/v3/clusters/edge", &body).await;
    crate::common::assert_status(&a, 422, "Invalid");
    assert_eq!(a.body["details"]["causes"][0]["field"], "spec.driverConfig.nodes", "{}", a.body);

    // Deletion: `remove` runs (twice: InProgress, then Done) and only then does the cluster go.
    let watching = follow(s.store.clone(), "edge", s.testbed.clone(), |_| false).await;
    assert_eq!(s.admin.delete("/v3/clusters/edge").await.code, 200);
    let (_, removed) = watching.await.unwrap();
    assert_eq!(removed, Some(true), "the store deleted the cluster only after `remove` was done");
    assert_eq!(s.testbed.with("edge", |r| r.remove_calls), 2);

    // A cluster created without a driver is `imported`, provisioned by the built-in provisioner:
    // provisioned (its infrastructure exists), its steps waiting for the agent.
    let imported = s.admin.post("/v3/clusters", &json!({"metadata": {"name": "imp"}})).await;
    assert_eq!(imported.code, 201, "{}", imported.body);
    until("the imported cluster shows its steps", async || {
        let c = s.clusters().get("imp").await.unwrap();
        let steps: Vec<StepState> =
            c.status.provisioning.iter().flat_map(|p| &p.steps).map(|s| s.state).collect();
        c.status.driver == "imported"
            && c.metadata.finalizers.iter().any(|f| f == FINALIZER)
            && c.status.conditions.is_true("Provisioned")
            && steps == [StepState::Done, StepState::Running, StepState::Pending]
    })
    .await;

    // A cluster whose driver is not registered (written by another server, say): one clear failure.
    let mut ghost = Cluster::new("ghost", ClusterSpec::default());
    ghost.status.driver = "ghost-driver".into();
    s.clusters().create(&ghost).await.unwrap();
    until("the unknown driver is reported", async || {
        let c = s.clusters().get("ghost").await.unwrap();
        c.status.conditions.get_condition("Provisioned").is_some_and(|p| {
            p.status == ConditionStatus::False
                && p.reason == "UnknownDriver"
                && p.message.contains("\"ghost-driver\"")
        })
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_with_growing_delays() {
    let s = Running::start().await;
    let watching = follow(s.store.clone(), "flaky", s.testbed.clone(), |c| {
        provisioned(c) == Some(ConditionStatus::True)
    })
    .await;
    let created = s.create("flaky", json!({"nodes": 1, "failFirst": 3})).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let (seen, _) = watching.await.unwrap();
    assert!(
        seen.iter().any(|c| c.status.conditions.get_condition("Provisioned").is_some_and(|p| {
            p.status == ConditionStatus::Unknown
                && p.reason == "Retrying"
                && p.message == "the testbed API is unavailable"
        })),
        "the failure was shown while retrying: {seen:#?}"
    );
    let calls = s.testbed.with("flaky", |r| r.calls.clone());
    // 3 failures, one step, then done.
    assert_eq!(calls.len(), 5, "{calls:?}");
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    // Backoff from 250 ms, doubling, jittered down to half: ≥125 ms, ≥250 ms, ≥500 ms.
    assert!(gaps[0] >= Duration::from_millis(120), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(240), "{gaps:?}");
    assert!(gaps[2] >= Duration::from_millis(490) && gaps[2] > gaps[0], "{gaps:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_cluster_cancels_its_reconcile_in_flight() {
    let s = Running::start().await;
    let created = s.create("slow", json!({"nodes": 1, "hang": true})).await;
    assert_eq!(created.code, 201, "{}", created.body);
    until("the reconcile is under way", async || s.testbed.with("slow", |r| r.hanging)).await;
    assert_eq!(s.admin.delete("/v3/clusters/slow").await.code, 200);
    until("the reconcile is cancelled", async || s.testbed.with("slow", |r| r.cancelled)).await;
    until("the cluster is removed and gone", async || s.clusters().get_opt("slow").await.unwrap().is_none())
        .await;
    assert!(s.testbed.with("slow", |r| r.removed));
    assert_eq!(s.testbed.with("slow", |r| r.calls.len()), 1, "not reconciled again once deleted");
    s.stop().await;
}

#[tokio::test]
async fn two_provisioners_for_one_driver_do_not_build() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let builder = || {
        Server::builder()
            .data_dir(dir.path())
            .store(Arc::new(MemoryStore::new()))
            .https_listen("127.0.0.1:0".parse().unwrap())
            .bootstrap_password(ADMIN_PASSWORD)
    };
    let twice = builder().provisioner(Arc::new(Testbed::default())).provisioner(Arc::new(Testbed::default()));
    match twice.build().await {
        Err(ServerError::Provisioner(m)) => assert!(m.to_string().contains("\"testbed\""), "{m}"),
        other => panic!("expected a provisioner error, got {other:?}"),
    }

    /// Claims the built-in driver.
    struct FakeImported;
    #[async_trait]
    impl Provisioner for FakeImported {
        fn driver(&self) -> &str {
            "imported"
        }
        async fn reconcile(&self, _: &Cluster, _: &ProvisionContext) -> Result<Progress, ProvisionError> {
            Ok(Progress::Done)
        }
        async fn remove(&self, _: &Cluster, _: &ProvisionContext) -> Result<Progress, ProvisionError> {
            Ok(Progress::Done)
        }
    }
    match builder().provisioner(Arc::new(FakeImported)).build().await {
        Err(ServerError::Provisioner(m)) => assert!(m.to_string().contains("\"imported\""), "{m}"),
        other => panic!("expected a provisioner error, got {other:?}"),
    }
}
