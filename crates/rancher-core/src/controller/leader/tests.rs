use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use serde_json::Value;

use super::*;
use crate::store::{
    Deleted, ListOptions, MemoryStore, ObjectList, Preconditions, StoreLayer, WatchOptions, WatchStream,
};

/// A candidate's view of a shared store that can be cut off, as a partitioned server's would be.
struct Reachable {
    inner: Arc<MemoryStore>,
    cut: AtomicBool,
}

impl Reachable {
    fn check(&self) -> StoreResult<()> {
        if self.cut.load(Ordering::SeqCst) {
            return Err(StoreError::backend(std::io::Error::other("unreachable (test)")));
        }
        Ok(())
    }
}

#[async_trait]
impl StoreLayer for Reachable {
    fn inner(&self) -> &dyn Store {
        &*self.inner
    }
    async fn create(&self, r: &str, o: Value) -> StoreResult<Value> {
        self.check()?;
        self.inner.create(r, o).await
    }
    async fn get(&self, r: &str, ns: Option<&str>, n: &str) -> StoreResult<Value> {
        self.check()?;
        self.inner.get(r, ns, n).await
    }
    async fn update(&self, r: &str, o: Value) -> StoreResult<Value> {
        self.check()?;
        self.inner.update(r, o).await
    }
    async fn delete(&self, r: &str, ns: Option<&str>, n: &str, p: Preconditions) -> StoreResult<Deleted> {
        self.check()?;
        self.inner.delete(r, ns, n, p).await
    }
    async fn list(&self, r: &str, o: &ListOptions) -> StoreResult<ObjectList> {
        self.check()?;
        self.inner.list(r, o).await
    }
    async fn watch(&self, r: &str, o: &WatchOptions) -> StoreResult<WatchStream> {
        self.check()?;
        self.inner.watch(r, o).await
    }
    /// A view that can be cut off does not promise that a write is already on its watches.
    fn watch_is_immediate(&self) -> bool {
        false
    }
}

type Lead = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// One term of leadership: who, from when, until when (by the test's clock).
type Term = (String, Instant, Option<Instant>);

/// Who led when.
#[derive(Clone, Default)]
struct Terms(Arc<Mutex<Vec<Term>>>);

impl Terms {
    fn lead(&self, who: &str) -> impl FnMut(CancellationToken) -> Lead + use<> {
        let (terms, who) = (self.clone(), who.to_owned());
        move |term| {
            let terms = terms.clone();
            let who = who.clone();
            Box::pin(async move {
                let index = {
                    let mut t = terms.0.lock().unwrap();
                    t.push((who, Instant::now(), None));
                    t.len() - 1
                };
                term.cancelled().await;
                terms.0.lock().unwrap()[index].2 = Some(Instant::now());
            })
        }
    }

    fn all(&self) -> Vec<Term> {
        self.0.lock().unwrap().clone()
    }

    /// No two terms overlap.
    fn assert_one_at_a_time(&self) {
        let terms = self.all();
        for w in terms.windows(2) {
            let ended = w[0].2.expect("a term ended before the next began");
            assert!(ended <= w[1].1, "{} led until {:?}, {} from {:?}", w[0].0, ended, w[1].0, w[1].1);
        }
    }
}

struct Candidate {
    view: Arc<Reachable>,
    stop: CancellationToken,
    running: tokio::task::JoinHandle<()>,
    leader: watch::Receiver<Option<String>>,
}

fn stand(store: &Arc<MemoryStore>, who: &str, terms: &Terms) -> Candidate {
    let view = Arc::new(Reachable { inner: store.clone(), cut: AtomicBool::new(false) });
    let election = LeaderElection::new(view.clone(), "controllers", who);
    let leader = election.leader();
    let stop = CancellationToken::new();
    let running = tokio::spawn(election.run(stop.clone(), terms.lead(who)));
    Candidate { view, stop, running, leader }
}

async fn lease(store: &Arc<MemoryStore>) -> Lease {
    Api::<Lease>::all(store.clone()).get("controllers").await.unwrap()
}

async fn settle(d: Duration) {
    tokio::time::sleep(d).await;
}

#[tokio::test(start_paused = true)]
async fn one_candidate_leads_and_on_stop_another_takes_over_without_waiting_for_the_lease_to_run_out() {
    let store = Arc::new(MemoryStore::new());
    let terms = Terms::default();
    let candidates: Vec<Candidate> = ["a", "b", "c"].iter().map(|w| stand(&store, w, &terms)).collect();
    settle(Duration::from_secs(30)).await;

    let leading = terms.all();
    assert_eq!(leading.len(), 1, "one leader, who keeps leading while it renews: {:?}", leading.len());
    let first = leading[0].0.clone();
    assert_eq!(lease(&store).await.spec.holder_identity, first);
    for c in &candidates {
        assert_eq!(c.leader.borrow().as_deref(), Some(first.as_str()), "every candidate knows the leader");
    }

    // Stop the leader: it releases the lease.
    let mut rest = candidates;
    let leader = rest.remove(["a", "b", "c"].iter().position(|w| *w == first).unwrap());
    let stopped_at = Instant::now();
    leader.stop.cancel();
    leader.running.await.unwrap();
    assert_eq!(lease(&store).await.spec.holder_identity, "", "released");
    settle(Duration::from_secs(5)).await;

    let terms_now = terms.all();
    assert_eq!(terms_now.len(), 2, "another candidate leads");
    let (second, began, _) = &terms_now[1];
    assert_ne!(*second, first);
    assert!(
        *began - stopped_at <= Duration::from_secs(3),
        "taken over within a retry period, not the lease's 15 s: {:?}",
        *began - stopped_at
    );
    let held = lease(&store).await;
    assert_eq!(held.spec.holder_identity, *second);
    assert_eq!(held.spec.lease_transitions, 1);
    terms.assert_one_at_a_time();
    for c in rest {
        c.stop.cancel();
        c.running.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_leader_cut_off_from_the_store_steps_down_before_another_takes_over() {
    let store = Arc::new(MemoryStore::new());
    let terms = Terms::default();
    let a = stand(&store, "a", &terms);
    settle(Duration::from_secs(3)).await;
    let b = stand(&store, "b", &terms);
    settle(Duration::from_secs(10)).await;
    assert_eq!(terms.all().len(), 1);
    assert_eq!(terms.all()[0].0, "a");

    // a's store goes away: it cannot renew, so it stops leading after the renew deadline; b waits
    // for the lease to run out by its own clock, then takes it.
    let cut_at = Instant::now();
    a.view.cut.store(true, Ordering::SeqCst);
    settle(Duration::from_secs(30)).await;
    let t = terms.all();
    assert_eq!(t.len(), 2, "b leads");
    assert_eq!(t[1].0, "b");
    let a_ended = t[0].2.expect("a stepped down");
    assert!(a_ended - cut_at <= Duration::from_secs(10) + Duration::from_secs(2), "{:?}", a_ended - cut_at);
    assert!(t[1].1 - cut_at >= Duration::from_secs(13), "b waited for the lease: {:?}", t[1].1 - cut_at);
    terms.assert_one_at_a_time();
    assert_eq!(*a.leader.borrow(), None, "a no longer thinks anyone it knows leads");

    // a comes back and stands again without taking the lease from b.
    a.view.cut.store(false, Ordering::SeqCst);
    settle(Duration::from_secs(30)).await;
    assert_eq!(terms.all().len(), 2);
    assert_eq!(lease(&store).await.spec.holder_identity, "b");
    assert_eq!(a.leader.borrow().as_deref(), Some("b"));
    for c in [a, b] {
        c.stop.cancel();
        c.running.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_lease_whose_holder_went_silent_is_taken_only_after_its_duration() {
    let store = Arc::new(MemoryStore::new());
    // A holder that crashed a moment ago (no release).
    let api = Api::<Lease>::all(store.clone() as Arc<dyn Store>);
    let crashed = Lease::new(
        "controllers",
        LeaseSpec {
            holder_identity: "crashed".into(),
            lease_duration_seconds: 15,
            acquire_time: Some(Timestamp::now()),
            renew_time: Some(Timestamp::now()),
            lease_transitions: 4,
        },
    );
    api.create(&crashed).await.unwrap();
    let terms = Terms::default();
    let started = Instant::now();
    let b = stand(&store, "b", &terms);
    settle(Duration::from_secs(10)).await;
    assert!(terms.all().is_empty(), "the lease has not run out");
    assert_eq!(b.leader.borrow().as_deref(), Some("crashed"));
    settle(Duration::from_secs(10)).await;
    let t = terms.all();
    assert_eq!(t.len(), 1);
    assert!(t[0].1 - started >= Duration::from_secs(15));
    let held = lease(&store).await;
    assert_eq!((held.spec.holder_identity.as_str(), held.spec.lease_transitions), ("b", 5));
    b.stop.cancel();
    b.running.await.unwrap();
}

#[test]
fn timing_that_does_not_fit_is_refused() {
    let store = Arc::new(MemoryStore::new());
    let e = || LeaderElection::new(store.clone(), "l", "a");
    let t = |l, r, p| LeaseTiming {
        lease_duration: Duration::from_secs(l),
        renew_deadline: Duration::from_secs(r),
        retry_period: Duration::from_secs(p),
    };
    assert!(e().timing(t(15, 10, 2)).is_ok());
    assert!(e().timing(t(10, 10, 2)).is_err());
    assert!(e().timing(t(15, 2, 2)).is_err());
    assert!(e().timing(t(15, 10, 0)).is_err());
    let fractional = LeaseTiming { lease_duration: Duration::from_millis(15_500), ..t(15, 10, 2) };
    let err = e().timing(fractional).unwrap_err().to_string();
    assert!(err.contains("whole seconds"), "{err}");
}
