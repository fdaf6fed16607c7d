//! Requests as an attacker sends them: bytes written by hand over a TLS socket to the real server
//! (trusting the CA it publishes), and the response read back byte for byte — no client library
//! in between to normalise or refuse what the request says.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How long one raw exchange may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(90);

/// The `host:port` of a `https://host:port` URL.
pub fn authority(url: &str) -> &str {
    url.trim_start_matches("https://").trim_end_matches('/')
}

/// A TLS connection to the server at `url` that trusts only `ca_pem`, offering `alpn`.
pub async fn connect(url: &str, ca_pem: &str, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("the CA is PEM")).unwrap();
    }
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(authority(url)).await.unwrap();
    let host = authority(url).rsplit_once(':').map_or(authority(url), |(h, _)| h).to_owned();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(host).unwrap(), tcp)
        .await
        .unwrap()
}

/// A response as it came off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// The status line and headers, as sent.
    pub head: String,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Every value of header `name` (any case).
    pub fn headers(&self, name: &str) -> Vec<&str> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
            .collect()
    }

    /// The body as JSON (panics with the text when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}\n{}", self.head, String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn read_byte(stream: &mut TlsStream<TcpStream>) -> Option<u8> {
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte)).await.expect("response in time").ok()?;
    (n == 1).then_some(byte[0])
}

async fn read_line(stream: &mut TlsStream<TcpStream>) -> String {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        match read_byte(stream).await {
            Some(b) => line.push(b),
            None => break,
        }
    }
    String::from_utf8_lossy(&line).trim_end().to_owned()
}

/// Reads one response. A `101` returns at once with its head: the stream is then the upgraded
/// connection.
pub async fn read_response(stream: &mut TlsStream<TcpStream>) -> RawResponse {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        match read_byte(stream).await {
            Some(b) => head.push(b),
            None => panic!("connection closed after {:?}", String::from_utf8_lossy(&head)),
        }
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let mut resp = RawResponse { status, head, body: Vec::new() };
    if status == 101 || status == 204 || status == 304 {
        return resp;
    }
    if resp.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let size = usize::from_str_radix(read_line(stream).await.split(';').next().unwrap().trim(), 16)
                .expect("a chunk size");
            if size == 0 {
                read_line(stream).await;
                break;
            }
            let mut chunk = vec![0u8; size];
            tokio::time::timeout(PATIENCE, stream.read_exact(&mut chunk)).await.unwrap().unwrap();
            resp.body.extend_from_slice(&chunk);
            read_line(stream).await;
        }
    } else if let Some(len) = resp.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        resp.body = vec![0u8; len];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut resp.body)).await.unwrap().unwrap();
    } else {
        let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut resp.body)).await.unwrap();
    }
    resp
}

/// Writes `request` (head and body, exactly as given) on a new HTTP/1.1 connection and reads the
/// response.
pub async fn exchange(url: &str, ca_pem: &str, request: &str) -> RawResponse {
    let mut stream = connect(url, ca_pem, &[b"http/1.1"]).await;
    stream.write_all(request.as_bytes()).await.unwrap();
    read_response(&mut stream).await
}

/// Like [`exchange`], but keeps the connection (for upgrades).
pub async fn open(url: &str, ca_pem: &str, request: &str) -> (TlsStream<TcpStream>, RawResponse) {
    let mut stream = connect(url, ca_pem, &[b"http/1.1"]).await;
    stream.write_all(request.as_bytes()).await.unwrap();
    let resp = read_response(&mut stream).await;
    (stream, resp)
}

/// The server's CA, as `/cacerts` publishes it.
pub async fn server_ca(url: &str) -> String {
    let http = reqwest::Client::builder().tls_danger_accept_invalid_certs(true).build().unwrap();
    http.get(format!("{url}/cacerts")).send().await.unwrap().text().await.unwrap()
}
