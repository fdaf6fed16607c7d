//! Which destinations an agent dials for the server. The default is a closed list: an agent
//! must never be an open proxy into the cluster's network.

use std::collections::HashSet;

/// Decides whether the agent may dial `network`/`address` for the server.
///
/// Implemented for closures `Fn(&str, &str) -> bool`.
pub trait DestinationPolicy: Send + Sync {
    /// True when the agent may connect to `address` (`host:port`) over `network` (`tcp`).
    fn allows(&self, network: &str, address: &str) -> bool;
}

impl<F: Fn(&str, &str) -> bool + Send + Sync> DestinationPolicy for F {
    fn allows(&self, network: &str, address: &str) -> bool {
        self(network, address)
    }
}

/// Allows `tcp` to exactly the listed `host:port` addresses (host compared case-insensitively);
/// refuses everything else. Typically one entry: the cluster's API server.
///
/// ```
/// use rancher_tunnel::{AllowList, DestinationPolicy};
/// let policy = AllowList::new(["kubernetes.default.svc:443", "10.43.0.1:443"]);
/// assert!(policy.allows("tcp", "Kubernetes.Default.Svc:443"));
/// assert!(!policy.allows("tcp", "169.254.169.254:80"));
/// assert!(!policy.allows("unix", "10.43.0.1:443"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    tcp: HashSet<String>,
}

impl AllowList {
    /// A list allowing `tcp` to these `host:port` addresses.
    pub fn new<I, S>(addresses: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self { tcp: addresses.into_iter().map(|a| a.as_ref().to_ascii_lowercase()).collect() }
    }
}

impl DestinationPolicy for AllowList {
    fn allows(&self, network: &str, address: &str) -> bool {
        network == "tcp" && self.tcp.contains(&address.to_ascii_lowercase())
    }
}
