use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use rancher_core::store::{MemoryStore, StoreLayer, StoreResult};
use serde_json::Value;

use super::*;

const LEASE: Duration = Duration::from_secs(LEASE_SECONDS as u64);

/// A store whose writes can be made slow, or refused (etcd without quorum); reads and watches go on.
#[derive(Default)]
struct Laggard {
    inner: MemoryStore,
    /// How long each write takes, in milliseconds.
    delay_ms: AtomicU64,
    refuse: AtomicBool,
}

impl Laggard {
    async fn write(&self) -> StoreResult<()> {
        tokio::time::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))).await;
        if self.refuse.load(Ordering::SeqCst) {
            return Err(StoreError::backend(std::io::Error::other("no quorum (test)")));
        }
        Ok(())
    }
}

#[async_trait]
impl StoreLayer for Laggard {
    fn inner(&self) -> &dyn Store {
        &self.inner
    }
    async fn create(&self, r: &str, o: Value) -> StoreResult<Value> {
        self.write().await?;
        self.inner.create(r, o).await
    }
    async fn update(&self, r: &str, o: Value) -> StoreResult<Value> {
        self.write().await?;
        self.inner.update(r, o).await
    }
}

/// A wall clock that moves with tokio's paused time.
fn paused_clock() -> Timestamp {
    static START: std::sync::OnceLock<(Instant, Timestamp)> = std::sync::OnceLock::new();
    let (instant, wall) = *START.get_or_init(|| (Instant::now(), Timestamp::now()));
    wall + instant.elapsed()
}

/// Starts replica `name` on `store`, its heartbeat running until `stop`.
fn start(
    store: &Arc<dyn Store>,
    name: &str,
    stop: &CancellationToken,
) -> (Replicas, tokio::task::JoinHandle<()>) {
    let me = Replica { name: name.to_owned(), url: format!("https://{name}:8443") };
    let (view, heartbeat) = Replicas::with_clock(store.clone(), me, Arc::new(Metrics::new()), paused_clock);
    (view, tokio::spawn(heartbeat.run(stop.clone())))
}

fn replicas(names: &[&str]) -> Vec<Replica> {
    names.iter().map(|n| Replica { name: (*n).to_owned(), url: format!("https://{n}:8443") }).collect()
}

fn owners(clusters: &[String], live: &[Replica]) -> Vec<String> {
    clusters.iter().map(|c| rendezvous(c, live).unwrap().name.clone()).collect()
}

#[test]
fn a_replica_joining_or_leaving_moves_only_its_share() {
    let clusters: Vec<String> = (0..3000).map(|i| format!("c-{i:05}")).collect();
    let three = replicas(&["a", "b", "c"]);
    let before = owners(&clusters, &three);
    for name in ["a", "b", "c"] {
        let share = before.iter().filter(|o| *o == name).count();
        assert!((800..1200).contains(&share), "{name} owns {share} of 3000");
    }
    assert_eq!(
        before,
        owners(&clusters, &replicas(&["c", "a", "b"])),
        "the order of the set does not matter"
    );

    // d joins: what moves, moves to d, about a quarter.
    let four = replicas(&["a", "b", "c", "d"]);
    let after = owners(&clusters, &four);
    let moved: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b != a).collect();
    assert!(moved.iter().all(|(_, a)| *a == "d"));
    assert!((600..900).contains(&moved.len()), "{} moved", moved.len());

    // b leaves: only b's clusters move.
    let without_b = replicas(&["a", "c"]);
    let after = owners(&clusters, &without_b);
    for ((b, a), c) in before.iter().zip(&after).zip(&clusters) {
        if b == "b" {
            assert_ne!(a, "b", "{c}");
        } else {
            assert_eq!(a, b, "{c} stays where it was");
        }
    }
    assert!(rendezvous("c-1", &[]).is_none());
}

#[test]
fn a_fixed_view_names_the_owner() {
    let view = Replicas::fixed("a", replicas(&["a", "b"]));
    let clusters: Vec<String> = (0..100).map(|i| format!("c-{i}")).collect();
    let mine = clusters.iter().filter(|c| view.owner(c) == Owner::Me).count();
    assert!((20..80).contains(&mine), "{mine}");
    let peer = clusters.iter().find(|c| view.owner(c) != Owner::Me).unwrap();
    assert_eq!(view.owner(peer), Owner::Peer(replicas(&["b"]).remove(0)));
    assert_eq!(Replicas::fixed("a", vec![]).owner("c-1"), Owner::Me, "on its own, a server owns all");
}

async fn wait_for(view: &mut Replicas, names: &[&str]) {
    let want: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let live: Vec<String> = view.live().iter().map(|r| r.name.clone()).collect();
            if live == want {
                return;
            }
            view.changed().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} never saw {want:?}, but {:?}", view.me(), view.live()));
}

#[tokio::test(start_paused = true)]
async fn replicas_that_start_together_count_in_at_once_and_leave_when_stopped_or_silent() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // A lease its server left behind long ago: read once, never renewed, never live.
    let api = Api::<Lease>::all(store.clone());
    let mut stale = Lease::new(
        "replica-old",
        LeaseSpec { holder_identity: "old".into(), lease_duration_seconds: 15, ..Default::default() },
    );
    stale.metadata.annotations.insert(PEER_URL_ANNOTATION.into(), "https://old:8443".into());
    api.create(&stale).await.unwrap();

    let (a_stop, b_stop) = (CancellationToken::new(), CancellationToken::new());
    let (mut a, a_task) = start(&store, "a", &a_stop);
    let (mut b, b_task) = start(&store, "b", &b_stop);
    let started = Instant::now();
    wait_for(&mut a, &["a", "b"]).await;
    wait_for(&mut b, &["a", "b"]).await;
    // Founders of a fleet that starts together: none was serving before them, so none waits.
    assert!(started.elapsed() < JOIN, "together, at once: {:?}", started.elapsed());
    let clusters: Vec<String> = (0..50).map(|i| format!("c-{i}")).collect();
    for c in &clusters {
        let (oa, ob) = (a.owner(c), b.owner(c));
        assert!(
            matches!((&oa, &ob), (Owner::Me, Owner::Peer(p)) if p.name == "a")
                || matches!((&oa, &ob), (Owner::Peer(p), Owner::Me) if p.name == "b"),
            "{c}: {oa:?} {ob:?}"
        );
    }

    // b stops: it deletes its lease, and a owns everything at once.
    b_stop.cancel();
    b_task.await.unwrap();
    assert!(api.get_opt("replica-b").await.unwrap().is_none());
    let stopped = Instant::now();
    wait_for(&mut a, &["a"]).await;
    assert!(stopped.elapsed() <= Duration::from_secs(2), "{:?}", stopped.elapsed());
    assert!(clusters.iter().all(|c| a.owner(c) == Owner::Me));

    // c joins and then dies without a word: a drops it once its lease has run out, at the first of
    // its own renewals begun after that.
    let (_c, c_task) = start(&store, "c", &CancellationToken::new());
    wait_for(&mut a, &["a", "c"]).await;
    c_task.abort();
    let died = Instant::now();
    wait_for(&mut a, &["a"]).await;
    let gone = died.elapsed();
    assert!(
        gone >= Duration::from_secs(10) && gone <= LEASE + HEARTBEAT + Duration::from_secs(1),
        "{gone:?}"
    );
    a_stop.cancel();
    a_task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_leaves_owns_nothing_and_the_others_take_its_clusters_at_once() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let stop = CancellationToken::new();
    let (mut a, a_task) = start(&store, "a", &stop);
    let (mut b, b_task) = start(&store, "b", &stop);
    wait_for(&mut a, &["a", "b"]).await;
    wait_for(&mut b, &["a", "b"]).await;
    let clusters: Vec<String> = (0..50).map(|i| format!("c-{i}")).collect();
    let bs: Vec<&String> = clusters.iter().filter(|c| b.owner(c) == Owner::Me).collect();
    assert!(!bs.is_empty());
    tokio::time::sleep(SETTLING).await;
    assert!(!a.settling() && !b.settling(), "nothing moved for {SETTLING:?}");

    b.leave();
    assert!(b.leaving());
    assert!(
        clusters.iter().all(|c| matches!(b.owner(c), Owner::Peer(ref p) if p.name == "a")),
        "b gives every cluster to a the moment it leaves"
    );
    let left = Instant::now();
    wait_for(&mut a, &["a"]).await;
    assert!(left.elapsed() <= Duration::from_secs(2), "{:?}", left.elapsed());
    assert!(bs.iter().all(|c| a.owner(c) == Owner::Me), "a owns b's clusters");
    assert!(a.settling(), "b's clusters are on their way to a");
    assert!(!a.leaving());

    // A replica that leaves with nobody else live still serves what it can.
    a.leave();
    assert!(clusters.iter().all(|c| a.owner(c) == Owner::Me));
    stop.cancel();
    a_task.await.unwrap();
    b_task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_server_that_starts_forwards_to_the_replicas_already_serving_until_it_has_joined() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let stop = CancellationToken::new();
    let (mut a, _a) = start(&store, "a", &stop);
    let (mut b, _b) = start(&store, "b", &stop);
    wait_for(&mut a, &["a", "b"]).await;
    wait_for(&mut b, &["a", "b"]).await;
    // a and b have been serving for a while: c is no founder.
    tokio::time::sleep(JOIN).await;

    let (mut c, _c) = start(&store, "c", &stop);
    let started = Instant::now();
    wait_for(&mut c, &["a", "b"]).await;
    assert!(started.elapsed() <= Duration::from_secs(1), "a and b at once: {:?}", started.elapsed());
    let clusters: Vec<String> = (0..50).map(|i| format!("c-{i}")).collect();
    assert!(
        clusters.iter().all(|x| matches!(c.owner(x), Owner::Peer(_))),
        "c owns nothing before it has joined"
    );
    for view in [&mut a, &mut b, &mut c] {
        wait_for(view, &["a", "b", "c"]).await;
    }
    let joined = started.elapsed();
    assert!(joined >= JOIN && joined <= JOIN + HEARTBEAT + Duration::from_secs(1), "{joined:?}");
    assert!(clusters.iter().any(|x| c.owner(x) == Owner::Me));
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_suspected_replica_owns_nothing_until_it_renews_its_lease() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let stop = CancellationToken::new();
    let (mut a, _a) = start(&store, "a", &stop);
    let (mut b, b_task) = start(&store, "b", &stop);
    wait_for(&mut a, &["a", "b"]).await;
    wait_for(&mut b, &["a", "b"]).await;
    let clusters: Vec<String> = (0..50).map(|i| format!("c-{i}")).collect();
    assert!(clusters.iter().any(|c| a.owner(c) != Owner::Me));

    // b is alive, but a could not connect to it: a owns everything at once, and b comes back with
    // its next renewal.
    a.suspect("b");
    a.suspect("a");
    assert!(clusters.iter().all(|c| a.owner(c) == Owner::Me), "a never suspects itself");
    assert!(a.settling());
    wait_for(&mut a, &["a"]).await;
    let suspected = Instant::now();
    wait_for(&mut a, &["a", "b"]).await;
    assert!(suspected.elapsed() <= HEARTBEAT + Duration::from_secs(1), "{:?}", suspected.elapsed());
    assert!(clusters.iter().any(|c| a.owner(c) != Owner::Me));

    // b dies: suspected at the first refused connection, it stays out (it never renews), and its
    // lease runs out in the meantime.
    b_task.abort();
    a.suspect("b");
    assert!(clusters.iter().all(|c| a.owner(c) == Owner::Me));
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(a.live().iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["a"]);
    stop.cancel();
}

/// Asserts that no view's live set changes for `spell`.
async fn steady(views: &[&Replicas], spell: Duration, why: &str) {
    let mut following: Vec<Replicas> = views.iter().map(|v| v.follow()).collect();
    let changes = futures::future::select_all(following.iter_mut().map(|v| Box::pin(v.changed())));
    if tokio::time::timeout(spell, changes).await.is_ok() {
        let live: Vec<_> = views.iter().map(|v| (v.me().to_owned(), v.live())).collect();
        panic!("the live set changed while {why}: {live:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_store_or_one_without_quorum_moves_no_cluster_and_a_silent_replica_still_leaves() {
    let laggard = Arc::new(Laggard::default());
    let store: Arc<dyn Store> = laggard.clone();
    let stop = CancellationToken::new();
    let (mut a, _a) = start(&store, "a", &stop);
    let (mut b, b_task) = start(&store, "b", &stop);
    wait_for(&mut a, &["a", "b"]).await;
    wait_for(&mut b, &["a", "b"]).await;

    // Every write takes longer than a lease lasts: renewals reach everyone late, but no later for
    // one replica than for the other, and nobody is silent in the store's time.
    laggard.delay_ms.store(20_000, Ordering::SeqCst);
    steady(&[&a, &b], Duration::from_secs(120), "every write took 20 s").await;
    laggard.delay_ms.store(0, Ordering::SeqCst);

    // Nothing is written for a minute: the live set stays as it was.
    laggard.refuse.store(true, Ordering::SeqCst);
    steady(&[&a, &b], Duration::from_secs(60), "the store refused every write").await;
    laggard.refuse.store(false, Ordering::SeqCst);
    steady(&[&a, &b], Duration::from_secs(30), "the store came back").await;

    // b dies while a's renewals go through: a drops it within a lease and a heartbeat.
    b_task.abort();
    let died = Instant::now();
    wait_for(&mut a, &["a"]).await;
    let gone = died.elapsed();
    assert!(gone >= JOIN && gone <= LEASE + HEARTBEAT + Duration::from_secs(1), "{gone:?}");
    stop.cancel();
}
