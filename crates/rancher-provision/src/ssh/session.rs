//! An authenticated SSH session to one host (possibly through a bastion): connecting, checking the
//! host key, running commands.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Sig};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::{ExecOutput, HostKeyPolicy, MAX_OUTPUT, SshError, SshTarget};

/// How often an idle session is probed, and how many unanswered probes end it: a dead link is
/// noticed within about 45 s even when no command is running.
const KEEPALIVE: Duration = Duration::from_secs(15);
const KEEPALIVE_MAX: usize = 3;

/// A TCP connection opened from an SSH host ([`SshSession::open_tcp`]): read and write it like a
/// socket; dropping it closes the channel. It does not keep the session open: drop it first.
pub struct TcpChannel(russh::ChannelStream<client::Msg>);

impl std::fmt::Debug for TcpChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TcpChannel")
    }
}

impl tokio::io::AsyncRead for TcpChannel {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TcpChannel {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// An authenticated SSH session; closed when dropped (with its bastion session, if any).
pub struct SshSession {
    pub(super) host: String,
    handle: Handle<Client>,
    host_key: PublicKey,
    /// Kept open for as long as the nested session runs over it.
    _bastion: Option<Box<SshSession>>,
}

impl std::fmt::Debug for SshSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshSession").field("host", &self.host).finish_non_exhaustive()
    }
}

/// What the handshake learnt about the host key: the key, and whether the policy refused it.
#[derive(Default)]
struct Seen {
    key: Option<PublicKey>,
    refused: bool,
}

/// russh's callbacks: the host-key check.
pub(super) struct Client {
    pinned: Option<Vec<PublicKey>>,
    seen: Arc<Mutex<Seen>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => PublicKey::from(cert.public_key().clone()),
        };
        let accepted = match &self.pinned {
            None => true,
            Some(pins) => pins.iter().any(|p| p.key_data() == key.key_data()),
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.key = Some(key);
        seen.refused = !accepted;
        Ok(accepted)
    }
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The pinned keys of `policy`, parsed (`None` for trust on first use).
fn parse_pins(host: &str, policy: &HostKeyPolicy) -> Result<Option<Vec<PublicKey>>, SshError> {
    let HostKeyPolicy::Pinned(pins) = policy else { return Ok(None) };
    let invalid = |message: String| SshError::InvalidInput { host: host.to_owned(), message };
    if pins.is_empty() {
        return Err(invalid("no pinned host key: pin at least one, or trust on first use".into()));
    }
    let mut keys = Vec::with_capacity(pins.len());
    for (i, pin) in pins.iter().enumerate() {
        let words: Vec<&str> = pin.split_whitespace().collect();
        // "[host] algorithm base64 [comment]": the algorithm is the word before the base64 blob.
        let key = (0..words.len().saturating_sub(1))
            .take(2)
            .find_map(|at| PublicKey::from_openssh(&format!("{} {}", words[at], words[at + 1])).ok())
            .ok_or_else(|| {
                invalid(format!("pinned host key {i} is not a public key like \"ssh-ed25519 AAAA…\""))
            })?;
        keys.push(key);
    }
    Ok(Some(keys))
}

fn config() -> Arc<client::Config> {
    Arc::new(client::Config {
        keepalive_interval: Some(KEEPALIVE),
        keepalive_max: KEEPALIVE_MAX,
        inactivity_timeout: None,
        nodelay: true,
        ..Default::default()
    })
}

/// Maps an error of an established session (or its channels).
pub(super) fn session_error(host: &str, e: russh::Error) -> SshError {
    use russh::Error as E;
    match e {
        E::Disconnect
        | E::HUP
        | E::SendError
        | E::ConnectionTimeout
        | E::KeepaliveTimeout
        | E::InactivityTimeout
        | E::IO(_) => SshError::Disconnected { host: host.to_owned() },
        other => SshError::Protocol { host: host.to_owned(), source: Box::new(other) },
    }
}

impl SshSession {
    /// Connects to `target`, directly or through `bastion` (a direct-tcpip channel on the bastion's
    /// session carrying a nested SSH session), checks its host key and logs in with the key. The
    /// whole connect — bastion included — must finish within `timeout`.
    ///
    /// # Errors
    /// [`SshError::Unreachable`], [`SshError::Timeout`], [`SshError::Auth`],
    /// [`SshError::HostKeyChanged`], [`SshError::Key`], [`SshError::InvalidInput`] for a bad
    /// target; each names the host that failed (the bastion's, when it failed).
    pub async fn connect(
        target: &SshTarget,
        bastion: Option<&SshTarget>,
        timeout: Duration,
    ) -> Result<SshSession, SshError> {
        let deadline = Instant::now() + timeout;
        let bastion = match bastion {
            Some(b) => Some(Box::new(Self::connect_one(b, None, deadline).await?)),
            None => None,
        };
        Self::connect_one(target, bastion, deadline).await
    }

    async fn connect_one(
        target: &SshTarget,
        bastion: Option<Box<SshSession>>,
        deadline: Instant,
    ) -> Result<SshSession, SshError> {
        let host = target.host();
        let invalid = |message: &str| SshError::InvalidInput { host: host.clone(), message: message.into() };
        if target.address.trim().is_empty() {
            return Err(invalid("no address"));
        }
        if target.port == 0 {
            return Err(invalid("port 0"));
        }
        if target.user.is_empty() {
            return Err(invalid("no user"));
        }
        let key = russh::keys::decode_secret_key(target.key.expose_secret(), None).map_err(|e| {
            SshError::Key(match e {
                russh::keys::Error::KeyIsEncrypted => "the key is encrypted; give an unencrypted key".into(),
                other => format!("not an OpenSSH or PEM private key ({other})"),
            })
        })?;
        let pinned = parse_pins(&host, &target.host_key)?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let handler = Client { pinned: pinned.clone(), seen: seen.clone() };
        let timed_out = || SshError::Timeout { host: host.clone() };

        let handshake = async {
            let handle = match &bastion {
                None => {
                    let tcp = tokio::net::TcpStream::connect((target.address.as_str(), target.port))
                        .await
                        .map_err(|source| SshError::Unreachable { host: host.clone(), source })?;
                    let _ = tcp.set_nodelay(true);
                    client::connect_stream(config(), tcp, handler).await
                }
                Some(b) => {
                    let channel = b
                        .handle
                        .channel_open_direct_tcpip(
                            target.address.as_str(),
                            u32::from(target.port),
                            "127.0.0.1",
                            0,
                        )
                        .await
                        .map_err(|e| match e {
                            russh::Error::ChannelOpenFailure(why) => SshError::Unreachable {
                                host: host.clone(),
                                source: std::io::Error::other(format!(
                                    "the bastion {} could not connect: {why:?}",
                                    b.host
                                )),
                            },
                            other => session_error(&b.host, other),
                        })?;
                    client::connect_stream(config(), channel.into_stream(), handler).await
                }
            };
            let mut handle = handle.map_err(|e| {
                let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                match (&seen.key, &pinned) {
                    (Some(actual), Some(pins)) if seen.refused => SshError::HostKeyChanged {
                        host: host.clone(),
                        expected: pins.iter().map(fingerprint).collect::<Vec<_>>().join(", "),
                        actual: fingerprint(actual),
                    },
                    _ => match e {
                        // Closed before or during the handshake: whatever listens is not an SSH
                        // server that talks to us.
                        russh::Error::IO(source) => SshError::Unreachable { host: host.clone(), source },
                        other => session_error(&host, other),
                    },
                }
            })?;
            let hash = match key.algorithm().is_rsa() {
                true => {
                    handle.best_supported_rsa_hash().await.map_err(|e| session_error(&host, e))?.flatten()
                }
                false => None,
            };
            let auth = handle
                .authenticate_publickey(target.user.clone(), PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                .await
                .map_err(|e| session_error(&host, e))?;
            if !auth.success() {
                return Err(SshError::Auth { host: host.clone(), user: target.user.clone() });
            }
            Ok(handle)
        };
        let handle = tokio::time::timeout_at(deadline, handshake).await.map_err(|_| timed_out())??;
        let host_key = seen.lock().unwrap_or_else(PoisonError::into_inner).key.take().ok_or_else(|| {
            SshError::Protocol { host: host.clone(), source: "no host key was presented".into() }
        })?;
        Ok(SshSession { host, handle, host_key, _bastion: bastion })
    }

    /// The host as errors name it, `address:port`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host's public key as `known_hosts` and [`HostKeyPolicy::Pinned`] write it:
    /// `ssh-ed25519 AAAA…`.
    pub fn host_key(&self) -> String {
        let mut k = self.host_key.clone();
        k.set_comment("");
        k.to_openssh().unwrap_or_default().trim().to_owned()
    }

    /// SHA256 fingerprint of the host's key (`SHA256:…`, as `ssh-keygen -l` shows it).
    pub fn host_key_fingerprint(&self) -> String {
        fingerprint(&self.host_key)
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Runs `cmd` through the login user's shell and collects its exit status and output (each
    /// stream capped at [`MAX_OUTPUT`]). A non-zero status is not an error here; see
    /// [`run`](Self::run). Standard input is closed at once.
    ///
    /// # Errors
    /// [`SshError::Disconnected`] when the session ends before the command reports its status;
    /// [`SshError::Protocol`] when the host refuses the channel or the command.
    pub async fn exec(&self, cmd: &str) -> Result<ExecOutput, SshError> {
        let err = |e| session_error(&self.host, e);
        let mut channel = self.handle.channel_open_session().await.map_err(err)?;
        channel.exec(true, cmd).await.map_err(err)?;
        channel.eof().await.map_err(err)?;
        let mut out = ExecOutput::default();
        let mut status = None;
        let keep = |buf: &mut Vec<u8>, data: &[u8], truncated: &mut bool| {
            let room = MAX_OUTPUT.saturating_sub(buf.len());
            buf.extend_from_slice(&data[..data.len().min(room)]);
            *truncated |= data.len() > room;
        };
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => keep(&mut out.stdout, &data, &mut out.truncated),
                ChannelMsg::ExtendedData { data, ext: 1 } => keep(&mut out.stderr, &data, &mut out.truncated),
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    status = Some(128 + signal_number(&signal_name))
                }
                ChannelMsg::Failure => {
                    return Err(SshError::Protocol {
                        host: self.host.clone(),
                        source: "the host refused to run the command".into(),
                    });
                }
                _ => {}
            }
        }
        out.status = status.ok_or_else(|| SshError::Disconnected { host: self.host.clone() })?;
        Ok(out)
    }

    /// [`exec`](Self::exec), and a non-zero exit status is an error.
    ///
    /// # Errors
    /// As [`exec`](Self::exec), and [`SshError::Remote`] with the status and the end of stderr.
    pub async fn run(&self, cmd: &str) -> Result<ExecOutput, SshError> {
        let out = self.exec(cmd).await?;
        if out.success() {
            return Ok(out);
        }
        Err(remote_error(&self.host, cmd, &out))
    }

    /// Opens a TCP connection from the host to `host:port` (an SSH direct-tcpip channel, as
    /// `ssh -L` uses) and returns it as a byte stream: how the server reaches a service that
    /// listens only on the host's loopback, such as etcd's client port on `127.0.0.1:2379`.
    ///
    /// # Errors
    /// [`SshError::InvalidInput`] for an empty host or port 0; [`SshError::Unreachable`] when the
    /// host's SSH server could not connect (nothing listens there, or forwarding is refused);
    /// [`SshError::Disconnected`] when the session is gone.
    pub async fn open_tcp(&self, host: &str, port: u16) -> Result<TcpChannel, SshError> {
        if host.trim().is_empty() || port == 0 {
            return Err(SshError::InvalidInput {
                host: self.host.clone(),
                message: format!("cannot open a TCP connection to {host:?} port {port}"),
            });
        }
        let channel =
            self.handle.channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0).await.map_err(
                |e| match e {
                    russh::Error::ChannelOpenFailure(why) => SshError::Unreachable {
                        host: self.host.clone(),
                        source: std::io::Error::other(format!(
                            "the host could not connect to {host} port {port}: {why:?}"
                        )),
                    },
                    other => session_error(&self.host, other),
                },
            )?;
        Ok(TcpChannel(channel.into_stream()))
    }

    pub(super) fn handle(&self) -> &Handle<Client> {
        &self.handle
    }

    /// Ends the session politely (the host sees a disconnect rather than a dropped connection).
    pub async fn close(self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}

/// [`SshError::Remote`] for a command that failed.
pub(super) fn remote_error(host: &str, cmd: &str, out: &ExecOutput) -> SshError {
    const TAIL: usize = 1024;
    let tail = &out.stderr[out.stderr.len().saturating_sub(TAIL)..];
    SshError::Remote {
        host: host.to_owned(),
        cmd: cmd.chars().take(200).collect(),
        status: out.status,
        stderr_tail: String::from_utf8_lossy(tail).trim().to_owned(),
    }
}

/// The signal's number on Linux (SIGKILL is 9), 0 for one unknown here.
fn signal_number(sig: &Sig) -> u32 {
    match sig {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::USR1 => 10,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        Sig::Custom(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ+cJmUg/VjlaLNAVo0XRaQovl5OXgEIpb3Cx0eikTns";

    #[test]
    fn pins_are_read_with_or_without_host_and_comment() {
        for pin in [KEY.to_owned(), format!("10.0.0.1 {KEY}"), format!("{KEY} node1")] {
            let keys = parse_pins("h:22", &HostKeyPolicy::Pinned(vec![pin.clone()])).unwrap().unwrap();
            assert_eq!(keys.len(), 1, "{pin}");
        }
        assert!(parse_pins("h:22", &HostKeyPolicy::TrustOnFirstUse).unwrap().is_none());
        let err =
            parse_pins("h:22", &HostKeyPolicy::Pinned(vec!["ssh-ed25519 nonsense".into()])).unwrap_err();
        assert!(err.to_string().starts_with("h:22: pinned host key 0 is not a public key"), "{err}");
        let err = parse_pins("h:22", &HostKeyPolicy::Pinned(vec![])).unwrap_err();
        assert!(err.to_string().contains("no pinned host key"), "{err}");
    }

    #[test]
    fn a_remote_error_keeps_the_end_of_stderr() {
        let out = ExecOutput { status: 3, stderr: [b'x'; 5000].to_vec(), ..Default::default() };
        match remote_error("h:22", "false", &out) {
            SshError::Remote { status: 3, stderr_tail, .. } => assert_eq!(stderr_tail.len(), 1024),
            other => panic!("{other:?}"),
        }
    }
}
