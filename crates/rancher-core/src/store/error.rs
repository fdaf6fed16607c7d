//! Store errors, each convertible to the Kubernetes [`Status`] a client should see.

use crate::Status;

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object with that key.
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// The resource (plural).
        resource: String,
        /// The object's name.
        name: String,
    },
    /// An object with that key exists already.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// The resource (plural).
        resource: String,
        /// The object's name.
        name: String,
    },
    /// The object changed since the version the caller read.
    #[error(
        "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; \
         please apply your changes to the latest version and try again"
    )]
    Conflict {
        /// The resource (plural).
        resource: String,
        /// The object's name.
        name: String,
    },
    /// The watch's starting version is older than the history the store keeps.
    #[error("too old resource version: {requested} ({oldest})")]
    Gone {
        /// The version asked for.
        requested: String,
        /// The oldest version still available.
        oldest: String,
    },
    /// The object or the request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The backend cannot serve this now and may later: etcd has lost its quorum or cannot be
    /// reached. Nothing was changed — or, for a write that timed out, it may still be applied; a
    /// client retries (with its object's version, so that a retry cannot apply twice).
    #[error("storage unavailable, try again later: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend failed (I/O, a corrupt record).
    #[error("storage backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A store result.
pub type StoreResult<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// Wraps a backend failure.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(e))
    }

    /// The Kubernetes `Status` a client should receive for this error.
    pub fn to_status(&self) -> Status {
        let msg = self.to_string();
        match self {
            StoreError::NotFound { .. } => Status::not_found(msg),
            StoreError::AlreadyExists { .. } => Status::already_exists(msg),
            StoreError::Conflict { .. } => Status::conflict(msg),
            StoreError::Gone { .. } => Status::gone(msg),
            StoreError::Invalid(_) => Status::invalid(msg, vec![]),
            StoreError::Unavailable(_) => Status::unavailable(msg),
            StoreError::Backend(_) => Status::internal(msg),
        }
    }
}
