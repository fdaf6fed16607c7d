//! Shared by the proxy integration tests: a loopback PKI, the proxy served over TLS, raw TLS clients.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rancher_auth::proxy::{self, ProxyService};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

/// Generous: the machine is shared and slow.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A self-signed certificate for 127.0.0.1 / localhost.
pub struct Pki {
    pub cert_pem: String,
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Pki {
    pub fn new() -> Pki {
        rancher_test_support::install_crypto();
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        Pki {
            cert_pem: ck.cert.pem(),
            cert: ck.cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()),
        }
    }

    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], PrivateKeyDer::Pkcs8(self.key.clone_key()))
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A reqwest client trusting this PKI; `http1` forces HTTP/1.1, otherwise ALPN picks h2.
    pub fn reqwest(&self, http1: bool) -> reqwest::Client {
        let alpn: &[&[u8]] = if http1 { &[b"http/1.1"] } else { &[b"h2", b"http/1.1"] };
        let mut builder =
            reqwest::Client::builder().tls_backend_preconfigured((*self.client_config(alpn)).clone());
        if http1 {
            builder = builder.http1_only();
        }
        builder.build().unwrap()
    }
}

/// Serves `service` over TLS on a loopback port; the task ends with the test's runtime.
pub async fn start_proxy(pki: &Pki, service: ProxyService) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(proxy::serve(listener, Some(pki.server_config()), service));
    addr
}

/// A TLS connection speaking HTTP/1.1 by hand.
pub async fn raw_tls(pki: &Pki, addr: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(pki.client_config(&[b"http/1.1"]));
    connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.unwrap()
}

/// Writes `request` and reads the response head (up to the blank line).
pub async fn send_head(stream: &mut TlsStream<TcpStream>, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}
