//! Why an SSH operation failed, typed by what the caller should do about it.

use std::path::PathBuf;

use crate::BoxError;

/// Why an SSH operation failed. Every variant names the host (`address:port`) it was talking to;
/// none carries key material. [`is_transient`](SshError::is_transient) says which are worth
/// retrying.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The host could not be dialled (refused, no route, name not found, the bastion could not open
    /// the forwarded connection).
    #[error("{host}: unreachable: {source}")]
    Unreachable {
        /// The host dialled.
        host: String,
        /// The dial's error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting (dial, handshake, authentication) did not finish within the timeout.
    #[error("{host}: no SSH session within the timeout")]
    Timeout {
        /// The host dialled.
        host: String,
    },
    /// The host refused the private key for this user.
    #[error("authentication failed for {user}@{host}: the host refused the key")]
    Auth {
        /// The host.
        host: String,
        /// The user the key was offered for.
        user: String,
    },
    /// The host presented a key other than the pinned one(s): refused, since it may be another
    /// machine (or a man in the middle). Re-pin only after checking the host.
    #[error("{host}: host key changed: expected {expected}, the host presented {actual}")]
    HostKeyChanged {
        /// The host.
        host: String,
        /// SHA256 fingerprint(s) of the pinned key(s), comma-separated.
        expected: String,
        /// SHA256 fingerprint of the key the host presented.
        actual: String,
    },
    /// An uploaded file's SHA-256 on the host is neither the expected one nor that of what was sent:
    /// the transfer garbled it. The file was removed and the destination left as it was.
    #[error("{host}: {path}: checksum mismatch: expected sha256 {expected}, the host has {actual}")]
    ChecksumMismatch {
        /// The host.
        host: String,
        /// The destination path on the host.
        path: String,
        /// The expected SHA-256 (hex).
        expected: String,
        /// The SHA-256 (hex) of what arrived.
        actual: String,
    },
    /// What was sent arrived intact but does not hash to the expected SHA-256: the source is not
    /// the file the caller expected (a release binary replaced, a manifest that is wrong). Nothing
    /// was installed; sending it again cannot help.
    #[error(
        "{host}: {path}: checksum mismatch: expected sha256 {expected}, the file sent has {actual} \
         (the source is not the expected file)"
    )]
    SourceMismatch {
        /// The host.
        host: String,
        /// The destination path on the host.
        path: String,
        /// The expected SHA-256 (hex).
        expected: String,
        /// The SHA-256 (hex) of what was sent (and arrived).
        actual: String,
    },
    /// The session ended (the connection dropped, keepalives went unanswered, the host closed it).
    #[error("{host}: the SSH connection was lost")]
    Disconnected {
        /// The host.
        host: String,
    },
    /// A command exited non-zero (from [`SshSession::run`](super::SshSession::run) and the upload's
    /// steps on the host).
    #[error("{host}: `{cmd}` exited with status {status}: {stderr_tail}")]
    Remote {
        /// The host.
        host: String,
        /// The command (shortened to 200 characters).
        cmd: String,
        /// Its exit status (128 + n when killed by signal n).
        status: u32,
        /// The last 1 KiB of its standard error.
        stderr_tail: String,
    },
    /// The private key cannot be used (unparsable, encrypted). The key itself is never shown.
    #[error("private key: {0}")]
    Key(String),
    /// The target, pinned host keys or an upload's arguments are not valid.
    #[error("{host}: {message}")]
    InvalidInput {
        /// The host the call was for.
        host: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The host broke the SSH protocol or refused a channel or request.
    #[error("{host}: SSH: {source}")]
    Protocol {
        /// The host.
        host: String,
        /// The protocol error.
        #[source]
        source: BoxError,
    },
    /// An SFTP transfer failed on the host (permission denied, disk full, no such directory).
    #[error("{host}: {path}: transfer failed: {source}")]
    Transfer {
        /// The host.
        host: String,
        /// The path on the host.
        path: String,
        /// The SFTP error.
        #[source]
        source: BoxError,
    },
    /// A local file to upload could not be read.
    #[error("{}: {source}", path.display())]
    Local {
        /// The local file.
        path: PathBuf,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
}

impl SshError {
    /// Whether retrying may succeed: the network and session failures
    /// ([`Unreachable`](Self::Unreachable), [`Timeout`](Self::Timeout),
    /// [`Disconnected`](Self::Disconnected)), and [`ChecksumMismatch`](Self::ChecksumMismatch) (a
    /// transfer garbled on the way). A refused key, a changed host key, a source that is not the
    /// expected file ([`SourceMismatch`](Self::SourceMismatch)), a failing command or bad input
    /// need a person.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SshError::Unreachable { .. }
                | SshError::Timeout { .. }
                | SshError::Disconnected { .. }
                | SshError::ChecksumMismatch { .. }
        )
    }

    /// The host the error is about (empty for [`Key`](Self::Key) and [`Local`](Self::Local)).
    pub fn host(&self) -> &str {
        match self {
            SshError::Unreachable { host, .. }
            | SshError::Timeout { host }
            | SshError::Auth { host, .. }
            | SshError::HostKeyChanged { host, .. }
            | SshError::ChecksumMismatch { host, .. }
            | SshError::SourceMismatch { host, .. }
            | SshError::Disconnected { host }
            | SshError::Remote { host, .. }
            | SshError::InvalidInput { host, .. }
            | SshError::Protocol { host, .. }
            | SshError::Transfer { host, .. } => host,
            SshError::Key(_) | SshError::Local { .. } => "",
        }
    }
}

impl From<SshError> for crate::ProvisionError {
    fn from(e: SshError) -> Self {
        if e.is_transient() {
            crate::ProvisionError::transient(e)
        } else {
            crate::ProvisionError::permanent(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_failures_are_transient_and_refusals_are_not() {
        let host = || "10.0.0.1:22".to_owned();
        assert!(SshError::Timeout { host: host() }.is_transient());
        assert!(SshError::Disconnected { host: host() }.is_transient());
        let auth = SshError::Auth { host: host(), user: "root".into() };
        assert!(!auth.is_transient());
        assert_eq!(auth.to_string(), "authentication failed for root@10.0.0.1:22: the host refused the key");
        let source = SshError::SourceMismatch {
            host: host(),
            path: "/opt/etcd".into(),
            expected: "a".into(),
            actual: "b".into(),
        };
        assert!(!source.is_transient() && source.to_string().contains("not the expected file"), "{source}");
        let changed =
            SshError::HostKeyChanged { host: host(), expected: "SHA256:a".into(), actual: "SHA256:b".into() };
        assert!(!changed.is_transient());
        assert_eq!(
            changed.to_string(),
            "10.0.0.1:22: host key changed: expected SHA256:a, the host presented SHA256:b"
        );
        let p: crate::ProvisionError = SshError::Timeout { host: host() }.into();
        assert!(p.is_transient());
    }
}
