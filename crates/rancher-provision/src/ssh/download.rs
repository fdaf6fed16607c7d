//! Downloading a file over SFTP: streamed into the caller's writer, bounded, hashed on the way.

use russh_sftp::client::SftpSession;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::session::session_error;
use super::{SshError, SshSession};

/// How much is read at a time.
const CHUNK: usize = 256 * 1024;
/// How long one read may take (a dead link stalls rather than fails).
const STALL: std::time::Duration = std::time::Duration::from_secs(30);

impl SshSession {
    /// Streams the host's file `remote` (an absolute path) into `out` and returns its size and
    /// SHA-256 (hex). Refuses a file larger than `max_bytes`. `out` is flushed, not closed.
    ///
    /// # Errors
    /// [`SshError::InvalidInput`] for a relative path; [`SshError::Transfer`] when the host cannot
    /// read it (no such file, permission denied), it is larger than `max_bytes`, or writing `out`
    /// fails; [`SshError::Disconnected`], also when a read stalls for 30 s.
    pub async fn download(
        &self,
        remote: &str,
        out: &mut (dyn AsyncWrite + Unpin + Send),
        max_bytes: u64,
    ) -> Result<(u64, String), SshError> {
        if !remote.starts_with('/') || remote.contains(['\0', '\n']) {
            return Err(SshError::InvalidInput {
                host: self.host.clone(),
                message: format!("{remote:?}: the source must be an absolute file path"),
            });
        }
        let lost = || SshError::Disconnected { host: self.host.clone() };
        let transfer = |source: crate::BoxError| SshError::Transfer {
            host: self.host.clone(),
            path: remote.to_owned(),
            source,
        };
        let channel = self.handle().channel_open_session().await.map_err(|e| session_error(&self.host, e))?;
        channel.request_subsystem(true, "sftp").await.map_err(|e| session_error(&self.host, e))?;
        let sftp = SftpSession::new(channel.into_stream()).await.map_err(|e| transfer(Box::new(e)))?;
        let mut file = sftp.open(remote).await.map_err(|e| match e {
            russh_sftp::client::error::Error::Timeout => lost(),
            e => transfer(Box::new(e)),
        })?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n =
                tokio::time::timeout(STALL, file.read(&mut buf)).await.map_err(|_| lost())?.map_err(|e| {
                    match e.kind() {
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::BrokenPipe => lost(),
                        _ => transfer(Box::new(e)),
                    }
                })?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > max_bytes {
                return Err(transfer(format!("larger than {max_bytes} bytes").into()));
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .await
                .map_err(|source| SshError::Local { path: remote.into(), source })?;
        }
        out.flush().await.map_err(|source| SshError::Local { path: remote.into(), source })?;
        let _ = sftp.close().await;
        Ok((size, hex::encode(hasher.finalize())))
    }
}
