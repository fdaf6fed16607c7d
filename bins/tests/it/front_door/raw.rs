//! An attacker's client: TLS to the server (trusting its CA) from a chosen loopback source address,
//! with the request bytes written by hand, so no client library tidies them up.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::common::{ServerProc, install_crypto};

/// Dials one server.
#[derive(Clone)]
pub(crate) struct Raw {
    connector: TlsConnector,
    addr: SocketAddr,
}

/// `127.0.<hi>.<lo>`: every address in 127/8 is loopback on Linux, so each test client can have its own.
pub(crate) fn loopback(hi: u8, lo: u8) -> IpAddr {
    IpAddr::from([127, 0, hi, lo])
}

impl Raw {
    pub(crate) fn new(server: &ServerProc) -> Raw {
        install_crypto();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(server.ca_pem().as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        Raw {
            connector: TlsConnector::from(Arc::new(config)),
            addr: SocketAddr::from(([127, 0, 0, 1], server.port)),
        }
    }

    /// A TCP connection from `from`.
    pub(crate) async fn tcp(&self, from: IpAddr) -> std::io::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(from, 0))?;
        socket.connect(self.addr).await
    }

    /// A TLS connection from `from`, handshake done.
    pub(crate) async fn tls(&self, from: IpAddr) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = self.tcp(from).await?;
        let name = rustls_pki_types::ServerName::IpAddress(self.addr.ip().into());
        tokio::time::timeout(Duration::from_secs(10), self.connector.connect(name, tcp))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
    }

    /// Sends `request` on a new connection from `from` and reads until the server closes it.
    pub(crate) async fn exchange(&self, from: IpAddr, request: &[u8]) -> String {
        let mut tls = self.tls(from).await.expect("connect");
        tls.write_all(request).await.unwrap();
        read_to_close(&mut tls, Duration::from_secs(60)).await.expect("the server closes the connection")
    }
}

/// Everything the peer sends until it closes; `None` when it is still open after `wait`.
pub(crate) async fn read_to_close(tls: &mut TlsStream<TcpStream>, wait: Duration) -> Option<String> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, tls.read(&mut buf)).await {
            Err(_) => return None,
            // A reset or an unclean TLS close also ends the connection.
            Ok(Ok(0) | Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// `true` when the server has closed `tls` (reading gives EOF or an error) within `wait`.
pub(crate) async fn closed_within(tls: &mut TlsStream<TcpStream>, wait: Duration) -> bool {
    read_to_close(tls, wait).await.is_some()
}

/// `GET /ping` from `from` on a fresh connection; the status line.
pub(crate) async fn ping(raw: &Raw, from: IpAddr) -> Option<String> {
    let mut tls = raw.tls(from).await.ok()?;
    tls.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.ok()?;
    let text = read_to_close(&mut tls, Duration::from_secs(30)).await?;
    text.lines().next().map(str::to_owned)
}
