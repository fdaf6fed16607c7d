//! The SSH way in: how RKE-style provisioning reaches a node — run commands and upload files
//! (the node agent's binary, its config) over SSH, directly or through a bastion host.
//!
//! A [`SshTarget`] says where and as whom; its [`HostKeyPolicy`] either pins the host's key (a
//! changed key is refused with [`SshError::HostKeyChanged`]) or trusts it on first use and reports
//! it through [`SshSession::host_key`] so the caller can pin it from then on.
//!
//! ```no_run
//! # async fn example(key_text: String) -> Result<(), rancher_provision::ssh::SshError> {
//! use std::time::Duration;
//! use rancher_provision::ssh::{HostKeyPolicy, SshSession, SshTarget};
//!
//! let target = SshTarget {
//!     address: "10.0.0.11".into(),
//!     port: 22,
//!     user: "root".into(),
//!     key: key_text.into(),
//!     host_key: HostKeyPolicy::TrustOnFirstUse,
//! };
//! let session = SshSession::connect(&target, None, Duration::from_secs(10)).await?;
//! let pin = session.host_key(); // store it; use HostKeyPolicy::Pinned(vec![pin]) next time
//! let out = session.run("uname -m").await?;
//! let sha256 = session.upload(&b"#!/bin/sh\necho hi\n"[..], "/srv/node/bin/hello", 0o755).await?;
//! # let _ = (pin, out, sha256);
//! # Ok(())
//! # }
//! ```

mod download;
mod error;
mod session;
mod upload;

use std::path::Path;

use secrecy::SecretString;

pub use error::SshError;
pub use session::{SshSession, TcpChannel};

/// Standard output and standard error are each kept up to this many bytes; the rest is dropped
/// and [`ExecOutput::truncated`] says so.
pub const MAX_OUTPUT: usize = 1 << 20;

/// Where and as whom to log in.
#[derive(Clone, Debug)]
pub struct SshTarget {
    /// Host name or IP address.
    pub address: String,
    /// SSH port (usually 22).
    pub port: u16,
    /// The user to log in as.
    pub user: String,
    /// The private key's text (OpenSSH or PEM format, not encrypted). Never shown in Debug output.
    pub key: SecretString,
    /// Which host keys to accept.
    pub host_key: HostKeyPolicy,
}

impl SshTarget {
    /// `address:port`, as errors name the host.
    pub fn host(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

/// Which host keys a connection accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Only these keys, each written as in `known_hosts` or a `.pub` file: `ssh-ed25519 AAAA…`
    /// (a leading host field and a trailing comment are allowed and ignored).
    Pinned(Vec<String>),
    /// Accept whatever key the host presents, and report it through [`SshSession::host_key`] so the
    /// caller can pin it. Only for a host's first contact.
    TrustOnFirstUse,
}

/// What a command did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status; 128 + n when the command was killed by signal n (as a shell reports it).
    pub status: u32,
    /// Standard output (at most [`MAX_OUTPUT`] bytes).
    pub stdout: Vec<u8>,
    /// Standard error (at most [`MAX_OUTPUT`] bytes).
    pub stderr: Vec<u8>,
    /// Whether stdout or stderr was longer than [`MAX_OUTPUT`] and cut.
    pub truncated: bool,
}

impl ExecOutput {
    /// Whether the command exited 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// Standard output as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// What to upload: a local file (streamed, never read whole into memory) or bytes.
#[derive(Clone, Copy, Debug)]
pub enum UploadSource<'a> {
    /// A local file.
    File(&'a Path),
    /// Bytes in memory.
    Bytes(&'a [u8]),
}

impl<'a> From<&'a Path> for UploadSource<'a> {
    fn from(p: &'a Path) -> Self {
        UploadSource::File(p)
    }
}

impl<'a> From<&'a [u8]> for UploadSource<'a> {
    fn from(b: &'a [u8]) -> Self {
        UploadSource::Bytes(b)
    }
}

/// `s` as one single-quoted shell word (for commands given to [`SshSession::exec`]).
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let t = SshTarget {
            address: "10.0.0.1".into(),
            port: 22,
            user: "root".into(),
            key: "-----BEGIN OPENSSH PRIVATE KEY-----\nsecretstuff".into(),
            host_key: HostKeyPolicy::TrustOnFirstUse,
        };
        let shown = format!("{t:?}");
        assert!(!shown.contains("secretstuff") && shown.contains("10.0.0.1"), "{shown}");
        assert!(t.key.expose_secret().contains("secretstuff"));
        assert_eq!(t.host(), "10.0.0.1:22");
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(sh_quote("/srv/it's"), r"'/srv/it'\''s'");
    }
}
