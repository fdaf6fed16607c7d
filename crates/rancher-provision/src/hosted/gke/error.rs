//! Why a GKE call failed, typed by what the caller can do about it, and how that maps onto the
//! provisioner's transient/permanent split.

use std::time::Duration;

use crate::ProvisionError;

/// Google's error body: `{"error": {"code": 404, "message": "…", "status": "NOT_FOUND"}}`
/// (<https://cloud.google.com/apis/design/errors#http_mapping>).
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub(crate) error: ErrorDetail,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
pub(crate) struct ErrorDetail {
    #[serde(default)]
    pub(crate) message: String,
    #[serde(default)]
    pub(crate) status: String,
}

/// Why a GKE call failed.
#[derive(Debug, thiserror::Error)]
pub enum GkeError {
    /// The service-account key JSON cannot be used (malformed, not a service account, a private
    /// key that is not RSA PKCS#8, a token URI that is not HTTPS).
    #[error("the service-account key is not usable: {0}")]
    InvalidKey(String),
    /// The client's options cannot work (a base URL that is not HTTPS, a CA that is not PEM).
    #[error("GKE client options: {0}")]
    Config(String),
    /// Google refused the credentials: the token endpoint answered `invalid_grant` (a deleted or
    /// wrong key) or the API answered 401/403.
    #[error("Google rejected the credentials: {message}")]
    CredentialsRejected {
        /// Google's words.
        message: String,
    },
    /// The cluster, node pool or operation does not exist (404).
    #[error("not found: {message}")]
    NotFound {
        /// Google's words.
        message: String,
    },
    /// The resource exists already (409 `ALREADY_EXISTS`) or another operation is in progress on
    /// it (400 `FAILED_PRECONDITION`, 409 `ABORTED`).
    #[error("conflict ({status}): {message}")]
    Conflict {
        /// Google's status (`ALREADY_EXISTS`, `FAILED_PRECONDITION`, `ABORTED`).
        status: String,
        /// Google's words.
        message: String,
    },
    /// Still throttled (429) or unavailable (503) after the client's bounded retries.
    #[error("Google answered {code} {attempts} times; last: {message}")]
    Throttled {
        /// 429 or 503.
        code: u16,
        /// How many times the call was sent.
        attempts: u32,
        /// Google's words on the last answer.
        message: String,
        /// The last `Retry-After`, if there was one.
        retry_after: Option<Duration>,
    },
    /// Any other error answer, with Google's body quoted.
    #[error("Google API error {code} {status}: {message}")]
    Api {
        /// The HTTP status.
        code: u16,
        /// Google's status (`INVALID_ARGUMENT`, `INTERNAL`, …).
        status: String,
        /// Google's words.
        message: String,
    },
    /// A long-running operation ended with an error.
    #[error("GKE operation {operation} ({operation_type}) failed: {message}")]
    OperationFailed {
        /// The operation's name.
        operation: String,
        /// Its `operationType` (`CREATE_CLUSTER`, `UPGRADE_MASTER`, …).
        operation_type: String,
        /// Its `error.message` (or `statusMessage`).
        message: String,
    },
    /// A long-running operation was not done by the caller's deadline (it goes on at Google).
    #[error("GKE operation {operation} not done after {waited:?}")]
    OperationTimeout {
        /// The operation's name.
        operation: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The caller's cancellation token fired.
    #[error("cancelled")]
    Cancelled,
    /// The request did not get an answer (connection, TLS, timeout).
    #[error("{what}: {source}")]
    Transport {
        /// The call.
        what: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// An answer that is not what Google documents.
    #[error("unexpected answer to {what}: {reason}")]
    InvalidResponse {
        /// The call.
        what: String,
        /// What was wrong with it.
        reason: String,
    },
}

impl GkeError {
    /// The error for an HTTP error answer: `code` and Google's body (or whatever came).
    pub(crate) fn from_answer(code: u16, body: &[u8]) -> GkeError {
        let detail = serde_json::from_slice::<ErrorBody>(body).map(|b| b.error).unwrap_or_default();
        let message = if detail.message.is_empty() {
            String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_owned()
        } else {
            detail.message
        };
        let status = detail.status;
        match code {
            401 | 403 => GkeError::CredentialsRejected { message: format!("{code} {status}: {message}") },
            404 => GkeError::NotFound { message },
            409 => GkeError::Conflict { status, message },
            400 if status == "FAILED_PRECONDITION" => GkeError::Conflict { status, message },
            _ => GkeError::Api { code, status, message },
        }
    }

    /// Whether the cluster (or pool, or operation) is not there: deleting it is done.
    pub fn is_not_found(&self) -> bool {
        matches!(self, GkeError::NotFound { .. })
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            GkeError::Conflict { status, .. } => status != "ALREADY_EXISTS",
            GkeError::Api { code, .. } => *code >= 500 || *code == 429,
            GkeError::Throttled { .. }
            | GkeError::OperationTimeout { .. }
            | GkeError::Transport { .. }
            | GkeError::InvalidResponse { .. } => true,
            GkeError::InvalidKey(_)
            | GkeError::Config(_)
            | GkeError::CredentialsRejected { .. }
            | GkeError::NotFound { .. }
            | GkeError::OperationFailed { .. }
            | GkeError::Cancelled => false,
        }
    }
}

impl From<GkeError> for ProvisionError {
    fn from(e: GkeError) -> Self {
        match e {
            GkeError::Cancelled => ProvisionError::Cancelled,
            e if e.is_transient() => ProvisionError::transient(e),
            e => ProvisionError::permanent(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_error_bodies_become_typed_errors_quoting_google() {
        let body = br#"{"error":{"code":404,"message":"Not found: projects/p/locations/l/clusters/c.","status":"NOT_FOUND"}}"#;
        let e = GkeError::from_answer(404, body);
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "not found: Not found: projects/p/locations/l/clusters/c.");
        let busy = br#"{"error":{"code":400,"message":"Cluster is running incompatible operation operation-1.","status":"FAILED_PRECONDITION"}}"#;
        let e = GkeError::from_answer(400, busy);
        assert!(matches!(&e, GkeError::Conflict { status, .. } if status == "FAILED_PRECONDITION"));
        assert!(ProvisionError::from(e).is_transient());
        let exists = br#"{"error":{"code":409,"message":"Already exists","status":"ALREADY_EXISTS"}}"#;
        assert!(!ProvisionError::from(GkeError::from_answer(409, exists)).is_transient());
        let e = GkeError::from_answer(
            403,
            br#"{"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}"#,
        );
        assert_eq!(e.to_string(), "Google rejected the credentials: 403 PERMISSION_DENIED: denied");
        assert!(!ProvisionError::from(e).is_transient());
        let e = GkeError::from_answer(502, b"<html>bad gateway</html>");
        assert_eq!(e.to_string(), "Google API error 502 : <html>bad gateway</html>");
        assert!(ProvisionError::from(e).is_transient());
        let e = GkeError::from_answer(
            400,
            br#"{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}"#,
        );
        assert!(!e.is_transient());
        assert!(matches!(ProvisionError::from(GkeError::Cancelled), ProvisionError::Cancelled));
    }
}
