//! Why an EKS call failed, typed by what the caller can do about it (from AWS's error codes), and how
//! that maps onto the provisioner's transient/permanent split. Every variant names the operation.

use std::time::Duration;

use crate::ProvisionError;

/// Why an EKS call failed.
#[derive(Debug, thiserror::Error)]
pub enum EksError {
    /// The client cannot be built as asked (not AWS keys, a bad region or endpoint URL).
    #[error("EKS client: {0}")]
    Config(String),
    /// AWS refused the credentials (`UnrecognizedClientException`, `InvalidSignatureException`,
    /// `AccessDeniedException`, `ExpiredTokenException`, a bare 401/403).
    #[error("{operation}: AWS rejected the credentials ({code}): {message}")]
    CredentialsRejected {
        /// The EKS operation (`CreateCluster`).
        operation: &'static str,
        /// AWS's error code.
        code: String,
        /// AWS's words.
        message: String,
    },
    /// The cluster, node group or update does not exist (`ResourceNotFoundException`).
    #[error("{operation}: not found: {message}")]
    NotFound {
        /// The EKS operation.
        operation: &'static str,
        /// AWS's words.
        message: String,
    },
    /// The resource exists already or is busy (`ResourceInUseException`: a name taken, a cluster
    /// with node groups still attached, an update in progress).
    #[error("{operation}: in use: {message}")]
    InUse {
        /// The EKS operation.
        operation: &'static str,
        /// AWS's words.
        message: String,
    },
    /// The request is invalid whatever the state (`InvalidParameterException`, `ClientException`,
    /// `ResourceLimitExceededException`, `UnsupportedAvailabilityZoneException`).
    #[error("{operation}: {code}: {message}")]
    Invalid {
        /// The EKS operation.
        operation: &'static str,
        /// AWS's error code.
        code: String,
        /// AWS's words.
        message: String,
    },
    /// The request does not fit the resource's current state (`InvalidRequestException`, e.g. a
    /// cluster still `CREATING`): it may work later.
    #[error("{operation}: not now ({code}): {message}")]
    NotNow {
        /// The EKS operation.
        operation: &'static str,
        /// AWS's error code.
        code: String,
        /// AWS's words.
        message: String,
    },
    /// Still throttled after the client's retries (`ThrottlingException`, 429).
    #[error("{operation}: throttled by AWS after retries: {message}")]
    Throttled {
        /// The EKS operation.
        operation: &'static str,
        /// AWS's words.
        message: String,
    },
    /// Any other error answer (`ServerException`, `ServiceUnavailableException`, …).
    #[error("{operation}: AWS error {status} {code}: {message}")]
    Api {
        /// The EKS operation.
        operation: &'static str,
        /// The HTTP status.
        status: u16,
        /// AWS's error code.
        code: String,
        /// AWS's words.
        message: String,
    },
    /// An update (`DescribeUpdate`) ended `Failed` or `Cancelled`.
    #[error("EKS update {update_id} ({kind}) ended {status}: {errors}")]
    UpdateFailed {
        /// The update's id.
        update_id: String,
        /// Its type (`VersionUpdate`, `ConfigUpdate`).
        kind: String,
        /// `Failed` or `Cancelled`.
        status: String,
        /// Its errors, joined.
        errors: String,
    },
    /// A cluster, node group or update did not reach the state waited for by the deadline.
    #[error("{what} not {wanted} after {waited:?} (last: {last})")]
    Timeout {
        /// What was waited for (`cluster eks-one`).
        what: String,
        /// The state wanted.
        wanted: &'static str,
        /// The last state seen.
        last: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// A cluster or node group ended in a failed state while being waited for.
    #[error("{what} is {status}: {detail}")]
    Failed {
        /// What (`node group ng-1 of eks-one`).
        what: String,
        /// The state (`FAILED`, `CREATE_FAILED`, `DEGRADED`).
        status: String,
        /// Health issues, if AWS gave any.
        detail: String,
    },
    /// The caller's cancellation token fired.
    #[error("cancelled")]
    Cancelled,
    /// The request got no answer (connection, TLS, timeout) after the client's retries.
    #[error("{operation}: no answer from EKS: {message}")]
    Transport {
        /// The EKS operation.
        operation: &'static str,
        /// What went wrong.
        message: String,
    },
    /// An answer that is not what AWS documents.
    #[error("{operation}: unexpected answer: {reason}")]
    InvalidResponse {
        /// The EKS operation.
        operation: &'static str,
        /// What was wrong with it.
        reason: String,
    },
}

impl EksError {
    /// The error for an AWS error answer: `status`, AWS's error `code` and message.
    pub fn from_code(operation: &'static str, status: u16, code: &str, message: &str) -> EksError {
        let message = message.to_owned();
        let owned = || code.to_owned();
        match code {
            "ResourceNotFoundException" | "NotFoundException" => EksError::NotFound { operation, message },
            "ResourceInUseException" => EksError::InUse { operation, message },
            "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "InvalidClientTokenId"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "AccessDeniedException"
            | "AccessDenied"
            | "ExpiredTokenException" => EksError::CredentialsRejected { operation, code: owned(), message },
            "InvalidParameterException"
            | "ClientException"
            | "ResourceLimitExceededException"
            | "UnsupportedAvailabilityZoneException"
            | "ResourcePropagationDelayException" => EksError::Invalid { operation, code: owned(), message },
            "InvalidRequestException" => EksError::NotNow { operation, code: owned(), message },
            "ThrottlingException" | "TooManyRequestsException" | "Throttling" => {
                EksError::Throttled { operation, message }
            }
            _ if status == 401 || status == 403 => {
                EksError::CredentialsRejected { operation, code: owned(), message }
            }
            _ if status == 429 => EksError::Throttled { operation, message },
            _ => EksError::Api { operation, status, code: owned(), message },
        }
    }

    /// Whether the cluster (or node group, or update) is not there: deleting it is done.
    pub fn is_not_found(&self) -> bool {
        matches!(self, EksError::NotFound { .. })
    }

    /// Whether AWS refused the credentials.
    pub fn is_credentials(&self) -> bool {
        matches!(self, EksError::CredentialsRejected { .. })
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            EksError::Api { status, .. } => *status >= 500 || *status == 429,
            // ResourcePropagationDelayException: a just-made resource is not visible yet.
            EksError::Invalid { code, .. } => code == "ResourcePropagationDelayException",
            EksError::InUse { .. }
            | EksError::NotNow { .. }
            | EksError::Throttled { .. }
            | EksError::Timeout { .. }
            | EksError::Transport { .. }
            | EksError::InvalidResponse { .. } => true,
            EksError::Config(_)
            | EksError::CredentialsRejected { .. }
            | EksError::NotFound { .. }
            | EksError::UpdateFailed { .. }
            | EksError::Failed { .. }
            | EksError::Cancelled => false,
        }
    }
}

impl From<EksError> for ProvisionError {
    fn from(e: EksError) -> Self {
        match e {
            EksError::Cancelled => ProvisionError::Cancelled,
            e if e.is_transient() => ProvisionError::transient(e),
            e => ProvisionError::permanent(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_error_codes_become_typed_errors_naming_the_operation() {
        let e = EksError::from_code(
            "DescribeCluster",
            404,
            "ResourceNotFoundException",
            "No cluster found for name: x.",
        );
        assert!(e.is_not_found() && !e.is_transient());
        assert_eq!(e.to_string(), "DescribeCluster: not found: No cluster found for name: x.");

        let busy = EksError::from_code(
            "DeleteCluster",
            409,
            "ResourceInUseException",
            "Cluster has nodegroups attached",
        );
        assert!(matches!(busy, EksError::InUse { .. }));
        assert!(ProvisionError::from(busy).is_transient());

        for code in ["UnrecognizedClientException", "InvalidSignatureException", "AccessDeniedException"] {
            let e = EksError::from_code(
                "ListClusters",
                403,
                code,
                "The security token included in the request is invalid.",
            );
            assert!(e.is_credentials(), "{code}");
            assert!(e.to_string().starts_with("ListClusters: AWS rejected the credentials"), "{e}");
            assert!(!ProvisionError::from(e).is_transient(), "{code}");
        }

        let e = EksError::from_code("CreateNodegroup", 400, "InvalidParameterException", "bad subnet");
        assert!(!ProvisionError::from(e).is_transient());
        let e = EksError::from_code(
            "UpdateClusterVersion",
            400,
            "InvalidRequestException",
            "cluster is CREATING",
        );
        assert!(ProvisionError::from(e).is_transient());
        let e = EksError::from_code("CreateCluster", 400, "ThrottlingException", "Rate exceeded");
        assert!(matches!(e, EksError::Throttled { .. }) && e.is_transient());
        let e = EksError::from_code("CreateCluster", 503, "ServiceUnavailableException", "later");
        assert!(ProvisionError::from(e).is_transient());
        let e = EksError::from_code("CreateCluster", 403, "", "");
        assert!(e.is_credentials());
        assert!(matches!(ProvisionError::from(EksError::Cancelled), ProvisionError::Cancelled));
    }
}
