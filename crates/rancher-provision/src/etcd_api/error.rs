//! Why a call to etcd failed, naming the call and the endpoint.

use crate::BoxError;

/// Why a call to etcd's gateway failed. Every variant but [`Tls`](Self::Tls) names the call
/// (`member list`, `snapshot`, …) and the endpoint it went to.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The client's TLS material is unusable (a PEM that holds no certificate or key, a server name
    /// that is neither a DNS name nor an IP address).
    #[error("etcd client TLS: {0}")]
    Tls(String),
    /// The connection could not be made (nothing listens, the SSH host could not forward, the TLS
    /// handshake failed — a certificate not signed by the CA, a name not in its SANs).
    #[error("etcd {call} at {endpoint}: cannot connect: {source}")]
    Connect {
        /// The call.
        call: &'static str,
        /// The endpoint, as the connector describes it.
        endpoint: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The call did not finish within its deadline (or a snapshot stalled).
    #[error("etcd {call} at {endpoint}: no answer within {seconds} s")]
    Timeout {
        /// The call.
        call: &'static str,
        /// The endpoint.
        endpoint: String,
        /// The deadline that passed.
        seconds: u64,
    },
    /// The HTTP exchange broke off (the connection closed mid-answer).
    #[error("etcd {call} at {endpoint}: {source}")]
    Http {
        /// The call.
        call: &'static str,
        /// The endpoint.
        endpoint: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// etcd refused the call (an HTTP error status, or an error object in the answer): a member
    /// id it does not know, a learner not yet in sync, no leader.
    #[error("etcd {call} at {endpoint}: etcd refused: {message} (HTTP {status})")]
    Refused {
        /// The call.
        call: &'static str,
        /// The endpoint.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// etcd's message.
        message: String,
    },
    /// The answer is not what etcd's gateway answers (not JSON, a field missing, too large, a
    /// snapshot whose checksum does not match).
    #[error("etcd {call} at {endpoint}: bad answer: {message}")]
    BadAnswer {
        /// The call.
        call: &'static str,
        /// The endpoint.
        endpoint: String,
        /// What is wrong.
        message: String,
    },
    /// Writing the snapshot where the caller wanted it failed.
    #[error("etcd snapshot from {endpoint}: writing it: {source}")]
    Write {
        /// The endpoint.
        endpoint: String,
        /// The write error.
        #[source]
        source: std::io::Error,
    },
    /// The argument is not valid (an empty peer URL list, a URL that is not http(s)).
    #[error("etcd {call}: {message}")]
    InvalidInput {
        /// The call.
        call: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl EtcdError {
    /// Whether retrying may succeed: a connection that failed or broke, a deadline that passed.
    /// A refusal by etcd is transient only when it says so ("no leader", "too many requests", "not
    /// started", "unhealthy cluster" right after a member connected, a learner not yet in sync).
    pub fn is_transient(&self) -> bool {
        match self {
            EtcdError::Connect { .. } | EtcdError::Timeout { .. } | EtcdError::Http { .. } => true,
            EtcdError::Refused { message, status, .. } => {
                *status == 503
                    || [
                        "no leader",
                        "too many requests",
                        "not started",
                        "in sync with leader",
                        "unhealthy cluster",
                        "timed out",
                    ]
                    .iter()
                    .any(|m| message.contains(m))
            }
            EtcdError::Tls(_)
            | EtcdError::BadAnswer { .. }
            | EtcdError::Write { .. }
            | EtcdError::InvalidInput { .. } => false,
        }
    }
}

impl From<EtcdError> for crate::ProvisionError {
    fn from(e: EtcdError) -> Self {
        if e.is_transient() {
            crate::ProvisionError::transient(e)
        } else {
            crate::ProvisionError::permanent(e)
        }
    }
}
