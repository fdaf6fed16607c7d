//! What goes wrong talking to S3: each error names the operation and the bucket/key, and a refusal
//! carries S3's own `<Code>` and `<Message>`. Never the secret key, which only the signer sees.

use super::S3ConfigError;

/// The S3 operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Op {
    /// `HEAD /bucket`.
    HeadBucket,
    /// `PUT /bucket`.
    CreateBucket,
    /// `PUT /bucket/key`.
    PutObject,
    /// `GET /bucket/key`.
    GetObject,
    /// `GET /bucket?list-type=2`.
    ListObjectsV2,
    /// `DELETE /bucket/key`.
    DeleteObject,
}

impl std::fmt::Display for S3Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            S3Op::HeadBucket => "HeadBucket",
            S3Op::CreateBucket => "CreateBucket",
            S3Op::PutObject => "PutObject",
            S3Op::GetObject => "GetObject",
            S3Op::ListObjectsV2 => "ListObjectsV2",
            S3Op::DeleteObject => "DeleteObject",
        })
    }
}

/// An S3 failure.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The configuration cannot work (checked before any request).
    #[error("S3 configuration: {0}")]
    Config(#[from] S3ConfigError),
    /// S3 answered with an error status; `code` is its `<Code>` (`NoSuchBucket`,
    /// `SignatureDoesNotMatch`, `InvalidAccessKeyId`, …) or, for a bodiless answer (HEAD), one
    /// derived from the status (`NoSuchBucket` for 404, `Forbidden`, `HTTP 500`).
    #[error("S3 {op} {target}: {code}: {message} (HTTP {status})")]
    Service {
        /// The operation.
        op: S3Op,
        /// `bucket` or `bucket/key`.
        target: String,
        /// The HTTP status.
        status: u16,
        /// S3's error code.
        code: String,
        /// S3's message (may be empty).
        message: String,
    },
    /// The request did not complete: connection, TLS, timeout, or the body stream broke.
    #[error("S3 {op} {target}: request failed: {source}")]
    Transport {
        /// The operation.
        op: S3Op,
        /// `bucket` or `bucket/key`.
        target: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// A local file or writer failed (reading the upload, writing the download).
    #[error("S3 {op} {target}: {what}: {source}")]
    Local {
        /// The operation.
        op: S3Op,
        /// `bucket` or `bucket/key`.
        target: String,
        /// Which file or writer.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// S3 answered success with something this client cannot use (bad XML, a body too long, a
    /// length that does not match).
    #[error("S3 {op} {target}: unusable answer: {reason}")]
    InvalidResponse {
        /// The operation.
        op: S3Op,
        /// `bucket` or `bucket/key`.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl S3Error {
    /// S3's error code when S3 refused the request.
    pub fn code(&self) -> Option<&str> {
        match self {
            S3Error::Service { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// `Result` with [`S3Error`].
pub type Result<T, E = S3Error> = std::result::Result<T, E>;
