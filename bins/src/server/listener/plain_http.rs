//! A plain-HTTP request to the TLS port gets a short `HTTP/1.1 400` saying so, as Go's servers
//! answer, instead of a TLS alert the client reports as "invalid HTTP version parsed" or worse.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the client reads.
const ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 48\r\n\
Connection: close\r\n\
\r\n\
Client sent an HTTP request to an HTTPS server.\n";

/// The most of the request head read before answering.
const MAX_HEAD: usize = 16 * 1024;
/// How long the rest of the head may take.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the connection starts like an HTTP/1 request rather than a TLS record: a TLS handshake
/// begins with the byte 0x16, a request with the upper-case letters of its method.
pub(super) async fn starts_plain_http(tcp: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(tcp.peek(&mut first).await, Ok(1) if first[0].is_ascii_uppercase())
}

/// Reads the request head (bounded in size and time, so closing does not reset the connection
/// before the client has read the answer), answers 400 and closes.
pub(super) async fn refuse(mut tcp: TcpStream) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let _ = tokio::time::timeout(HEAD_TIMEOUT, async {
        while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let _ = tcp.write_all(ANSWER).await;
    let _ = tcp.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_well_formed() {
        let text = std::str::from_utf8(ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 "));
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head}");
    }

    #[tokio::test]
    async fn a_plain_request_is_told_and_a_tls_hello_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET /v3 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
            let mut answer = String::new();
            c.read_to_string(&mut answer).await.unwrap();
            answer
        });
        let (tcp, _) = listener.accept().await.unwrap();
        assert!(starts_plain_http(&tcp).await);
        refuse(tcp).await;
        let answer = client.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
        assert!(answer.ends_with("Client sent an HTTP request to an HTTPS server.\n"), "{answer}");

        let hello = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
            c
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let _c = hello.await.unwrap();
        assert!(!starts_plain_http(&tcp).await);
    }
}
