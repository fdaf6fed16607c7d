//! The controller runtime against a real store: queueing, per-key exclusion, retries, resync,
//! re-listing after Gone, graceful stop. Time is paused where delays matter.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use rancher_core::controller::{Action, Backoff, Controller};
use rancher_core::model::{Cluster, ClusterSpec};
use rancher_core::store::{
    Api, ListOptions, MemoryStore, ObjectList, Store, StoreError, StoreLayer, StoreResult, WatchOptions,
    WatchStream,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

type Calls = Arc<Mutex<Vec<(String, String, Instant)>>>;

fn cluster(name: &str) -> Cluster {
    Cluster::new(name, ClusterSpec { description: "v0".into(), ..Default::default() })
}

/// Polls (advancing paused time) until `f` holds.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn recorder(
    calls: &Calls,
) -> impl Fn(Arc<Cluster>, Arc<()>) -> futures::future::Ready<Result<Action, String>> + use<> {
    let calls = calls.clone();
    move |c: Arc<Cluster>, _| {
        calls.lock().unwrap().push((c.metadata.name.clone(), c.spec.description.clone(), Instant::now()));
        futures::future::ready(Ok(Action::await_change()))
    }
}

#[tokio::test(start_paused = true)]
async fn reconciles_existing_and_new_objects_and_changes() {
    let store = Arc::new(MemoryStore::new());
    let api: Api<Cluster> = Api::all(store.clone());
    api.create(&cluster("before")).await.unwrap();
    let calls: Calls = Default::default();
    let stop = CancellationToken::new();
    let run = tokio::spawn(Controller::new(api.clone()).run(recorder(&calls), Arc::new(()), stop.clone()));
    let seen = |name: &str, desc: &str| calls.lock().unwrap().iter().any(|c| c.0 == name && c.1 == desc);
    eventually("the existing object", || seen("before", "v0")).await;
    let mut after = api.create(&cluster("after")).await.unwrap();
    eventually("the new object", || seen("after", "v0")).await;
    after.spec.description = "v1".into();
    api.update(&after).await.unwrap();
    eventually("the change", || seen("after", "v1")).await;
    stop.cancel();
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn one_reconcile_per_key_at_a_time_and_no_change_is_missed() {
    let api: Api<Cluster> = Api::all(Arc::new(MemoryStore::new()));
    let in_flight: Arc<Mutex<HashSet<String>>> = Default::default();
    let max_parallel = Arc::new(AtomicUsize::new(0));
    let last_seen: Arc<Mutex<HashMap<String, String>>> = Default::default();
    let reconcile = {
        let (in_flight, max_parallel, last_seen) =
            (in_flight.clone(), max_parallel.clone(), last_seen.clone());
        move |c: Arc<Cluster>, _: Arc<()>| {
            let (in_flight, max_parallel, last_seen) =
                (in_flight.clone(), max_parallel.clone(), last_seen.clone());
            async move {
                let name = c.metadata.name.clone();
                {
                    let mut f = in_flight.lock().unwrap();
                    assert!(f.insert(name.clone()), "two reconciles of {name} at once");
                    max_parallel.fetch_max(f.len(), Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                in_flight.lock().unwrap().remove(&name);
                last_seen.lock().unwrap().insert(name, c.spec.description.clone());
                Ok::<_, String>(Action::await_change())
            }
        }
    };
    let stop = CancellationToken::new();
    let run =
        tokio::spawn(Controller::new(api.clone()).workers(4).run(reconcile, Arc::new(()), stop.clone()));
    let names = ["a", "b", "c"];
    let mut objects = Vec::new();
    for n in names {
        objects.push(api.create(&cluster(n)).await.unwrap());
    }
    for round in 1..=20 {
        for o in objects.iter_mut() {
            o.spec.description = format!("v{round}");
            *o = api.update(o).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    eventually("every key reconciled at its last version", || {
        let seen = last_seen.lock().unwrap();
        names.iter().all(|n| seen.get(*n).map(String::as_str) == Some("v20"))
    })
    .await;
    assert!(max_parallel.load(Ordering::SeqCst) > 1, "different keys run in parallel");
    stop.cancel();
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failures_are_retried_with_growing_capped_jittered_delays() {
    let api: Api<Cluster> = Api::all(Arc::new(MemoryStore::new()));
    let times: Arc<Mutex<Vec<Instant>>> = Default::default();
    let reconcile = {
        let times = times.clone();
        move |_: Arc<Cluster>, _: Arc<()>| {
            let mut t = times.lock().unwrap();
            t.push(Instant::now());
            let r = if t.len() <= 7 { Err("not yet".to_owned()) } else { Ok(Action::await_change()) };
            futures::future::ready(r)
        }
    };
    let backoff = Backoff { base: Duration::from_secs(1), max: Duration::from_secs(8) };
    let stop = CancellationToken::new();
    let controller = Controller::new(api.clone()).backoff(backoff).resync(None);
    let run = tokio::spawn(controller.run(reconcile, Arc::new(()), stop.clone()));
    api.create(&cluster("flaky")).await.unwrap();
    eventually("eight attempts", || times.lock().unwrap().len() >= 8).await;
    let t = times.lock().unwrap().clone();
    for (i, pair) in t.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let full = Duration::from_secs(1 << i.min(3));
        assert!(
            gap >= full / 2 && gap <= full + Duration::from_millis(100),
            "retry {i}: {gap:?} vs {full:?}"
        );
    }
    // Success ends the retries.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(times.lock().unwrap().len(), 8);
    stop.cancel();
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn requeue_after_and_resync_reconcile_again_without_a_change() {
    let api: Api<Cluster> = Api::all(Arc::new(MemoryStore::new()));
    let calls: Arc<Mutex<Vec<(String, Instant)>>> = Default::default();
    let reconcile = {
        let calls = calls.clone();
        move |c: Arc<Cluster>, _: Arc<()>| {
            calls.lock().unwrap().push((c.metadata.name.clone(), Instant::now()));
            let action = if c.metadata.name == "requeued" {
                Action::requeue(Duration::from_secs(30))
            } else {
                Action::await_change()
            };
            futures::future::ready(Ok::<_, String>(action))
        }
    };
    api.create(&cluster("requeued")).await.unwrap();
    api.create(&cluster("resynced")).await.unwrap();
    let start = Instant::now();
    let stop = CancellationToken::new();
    let controller = Controller::new(api.clone()).resync(Some(Duration::from_secs(100)));
    let run = tokio::spawn(controller.run(reconcile, Arc::new(()), stop.clone()));
    tokio::time::sleep(Duration::from_secs(250)).await;
    stop.cancel();
    run.await.unwrap();
    let calls = calls.lock().unwrap();
    let at = |name: &str| -> Vec<u64> {
        calls.iter().filter(|c| c.0 == name).map(|c| (c.1 - start).as_secs()).collect()
    };
    assert_eq!(at("resynced"), [0, 100, 200], "resync every 100 s");
    let requeued = at("requeued");
    // Every 30 s, plus the resyncs; never less than 30 s apart except for a resync.
    assert!(requeued.len() >= 8, "{requeued:?}");
    for t in [0, 30, 60, 90] {
        assert!(requeued.contains(&t), "{t} in {requeued:?}");
    }
}

/// Fails the first watch with Gone; counts lists.
struct GoneOnce {
    inner: MemoryStore,
    gone_sent: AtomicBool,
    lists: AtomicUsize,
}

#[async_trait]
impl StoreLayer for GoneOnce {
    fn inner(&self) -> &dyn Store {
        &self.inner
    }
    async fn list(&self, r: &str, o: &ListOptions) -> StoreResult<ObjectList> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list(r, o).await
    }
    async fn watch(&self, r: &str, o: &WatchOptions) -> StoreResult<WatchStream> {
        if !self.gone_sent.swap(true, Ordering::SeqCst) {
            let gone = StoreError::Gone { requested: "1".into(), oldest: "2".into() };
            return Ok(futures::stream::iter([Err(gone)]).boxed());
        }
        self.inner.watch(r, o).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_watch_that_ends_with_gone_is_followed_by_a_fresh_list() {
    let store = Arc::new(GoneOnce { inner: MemoryStore::new(), gone_sent: false.into(), lists: 0.into() });
    let api: Api<Cluster> = Api::all(store.clone());
    let calls: Calls = Default::default();
    let stop = CancellationToken::new();
    let run = tokio::spawn(Controller::new(api.clone()).resync(None).run(
        recorder(&calls),
        Arc::new(()),
        stop.clone(),
    ));
    api.create(&cluster("late")).await.unwrap();
    eventually("the object created around the Gone", || calls.lock().unwrap().iter().any(|c| c.0 == "late"))
        .await;
    assert!(store.lists.load(Ordering::SeqCst) >= 2, "listed again after Gone");
    api.create(&cluster("later")).await.unwrap();
    eventually("the watch resumed", || calls.lock().unwrap().iter().any(|c| c.0 == "later")).await;
    stop.cancel();
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn stop_waits_for_reconciles_in_flight() {
    let api: Api<Cluster> = Api::all(Arc::new(MemoryStore::new()));
    let started = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let reconcile = {
        let (started, finished) = (started.clone(), finished.clone());
        move |_: Arc<Cluster>, _: Arc<()>| {
            let (started, finished) = (started.clone(), finished.clone());
            async move {
                started.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(5)).await;
                finished.store(true, Ordering::SeqCst);
                Ok::<_, String>(Action::await_change())
            }
        }
    };
    api.create(&cluster("slow")).await.unwrap();
    let stop = CancellationToken::new();
    let run = tokio::spawn(Controller::new(api).run(reconcile, Arc::new(()), stop.clone()));
    eventually("the reconcile to start", || started.load(Ordering::SeqCst)).await;
    assert!(!finished.load(Ordering::SeqCst));
    stop.cancel();
    run.await.unwrap();
    assert!(finished.load(Ordering::SeqCst), "run returned before the reconcile finished");
}
