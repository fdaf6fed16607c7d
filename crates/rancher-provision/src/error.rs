//! Why a provisioner call failed, typed by what the controller should do about it.

/// A cause carried by an error (the infrastructure API's, an I/O error, …).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a provisioner call failed. The variant tells the controller what to do: retry with backoff
/// ([`Transient`](ProvisionError::Transient)), or record the failure and wait for the user to change
/// the cluster (everything else).
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The cluster's spec cannot be provisioned as written; the user must change `field`. From
    /// [`validate`](crate::Provisioner::validate), the API answers 422 naming the field and stores nothing.
    #[error("{field}: {message}")]
    InvalidSpec {
        /// The offending field, as a JSON path from the cluster (`spec.driverConfig.region`).
        field: String,
        /// What is wrong with it and how to fix it.
        message: String,
    },
    /// A failure that may pass (a timeout, a throttled or unavailable API); the controller retries
    /// with exponential backoff.
    #[error("{0}")]
    Transient(#[source] BoxError),
    /// A failure retrying will not fix (quota exhausted, credentials rejected); the controller records
    /// it in `Provisioned=False` and retries only when the cluster changes.
    #[error("{0}")]
    Permanent(#[source] BoxError),
    /// The provisioner does not support what the cluster asks (a permanent failure).
    #[error("not implemented: {0}")]
    NotImplemented(String),
    /// The call stopped because [`ProvisionContext::cancel`](crate::ProvisionContext::cancel) fired
    /// (the cluster is being deleted, or the server is shutting down).
    #[error("cancelled")]
    Cancelled,
}

impl ProvisionError {
    /// [`InvalidSpec`](Self::InvalidSpec) naming `field`.
    pub fn invalid_spec(field: impl Into<String>, message: impl Into<String>) -> Self {
        ProvisionError::InvalidSpec { field: field.into(), message: message.into() }
    }

    /// [`Transient`](Self::Transient) from any error (or a message).
    pub fn transient(cause: impl Into<BoxError>) -> Self {
        ProvisionError::Transient(cause.into())
    }

    /// [`Permanent`](Self::Permanent) from any error (or a message).
    pub fn permanent(cause: impl Into<BoxError>) -> Self {
        ProvisionError::Permanent(cause.into())
    }

    /// Whether the controller retries this failure with backoff.
    pub fn is_transient(&self) -> bool {
        matches!(self, ProvisionError::Transient(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_failed_and_whether_to_retry() {
        let e = ProvisionError::invalid_spec("spec.driverConfig.size", "must be at least 1");
        assert_eq!(e.to_string(), "spec.driverConfig.size: must be at least 1");
        assert!(!e.is_transient());
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "the API timed out");
        let e = ProvisionError::transient(io);
        assert!(e.is_transient());
        assert_eq!(std::error::Error::source(&e).unwrap().to_string(), "the API timed out");
        assert_eq!(ProvisionError::permanent("quota exhausted").to_string(), "quota exhausted");
    }
}
