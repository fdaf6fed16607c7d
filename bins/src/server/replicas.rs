//! The servers sharing a store, and which of them owns each cluster.
//!
//! Every server with leader election on keeps a `replica-<name>` [`Lease`] renewed every
//! [`HEARTBEAT`], with the URL its peers reach it at ([`PEER_URL_ANNOTATION`]), and follows the
//! others'. A replica counts as live once its lease has been renewed for [`JOIN`] since it was
//! acquired — the hysteresis that keeps a replica starting or flapping from moving clusters back and
//! forth; both times are its holder's, so every observer counts it in at the same renewal — until it
//! has not been renewed for its lease's duration, or its lease is gone (a server that stops deletes
//! its own). A server that has just started thus sees the replicas that were already serving at
//! once, and forwards to them until it has joined itself. The founders of a fleet that starts
//! together — every replica restarted at once — count in at once: a replica whose lease was acquired
//! within [`FOUNDING`] of the oldest lease held has nobody's clusters to take (none was serving before
//! it), and waiting would leave the fleet with no owner at all while its agents come back.
//!
//! "Not renewed for its lease's duration" is judged in the store's time ([`StoreClock`]), not by
//! how late a renewal reaches the observer: the observer's *own* renewals, as they come back through
//! the same watch, tell how far the store has come, and a replica is silent once one that began a
//! lease's duration after the other's last renewal reached it is back. Events arrive in the store's
//! order, so no renewal of the other was written before it. A store or a watch that is slow (a
//! loaded etcd, a starved observer) thus delays every lease alike and moves no cluster; while the
//! store takes no writes (etcd without quorum) its time stands still, and the live set stays as it
//! was. A lease only read in a list (at start, or when the watch starts over) is judged by its
//! renew time at once: one older than its duration is silent already.
//!
//! A cluster's owner is chosen by rendezvous hashing over the live replicas: the one with the highest
//! `hash(replica, cluster)`. Every server computes the same owner from the same live set without
//! talking to the others, and when a replica joins or leaves only the clusters it wins or held
//! move. The owner holds the cluster's agent sessions; a proxied request or an agent session that
//! arrives elsewhere is forwarded to it over one pooled connection per pair of replicas.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use rancher_core::Resource;
use rancher_core::controller::watcher;
use rancher_core::controller::watcher::{Config, Event};
use rancher_core::model::{Lease, LeaseSpec};
use rancher_core::store::{Api, Store, StoreError};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// How often a replica renews its lease.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a replica's lease lasts without renewal.
const LEASE_SECONDS: u32 = 15;
/// How long a replica must have been seen renewing before it owns clusters.
pub(crate) const JOIN: Duration = Duration::from_secs(10);
/// How soon after the oldest lease held a replica's must have been acquired for it to count in at
/// once, as one of the founders of a fleet that starts together (see the module docs).
const FOUNDING: Duration = Duration::from_secs(5);
/// The annotation holding a replica's peer URL.
pub(crate) const PEER_URL_ANNOTATION: &str = "management.cattle.io/peer-url";
/// The prefix of replicas' lease names.
const PREFIX: &str = "replica-";
/// How many of its renewals on their way to the store a replica remembers.
const RENEWALS_KEPT: usize = 8;
/// How long after a change in the live set the clusters that moved are still settling: their agents
/// are on their way to the new owner, which waits for a session ([`Replicas::settling`]) instead of
/// answering that the cluster is not connected.
pub(crate) const SETTLING: Duration = Duration::from_secs(30);

/// The wall clock of leases' times.
pub(crate) type Clock = fn() -> Timestamp;

/// One server among those sharing the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Replica {
    /// Its name ([`leadership::identity`](super::leadership::identity)).
    pub(crate) name: String,
    /// The URL its peers reach it at (`https://host:port`).
    pub(crate) url: String,
}

/// Who owns a cluster, as this server sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// This server (also when no replica is live yet: a server on its own serves what it can).
    Me,
    /// Another live replica.
    Peer(Replica),
}

/// This server's view of the replicas. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Replicas {
    me: String,
    live: watch::Receiver<Arc<Vec<Replica>>>,
    shared: Arc<Shared>,
}

/// What every clone of a view shares.
#[derive(Debug)]
struct Shared {
    /// Set by [`Replicas::leave`]: this server owns nothing any more.
    leave: CancellationToken,
    /// Set once the replicas' leases have been read.
    ready: CancellationToken,
    /// Replicas this server could not connect to, left out of its live set until their lease is
    /// renewed again ([`Replicas::suspect`]).
    suspects: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Wakes the follower to publish the live set again.
    recheck: tokio::sync::Notify,
    /// When the live set last changed (or the view was made).
    changed_at: std::sync::Mutex<Instant>,
    /// This replica's renewals on their way to the store: the renew time each writes, and when it
    /// began by this server's clock. The follower matches its own lease's renew time against them
    /// to learn how far the store's time has come ([`StoreClock`]).
    renewals: std::sync::Mutex<std::collections::VecDeque<(Timestamp, Instant)>>,
}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Shared {
            leave: CancellationToken::new(),
            ready: CancellationToken::new(),
            suspects: std::sync::Mutex::default(),
            recheck: tokio::sync::Notify::new(),
            changed_at: std::sync::Mutex::new(Instant::now()),
            renewals: std::sync::Mutex::default(),
        })
    }

    fn suspects(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.suspects.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn changed_at(&self) -> Instant {
        *self.changed_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn touch(&self) {
        *self.changed_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    /// Notes that a renewal writing `renewed` begins now.
    fn renewing(&self, renewed: Timestamp) {
        let mut renewals = self.renewals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Renewals whose writes were lost never come back; a few behind is plenty.
        if renewals.len() == RENEWALS_KEPT {
            renewals.pop_front();
        }
        renewals.push_back((renewed, Instant::now()));
    }

    /// When the renewal that wrote `renewed` began, if it was this server's; it and every earlier
    /// one are forgotten.
    fn renewed(&self, renewed: Timestamp) -> Option<Instant> {
        let mut renewals = self.renewals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = renewals.iter().position(|(written, _)| *written == renewed)?;
        let began = renewals[at].1;
        renewals.drain(..=at);
        Some(began)
    }
}

impl Replicas {
    /// A view of a fixed set.
    #[cfg(test)]
    pub(crate) fn fixed(me: &str, live: Vec<Replica>) -> Self {
        Replicas { me: me.to_owned(), live: watch::channel(Arc::new(live)).1, shared: Shared::new() }
    }

    /// A view of the replicas sharing `store`, and what keeps it current: run [`Heartbeat::run`].
    pub(crate) fn new(store: Arc<dyn Store>, me: Replica, metrics: Arc<Metrics>) -> (Replicas, Heartbeat) {
        Self::with_clock(store, me, metrics, Timestamp::now)
    }

    /// Like [`new`](Self::new), with the wall clock leases are written and read with.
    pub(crate) fn with_clock(
        store: Arc<dyn Store>,
        me: Replica,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> (Replicas, Heartbeat) {
        let (tx, rx) = watch::channel(Arc::new(Vec::new()));
        let shared = Shared::new();
        let view = Replicas { me: me.name.clone(), live: rx, shared: shared.clone() };
        (view, Heartbeat { api: Api::all(store), me, tx, metrics, shared, clock })
    }

    /// This server's name.
    pub(crate) fn me(&self) -> &str {
        &self.me
    }

    /// The live replicas, this one among them once it has joined.
    #[cfg(test)]
    pub(crate) fn live(&self) -> Arc<Vec<Replica>> {
        self.live.borrow().clone()
    }

    /// The owner of `cluster`. Once this server has [left](Self::leave), another live replica if
    /// there is one.
    pub(crate) fn owner(&self, cluster: &str) -> Owner {
        let live = self.live.borrow();
        let leaving = self.leaving();
        let suspects = self.shared.suspects();
        let candidates = live.iter().filter(|r| {
            let gone_myself = leaving && r.name == self.me;
            !gone_myself && !suspects.contains(&r.name)
        });
        match rendezvous(cluster, candidates).cloned() {
            Some(r) if r.name != self.me => Owner::Peer(r),
            _ => Owner::Me,
        }
    }

    /// Gives every cluster up to the other replicas, for good: this server's lease is deleted at
    /// once (the others drop it from their live set within a watch event) and [`owner`](Self::owner)
    /// names another live replica from now on. The first step of a drain.
    pub(crate) fn leave(&self) {
        self.shared.leave.cancel();
    }

    /// Resolves once the replicas' leases have been read, so that [`owner`](Self::owner) knows the
    /// replicas that were serving before this server started; until then it answers [`Owner::Me`].
    pub(crate) async fn ready(&self) {
        self.shared.ready.cancelled().await;
    }

    /// Leaves `replica` out of this server's live set, at once, until its lease is renewed again:
    /// it did not accept a connection (killed, or its host gone), and waiting the rest of its
    /// lease to learn so would fail every request forwarded to it meanwhile. A replica that is
    /// only slow comes back with its next renewal.
    pub(crate) fn suspect(&self, replica: &str) {
        if replica == self.me || !self.shared.suspects().insert(replica.to_owned()) {
            return;
        }
        tracing::warn!(
            replica,
            "a replica does not accept connections; its clusters go to the others until it renews its lease"
        );
        self.shared.touch();
        self.shared.recheck.notify_one();
    }

    /// Whether this server has [left](Self::leave).
    pub(crate) fn leaving(&self) -> bool {
        self.shared.leave.is_cancelled()
    }

    /// Whether the live set changed less than [`SETTLING`] ago, so that agents of clusters that
    /// moved may still be on their way here.
    pub(crate) fn settling(&self) -> bool {
        self.shared.changed_at().elapsed() < SETTLING
    }

    /// A view whose [`changed`](Self::changed) resolves at the next change from now on.
    pub(crate) fn follow(&self) -> Replicas {
        let mut view = self.clone();
        view.live.borrow_and_update();
        view
    }

    /// Resolves when the live set changes.
    pub(crate) async fn changed(&mut self) -> bool {
        self.live.changed().await.is_ok()
    }
}

/// Renews this replica's lease and follows the others'.
pub(crate) struct Heartbeat {
    api: Api<Lease>,
    me: Replica,
    tx: watch::Sender<Arc<Vec<Replica>>>,
    metrics: Arc<Metrics>,
    shared: Arc<Shared>,
    clock: Clock,
}

impl Heartbeat {
    /// Runs until `stop`. When this server [leaves](Replicas::leave), or at `stop`, it deletes its
    /// lease (the others drop it at once); it follows the others' until `stop`.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let Heartbeat { api, me, tx, metrics, shared, clock } = self;
        let renewing = async {
            tokio::select! {
                () = heartbeat(api.clone(), me.clone(), &shared, clock) => {}
                () = stop.cancelled() => {}
                () = shared.leave.cancelled() => {}
            }
            if let Err(e) = api.delete(&lease_name(&me.name)).await {
                tracing::warn!(replica = %me.name, "deleting this replica's lease: {e}");
            }
        };
        let follower = Follower { me: me.name.clone(), tx, metrics: &metrics, shared: &shared, clock };
        tokio::join!(renewing, follower.run(api.clone(), stop.clone()));
        metrics.set_replicas_live(0);
    }
}

/// The replica of `live` that wins `cluster`: highest `SHA-256(name ‖ 0 ‖ cluster)`.
pub(crate) fn rendezvous<'a>(
    cluster: &str,
    live: impl IntoIterator<Item = &'a Replica>,
) -> Option<&'a Replica> {
    live.into_iter().max_by_key(|r| {
        let digest = Sha256::new()
            .chain_update(r.name.as_bytes())
            .chain_update([0])
            .chain_update(cluster.as_bytes())
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first), r.name.clone())
    })
}

fn lease_name(replica: &str) -> String {
    format!("{PREFIX}{replica}")
}

/// Keeps `me`'s lease renewed, until dropped. A renewal is a compare-and-swap, so one cut short
/// by the drop cannot bring back the lease deleted after it.
async fn heartbeat(api: Api<Lease>, me: Replica, shared: &Shared, clock: Clock) {
    let name = lease_name(&me.name);
    loop {
        if let Err(e) = renew(&api, &name, &me, shared, clock).await {
            tracing::warn!(replica = %me.name, "renewing this replica's lease: {e}");
        }
        tokio::time::sleep(HEARTBEAT).await;
    }
}

async fn renew(
    api: &Api<Lease>,
    name: &str,
    me: &Replica,
    shared: &Shared,
    clock: Clock,
) -> Result<(), StoreError> {
    let now = clock();
    shared.renewing(now);
    match api.get_opt(name).await? {
        Some(mut lease) => {
            lease.spec.holder_identity.clone_from(&me.name);
            lease.spec.renew_time = Some(now);
            lease.spec.lease_duration_seconds = LEASE_SECONDS;
            lease.meta_mut().annotations.insert(PEER_URL_ANNOTATION.into(), me.url.clone());
            api.update(&lease).await.map(drop)
        }
        None => {
            let mut lease = Lease::new(
                name,
                LeaseSpec {
                    holder_identity: me.name.clone(),
                    lease_duration_seconds: LEASE_SECONDS,
                    acquire_time: Some(now),
                    renew_time: Some(now),
                    lease_transitions: 0,
                },
            );
            lease.meta_mut().annotations.insert(PEER_URL_ANNOTATION.into(), me.url.clone());
            api.create(&lease).await.map(drop)
        }
    }
}

/// The store's time, as one replica tells it from its own renewals coming back through its watch:
/// it moves on by the time between the beginnings of two that came back in a row, but by no more
/// than [`STORE_STEP`] — a gap between them is time the store did not take this replica's writes
/// (etcd without quorum, or this replica cut off), in which nobody could renew, and which counts
/// against nobody. So a replica that stopped renewing is silent after the same store time whether
/// the store was slow, down for a minute, or neither.
struct StoreClock {
    /// How far it has come. It starts a day in, so that a listed lease's age can be taken off it.
    now: Duration,
    /// When this replica's latest renewal to come back began, by this server's clock.
    last: Option<Instant>,
}

/// The most the store's time moves on between two of this replica's renewals: a heartbeat and
/// the time its writes take when the store is well.
const STORE_STEP: Duration = Duration::from_secs(HEARTBEAT.as_secs() + 1);

impl StoreClock {
    fn new() -> Self {
        StoreClock { now: Duration::from_secs(86_400), last: None }
    }

    /// This replica's renewal that began at `began` came back.
    fn renewed(&mut self, began: Instant) {
        if let Some(last) = self.last {
            self.now += began.saturating_duration_since(last).min(STORE_STEP);
        }
        self.last = Some(began);
    }
}

/// What an observer knows of one replica's lease.
struct Seen {
    replica: Replica,
    resource_version: String,
    /// Renewed for [`JOIN`] since it was acquired, by its holder's clock (the same for every
    /// observer, so all of them count the replica in at the same renewal).
    established: bool,
    /// When its lease was acquired, by its holder's clock.
    acquired: Option<Timestamp>,
    /// When it was last renewed, in the store's time: when the renewal reached the observer, or as
    /// long before as a listed lease's renew time says. `None`: silent already.
    renewed: Option<Duration>,
    /// How long it lasts without renewal.
    duration: Duration,
}

impl Seen {
    /// Whether the store's time has passed its lease's duration since its last renewal.
    fn silent(&self, store: &StoreClock) -> bool {
        self.renewed.is_none_or(|renewed| store.now >= renewed + self.duration)
    }
}

/// Follows the replicas' leases and publishes the live set whenever it changes.
struct Follower<'a> {
    /// This replica's name.
    me: String,
    tx: watch::Sender<Arc<Vec<Replica>>>,
    metrics: &'a Metrics,
    shared: &'a Shared,
    clock: Clock,
}

impl Follower<'_> {
    async fn run(self, api: Api<Lease>, stop: CancellationToken) {
        let mine = lease_name(&self.me);
        let mut seen: HashMap<String, Seen> = HashMap::new();
        let mut store = StoreClock::new();
        let mut ready = false;
        let mut events = std::pin::pin!(watcher(api, Config::default()));
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                event = events.next() => match event {
                    Some(Ok(Event::Apply(lease))) => {
                        self.observe(&mut seen, &lease, Observed::Changed, &mut store);
                    }
                    Some(Ok(Event::InitApply(lease))) => {
                        self.observe(&mut seen, &lease, Observed::Listed, &mut store);
                    }
                    Some(Ok(Event::Delete(lease))) => {
                        seen.remove(&lease.metadata.name);
                    }
                    Some(Ok(Event::Init)) => {}
                    // Published below, before anyone waiting for readiness looks.
                    Some(Ok(Event::InitDone)) => ready = true,
                    Some(Err(e)) => tracing::debug!("following the replicas' leases (retrying): {e}"),
                    None => return,
                },
                () = self.shared.recheck.notified() => {}
            }
            // A replica silent past its lease is forgotten: when it renews again it is seen afresh.
            // This one never is, in its own view: it renews for as long as it serves.
            seen.retain(|name, s| *name == mine || !s.silent(&store));
            let oldest = seen.values().filter_map(|s| s.acquired).min();
            let founder = |s: &Seen| match (s.acquired, oldest) {
                (Some(acquired), Some(oldest)) => {
                    Duration::try_from(acquired.duration_since(oldest)).is_ok_and(|after| after <= FOUNDING)
                }
                _ => false,
            };
            let mut live: Vec<Replica> = {
                let mut suspects = self.shared.suspects();
                suspects.retain(|name| seen.contains_key(&lease_name(name)));
                seen.values()
                    .filter(|s| (s.established || founder(s)) && !suspects.contains(&s.replica.name))
                    .map(|s| s.replica.clone())
                    .collect()
            };
            live.sort_by(|a, b| a.name.cmp(&b.name));
            self.metrics.set_replicas_live(live.len());
            self.tx.send_if_modified(|current| {
                let modified = **current != live;
                if modified {
                    self.shared.touch();
                    tracing::info!(live = ?live.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), "replicas");
                    *current = Arc::new(live);
                }
                modified
            });
            if ready {
                self.shared.ready.cancel();
            }
        }
    }

    fn observe(
        &self,
        seen: &mut HashMap<String, Seen>,
        lease: &Lease,
        how: Observed,
        store: &mut StoreClock,
    ) {
        let name = &lease.metadata.name;
        let Some(replica) = name.strip_prefix(PREFIX) else { return };
        let Some(url) = lease.metadata.annotations.get(PEER_URL_ANNOTATION) else { return };
        if lease.spec.holder_identity != replica {
            return;
        }
        let spec = &lease.spec;
        if replica == self.me
            && let Some(began) = spec.renew_time.and_then(|renewed| self.shared.renewed(renewed))
        {
            store.renewed(began);
        }
        let rv = &lease.metadata.resource_version;
        match seen.get(name) {
            Some(s) if s.resource_version == *rv => return,
            // Renewed: whoever suspected it was wrong, or it is back.
            Some(_) if how == Observed::Changed => {
                tracing::debug!(replica, %rv, renewed = ?spec.renew_time, "a replica's lease was renewed");
                self.shared.suspects().remove(replica);
            }
            _ => {}
        }
        let duration = Duration::from_secs(u64::from(spec.lease_duration_seconds.max(1)));
        let held = |from: Option<Timestamp>, to: Timestamp| {
            from.and_then(|from| Duration::try_from(to.duration_since(from)).ok())
        };
        let established = spec
            .renew_time
            .and_then(|renewed| held(spec.acquire_time, renewed))
            .is_some_and(|held| held >= JOIN);
        let renewed = match how {
            Observed::Changed => Some(store.now),
            Observed::Listed => spec
                .renew_time
                .and_then(|renewed| held(Some(renewed), (self.clock)()))
                .filter(|age| *age < duration)
                .map(|age| store.now.saturating_sub(age)),
        };
        seen.insert(
            name.clone(),
            Seen {
                replica: Replica { name: replica.to_owned(), url: url.clone() },
                resource_version: rv.clone(),
                established,
                acquired: spec.acquire_time,
                renewed,
                duration,
            },
        );
    }
}

/// How a lease came to be seen.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Observed {
    /// It changed while watched: its holder renewed it just now.
    Changed,
    /// Read in a list (at start, or when the watch started over): it is as fresh as its renew time
    /// says, by this server's wall clock — close enough to its holder's for a first guess, which
    /// the next renewal (or its absence) settles.
    Listed,
}

#[cfg(test)]
mod tests;
