//! The one place where errors of the management API become Kubernetes `Status` JSON responses.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use rancher_core::store::StoreError;
use rancher_core::{Status, StatusCause};

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
            ApiError::Internal(_) => Status::internal(msg),
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
        if status.code >= 500 {
            tracing::error!(code = status.code, "{}", status.message);
        }
        status_response(&status)
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
