//! How much the listener lets clients hold: the connection caps (in all and per client address), the
//! header and idle timeouts, and sizing the caps from the process's open-file limit, which is raised
//! to its hard limit first (as Go's runtime does for every Go server, Rancher included).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::server::metrics::Refusal;

/// The listener's limits. `None` fields are sized at start from the open-file limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections open at once; more are closed at once. Default: the open-file limit (raised to
    /// its hard limit at start) less a reserve for the server's own files, at most 65,536.
    pub max_connections: Option<usize>,
    /// Connections open at once from one client address (an IPv6 client: its /64); `Some(0)` turns
    /// the cap off (behind a load balancer every client has its address). Default: a quarter of
    /// `max_connections`.
    pub max_connections_per_client: Option<usize>,
    /// Time to send a whole request head, counted from the connection's start or from the head's first
    /// byte. Default 32 s, as kube-apiserver's `ReadHeaderTimeout`.
    pub header_timeout: Duration,
    /// Time a connection may stay open with no request in progress. Default 90 s, as kube-apiserver's
    /// `IdleTimeout` (and Go's client keeps idle connections for 90 s).
    pub idle_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: None,
            max_connections_per_client: None,
            header_timeout: Duration::from_secs(32),
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// [`ListenerLimits`] with every size decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) max_connections: usize,
    /// 0: no per-client cap.
    pub(crate) max_per_client: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
}

/// The most connections a default cap allows, whatever the open-file limit.
const DEFAULT_CEILING: usize = 65_536;

impl ListenerLimits {
    /// Decides the sizes, raising the open-file limit first when the total cap is derived from it.
    pub(crate) fn resolve(&self) -> Resolved {
        let max_connections = self.max_connections.unwrap_or_else(|| {
            let files = raise_open_file_limit();
            let cap = cap_for_open_files(files);
            tracing::info!(open_files = ?files, max_connections = cap, "connection cap sized from the open-file limit");
            cap
        });
        let max_per_client = self.max_connections_per_client.unwrap_or((max_connections / 4).max(1));
        Resolved {
            max_connections,
            max_per_client,
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
        }
    }
}

/// The default cap for `files` open files (`None`: unlimited): an eighth, at least 64, is kept for the
/// store, the TLS files, the audit log and outbound connections.
fn cap_for_open_files(files: Option<u64>) -> usize {
    let Some(files) = files.and_then(|f| usize::try_from(f).ok()) else {
        return DEFAULT_CEILING;
    };
    let reserve = (files / 8).max(64);
    files.saturating_sub(reserve).clamp(16, DEFAULT_CEILING)
}

/// Raises the soft open-file limit to the hard one; the soft limit in force afterwards.
#[cfg(unix)]
fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let (Some(soft), Some(hard)) = (current, maximum) else {
        return current;
    };
    if soft >= hard {
        return Some(soft);
    }
    match setrlimit(Resource::Nofile, Rlimit { current: Some(hard), maximum: Some(hard) }) {
        Ok(()) => {
            tracing::info!("raised the open-file limit from {soft} to {hard}");
            Some(hard)
        }
        Err(e) => {
            tracing::warn!("could not raise the open-file limit from {soft} to {hard}: {e}");
            Some(soft)
        }
    }
}

#[cfg(not(unix))]
fn raise_open_file_limit() -> Option<u64> {
    None
}

/// The address that connection caps and login throttling count by: an IPv4 client (IPv4-mapped IPv6
/// included) by its address, an IPv6 client by its /64, which one holder usually has whole.
pub(crate) fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// The connection caps, shared by the accept loop and the connections' guards.
#[derive(Debug)]
pub(super) struct Caps {
    total: Arc<Semaphore>,
    max_per_client: usize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection's place under the caps, given back when it is dropped.
#[derive(Debug)]
pub(super) struct Admission {
    _total: OwnedSemaphorePermit,
    client: Option<(Arc<Caps>, IpAddr)>,
}

impl Caps {
    pub(super) fn new(limits: &Resolved) -> Arc<Self> {
        Arc::new(Caps {
            total: Arc::new(Semaphore::new(limits.max_connections)),
            max_per_client: limits.max_per_client,
            per_client: Mutex::new(HashMap::new()),
        })
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_client.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place for a connection from `ip`, or why there is none.
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Refusal> {
        let total = self.total.clone().try_acquire_owned().map_err(|_| Refusal::MaxConnections)?;
        if self.max_per_client == 0 {
            return Ok(Admission { _total: total, client: None });
        }
        let client = client_of(ip);
        let mut clients = self.clients();
        let open = clients.entry(client).or_insert(0);
        if *open >= self.max_per_client {
            return Err(Refusal::MaxPerClient);
        }
        *open += 1;
        Ok(Admission { _total: total, client: Some((self.clone(), client)) })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some((caps, client)) = &self.client {
            let mut clients = caps.clients();
            if let Some(open) = clients.get_mut(client) {
                *open -= 1;
                if *open == 0 {
                    clients.remove(client);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_all_and_per_client() {
        let limits = Resolved {
            max_connections: 3,
            max_per_client: 2,
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        };
        let caps = Caps::new(&limits);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        let first = caps.admit(a).unwrap();
        let _second = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).unwrap_err(), Refusal::MaxPerClient);
        let _third = caps.admit(b).unwrap();
        assert_eq!(caps.admit("10.0.0.3".parse().unwrap()).unwrap_err(), Refusal::MaxConnections);
        drop(first);
        assert!(caps.admit(a).is_ok(), "a closed connection gives its places back");
        assert_eq!(caps.clients().len(), 2);
    }

    #[test]
    fn clients_are_addresses_and_ipv6_prefixes() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_of(ip("2001:db8:1:2:bbbb::9")), client_of(ip("2001:db8:1:2:aaaa::1")));
        assert_ne!(client_of(ip("2001:db8:1:3::1")), client_of(ip("2001:db8:1:2::1")));
    }

    #[test]
    fn default_caps_stay_below_the_open_file_limit() {
        assert_eq!(cap_for_open_files(Some(256)), 192);
        assert_eq!(cap_for_open_files(Some(1024)), 896);
        assert_eq!(cap_for_open_files(Some(1 << 20)), DEFAULT_CEILING);
        assert_eq!(cap_for_open_files(None), DEFAULT_CEILING);
        assert_eq!(cap_for_open_files(Some(40)), 16);
    }
}
