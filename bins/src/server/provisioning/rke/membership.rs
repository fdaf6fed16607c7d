//! etcd membership of a cluster built on hosts: the member API calls that add a host's member (as a
//! learner, promoted once it caught up) or take one out — through a healthy member, reached over
//! SSH. Whether quorum allows a member to stop or leave is [`rancher_provision::etcd_api`]'s check.

use std::sync::Arc;
use std::time::Duration;

use rancher_core::model::{RkeConfig, RkeNode};
use rancher_provision::etcd_api::{EtcdClient, EtcdError, EtcdHost};
use rancher_provision::etcd_snapshots::{self, SnapshotError};
use rancher_provision::rke;
use rancher_provision::rke_plans::EtcdJoin;
use rancher_provision::ssh::{SshSession, SshTarget};

use super::hosts::{self, HostError};
use super::run::RunCtx;
use super::state::RkeState;

/// A member that joined: its id and the flags it starts with.
pub(super) struct Joined {
    /// Its member id.
    pub(super) id: u64,
    /// Its `--initial-cluster` flags.
    pub(super) join: EtcdJoin,
}

/// Why a member API call failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum MemberError {
    /// The member's host could not be reached over SSH (or has no usable key).
    #[error("{node}: {source}")]
    Host {
        /// The node.
        node: String,
        /// Why.
        #[source]
        source: Box<HostError>,
    },
    /// The cluster's PKI lacks the etcd client credentials.
    #[error(transparent)]
    Credentials(#[from] SnapshotError),
    /// etcd refused or did not answer.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The member to promote is not in the cluster (any more).
    #[error("etcd member {0:x} is not in the cluster")]
    NotAMember(u64),
    /// The learner did not catch up in time.
    #[error("the etcd learner {id:x} did not catch up within {seconds} s: {last}")]
    NotCaughtUp {
        /// The learner.
        id: u64,
        /// The time given.
        seconds: u64,
        /// etcd's last refusal.
        last: String,
    },
}

/// How long etcd may refuse a membership change as transient ("unhealthy cluster" in the 5 s after
/// a member connected, no leader during an election) before the change fails.
const CHANGE_RETRY: Duration = Duration::from_secs(30);
/// The pause between two attempts.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// The member API of a cluster's etcd, through one of its members.
pub(super) struct Admin {
    etcd: EtcdClient,
}

impl Admin {
    /// Connects to the etcd member on `via`, with the cluster's etcd client certificate.
    pub(super) async fn connect(
        ctx: &RunCtx,
        st: &RkeState,
        cfg: &RkeConfig,
        via: &RkeNode,
        bastion: Option<&SshTarget>,
    ) -> Result<Admin, MemberError> {
        let name = rke::node_name(via);
        let failed = |source: HostError| MemberError::Host { node: name.clone(), source: Box::new(source) };
        let target =
            hosts::target_of(&ctx.sealer, cfg, via, st.host_keys.get(&name)).await.map_err(failed)?;
        let session = SshSession::connect(&target, bastion, Duration::from_secs(10))
            .await
            .map_err(|e| failed(HostError::Ssh(e)))?;
        let host = EtcdHost {
            name: name.clone(),
            internal_address: rke::internal_address(via).to_owned(),
            session: Arc::new(session),
        };
        Ok(Admin { etcd: host.etcd(&etcd_snapshots::etcd_tls(&st.pki)?)? })
    }

    /// Adds `node`'s member as a learner unless it is a member already (a join cut short).
    pub(super) async fn join(&self, node: &RkeNode) -> Result<Joined, MemberError> {
        let peer = peer_url(rke::internal_address(node));
        let members = self.etcd.member_list().await?;
        let (id, members) = match members.iter().find(|m| m.peer_urls.contains(&peer)) {
            Some(m) => (m.id, members.clone()),
            None => {
                let added =
                    retry_transient(|| self.etcd.member_add(std::slice::from_ref(&peer), true)).await?;
                (added.member.id, added.members)
            }
        };
        let name = rke::node_name(node);
        let initial_cluster = members
            .iter()
            .filter_map(|m| {
                let url = m.peer_urls.first()?;
                let member = if m.id == id {
                    name.clone()
                } else if m.name.is_empty() {
                    format!("{:x}", m.id)
                } else {
                    m.name.clone()
                };
                Some(format!("{member}={url}"))
            })
            .collect::<Vec<_>>()
            .join(",");
        Ok(Joined { id, join: EtcdJoin { initial_cluster, existing: true } })
    }

    /// Promotes the learner `id` once it has caught up (retried until `within` has passed).
    pub(super) async fn promote(&self, id: u64, within: Duration) -> Result<(), MemberError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let members = self.etcd.member_list().await?;
            match members.iter().find(|m| m.id == id) {
                None => return Err(MemberError::NotAMember(id)),
                Some(m) if !m.is_learner => return Ok(()),
                Some(_) => {}
            }
            match self.etcd.member_promote(id).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_transient() && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await
                }
                Err(e) if e.is_transient() => {
                    return Err(MemberError::NotCaughtUp {
                        id,
                        seconds: within.as_secs(),
                        last: e.to_string(),
                    });
                }
                Err(e) => {
                    // Promoted in between (by an earlier attempt whose answer was lost): done.
                    let now = self.etcd.member_list().await?;
                    if now.iter().any(|m| m.id == id && !m.is_learner) {
                        return Ok(());
                    }
                    return Err(e.into());
                }
            }
        }
    }

    /// Takes `node`'s member out (nothing to do when it is not a member).
    pub(super) async fn leave(&self, node: &RkeNode) -> Result<(), MemberError> {
        let (name, peer) = (rke::node_name(node), peer_url(rke::internal_address(node)));
        let members = self.etcd.member_list().await?;
        let Some(m) = members.iter().find(|m| m.name == name || m.peer_urls.contains(&peer)) else {
            return Ok(());
        };
        let id = m.id;
        retry_transient(|| self.etcd.member_remove(id)).await?;
        Ok(())
    }
}

/// `https://<internal>:2380`, as the plans make etcd advertise itself to its peers.
fn peer_url(internal: &str) -> String {
    if internal.contains(':') {
        format!("https://[{internal}]:2380")
    } else {
        format!("https://{internal}:2380")
    }
}

/// Calls `f` again while etcd refuses as transient, for up to [`CHANGE_RETRY`].
async fn retry_transient<T, F, Fut>(mut f: F) -> Result<T, EtcdError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, EtcdError>>,
{
    let deadline = tokio::time::Instant::now() + CHANGE_RETRY;
    loop {
        match f().await {
            Err(e) if e.is_transient() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(RETRY_PAUSE).await
            }
            other => return other,
        }
    }
}
