//! A server's share of the fleet on the move: clusters handed over when the replicas change, and
//! a stopping server's drain.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Peers;
use crate::server::registration::Registration;
use crate::server::replicas::{Owner, Replica, Replicas};

/// Hands clusters over when the replicas change: the cluster agents' sessions this server holds for
/// clusters another replica now owns are closed, so that the agents reconnect (with their jitter)
/// and reach the owner. Runs until `stop`.
pub(crate) async fn hand_over(
    registration: Arc<Registration>,
    mut replicas: Replicas,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = replicas.changed() => if !changed { return },
        }
        // A draining server closes its sessions itself, once in-flight requests had their moment.
        if replicas.leaving() {
            continue;
        }
        // New requests for the clusters that moved go to their owners from now on
        // (`serves_locally`); those already on their way through the sessions get
        // [`HANDOVER_DELAY`] to finish before the agents are sent on.
        if moving(&registration, &replicas).is_empty() {
            continue;
        }
        let (registration, replicas) = (registration.clone(), replicas.clone());
        tokio::spawn(async move {
            tokio::time::sleep(HANDOVER_DELAY).await;
            if replicas.leaving() {
                return;
            }
            for (key, peer) in moving(&registration, &replicas) {
                tracing::info!(cluster = %key, to = %peer.name, "handing the cluster over to the replica that owns it now");
                registration.tunnel().close_session(&key);
            }
        });
    }
}

/// The cluster agents' sessions this server holds for clusters another replica owns, with the
/// owner. Node agents stay where they are (see `connect`).
fn moving(registration: &Registration, replicas: &Replicas) -> Vec<(String, Replica)> {
    let keys = registration.tunnel().client_keys();
    keys.into_iter()
        .filter(|key| !key.contains(':'))
        .filter_map(|key| match replicas.owner(&key) {
            Owner::Peer(peer) => Some((key, peer)),
            Owner::Me => None,
        })
        .collect()
}

/// How long a draining server goes on taking connections after it has left (its lame-duck time):
/// the other replicas learn within a watch event that it is gone and stop forwarding to it, and a
/// balancer's connections that were on their way are served.
pub(crate) const LAME_DUCK: Duration = Duration::from_secs(1);

/// How long after it stopped taking connections a draining server goes on serving through the agent
/// sessions it holds: requests already on their way through them finish.
pub(crate) const HANDOVER_DELAY: Duration = Duration::from_secs(1);

/// Waits until this server may serve: the replicas' leases have been read, so that a request is
/// not taken for a cluster another replica owns. Gives up after a while (a store that does not
/// answer), and serves what it can.
pub(crate) async fn ready(peers: &Peers) {
    if tokio::time::timeout(Duration::from_secs(10), peers.replicas().ready()).await.is_err() {
        tracing::warn!("the replicas' leases could not be read within 10 s; serving without them");
    }
}

/// The first step of a stop: this server [leaves](Replicas::leave), so that every cluster has
/// another owner and the servers forward to those, and goes on taking connections for
/// [`LAME_DUCK`] (forwarding them) before its listener closes.
pub(crate) async fn leave(peers: &Peers) {
    peers.replicas().leave();
    tracing::info!("draining: this server has left; the other replicas own its clusters now");
    tokio::time::sleep(LAME_DUCK).await;
}

/// Drains this server's share of the fleet once it has [left](leave) and its listener is
/// finishing its in-flight requests (`draining`): after [`HANDOVER_DELAY`] it closes the cluster
/// agents' sessions it holds or relays, and the agents reconnect, through whatever balances them,
/// to a replica that is staying. The new owners hold requests for those clusters until the agents
/// arrive ([`Registration::await_handed_over`]). Watches through a closed session end, and their
/// clients watch again. Node agents' sessions stay until the tunnel shuts down.
pub(crate) async fn drain(peers: Arc<Peers>, registration: Arc<Registration>, draining: CancellationToken) {
    draining.cancelled().await;
    let replicas = peers.replicas();
    tokio::time::sleep(HANDOVER_DELAY).await;
    peers.handed_over.cancel();
    let mut closed = 0;
    for (key, _) in moving(&registration, replicas) {
        closed += usize::from(registration.tunnel().close_session(&key));
    }
    tracing::info!(
        sessions = closed,
        "draining: cluster agents sent on to the replicas that own their clusters"
    );
}
