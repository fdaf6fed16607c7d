//! The watcher and the reflector against real stores, conformance style: the same cases run against
//! memory, redb and (feature `etcd`) a real etcd. A wrapper store (`store::testing::CutWatches`)
//! cuts watches and refuses new ones on command (a dropped watch, an unreachable store); each
//! backend's own history limit or compaction makes the resume version Gone.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use rancher_core::controller::watcher::{Config, Error, Event};
use rancher_core::controller::{Action, Backoff, Controller, ObjectRef, reflector, watcher};
use rancher_core::model::{Cluster, ClusterSpec, Project, ProjectSpec};
use rancher_core::store::testing::CutWatches;
use rancher_core::store::{Api, MemoryStore, RedbStore, Store, StoreError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

/// A backend under test and how to make old versions unavailable to watches.
struct Backend {
    store: Arc<dyn Store>,
    /// Forgets history up to the given version (etcd: compaction; local stores: a no-op, their
    /// small history is overrun by the writes the cases make).
    compact: Box<dyn Fn(u64) -> BoxFuture<'static, ()> + Send + Sync>,
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

fn memory() -> Backend {
    Backend {
        store: Arc::new(MemoryStore::with_history(16)),
        compact: Box::new(|_| async {}.boxed()),
        _keep: Box::new(()),
    }
}

fn redb() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open_with_history(dir.path().join("store.redb"), 16).unwrap();
    Backend { store: Arc::new(store), compact: Box::new(|_| async {}.boxed()), _keep: Box::new(dir) }
}

#[cfg(feature = "etcd")]
async fn etcd() -> Backend {
    let etcd = rancher_test_support::etcd::Etcd::start(1).await;
    let store = rancher_core::store::EtcdStore::connect(&etcd.endpoints()).await.unwrap();
    let compactor = store.clone();
    Backend {
        store: Arc::new(store),
        compact: Box::new(move |rv| {
            let c = compactor.clone();
            async move { c.compact(rv).await.unwrap() }.boxed()
        }),
        _keep: Box::new(etcd),
    }
}

fn cluster(name: &str) -> Cluster {
    Cluster::new(name, ClusterSpec { description: "v0".into(), ..Default::default() })
}

type Item = Result<Event<Cluster>, Error>;

/// Runs a watcher through a reflector in a task; its items arrive on the receiver.
fn start(
    api: Api<Cluster>,
    config: Config,
) -> (reflector::Store<Cluster>, mpsc::UnboundedReceiver<Item>, CancellationToken) {
    let (reader, writer) = reflector::store();
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let feed = rancher_core::controller::reflector(writer, watcher(api, config));
    tokio::spawn(stop.clone().run_until_cancelled_owned(feed.for_each(move |item| {
        let _ = tx.send(item);
        async {}
    })));
    (reader, rx, stop)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Item>) -> Item {
    tokio::time::timeout(WAIT, rx.recv()).await.expect("a watcher event in time").expect("the watcher runs")
}

/// The next event that is not an error.
async fn next_event(rx: &mut mpsc::UnboundedReceiver<Item>) -> Event<Cluster> {
    loop {
        if let Ok(ev) = next(rx).await {
            return ev;
        }
    }
}

fn describe(ev: &Event<Cluster>) -> String {
    let name = |k: &Cluster| format!("{}={}", k.metadata.name, k.spec.description);
    match ev {
        Event::Init => "Init".into(),
        Event::InitDone => "InitDone".into(),
        Event::InitApply(k) => format!("InitApply {}", name(k)),
        Event::Apply(k) => format!("Apply {}", name(k)),
        Event::Delete(k) => format!("Delete {}", name(k)),
    }
}

fn names(reader: &reflector::Store<Cluster>) -> Vec<String> {
    let mut names: Vec<String> = reader.state().iter().map(|c| c.metadata.name.clone()).collect();
    names.sort();
    names
}

fn fast() -> Config {
    Config::default().backoff(Backoff { base: Duration::from_millis(10), max: Duration::from_millis(100) })
}

/// Lists in pages, follows changes in order; a watch cut while writes happen resumes from the last
/// version seen: every change arrives once, nothing is listed again.
async fn a_dropped_watch_resumes_from_the_last_version(backend: Backend) {
    let flaky = CutWatches::new(backend.store.clone());
    let api: Api<Cluster> = Api::all(flaky.clone());
    for n in ["a", "b", "c"] {
        api.create(&cluster(n)).await.unwrap();
    }
    let (reader, mut rx, stop) = start(api.clone(), fast().page_size(2));
    let mut listed = Vec::new();
    for _ in 0..5 {
        listed.push(describe(&next(&mut rx).await.unwrap()));
    }
    assert_eq!(listed, ["Init", "InitApply a=v0", "InitApply b=v0", "InitApply c=v0", "InitDone"]);
    assert_eq!(flaky.lists(), 2, "two pages");
    reader.wait_until_ready().await.unwrap();

    let mut a = api.get("a").await.unwrap();
    a.spec.description = "v1".into();
    let a = api.update(&a).await.unwrap();
    assert_eq!(describe(&next(&mut rx).await.unwrap()), "Apply a=v1");

    flaky.cut(true);
    let mut a2 = a.clone();
    a2.spec.description = "v2".into();
    api.update(&a2).await.unwrap();
    api.delete("b").await.unwrap();
    api.create(&cluster("d")).await.unwrap();
    // Give the watcher time to notice the cut and fail to re-watch at least once.
    match next(&mut rx).await {
        Err(Error::WatchStartFailed(StoreError::Backend(_))) => {}
        other => panic!("expected a failed watch start, got {other:?}"),
    }
    flaky.cut(false);
    let mut resumed = Vec::new();
    for _ in 0..3 {
        resumed.push(describe(&next_event(&mut rx).await));
    }
    assert_eq!(resumed, ["Apply a=v2", "Delete b=v0", "Apply d=v0"]);
    assert_eq!(flaky.lists(), 2, "resumed without listing again");
    let versions = flaky.watch_versions();
    assert_eq!(versions.last().unwrap().as_deref(), Some(a.metadata.resource_version.as_str()));
    assert_eq!(names(&reader), ["a", "c", "d"]);
    stop.cancel();
}

/// While the watch is down the resume version becomes Gone (history overrun, compaction): the
/// watcher lists again, and the reflector drops what was deleted meanwhile.
async fn a_gone_version_is_listed_again_and_vanished_objects_leave_the_cache(backend: Backend) {
    let flaky = CutWatches::new(backend.store.clone());
    let api: Api<Cluster> = Api::all(flaky.clone());
    for n in ["a", "b"] {
        api.create(&cluster(n)).await.unwrap();
    }
    flaky.cut(true);
    let (reader, mut rx, stop) = start(api.clone(), fast());
    let listed: Vec<String> =
        [next(&mut rx).await, next(&mut rx).await, next(&mut rx).await, next(&mut rx).await]
            .into_iter()
            .map(|r| describe(&r.unwrap()))
            .collect();
    assert_eq!(listed, ["Init", "InitApply a=v0", "InitApply b=v0", "InitDone"]);
    assert!(matches!(next(&mut rx).await, Err(Error::WatchStartFailed(_))));
    assert_eq!(names(&reader), ["a", "b"]);

    api.delete("a").await.unwrap();
    api.create(&cluster("c")).await.unwrap();
    let mut b = api.get("b").await.unwrap();
    for i in 1..=40 {
        b.spec.description = format!("v{i}");
        b = api.update(&b).await.unwrap();
    }
    (backend.compact)(b.metadata.resource_version.parse().unwrap()).await;
    flaky.cut(false);

    let mut relisted = Vec::new();
    for _ in 0..4 {
        relisted.push(describe(&next_event(&mut rx).await));
    }
    assert_eq!(relisted, ["Init", "InitApply b=v40", "InitApply c=v0", "InitDone"]);
    assert_eq!(names(&reader), ["b", "c"], "a, deleted while the watch was down, left the cache");
    assert_eq!(reader.get(&ObjectRef::new("b")).unwrap().spec.description, "v40");
    // And it follows from the new list.
    api.create(&cluster("d")).await.unwrap();
    assert_eq!(describe(&next_event(&mut rx).await), "Apply d=v0");
    assert_eq!(names(&reader), ["b", "c", "d"]);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_dropped_watch_resumes() {
    a_dropped_watch_resumes_from_the_last_version(memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_gone_relists() {
    a_gone_version_is_listed_again_and_vanished_objects_leave_the_cache(memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_dropped_watch_resumes() {
    a_dropped_watch_resumes_from_the_last_version(redb()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_gone_relists() {
    a_gone_version_is_listed_again_and_vanished_objects_leave_the_cache(redb()).await;
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_dropped_watch_resumes() {
    a_dropped_watch_resumes_from_the_last_version(etcd().await).await;
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_compaction_relists() {
    a_gone_version_is_listed_again_and_vanished_objects_leave_the_cache(etcd().await).await;
}

/// Failures back off exponentially (jittered), not at a fixed pace.
#[tokio::test(start_paused = true)]
async fn failed_watch_starts_back_off_exponentially() {
    let flaky = CutWatches::new(Arc::new(MemoryStore::new()));
    flaky.cut(true);
    let api: Api<Cluster> = Api::all(flaky.clone());
    let config =
        Config::default().backoff(Backoff { base: Duration::from_secs(1), max: Duration::from_secs(8) });
    let mut events = std::pin::pin!(watcher(api, config));
    assert_eq!(events.next().await.unwrap().unwrap(), Event::Init);
    assert_eq!(events.next().await.unwrap().unwrap(), Event::InitDone);
    let mut times = Vec::new();
    for _ in 0..6 {
        assert!(matches!(events.next().await.unwrap(), Err(Error::WatchStartFailed(_))));
        times.push(tokio::time::Instant::now());
    }
    for (i, pair) in times.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let full = Duration::from_secs(1 << i.min(3));
        assert!(gap >= full / 2 && gap <= full, "retry {i}: {gap:?} vs {full:?}");
    }
}

/// `Controller::watches`: a change to a secondary object reconciles the primary it maps to; an error
/// policy decides the retry after a failed reconcile.
#[tokio::test(start_paused = true)]
async fn secondary_changes_reconcile_the_mapped_primary_and_the_error_policy_sets_the_retry() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clusters: Api<Cluster> = Api::all(store.clone());
    clusters.create(&cluster("c1")).await.unwrap();
    clusters.create(&cluster("c2")).await.unwrap();
    let calls: Arc<Mutex<Vec<(String, tokio::time::Instant)>>> = Arc::default();
    let reconcile = {
        let calls = calls.clone();
        move |c: Arc<Cluster>, _: Arc<()>| {
            calls.lock().unwrap().push((c.metadata.name.clone(), tokio::time::Instant::now()));
            let r = if c.metadata.name == "c2" { Err("c2 always fails") } else { Ok(Action::await_change()) };
            futures::future::ready(r)
        }
    };
    let policy = |_: Arc<Cluster>, _: &&str, _: Arc<()>| Action::requeue(Duration::from_secs(7));
    let stop = CancellationToken::new();
    let controller = Controller::new(clusters.clone())
        .resync(None)
        .watches(Api::<Project>::all(store.clone()), |p: &Project| {
            p.metadata.namespace.iter().map(|ns| ObjectRef::new(ns)).collect::<Vec<_>>()
        });
    let run = tokio::spawn(controller.run_with_error_policy(reconcile, policy, Arc::new(()), stop.clone()));
    let count = |name: &str| calls.lock().unwrap().iter().filter(|c| c.0 == name).count();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c1_before = count("c1");
    assert!(c1_before >= 1);
    let project = Project::new("p-one", ProjectSpec { cluster_name: "c1".into(), ..Default::default() });
    Api::<Project>::namespaced(store.clone(), "c1").create(&project).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(count("c1") > c1_before, "the project's cluster was reconciled");

    // c2 fails every time: retried every 7 s, as the policy says (not the default backoff).
    let t0 = calls.lock().unwrap().iter().find(|c| c.0 == "c2").unwrap().1;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let c2: Vec<u64> =
        calls.lock().unwrap().iter().filter(|c| c.0 == "c2").map(|c| (c.1 - t0).as_secs()).collect();
    assert_eq!(c2, [0, 7, 14, 21, 28]);
    stop.cancel();
    run.await.unwrap();
}
