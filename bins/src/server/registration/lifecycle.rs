//! The connection monitor: turns tunnel sessions into the `Connected` condition of each cluster
//! joined by agents ([`joins_by_agent`](super::joins_by_agent)) — at once on the tunnel's connect/disconnect events, and by a periodic sweep that
//! catches anything an event missed (and clusters still marked connected from before a restart).
//! rancher-core's cluster controller derives `Ready`, `Waiting` and `AgentDeployed` from it.
//!
//! It also closes a session that belongs to no current cluster — the cluster it was authorized for
//! was deleted (and perhaps created again under the same name), for instance between the agent's
//! authorization and the session's start — at once when the session starts, and on every sweep.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rancher_core::model::Cluster;
use rancher_core::store::Api;
use rancher_core::{ConditionStatus, Conditions};
use rancher_tunnel::SessionEvent;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Registration, joins_by_agent};

/// The condition this monitor owns.
pub(crate) const CONNECTED: &str = "Connected";

/// How often every imported cluster's condition is compared with the tunnel's sessions.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// After a start, agents get this long to come back before the sweep marks their clusters
/// disconnected (events still mark a cluster connected at once).
const STARTUP_GRACE: Duration = Duration::from_secs(15);

/// Watches the tunnel and keeps the `Connected` conditions true to it.
pub(crate) struct ConnectionMonitor {
    reg: Arc<Registration>,
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
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                ev = events.recv() => match ev {
                    Ok(SessionEvent::Connected { client_key, .. }) => {
                        if self.still_owned(&client_key).await {
                            self.mark(cluster_of_key(&client_key), true, "").await;
                        }
                    }
                    Ok(SessionEvent::Disconnected { client_key, reason, replaced: false, .. }) => {
                        let cluster = cluster_of_key(&client_key);
                        // Another replica's session (a hand-over) is that replica's to judge.
                        if !self.reg.is_connected(cluster) && self.reg.owns(cluster) {
                            self.mark(cluster, false, &reason).await;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => {
                        warn!(missed = n, "tunnel events missed; re-checking every cluster");
                        self.sweep(started.elapsed() >= STARTUP_GRACE).await;
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = sweep.tick() => self.sweep(started.elapsed() >= STARTUP_GRACE).await,
            }
        }
    }

    /// Whether the session of `client_key` belongs to its cluster as it exists now; closes it when
    /// not. A store error keeps it (the next event or sweep decides).
    async fn still_owned(&self, client_key: &str) -> bool {
        let cluster = cluster_of_key(client_key);
        let stored = match Api::<Cluster>::all(self.reg.store().clone()).get_opt(cluster).await {
            Ok(c) => c,
            Err(e) => {
                warn!(cluster, error = %e, "reading the cluster of a new session failed");
                return true;
            }
        };
        let owner = self.reg.session_owner(client_key);
        let current = stored.filter(|c| c.metadata.deletion_timestamp.is_none()).map(|c| c.metadata.uid);
        if current.is_some() && current == owner {
            return true;
        }
        warn!(client_key, "closing a tunnel session of a cluster that no longer exists");
        self.reg.tunnel().close_session(client_key);
        false
    }

    async fn sweep(&self, grace_over: bool) {
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
        let clusters = match Api::<Cluster>::all(self.reg.store().clone()).list().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "listing clusters for the connection sweep failed");
                return;
            }
        };
        // Sessions and access of clusters that are gone (or were made again under the same name)
        // are dropped even when no clean-up ran for them (a cluster deleted by an earlier version).
        // A Terminating cluster's are left to its clean-up, which still needs them.
        let live: HashMap<&str, &str> =
            clusters.iter().map(|c| (c.metadata.name.as_str(), c.metadata.uid.as_str())).collect();
        for (key, owner) in sessions {
            if live.get(cluster_of_key(&key)).copied() != owner.as_deref()
                && self.reg.session_owner(&key) == owner
            {
                warn!(client_key = %key, "closing a tunnel session of a cluster that no longer exists");
                self.reg.tunnel().close_session(&key);
            }
        }
        for (cluster, uid) in accesses {
            if live.get(cluster.as_str()).copied() != Some(uid.as_str()) {
                self.reg.drop_access(&cluster, &uid);
            }
        }
        for c in clusters.iter().filter(|c| joins_by_agent(c) && c.metadata.deletion_timestamp.is_none()) {
            let id = &c.metadata.name;
            let connected = !self.reg.session_keys_for(id, &c.metadata.uid).is_empty();
            let recorded = c.status.conditions.get_condition(CONNECTED).map(|c| c.status);
            if connected && recorded != Some(ConditionStatus::True) {
                self.mark(id, true, "").await;
            } else if !connected
                && recorded == Some(ConditionStatus::True)
                && grace_over
                && self.reg.owns(id)
                && !self.reg.settling()
            {
                self.mark(id, false, "no tunnel session found").await;
            }
        }
    }

    /// Writes the `Connected` condition (compare-and-swap, retried on Conflict).
    async fn mark(&self, cluster: &str, connected: bool, why: &str) {
        let (status, reason, message) = if connected {
            (ConditionStatus::True, "", String::new())
        } else {
            (ConditionStatus::False, "Disconnected", format!("Cluster agent is not connected: {why}"))
        };
        let result = self
            .reg
            .update_cluster(cluster, |c| {
                if !joins_by_agent(c) {
                    return false;
                }
                c.status.conditions.set_condition(CONNECTED, status, reason, &message)
            })
            .await;
        match result {
            Ok(Some(_)) => info!(cluster, connected, "cluster connection recorded"),
            Ok(None) => {}
            Err(e) => warn!(cluster, error = %e, "recording the cluster's connection failed"),
        }
    }
}
