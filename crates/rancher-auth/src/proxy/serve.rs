//! Serving a [`ProxyService`] on a listener: TLS (rustls), HTTP/1.1 and HTTP/2, and upgrades kept, as
//! kubectl's exec, attach and port-forward need. For embedding without axum, and for tests and benches.

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::stack::ProxyService;

/// Accepts connections on `listener` and serves `proxy` on each, over TLS when `tls` is given (the
/// config's ALPN should offer `h2` and `http/1.1`). Runs until the returned future is dropped, which
/// also closes every connection it accepted.
///
/// # Errors
/// If accepting fails fatally.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    proxy: ProxyService,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(pair) => pair,
                    // Out of file descriptors and the like: keep serving the connections we have.
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let service = TowerToHyperService::new(proxy.clone());
                connections.spawn(async move {
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let result = match acceptor {
                        Some(acceptor) => match acceptor.accept(tcp).await {
                            Ok(tls) => builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await,
                            Err(e) => { tracing::debug!(%peer, error = %e, "TLS handshake failed"); return; }
                        },
                        None => builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).await,
                    };
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
