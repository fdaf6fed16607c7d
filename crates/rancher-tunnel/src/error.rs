//! The crate's error type: one enum, each variant named for the step that failed.

use std::time::Duration;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a tunnel operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No session is registered for this client key (the agent is not connected).
    #[error("no tunnel session for client {0:?}")]
    NoSession(String),
    /// `dial_timeout` waited and no session for the client key appeared.
    #[error("no tunnel session for client {key:?} appeared within {waited:?}")]
    NoSessionWithin {
        /// The client key that was asked for.
        key: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The session ended while the operation was in progress.
    #[error("tunnel session closed")]
    SessionClosed,
    /// The session already has [`SessionConfig::max_streams`](crate::SessionConfig) streams
    /// open; this dial fails, the session continues.
    #[error("tunnel session has reached its limit of {limit} open streams")]
    StreamLimit {
        /// The configured limit.
        limit: usize,
    },
    /// The multiplexer refused to open a stream (for example the stream limit was reached).
    #[error("could not open a tunnel stream: {0}")]
    OpenStream(#[source] std::io::Error),
    /// The agent's destination policy refused the address; the session is unaffected.
    #[error("agent refused to dial {network}/{address}: {reason}")]
    DialRefused {
        /// Network asked for (`tcp`).
        network: String,
        /// Address asked for (`host:port`).
        address: String,
        /// The agent's reason.
        reason: String,
    },
    /// The agent tried the address and could not reach it; the session is unaffected.
    #[error("agent could not dial {network}/{address}: {reason}")]
    DialFailed {
        /// Network asked for (`tcp`).
        network: String,
        /// Address asked for (`host:port`).
        address: String,
        /// The agent's reason.
        reason: String,
    },
    /// A dial request that cannot be encoded (empty or over-long network or address).
    #[error("invalid dial request: {0}")]
    InvalidDial(String),
    /// The peer broke the tunnel's stream protocol (bad dial header or reply).
    #[error("tunnel protocol error: {0}")]
    Protocol(String),
    /// An I/O error on the session or a stream.
    #[error("tunnel I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS configuration could not be built (bad PEM, no certificates, bad server name).
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    /// The server CA does not match the pinned SHA-256 checksum (`CATTLE_CA_CHECKSUM`).
    #[error("server CA checksum mismatch: expected {expected}, got {actual}")]
    CaChecksumMismatch {
        /// The pinned checksum (hex).
        expected: String,
        /// The checksum of the CA that was offered (hex).
        actual: String,
    },
    /// The WebSocket upgrade to the server failed (connection, TLS or HTTP level).
    #[error("WebSocket handshake with {url} failed: {source}")]
    Handshake {
        /// The URL the agent connected to.
        url: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server refused the agent's credentials.
    #[error("server refused the tunnel credentials (HTTP {status})")]
    Unauthorized {
        /// The HTTP status code the server answered with.
        status: u16,
    },
    /// The server is admitting agents at a bounded rate and asked this one to come back later
    /// (`503` or `429`); the agent waits `retry_after` (its `Retry-After`) instead of its backoff.
    #[error("the server is busy admitting agents; retry after {retry_after:?}")]
    Busy {
        /// When the server said to come back; `None` when it did not say.
        retry_after: Option<Duration>,
    },
    /// A configuration value is out of range.
    #[error("invalid tunnel configuration: {0}")]
    Config(String),
    /// An operation did not complete in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was being waited for.
        what: &'static str,
        /// The limit that passed.
        after: Duration,
    },
    /// The server URL cannot be used.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The transport does not implement this side of the connection.
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
}

impl Error {
    /// Whether the agent should retry connecting after this error (with backoff).
    ///
    /// Configuration mistakes (bad URL, bad TLS material) are permanent; everything that can
    /// change on the server side (it restarts, a token gets accepted) is retried.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Error::Config(_) | Error::InvalidUrl { .. } | Error::TlsConfig(_) | Error::NotImplemented(_)
        )
    }
}
