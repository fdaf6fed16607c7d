//! The one place where errors of the management API become Kubernetes `Status` JSON responses.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use rancher_core::store::StoreError;
use rancher_core::{Status, StatusCause};

use super::identity::local::VerifyError;
use super::services::access::{EscalationError, MembershipUnreadable};
use super::services::login::LoginError;
use super::services::tokens::TokenError;
use super::services::users::UserError;

/// Why an API request failed. Each variant maps to one HTTP code and `Status.reason`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No credential, or one that is malformed, unknown, expired, disabled, or whose user is gone (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// The path or object does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The method is not supported on this path (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request cannot be understood: malformed JSON, bad query parameters (400).
    #[error("{0}")]
    BadRequest(String),
    /// The object is not valid; `causes` name the fields (422).
    #[error("{message}")]
    Invalid {
        /// What is wrong, for a person.
        message: String,
        /// The fields at fault.
        causes: Vec<StatusCause>,
    },
    /// An object with that name (or username) exists already (409).
    #[error("{0}")]
    AlreadyExists(String),
    /// The request conflicts with the server's configuration or the object's state (409 Conflict).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than the server accepts (413).
    #[error("the request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not JSON (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The store refused or failed the operation (its own code: 404, 409, 410, 422, 500).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The feature is not built yet (501).
    #[error("{0}")]
    NotImplemented(String),
    /// A dependency (the store) cannot be reached (503).
    #[error("{0}")]
    Unavailable(String),
    /// Too many attempts, e.g. failed logins; retry after the given seconds (429 with `Retry-After`).
    #[error("{message}")]
    TooManyRequests {
        /// What was throttled.
        message: String,
        /// Seconds until the next attempt may succeed.
        retry_after_secs: u32,
    },
    /// A bug or an unexpected failure (500).
    #[error("{0}")]
    Internal(String),
    /// An object or a header could not be encoded or decoded for the response: a bug (500).
    #[error("encoding {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ApiError {
    /// A 422 Invalid naming one field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::Invalid {
            message: format!("{field}: Invalid value: {message}"),
            causes: vec![StatusCause { reason: "FieldValueInvalid".into(), message, field: field.into() }],
        }
    }

    /// A 500 for `what` that could not be encoded or decoded.
    pub(crate) fn encode<E>(what: &'static str) -> impl FnOnce(E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |e| ApiError::Encode { what, source: Box::new(e) }
    }

    /// The Kubernetes `Status` a client receives for this error.
    pub fn to_status(&self) -> Status {
        let msg = self.to_string();
        match self {
            ApiError::Unauthenticated(_) => Status::unauthorized(msg),
            ApiError::Forbidden(_) => Status::forbidden(msg),
            ApiError::NotFound(_) => Status::not_found(msg),
            ApiError::MethodNotAllowed(_) => Status::method_not_allowed(msg),
            ApiError::BadRequest(_) => Status::bad_request(msg),
            ApiError::Invalid { causes, .. } => Status::invalid(msg, causes.clone()),
            ApiError::AlreadyExists(_) => Status::already_exists(msg),
            ApiError::Conflict(_) => Status::conflict(msg),
            ApiError::TooLarge { .. } => Status::too_large(msg),
            ApiError::UnsupportedMediaType(_) => Status::unsupported_media_type(msg),
            ApiError::Store(e) => e.to_status(),
            ApiError::NotImplemented(_) => Status::not_implemented(msg),
            ApiError::Unavailable(_) => Status::unavailable(msg),
            ApiError::TooManyRequests { retry_after_secs, .. } => {
                Status::too_many_requests(msg, *retry_after_secs)
            }
            ApiError::Internal(_) | ApiError::Encode { .. } => Status::internal(msg),
        }
    }
}

/// A `Status` as an HTTP response with its code.
pub(crate) fn status_response(status: &Status) -> Response {
    let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (code, axum::Json(status)).into_response();
    if code == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
    }
    if let Some(secs) = status.details.as_ref().and_then(|d| d.retry_after_seconds)
        && code == StatusCode::TOO_MANY_REQUESTS
    {
        resp.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
    }
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.to_status();
        // A 503 is the server telling a client to come back (its store lost quorum, it is draining):
        // a warning, not one error per request for as long as an outage lasts.
        match status.code {
            503 => tracing::warn!(code = status.code, "{}", status.message),
            500.. => tracing::error!(code = status.code, "{}", status.message),
            _ => {}
        }
        status_response(&status)
    }
}

// ---- The services' errors, as users see them ----------------------------------------------------

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::NegativeTtl { .. } => ApiError::invalid_field("ttl", e.to_string()),
            TokenError::ClusterNotFound { .. } => ApiError::invalid_field("clusterId", e.to_string()),
            TokenError::ReadCluster { source, .. } | TokenError::Store(source) => ApiError::Store(source),
            TokenError::Revoke { source, .. } => ApiError::Store(source),
            TokenError::CheckMembership(e) => e.into(),
            TokenError::NotClusterMember { .. } => ApiError::Forbidden(e.to_string()),
            TokenError::NoFreeName => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<MembershipUnreadable> for ApiError {
    fn from(e: MembershipUnreadable) -> Self {
        ApiError::Unavailable(e.source.to_string())
    }
}

impl From<EscalationError> for ApiError {
    fn from(e: EscalationError) -> Self {
        match e {
            EscalationError::LoadGrants(source) => ApiError::Store(source),
            EscalationError::Escalates { .. } | EscalationError::ManagesStronger { .. } => {
                ApiError::Forbidden(e.to_string())
            }
            EscalationError::UnknownTemplate { field, source } => {
                ApiError::invalid_field(field, source.to_string())
            }
        }
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::IdChosen => ApiError::invalid_field("metadata.name", e.to_string()),
            UserError::UsernameMissing | UserError::UsernameInvalid { .. } => {
                ApiError::invalid_field("spec.username", e.to_string())
            }
            UserError::PasswordMissing => ApiError::invalid_field("spec.password", e.to_string()),
            UserError::WeakPassword { field, source } => ApiError::invalid_field(field, source.to_string()),
            UserError::UsernameTaken { .. } => ApiError::AlreadyExists(e.to_string()),
            UserError::OwnPasswordByUpdate { .. }
            | UserError::NoLocalPassword { .. }
            | UserError::WrongCurrentPassword => ApiError::Forbidden(e.to_string()),
            UserError::Hashing(e) => e.into(),
            UserError::Escalation(e) => (*e).into(),
            UserError::ListUsers(source)
            | UserError::Store { source, .. }
            | UserError::BindRole { source, .. } => ApiError::Store(source),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Throttled(t) => {
                ApiError::TooManyRequests { message: t.to_string(), retry_after_secs: t.retry_after_secs() }
            }
            LoginError::WrongCredentials => ApiError::Unauthenticated(e.to_string()),
            LoginError::CheckPassword(VerifyError::Hashing(e)) => e.into(),
            LoginError::CheckPassword(VerifyError::Store(_)) => ApiError::Unavailable(e.to_string()),
            LoginError::IssueToken(e) => e.into(),
        }
    }
}

/// The result of an API handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_keep_their_codes() {
        let e = ApiError::from(StoreError::Conflict { resource: "clusters".into(), name: "a".into() });
        assert_eq!(e.to_status().code, 409);
        assert_eq!(e.to_status().reason, "Conflict");
        let e = ApiError::invalid_field("metadata.name", "\"A\" is not a valid name");
        let s = e.to_status();
        assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
        assert_eq!(s.details.unwrap().causes[0].field, "metadata.name");
    }
}
