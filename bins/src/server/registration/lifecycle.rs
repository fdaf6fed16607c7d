//! The connection monitor: turns tunnel sessions into each imported cluster's `Connected`
//! condition — at once on the tunnel's connect/disconnect events, and by a periodic sweep that
//! catches anything an event missed (and clusters still marked connected from before a restart).
//! rancher-core's cluster controller derives `Ready`, `Waiting` and `AgentDeployed` from it.

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

use super::{IMPORTED_DRIVER, Registration};

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

fn cluster_of_key(key: &str) -> &str {
    key.split_once(':').map_or(key, |(c, _)| c)
}

fn is_imported(c: &Cluster) -> bool {
    c.status.driver == IMPORTED_DRIVER || c.spec.imported_config.is_some()
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
                        self.mark(cluster_of_key(&client_key), true, "").await;
                    }
                    Ok(SessionEvent::Disconnected { client_key, reason, replaced: false, .. }) => {
                        let cluster = cluster_of_key(&client_key);
                        if !self.reg.is_connected(cluster) {
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

    async fn sweep(&self, grace_over: bool) {
        let clusters = match Api::<Cluster>::all(self.reg.store().clone()).list().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "listing clusters for the connection sweep failed");
                return;
            }
        };
        for c in clusters.iter().filter(|c| is_imported(c) && c.metadata.deletion_timestamp.is_none()) {
            let id = &c.metadata.name;
            let connected = self.reg.is_connected(id);
            let recorded = c.status.conditions.get_condition(CONNECTED).map(|c| c.status);
            if connected && recorded != Some(ConditionStatus::True) {
                self.mark(id, true, "").await;
            } else if !connected && recorded == Some(ConditionStatus::True) && grace_over {
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
                if !is_imported(c) {
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
