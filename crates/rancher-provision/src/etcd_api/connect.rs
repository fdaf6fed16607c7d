//! How the client reaches an etcd member: a connector gives a byte stream (plain TCP, or a
//! direct-tcpip channel through an SSH session to the member's host), and mutual TLS runs over it.

use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite};

use super::EtcdError;
use crate::ssh::SshSession;

/// A byte stream to an etcd member (before TLS).
pub trait EtcdStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> EtcdStream for T {}

/// Opens connections to one etcd member's client port; the client opens one per call.
#[async_trait]
pub trait EtcdConnect: Send + Sync {
    /// A new connection.
    async fn connect(&self) -> io::Result<Box<dyn EtcdStream>>;

    /// Where connections go, as errors name it (`10.0.0.1:22 → 127.0.0.1:2379`).
    fn endpoint(&self) -> String;
}

/// Plain TCP to `address` (`127.0.0.1:2379`): for a member the server reaches directly, and tests.
#[derive(Clone, Debug)]
pub struct TcpConnect {
    /// `host:port`.
    pub address: String,
}

#[async_trait]
impl EtcdConnect for TcpConnect {
    async fn connect(&self) -> io::Result<Box<dyn EtcdStream>> {
        let tcp = tokio::net::TcpStream::connect(self.address.as_str()).await?;
        let _ = tcp.set_nodelay(true);
        Ok(Box::new(tcp))
    }

    fn endpoint(&self) -> String {
        self.address.clone()
    }
}

/// Through an SSH session to the member's host: the host connects to `host:port` (usually
/// `127.0.0.1:2379`, where etcd listens whatever the host's internal address) for us.
#[derive(Clone, Debug)]
pub struct SshConnect {
    /// The session to the member's host.
    pub session: Arc<SshSession>,
    /// The address the host dials (`127.0.0.1`).
    pub host: String,
    /// The port (2379).
    pub port: u16,
}

#[async_trait]
impl EtcdConnect for SshConnect {
    async fn connect(&self) -> io::Result<Box<dyn EtcdStream>> {
        match self.session.open_tcp(&self.host, self.port).await {
            Ok(stream) => Ok(Box::new(stream)),
            Err(e) => Err(io::Error::other(e)),
        }
    }

    fn endpoint(&self) -> String {
        format!("{} → {}", self.session.host(), join_host_port(&self.host, self.port))
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// The client's side of etcd's mutual TLS: the CA that signed the members' certificates, and a
/// client certificate it signed (with its key). `Debug` never shows the key.
#[derive(Clone)]
pub struct EtcdTls {
    /// The etcd CA, PEM.
    pub ca_pem: String,
    /// The client certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (never logged).
    pub key_pem: secrecy::SecretString,
    /// The name the member's server certificate must carry among its SANs (`127.0.0.1` when
    /// reaching the member over its loopback listener).
    pub server_name: String,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl EtcdTls {
    /// The rustls client config (aws-lc-rs) and the server name to check.
    pub(super) fn config(&self) -> Result<(Arc<ClientConfig>, ServerName<'static>), EtcdError> {
        use secrecy::ExposeSecret;
        let tls = |m: String| EtcdError::Tls(m);
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| tls(format!("CA PEM: {e}")))?;
            roots.add(cert).map_err(|e| tls(format!("CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(tls("the CA PEM holds no certificate".into()));
        }
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls(format!("client certificate PEM: {e}")))?;
        if chain.is_empty() {
            return Err(tls("the client certificate PEM holds no certificate".into()));
        }
        // The parser's error could quote the key's text: say only that it is not a key.
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.expose_secret().as_bytes())
            .map_err(|_| tls("the client key is not a PEM private key".into()))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls(format!("client certificate and key: {e}")))?;
        let name = ServerName::try_from(self.server_name.clone())
            .map_err(|_| tls(format!("{:?} is not a DNS name or an IP address", self.server_name)))?;
        Ok((Arc::new(config), name))
    }
}
