//! Uploading a file over SFTP: streamed to a temporary name beside the destination, hashed on the
//! way, checked with `sha256sum` on the host, then given its mode and renamed into place — so the
//! destination is either the old file or the complete new one, never a partial or garbled one.

use std::sync::atomic::{AtomicU64, Ordering};

use russh_sftp::client::SftpSession;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::session::{remote_error, session_error};
use super::{SshError, SshSession, UploadSource, sh_quote};

/// How much is read from the local file and handed to SFTP at a time.
const CHUNK: usize = 256 * 1024;
/// How long one chunk may take to be accepted. A link that dies under a transfer leaves the
/// session's writes waiting on a full TCP send buffer (its keepalives wait behind them), which the
/// kernel gives up on only after many minutes: a stalled transfer is a lost connection.
const STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// Makes temporary names unique within this process (the time makes them unique across processes).
static UPLOADS: AtomicU64 = AtomicU64::new(0);

impl SshSession {
    /// Uploads `source` to `remote` (an absolute path; missing directories are created) with
    /// permissions `mode` (e.g. `0o755`), and returns its SHA-256 (hex), checked on the host
    /// against what was sent. Streams: a 100 MB binary is never held in memory.
    ///
    /// # Errors
    /// [`SshError::InvalidInput`] for a relative path or a mode above `0o7777`;
    /// [`SshError::Local`] when the local file cannot be read; [`SshError::Transfer`] when SFTP
    /// fails; [`SshError::ChecksumMismatch`] when the host's copy differs (it is removed);
    /// [`SshError::Disconnected`], also when a chunk is not accepted within 30 s (a dead link).
    pub async fn upload(
        &self,
        source: impl Into<UploadSource<'_>>,
        remote: &str,
        mode: u32,
    ) -> Result<String, SshError> {
        self.upload_inner(source.into(), remote, mode, None).await
    }

    /// [`upload`](Self::upload), checking the host's copy against `expected_sha256` (hex, as
    /// published for a release binary) rather than against what was read locally.
    ///
    /// # Errors
    /// As [`upload`](Self::upload); [`SshError::SourceMismatch`] when what was sent arrived intact
    /// but does not hash to `expected_sha256` (the source is wrong), [`SshError::ChecksumMismatch`]
    /// when the host's copy is neither (garbled on the way).
    pub async fn upload_verified(
        &self,
        source: impl Into<UploadSource<'_>>,
        remote: &str,
        mode: u32,
        expected_sha256: &str,
    ) -> Result<String, SshError> {
        let expected = expected_sha256.trim().to_ascii_lowercase();
        if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.invalid(format!("{remote}: expected sha256 is not 64 hex digits")));
        }
        self.upload_inner(source.into(), remote, mode, Some(expected)).await
    }

    fn invalid(&self, message: String) -> SshError {
        SshError::InvalidInput { host: self.host.clone(), message }
    }

    async fn upload_inner(
        &self,
        source: UploadSource<'_>,
        remote: &str,
        mode: u32,
        expected: Option<String>,
    ) -> Result<String, SshError> {
        if !remote.starts_with('/') || remote.ends_with('/') || remote.contains(['\0', '\n']) {
            return Err(self.invalid(format!("{remote:?}: the destination must be an absolute file path")));
        }
        if mode > 0o7777 {
            return Err(self.invalid(format!("{remote}: mode {mode:o} is above 7777")));
        }
        let dir = match remote.rsplit_once('/') {
            Some(("", _)) | None => "/",
            Some((dir, _)) => dir,
        };
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let temp = format!("{remote}.part-{nanos:x}-{}", UPLOADS.fetch_add(1, Ordering::Relaxed));
        self.run(&format!("mkdir -p -- {}", sh_quote(dir))).await?;

        let sent = self.send(source, &temp).await;
        let sent = match sent {
            Ok(sha) => sha,
            Err(e) => {
                // Best effort: a partial file must not stay behind (a dead session cannot remove it;
                // the next upload's caller clears such leftovers).
                let rm = format!("rm -f -- {}", sh_quote(&temp));
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.exec(&rm)).await;
                return Err(e);
            }
        };
        let expected = expected.unwrap_or_else(|| sent.clone());
        // One round trip: hash on the host; install on a match, remove on a mismatch.
        let (t, r) = (sh_quote(&temp), sh_quote(remote));
        let script = format!(
            "sum=$(sha256sum < {t}) || exit 1; sum=${{sum%% *}}; \
             if [ \"$sum\" = {expected} ]; then chmod {mode:o} {t} && mv -f -- {t} {r} || exit 1; \
             else rm -f -- {t}; fi; echo \"$sum\""
        );
        let out = self.exec(&script).await?;
        if !out.success() {
            let _ = self.exec(&format!("rm -f -- {t}")).await;
            return Err(remote_error(&self.host, &format!("install {remote}"), &out));
        }
        let actual = out.stdout_text().trim().to_owned();
        if actual != expected && actual == sent {
            return Err(SshError::SourceMismatch {
                host: self.host.clone(),
                path: remote.to_owned(),
                expected,
                actual,
            });
        }
        if actual != expected {
            return Err(SshError::ChecksumMismatch {
                host: self.host.clone(),
                path: remote.to_owned(),
                expected,
                actual,
            });
        }
        Ok(actual)
    }

    /// Streams `source` to `path` over a fresh SFTP channel; returns its SHA-256.
    async fn send(&self, source: UploadSource<'_>, path: &str) -> Result<String, SshError> {
        // A transfer that times out or whose channel breaks lost its connection (retry); anything
        // else the host said (permission denied, disk full) is a transfer failure.
        let lost = || SshError::Disconnected { host: self.host.clone() };
        let transfer = |e: russh_sftp::client::error::Error| match e {
            russh_sftp::client::error::Error::Timeout => lost(),
            e => SshError::Transfer { host: self.host.clone(), path: path.to_owned(), source: Box::new(e) },
        };
        let io_transfer = |e: std::io::Error| {
            use std::io::ErrorKind as K;
            match e.kind() {
                K::TimedOut
                | K::BrokenPipe
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::NotConnected
                | K::UnexpectedEof => lost(),
                _ => {
                    SshError::Transfer { host: self.host.clone(), path: path.to_owned(), source: Box::new(e) }
                }
            }
        };
        let stalled = |_| lost();
        let channel = self.handle().channel_open_session().await.map_err(|e| session_error(&self.host, e))?;
        channel.request_subsystem(true, "sftp").await.map_err(|e| session_error(&self.host, e))?;
        let sftp = SftpSession::new(channel.into_stream()).await.map_err(transfer)?;
        let mut file = sftp.create(path).await.map_err(transfer)?;
        let mut hasher = Sha256::new();
        match source {
            UploadSource::Bytes(bytes) => {
                hasher.update(bytes);
                for chunk in bytes.chunks(CHUNK) {
                    tokio::time::timeout(STALL, file.write_all(chunk))
                        .await
                        .map_err(stalled)?
                        .map_err(io_transfer)?;
                }
            }
            UploadSource::File(local) => {
                let local_err = |source| SshError::Local { path: local.to_owned(), source };
                let mut input = tokio::fs::File::open(local).await.map_err(local_err)?;
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = input.read(&mut buf).await.map_err(local_err)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    tokio::time::timeout(STALL, file.write_all(&buf[..n]))
                        .await
                        .map_err(stalled)?
                        .map_err(io_transfer)?;
                }
            }
        }
        tokio::time::timeout(STALL, file.shutdown()).await.map_err(stalled)?.map_err(io_transfer)?;
        let _ = sftp.close().await;
        Ok(hex::encode(hasher.finalize()))
    }
}
