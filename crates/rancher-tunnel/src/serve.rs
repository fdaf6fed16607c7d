//! [`serve_connect`]: a small TLS listener serving only `/v3/connect`, with handshake and header
//! timeouts against slow-loris clients. The management server mounts
//! [`TunnelServer::accept_upgrade`] in its own router instead and must set the same timeouts
//! on its listener (TLS accept timeout, hyper `header_read_timeout`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::error::Result;
use crate::server::TunnelServer;
use crate::transport::BoxedIo;
use crate::upgrade::{Authorizer, CONNECT_PATH, status_response};

/// Timeouts of [`serve_connect`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// A client that has not finished the TLS handshake within this time is dropped.
    pub tls_handshake_timeout: Duration,
    /// A client that has not sent complete request headers within this time is dropped.
    pub header_read_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self { tls_handshake_timeout: Duration::from_secs(10), header_read_timeout: Duration::from_secs(10) }
    }
}

/// Serves `GET /v3/connect` on `listener` until `shutdown` is cancelled. With `tls: None` the
/// listener is plain HTTP (say so with a flag where you use it). Sessions outlive this
/// function: close them with [`TunnelServer::shutdown`].
///
/// # Errors
/// Only when accepting on the listener fails.
pub async fn serve_connect(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    server: TunnelServer,
    authorizer: Arc<dyn Authorizer>,
    opts: ServeOptions,
    shutdown: CancellationToken,
) -> Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut conns = JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted?,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, server, authorizer, opts) =
            (acceptor.clone(), server.clone(), authorizer.clone(), opts.clone());
        conns.spawn(async move {
            let io: BoxedIo = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(opts.tls_handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => Box::new(tls),
                        Ok(Err(e)) => return debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => return debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => Box::new(tcp),
            };
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (server, authorizer) = (server.clone(), authorizer.clone());
                async move {
                    let resp = if req.uri().path() == CONNECT_PATH {
                        server.accept_upgrade(req, &*authorizer).await
                    } else {
                        status_response(StatusCode::NOT_FOUND, "NotFound", "only /v3/connect is served here")
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(opts.header_read_timeout)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "connect endpoint connection ended");
            }
        });
    }
    conns.shutdown().await;
    Ok(())
}
