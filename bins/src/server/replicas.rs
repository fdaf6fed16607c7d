//! The servers sharing a store, and which of them owns each cluster.
//!
//! Every server with leader election on keeps a `replica-<name>` [`Lease`] renewed every
//! [`HEARTBEAT`], with the URL its peers reach it at ([`PEER_URL_ANNOTATION`]), and follows the
//! others'. A replica counts as live once it has been seen renewing for [`JOIN`] — the hysteresis
//! that keeps a replica starting or flapping from moving clusters back and forth — until it has not
//! renewed for its lease's duration (as the observer's own clock measures), or its lease is gone (a
//! server that stops deletes its own).
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
/// The annotation holding a replica's peer URL.
pub(crate) const PEER_URL_ANNOTATION: &str = "management.cattle.io/peer-url";
/// The prefix of replicas' lease names.
const PREFIX: &str = "replica-";

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
}

impl Replicas {
    /// A view of a fixed set.
    #[cfg(test)]
    pub(crate) fn fixed(me: &str, live: Vec<Replica>) -> Self {
        Replicas { me: me.to_owned(), live: watch::channel(Arc::new(live)).1 }
    }

    /// A view of the replicas sharing `store`, and what keeps it current: run [`Heartbeat::run`].
    pub(crate) fn new(store: Arc<dyn Store>, me: Replica, metrics: Arc<Metrics>) -> (Replicas, Heartbeat) {
        let (tx, rx) = watch::channel(Arc::new(Vec::new()));
        let view = Replicas { me: me.name.clone(), live: rx };
        (view, Heartbeat { api: Api::all(store), me, tx, metrics })
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

    /// The owner of `cluster`.
    pub(crate) fn owner(&self, cluster: &str) -> Owner {
        let live = self.live.borrow();
        match rendezvous(cluster, &live) {
            Some(r) if r.name != self.me => Owner::Peer(r.clone()),
            _ => Owner::Me,
        }
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
}

impl Heartbeat {
    /// Runs until `stop`, then deletes this replica's lease (the others drop it at once).
    pub(crate) async fn run(self, stop: CancellationToken) {
        let Heartbeat { api, me, tx, metrics } = self;
        tokio::join!(
            heartbeat(api.clone(), me.clone(), stop.clone()),
            follow(api.clone(), tx, &metrics, stop)
        );
        metrics.set_replicas_live(0);
        if let Err(e) = api.delete(&lease_name(&me.name)).await {
            tracing::warn!(replica = %me.name, "deleting this replica's lease at stop: {e}");
        }
    }
}

/// The replica of `live` that wins `cluster`: highest `SHA-256(name ‖ 0 ‖ cluster)`.
pub(crate) fn rendezvous<'a>(cluster: &str, live: &'a [Replica]) -> Option<&'a Replica> {
    live.iter().max_by_key(|r| {
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

/// Keeps `me`'s lease renewed until `stop`.
async fn heartbeat(api: Api<Lease>, me: Replica, stop: CancellationToken) {
    let name = lease_name(&me.name);
    loop {
        if let Err(e) = renew(&api, &name, &me).await {
            tracing::warn!(replica = %me.name, "renewing this replica's lease: {e}");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
}

async fn renew(api: &Api<Lease>, name: &str, me: &Replica) -> Result<(), StoreError> {
    let now = Timestamp::now();
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

/// What an observer knows of one replica's lease.
struct Seen {
    replica: Replica,
    resource_version: String,
    duration: Duration,
    /// When it was first seen renewing: a lease read once proves nothing (its server may have died
    /// long ago), one that changed while watched does.
    since: Option<Instant>,
    /// When it was first read, or last changed.
    changed: Instant,
}

impl Seen {
    fn live(&self, now: Instant) -> bool {
        self.since.is_some_and(|since| now.duration_since(since) >= JOIN)
            && now.duration_since(self.changed) < self.duration
    }
}

/// Follows the replicas' leases and publishes the live set whenever it changes.
async fn follow(
    api: Api<Lease>,
    tx: watch::Sender<Arc<Vec<Replica>>>,
    metrics: &Metrics,
    stop: CancellationToken,
) {
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut events = std::pin::pin!(watcher(api, Config::default()));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            event = events.next() => match event {
                Some(Ok(Event::Apply(lease) | Event::InitApply(lease))) => observe(&mut seen, &lease),
                Some(Ok(Event::Delete(lease))) => {
                    seen.remove(&lease.metadata.name);
                }
                Some(Ok(Event::Init | Event::InitDone)) => {}
                Some(Err(e)) => tracing::debug!("following the replicas' leases (retrying): {e}"),
                None => return,
            },
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        // A replica silent past its lease is forgotten: when it renews again it joins again.
        seen.retain(|_, s| now.duration_since(s.changed) < s.duration);
        let mut live: Vec<Replica> =
            seen.values().filter(|s| s.live(now)).map(|s| s.replica.clone()).collect();
        live.sort_by(|a, b| a.name.cmp(&b.name));
        metrics.set_replicas_live(live.len());
        tx.send_if_modified(|current| {
            let modified = **current != live;
            if modified {
                tracing::info!(live = ?live.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), "replicas");
                *current = Arc::new(live);
            }
            modified
        });
    }
}

fn observe(seen: &mut HashMap<String, Seen>, lease: &Lease) {
    let name = &lease.metadata.name;
    let Some(replica) = name.strip_prefix(PREFIX) else { return };
    let Some(url) = lease.metadata.annotations.get(PEER_URL_ANNOTATION) else { return };
    if lease.spec.holder_identity != replica {
        return;
    }
    let now = Instant::now();
    let rv = &lease.metadata.resource_version;
    let duration = Duration::from_secs(u64::from(lease.spec.lease_duration_seconds.max(1)));
    match seen.get_mut(name) {
        Some(s) if s.resource_version == *rv => {}
        Some(s) => {
            s.resource_version.clone_from(rv);
            s.since.get_or_insert(now);
            s.changed = now;
            s.duration = duration;
            s.replica.url.clone_from(url);
        }
        None => {
            seen.insert(
                name.clone(),
                Seen {
                    replica: Replica { name: replica.to_owned(), url: url.clone() },
                    resource_version: rv.clone(),
                    duration,
                    since: None,
                    changed: now,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests;
