//! The connection monitor: turns tunnel sessions into the `Connected` condition of each cluster
//! joined by agents ([`joins_by_agent`](super::joins_by_agent)) — at once on the tunnel's connect/disconnect events, and by a periodic sweep that
//! catches anything an event missed (and clusters still marked connected from before a restart).
//! rancher-core's cluster controller derives `Ready`, `Waiting` and `AgentDeployed` from it.
//!
//! It also closes a session that belongs to no current cluster — the cluster it was authorized for
//! was deleted (and perhaps created again under the same name), for instance between the agent's
//! authorization and the session's start — at once when the session starts, and on every sweep.
//!
//! Events and sweeps only queue what to write ([`Pending`]); up to [`WRITES_AT_ONCE`] clusters are
//! written at once, each mark judged again against the tunnel when it is written, so a thousand
//! agents arriving together are recorded as fast as the store commits, not one write after another.
//! A sweep runs beside the writes, never in their place: writes left unpolled while the monitor
//! waited for the sweep's store reads stalled the fleet's marks for the sweep's length, and once the
//! store's blocking work was bounded (an experiment), they held the turns those reads waited for —
//! the monitor waited for itself and the server stopped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::FusedFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt};
use rancher_core::model::Cluster;
use rancher_core::store::{Api, ListOptions};
use rancher_core::{ConditionStatus, Conditions};
use rancher_tunnel::SessionEvent;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::pending::Pending;
use super::{Registration, joins_by_agent};

/// The condition this monitor owns.
pub(crate) const CONNECTED: &str = "Connected";

/// How often every imported cluster's condition is compared with the tunnel's sessions.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// After a start, agents get this long to come back before the sweep marks their clusters
/// disconnected (events still mark a cluster connected at once).
const STARTUP_GRACE: Duration = Duration::from_secs(15);
/// Clusters read at once by a sweep.
const SWEEP_PAGE: usize = 256;

/// How many clusters' conditions are written at once: the store commits concurrent writes together,
/// so a fleet that connects at once (a server's start, a replica's clusters moving) is recorded in
/// a few commits instead of one commit after another.
const WRITES_AT_ONCE: usize = 64;

/// Watches the tunnel and keeps the `Connected` conditions true to it.
pub(crate) struct ConnectionMonitor {
    reg: Arc<Registration>,
}

/// What is to be written for one cluster: what the tunnel said of it since its last write (events
/// and sweeps add to the mark waiting). It is judged when written, against the tunnel as it is then:
/// connected while a session of the cluster as it exists then is held.
#[derive(Debug, Default)]
struct Mark {
    /// Sessions that started: each is checked against the cluster as it exists when the mark is
    /// written, and closed if it was authorized for another (deleted) one. All of a cluster's are
    /// kept (its cluster agent's, its node agents'): a stale one must not hide a current one.
    started: Vec<String>,
    /// The newest loss seen: disconnected, unless an agent is back by then.
    lost: Option<Lost>,
}

/// A cluster found without its agents: by a session's end, or by the sweep.
#[derive(Debug)]
struct Lost {
    reason: String,
    /// Found by the sweep: not written while clusters move between replicas (an agent on its way).
    swept: bool,
}

/// What a sweep found to write: clusters connected but not recorded so, and clusters recorded
/// connected without a session.
#[derive(Debug, Default)]
struct Swept {
    connected: Vec<String>,
    lost: Vec<String>,
}

impl Swept {
    /// Queues the marks found.
    fn queue(self, pending: &mut Pending<Mark>) {
        for cluster in &self.connected {
            // A mark, even empty, is written as the sessions are then: connected.
            pending.waiting(cluster);
        }
        for cluster in &self.lost {
            let reason = "no tunnel session found".to_owned();
            pending.waiting(cluster).lost = Some(Lost { reason, swept: true });
        }
    }
}

/// The cluster a session's client key (`<cluster>` or `<cluster>:<node>`) belongs to.
pub(crate) fn cluster_of_key(key: &str) -> &str {
    key.split_once(':').map_or(key, |(c, _)| c)
}

impl ConnectionMonitor {
    pub(crate) fn new(reg: Arc<Registration>) -> Self {
        ConnectionMonitor { reg }
    }

    /// Runs until `stop`.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let mut events = self.reg.tunnel().subscribe();
        let started = Instant::now();
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending = Pending::new(WRITES_AT_ONCE);
        let mut writing = FuturesUnordered::new();
        // The first sweep starts now (its interval's first tick is skipped); later ones on the
        // interval or after missed events, one at a time.
        let mut sweeping = std::pin::pin!(self.sweep(false).fuse());
        sweep.reset();
        let mut sweep_again = false;
        loop {
            while let Some((cluster, mark)) = pending.next() {
                writing.push(self.write(cluster, mark));
            }
            if sweep_again && sweeping.is_terminated() {
                sweep_again = false;
                sweeping.set(self.sweep(started.elapsed() >= STARTUP_GRACE).fuse());
            }
            tokio::select! {
                () = stop.cancelled() => return,
                Some(cluster) = writing.next(), if !writing.is_empty() => pending.done(&cluster),
                swept = &mut sweeping => swept.queue(&mut pending),
                ev = events.recv() => match ev {
                    Ok(SessionEvent::Connected { client_key, .. }) => {
                        let mark = pending.waiting(cluster_of_key(&client_key));
                        if !mark.started.contains(&client_key) {
                            mark.started.push(client_key);
                        }
                    }
                    Ok(SessionEvent::Disconnected { client_key, reason, replaced: false, .. }) => {
                        pending.waiting(cluster_of_key(&client_key)).lost =
                            Some(Lost { reason, swept: false });
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => {
                        warn!(missed = n, "tunnel events missed; re-checking every cluster");
                        sweep_again = true;
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = sweep.tick() => sweep_again = true,
            }
        }
    }

    /// Writes what `mark` calls for, judged against the tunnel as it is now. Returns `cluster`.
    async fn write(&self, cluster: String, mark: Mark) -> String {
        let stored = match Api::<Cluster>::all(self.reg.store().clone()).get_opt(&cluster).await {
            Ok(c) => c,
            Err(e) => {
                // The next event or sweep decides.
                warn!(cluster, error = %e, "reading a cluster to record its connection failed");
                return cluster;
            }
        };
        let uid = stored.filter(|c| c.metadata.deletion_timestamp.is_none()).map(|c| c.metadata.uid);
        for key in &mark.started {
            if uid.is_none() || self.reg.session_owner(key) != uid {
                warn!(client_key = %key, "closing a tunnel session of a cluster that no longer exists");
                self.reg.tunnel().close_session(key);
            }
        }
        let Some(uid) = uid else { return cluster };
        if !self.reg.session_keys_for(&cluster, &uid).is_empty() {
            self.mark(&cluster, true, "").await;
        } else if let Some(lost) = &mark.lost {
            // A session of another replica (a hand-over) is that replica's to judge.
            if self.reg.owns(&cluster) && !(lost.swept && self.reg.settling()) {
                self.mark(&cluster, false, &lost.reason).await;
            }
        }
        cluster
    }

    /// Compares every cluster's condition with the sessions held and returns the marks that differ.
    async fn sweep(&self, grace_over: bool) -> Swept {
        // Sessions and access are read before the clusters: whatever appears after this is judged
        // by the next sweep, against a newer list, never against one older than itself.
        let sessions: Vec<(String, Option<String>)> = self
            .reg
            .tunnel()
            .client_keys()
            .into_iter()
            .map(|k| (k.clone(), self.reg.session_owner(&k)))
            .collect();
        let accesses = self.reg.access_uids();
        // The clusters are read a page at a time, so that a sweep of a large fleet holds one page
        // of them at once, not every cluster (the page's objects are judged as they come; which
        // clusters exist is kept by name and uid only).
        let api = Api::<Cluster>::all(self.reg.store().clone());
        let mut live: HashMap<String, String> = HashMap::new();
        let mut swept = Swept::default();
        let mut options = ListOptions { limit: Some(SWEEP_PAGE), ..Default::default() };
        loop {
            let (clusters, page) = match api.list_with(options.clone()).await {
                Ok(listed) => listed,
                Err(e) => {
                    warn!(error = %e, "listing clusters for the connection sweep failed");
                    return swept;
                }
            };
            for c in &clusters {
                live.insert(c.metadata.name.clone(), c.metadata.uid.clone());
                if !joins_by_agent(c) || c.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let id = &c.metadata.name;
                let connected = !self.reg.session_keys_for(id, &c.metadata.uid).is_empty();
                let recorded = c.status.conditions.get_condition(CONNECTED).map(|c| c.status);
                if connected && recorded != Some(ConditionStatus::True) {
                    swept.connected.push(id.clone());
                } else if !connected && recorded == Some(ConditionStatus::True) && grace_over {
                    swept.lost.push(id.clone());
                }
            }
            match page.continue_token {
                Some(token) => options.continue_token = Some(token),
                None => break,
            }
        }
        // Sessions and access of clusters that are gone (or were made again under the same name)
        // are dropped even when no clean-up ran for them (a cluster deleted by an earlier version).
        // A Terminating cluster's are left to its clean-up, which still needs them.
        for (key, owner) in sessions {
            if live.get(cluster_of_key(&key)) != owner.as_ref() && self.reg.session_owner(&key) == owner {
                warn!(client_key = %key, "closing a tunnel session of a cluster that no longer exists");
                self.reg.tunnel().close_session(&key);
            }
        }
        for (cluster, uid) in accesses {
            if live.get(&cluster) != Some(&uid) {
                self.reg.drop_access(&cluster, &uid);
            }
        }
        swept
    }

    /// Writes the `Connected` condition (compare-and-swap, retried on Conflict) where it differs;
    /// says so when it wrote.
    async fn mark(&self, cluster: &str, connected: bool, why: &str) {
        let (status, reason, message) = if connected {
            (ConditionStatus::True, "", String::new())
        } else {
            (ConditionStatus::False, "Disconnected", format!("Cluster agent is not connected: {why}"))
        };
        let mut written = false;
        let result = self
            .reg
            .update_cluster(cluster, |c| {
                written = joins_by_agent(c)
                    && c.status.conditions.set_condition(CONNECTED, status, reason, &message);
                written
            })
            .await;
        match result {
            Ok(Some(_)) if written => info!(cluster, connected, "cluster connection recorded"),
            Ok(_) => {}
            Err(e) => warn!(cluster, error = %e, "recording the cluster's connection failed"),
        }
    }
}
