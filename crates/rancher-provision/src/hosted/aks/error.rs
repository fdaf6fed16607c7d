//! What can go wrong talking to Azure, typed by what the caller does about it.

use std::time::Duration;

use crate::ProvisionError;

/// An ARM error body's `{"error":{"code","message"}}`, or the token endpoint's
/// `{"error","error_description"}` (whose description starts with the `AADSTSnnnn` code).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AzureErrorBody {
    /// Azure's error code (`ResourceNotFound`, `OperationNotAllowed`, `invalid_client`).
    pub code: String,
    /// Azure's message, as Azure wrote it.
    pub message: String,
}

impl std::fmt::Display for AzureErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code.is_empty(), self.message.is_empty()) {
            (true, true) => write!(f, "(no error body)"),
            (false, true) => write!(f, "{}", self.code),
            (true, false) => write!(f, "{}", self.message),
            (false, false) => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

/// Why a call to Azure failed.
#[derive(Debug, thiserror::Error)]
pub enum AksError {
    /// Sign-in was refused (the token endpoint's `AADSTS…` error: wrong tenant, client id or secret,
    /// an expired or revoked secret), or Resource Manager answered 401/403 (no role on the scope).
    #[error("Azure rejected the credentials (HTTP {status}): {body}")]
    CredentialsRejected {
        /// The HTTP status.
        status: u16,
        /// Azure's error.
        body: AzureErrorBody,
    },
    /// The resource does not exist (404).
    #[error("not found: {what}: {body}")]
    NotFound {
        /// What was asked for (a resource path).
        what: String,
        /// Azure's error.
        body: AzureErrorBody,
    },
    /// 409: the resource is busy (an operation already in progress) or in a conflicting state.
    #[error("conflict: {0}")]
    Conflict(AzureErrorBody),
    /// 429 or 503 still after the retries.
    #[error("throttled by Azure after {attempts} attempts (retry after {retry_after:?}): {body}")]
    Throttled {
        /// How many requests were sent.
        attempts: u32,
        /// The last `Retry-After`.
        retry_after: Option<Duration>,
        /// Azure's error.
        body: AzureErrorBody,
    },
    /// Any other error answer from Resource Manager, with its body.
    #[error("Azure API error (HTTP {status}): {body}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// Azure's error.
        body: AzureErrorBody,
    },
    /// A long-running operation ended `Failed`; Azure's `error{code,message}`.
    #[error("the Azure operation failed: {0}")]
    OperationFailed(AzureErrorBody),
    /// A long-running operation ended `Canceled` (someone else cancelled it).
    #[error("the Azure operation was canceled")]
    OperationCanceled,
    /// The operation did not finish before the deadline.
    #[error("timed out after {0:?} waiting for the Azure operation")]
    Timeout(Duration),
    /// The caller's cancellation token fired.
    #[error("cancelled")]
    Cancelled,
    /// The request never got an answer (connection, TLS, timeout).
    #[error("cannot reach Azure: {0}")]
    Transport(#[source] reqwest::Error),
    /// Azure answered something this client cannot read.
    #[error("unexpected answer from Azure: {0}")]
    InvalidResponse(String),
    /// The client's own settings cannot work (a bad URL, CA or identifier); names the setting.
    #[error("{field}: {message}")]
    InvalidConfig {
        /// The setting, as a path from the cluster where it has one (`spec.aksConfig.baseUrl`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Something the client does not do (yet).
    #[error("not implemented: {0}")]
    NotImplemented(String),
}

/// The client's result type.
pub type Result<T, E = AksError> = std::result::Result<T, E>;

impl AksError {
    /// Whether retrying later may succeed (throttling, a busy resource, Azure's own 5xx, transport).
    pub fn is_transient(&self) -> bool {
        match self {
            AksError::Throttled { .. }
            | AksError::Conflict(_)
            | AksError::Timeout(_)
            | AksError::Transport(_) => true,
            AksError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// Whether this is a 404 (a resource that is not there).
    pub fn is_not_found(&self) -> bool {
        matches!(self, AksError::NotFound { .. })
    }
}

impl From<AksError> for ProvisionError {
    fn from(e: AksError) -> ProvisionError {
        match e {
            AksError::Cancelled => ProvisionError::Cancelled,
            AksError::NotImplemented(what) => ProvisionError::NotImplemented(what),
            AksError::InvalidConfig { field, message } => ProvisionError::InvalidSpec { field, message },
            e if e.is_transient() => ProvisionError::Transient(Box::new(e)),
            e => ProvisionError::Permanent(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provision_errors_say_whether_to_retry() {
        let body = AzureErrorBody { code: "OperationNotAllowed".into(), message: "in progress".into() };
        let p: ProvisionError = AksError::Conflict(body.clone()).into();
        assert!(p.is_transient());
        assert_eq!(p.to_string(), "conflict: OperationNotAllowed: in progress");
        let p: ProvisionError = AksError::Api { status: 503, body: body.clone() }.into();
        assert!(p.is_transient());
        let p: ProvisionError = AksError::CredentialsRejected { status: 401, body: body.clone() }.into();
        assert!(matches!(p, ProvisionError::Permanent(_)));
        let p: ProvisionError = AksError::OperationFailed(body).into();
        assert!(matches!(p, ProvisionError::Permanent(_)));
        assert!(matches!(ProvisionError::from(AksError::Cancelled), ProvisionError::Cancelled));
        let p: ProvisionError =
            AksError::InvalidConfig { field: "spec.aksConfig.baseUrl".into(), message: "x".into() }.into();
        assert!(matches!(p, ProvisionError::InvalidSpec { field, .. } if field == "spec.aksConfig.baseUrl"));
    }
}
