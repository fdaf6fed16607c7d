//! The HTTPS listener: TLS (with optional client certificates), HTTP/1.1 and HTTP/2 with upgrades,
//! one task per connection on the shared runtime.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::state::SimState;

/// Accepts connections until the sim is cancelled.
pub(crate) async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, state: Arc<SimState>) {
    let acceptor = TlsAcceptor::from(tls);
    let cancel = state.cancel.clone();
    loop {
        let (tcp, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = cancel.cancelled() => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                _ => return,
            };
            let identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::pki::identity_from_cert(c))
                .map(Arc::new);
            let cancel = state.cancel.clone();
            let svc = service_fn(move |req| {
                let state = state.clone();
                let identity = identity.clone();
                async move { Ok::<_, Infallible>(crate::api::handle(state, req, identity).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            tokio::select! {
                _ = conn => {}
                _ = cancel.cancelled() => {}
            }
        });
    }
}
