//! The members of a cluster built on hosts, reached through SSH sessions to their hosts: one
//! [`EtcdHost`] per etcd host, and [`member_health`] — every member with whether it is healthy,
//! what [`may_remove`](super::may_remove) and [`may_stop`](super::may_stop) take.

use std::sync::Arc;
use std::time::Duration;

use super::{EtcdClient, EtcdError, EtcdTls, Member, MemberHealth, SshConnect};
use crate::ssh::SshSession;

/// etcd's client port.
pub(crate) const CLIENT_PORT: u16 = 2379;
/// etcd's peer port.
pub(crate) const PEER_PORT: u16 = 2380;
/// How long a member may take to answer a health check.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// One etcd host of a cluster built on hosts.
#[derive(Clone, Debug)]
pub struct EtcdHost {
    /// Its node name (the etcd member's name).
    pub name: String,
    /// The address its peers reach it at (its internal address).
    pub internal_address: String,
    /// An SSH session to it.
    pub session: Arc<SshSession>,
}

impl EtcdHost {
    /// A client of the etcd member on this host, reached through its SSH session on the host's
    /// loopback (or its internal address, when that is a loopback address itself: etcd listens
    /// only there then).
    ///
    /// # Errors
    /// [`EtcdError::Tls`] when the TLS material is unusable.
    pub fn etcd(&self, tls: &EtcdTls) -> Result<EtcdClient, EtcdError> {
        let host = match self.internal_address.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_loopback() => self.internal_address.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let mut tls = tls.clone();
        tls.server_name = host.clone();
        EtcdClient::tls(SshConnect { session: self.session.clone(), host, port: CLIENT_PORT }, &tls)
    }

    /// `https://<internal address>:2380`, as the plans make etcd advertise it.
    pub fn peer_url(&self) -> String {
        if self.internal_address.contains(':') {
            format!("https://[{}]:{PEER_PORT}", self.internal_address)
        } else {
            format!("https://{}:{PEER_PORT}", self.internal_address)
        }
    }
}

/// The cluster's members and the health of each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembersHealth {
    /// The members as etcd lists them.
    pub members: Vec<Member>,
    /// Each member (by name; a member added but not started is named after the host whose peer
    /// URL it has, or by its peer URL) with its health. A member on no host of `hosts` counts as
    /// unhealthy: nothing vouches for it.
    pub health: Vec<MemberHealth>,
}

/// Asks every host's member for its health (5 s each), and the first healthy one for the member
/// list.
///
/// # Errors
/// [`EtcdError`] of the last host asked when no member answers the member list (the cluster has
/// no quorum, or none is reachable).
pub async fn member_health(hosts: &[EtcdHost], tls: &EtcdTls) -> Result<MembersHealth, EtcdError> {
    let mut healthy = Vec::new();
    for h in hosts {
        let etcd = h.etcd(tls)?.with_timeout(HEALTH_TIMEOUT);
        healthy.push(matches!(etcd.health().await, Ok(Ok(()))));
    }
    // A healthy member answers first; an unhealthy one may still list (a member without quorum
    // answers from its own view).
    let mut order: Vec<usize> = (0..hosts.len()).collect();
    order.sort_by_key(|i| !healthy[*i]);
    let mut last = None;
    let mut members = None;
    for i in order {
        match hosts[i].etcd(tls)?.member_list().await {
            Ok(list) => {
                members = Some(list);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let members = match (members, last) {
        (Some(m), _) => m,
        (None, Some(e)) => return Err(e),
        (None, None) => return Ok(MembersHealth { members: Vec::new(), health: Vec::new() }),
    };
    let health = members
        .iter()
        .map(|m| {
            let host = hosts
                .iter()
                .position(|h| h.name == m.name || (m.name.is_empty() && m.peer_urls.contains(&h.peer_url())));
            let name = match (host, m.name.is_empty()) {
                (Some(i), _) => hosts[i].name.clone(),
                (None, false) => m.name.clone(),
                (None, true) => m.peer_urls.first().cloned().unwrap_or_else(|| format!("{:x}", m.id)),
            };
            MemberHealth { name, healthy: host.is_some_and(|i| healthy[i]), learner: m.is_learner }
        })
        .collect();
    Ok(MembersHealth { members, health })
}
