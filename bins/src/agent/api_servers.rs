//! A cluster agent whose API server runs on several control-plane hosts (a cluster the server built)
//! takes the server's streams to whichever of them is ready: the server dials the address the agent
//! reported (the kubeconfig's), the agent's [`ApiServers`] dialer connects to that address or, when it
//! is down or not ready, to another control-plane host's. Every API server carries a serving
//! certificate for all of the control-plane addresses, so the server's TLS check passes whichever
//! one answers. Readiness comes from each API server's `/readyz`, probed every
//! [`PROBE_EVERY`] with the agent's own credentials; a connect that fails moves on at once and
//! counts its address as not ready until a probe finds it ready again (an API server restarting
//! accepts connections before it can serve them).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::{Client, Config};
use rancher_tunnel::{Dialer, DirectDialer};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::AgentError;
use super::downstream::address_of;

/// How often every API server's `/readyz` is asked.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connect to one address may take while others are left to try.
const CONNECT_EACH: Duration = Duration::from_secs(3);

/// One API server address and what the last probe said of it.
struct Upstream {
    /// `host:port`.
    address: String,
    ready: AtomicBool,
}

/// The addresses of the cluster's API server, the reported one first.
pub(crate) struct ApiServers {
    upstreams: Vec<Upstream>,
}

impl ApiServers {
    /// `primary` (`host:port`, what the server dials) and the `alternates` (`https://host:port` URLs
    /// of the same API server on other hosts; duplicates of the primary are dropped).
    ///
    /// # Errors
    /// [`AgentError::Config`] naming an alternate that is not an `https://host[:port]` URL.
    pub(crate) fn new(primary: &str, alternates: &[String]) -> Result<Self, AgentError> {
        let mut addresses = vec![primary.to_owned()];
        for url in alternates {
            let uri: http::Uri = url.parse().map_err(|e| {
                AgentError::Config(format!("--api-server-alternate {url:?} is not a URL: {e}"))
            })?;
            let address = address_of(&uri)
                .map_err(|e| AgentError::Config(format!("--api-server-alternate {url:?}: {e}")))?;
            if !addresses.iter().any(|a| a.eq_ignore_ascii_case(&address)) {
                addresses.push(address);
            }
        }
        let upstreams =
            addresses.into_iter().map(|address| Upstream { address, ready: AtomicBool::new(true) }).collect();
        Ok(ApiServers { upstreams })
    }

    /// The addresses in the order a dial tries them: the ready ones as configured, then the rest.
    fn order(&self) -> Vec<&str> {
        let (ready, down): (Vec<&Upstream>, Vec<&Upstream>) =
            self.upstreams.iter().partition(|u| u.ready.load(Ordering::Relaxed));
        ready.into_iter().chain(down).map(|u| u.address.as_str()).collect()
    }

    fn is_primary(&self, address: &str) -> bool {
        self.upstreams[0].address.eq_ignore_ascii_case(address)
    }

    /// Probes every address's `/readyz` with `config`'s credentials every [`PROBE_EVERY`] until
    /// `stop`. Should no client be built for an address, nothing is probed and every address counts
    /// as ready (a dial still moves on from one that refuses).
    pub(crate) fn probe(
        self: &Arc<Self>,
        config: Config,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let clients = match me.clients(&config) {
                Ok(clients) => clients,
                Err(why) => return warn!(%why, "API servers are not probed"),
            };
            loop {
                for (u, client) in me.upstreams.iter().zip(&clients) {
                    let ready = readyz(client).await;
                    if u.ready.swap(ready.is_ok(), Ordering::Relaxed) != ready.is_ok() {
                        match ready {
                            Ok(()) => info!(api_server = %u.address, "API server ready"),
                            Err(why) => warn!(api_server = %u.address, %why, "API server not ready"),
                        }
                    }
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(PROBE_EVERY) => {}
                }
            }
        })
    }

    /// A client per address, with `config`'s credentials and CA.
    fn clients(&self, config: &Config) -> Result<Vec<Client>, String> {
        self.upstreams
            .iter()
            .map(|u| {
                let mut c = config.clone();
                c.cluster_url = format!("https://{}", u.address)
                    .parse()
                    .map_err(|e| format!("API server address {}: {e}", u.address))?;
                c.read_timeout = Some(PROBE_TIMEOUT);
                c.connect_timeout = Some(PROBE_TIMEOUT);
                Client::try_from(c).map_err(|e| format!("a client for {}: {e}", u.address))
            })
            .collect()
    }
}

async fn readyz(client: &Client) -> Result<(), String> {
    let request = http::Request::get("/readyz").body(Vec::new()).map_err(|e| e.to_string())?;
    match tokio::time::timeout(PROBE_TIMEOUT, client.request_text(request)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

#[async_trait::async_trait]
impl Dialer for ApiServers {
    async fn dial(&self, address: &str, timeout: Duration) -> io::Result<TcpStream> {
        if !self.is_primary(address) {
            return DirectDialer.dial(address, timeout).await;
        }
        let deadline = Instant::now() + timeout;
        let order = self.order();
        let mut failures = Vec::new();
        for (i, candidate) in order.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // The last candidate gets all the time that is left; the others a bounded share.
            let each = if i + 1 == order.len() { left } else { left.min(CONNECT_EACH) };
            match DirectDialer.dial(candidate, each).await {
                Ok(tcp) => {
                    if i > 0 {
                        debug!(asked = address, connected = candidate, "API server stream failed over");
                    }
                    return Ok(tcp);
                }
                Err(e) => {
                    if let Some(u) = self.upstreams.iter().find(|u| u.address == *candidate) {
                        u.ready.store(false, Ordering::Relaxed);
                    }
                    failures.push(format!("{candidate}: {e}"));
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("no API server answered ({})", failures.join("; ")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternates_are_checked_and_deduplicated() {
        let a = ApiServers::new(
            "10.0.0.1:6443",
            &["https://10.0.0.2:6443".into(), "https://10.0.0.1:6443".into(), "https://[::1]:6443".into()],
        )
        .unwrap();
        assert_eq!(a.order(), ["10.0.0.1:6443", "10.0.0.2:6443", "[::1]:6443"]);
        let e = ApiServers::new("10.0.0.1:6443", &["http://10.0.0.2:6443".into()]).err().unwrap();
        assert!(e.to_string().contains("--api-server-alternate") && e.to_string().contains("https"), "{e}");
        assert!(ApiServers::new("10.0.0.1:6443", &["not a url at all".into()]).is_err());
    }

    #[test]
    fn ready_addresses_are_tried_first() {
        let a = ApiServers::new(
            "10.0.0.1:6443",
            &["https://10.0.0.2:6443".into(), "https://10.0.0.3:6443".into()],
        )
        .unwrap();
        a.upstreams[0].ready.store(false, Ordering::Relaxed);
        assert_eq!(a.order(), ["10.0.0.2:6443", "10.0.0.3:6443", "10.0.0.1:6443"]);
    }

    #[tokio::test]
    async fn a_refused_primary_fails_over_at_once_and_other_addresses_are_dialed_directly() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_addr = closed.local_addr().unwrap().to_string();
        drop(closed);
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open_addr = open.local_addr().unwrap();
        let a = ApiServers::new(&closed_addr, &[format!("https://{open_addr}")]).unwrap();
        let tcp = a.dial(&closed_addr, Duration::from_secs(5)).await.unwrap();
        assert_eq!(tcp.peer_addr().unwrap(), open_addr);
        // The refusing address waits for a probe before it is tried first again.
        assert_eq!(a.order(), [open_addr.to_string(), closed_addr.clone()]);
        // Not the API server: no failover.
        let e = DirectDialer.dial(&closed_addr, Duration::from_secs(1)).await.unwrap_err();
        let via = a.dial(&format!("127.0.0.1:{}", 1), Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(via.kind(), e.kind());
    }
}
