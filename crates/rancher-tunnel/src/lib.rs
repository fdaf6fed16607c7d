//! A reverse tunnel: agents behind NAT dial out to the server over HTTPS, upgrade to a
//! WebSocket on `/v3/connect`, and the server then opens multiplexed streams (yamux's wire
//! format) back through that one session to addresses the agent's policy allows.
//!
//! - Server side: [`TunnelServer`] is the registry of sessions by client key; mount
//!   [`TunnelServer::accept_upgrade`] in your router (or run [`serve_connect`]) with an
//!   [`Authorizer`] that maps the agent's headers to a client key, then
//!   [`dial`](TunnelServer::dial) through it.
//! - Agent side: [`Agent`] connects with a [`Transport`] (default [`WsTransport`]), serves the
//!   streams the server opens, checks each destination against a [`DestinationPolicy`] and
//!   reconnects with jittered exponential backoff. In-process services registered with
//!   [`Agent::with_local_service`] answer dials with network [`LOCAL_NETWORK`] by name.
//!
//! The crate knows nothing of clusters or tokens: a client key is just a string.
//!
//! ```no_run
//! use std::sync::Arc;
//! use rancher_tunnel::*;
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn example(server_tls: Arc<rustls::ServerConfig>, ca_pem: Vec<u8>, ca_sha256: String)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! // Server: accept agents whose token is "secret" as client "c-abc12".
//! let server = TunnelServer::new(SessionConfig::default(), Metrics::unregistered())?;
//! let authz: Arc<dyn Authorizer> = Arc::new(|h: &http::HeaderMap| match h.get(TOKEN_HEADER) {
//!     Some(v) if v == "secret" => Ok("c-abc12".to_string()),
//!     _ => Err(Rejection("unknown token".into())),
//! });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! let stop = CancellationToken::new();
//! tokio::spawn(serve_connect(listener, Some(server_tls), server.clone(), authz,
//!     ServeOptions::default(), stop.clone()));
//!
//! // Agent: pin the server CA by checksum, allow only the API server.
//! let tls = client_tls_pinned(&ca_pem, &ca_sha256)?;
//! let transport = WsTransport::new("wss://localhost:8443/v3/connect", tls, SessionConfig::default())?;
//! let mut cfg = AgentConfig::default();
//! cfg.headers.insert(TOKEN_HEADER, "secret".parse()?);
//! let agent = Agent::new(Arc::new(transport), Arc::new(AllowList::new(["10.43.0.1:443"])), cfg,
//!     Metrics::unregistered())?;
//! tokio::spawn(async move { agent.run(CancellationToken::new()).await });
//!
//! // Server: a byte stream to the cluster's API server, through the agent.
//! let stream = server.dial_timeout("c-abc12", "tcp", "10.43.0.1:443",
//!     std::time::Duration::from_secs(10)).await?;
//! # drop(stream); Ok(()) }
//! ```

mod agent;
mod config;
mod dial_header;
mod dialer;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod metrics;
mod mux;
mod policy;
mod serve;
mod server;
mod session;
mod splice;
mod stream;
mod tls;
mod transport;
mod upgrade;
mod ws_io;

pub use agent::{Agent, AgentConfig, LOCAL_NETWORK, LocalService};
pub use config::{SessionConfig, StreamUse};
pub use dial_header::DialStatus;
pub use dialer::{Dialer, DirectDialer};
pub use error::{Error, Result};
pub use metrics::{DialErrorLabels, Metrics};
pub use policy::{AllowList, DestinationPolicy};
pub use serve::{ServeOptions, serve_connect};
pub use server::{SessionEvent, TunnelServer};
pub use stream::TunnelStream;
pub use tls::{ca_checksum, client_tls_pinned, client_tls_with_roots};
#[cfg(any(test, feature = "mock"))]
pub use transport::MockTransport;
pub use transport::{BoxedIo, SessionIo, Transport, WsTransport};
pub use upgrade::{Authorizer, CONNECT_PATH, PARAMS_HEADER, Rejection, TOKEN_HEADER};
