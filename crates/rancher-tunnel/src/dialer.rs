//! How an agent connects to a destination the policy allowed: by default straight to the address;
//! an agent whose destination has several equivalent addresses (an API server on every control-plane
//! host) supplies its own [`Dialer`] that picks one.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

/// Opens the TCP connection for one stream the server asked for. `address` is what the server
/// dialed (`host:port`, already allowed by the agent's
/// [`DestinationPolicy`](crate::DestinationPolicy)); `timeout` is the agent's
/// [`dial_timeout`](crate::AgentConfig::dial_timeout) for the whole attempt.
#[async_trait::async_trait]
pub trait Dialer: Send + Sync {
    /// Connects for a stream to `address`.
    async fn dial(&self, address: &str, timeout: Duration) -> io::Result<TcpStream>;
}

/// Connects to the address itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectDialer;

#[async_trait::async_trait]
impl Dialer for DirectDialer {
    async fn dial(&self, address: &str, timeout: Duration) -> io::Result<TcpStream> {
        match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(result) => result,
            Err(_) => {
                Err(io::Error::new(io::ErrorKind::TimedOut, format!("connect timed out after {timeout:?}")))
            }
        }
    }
}
