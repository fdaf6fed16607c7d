//! The authorized cluster endpoint's webhook (Rancher's kube-api-auth): with `--ace-listen`, the
//! agent serves `POST /v1/authenticate` for the downstream API server's
//! `--authentication-token-webhook-config-file`, answering from the token records the server syncs
//! into the cluster ([`ClusterAuthToken`](crate::protocol::ace::ClusterAuthToken)), so kubectl can
//! use a cluster-scoped Rancher token directly against the cluster — also while the management
//! server is down.
//!
//! TLS by default: the certificate and key from `--ace-cert`/`--ace-key`, or a self-signed one made
//! at start (its PEM is logged, for the API server's webhook kubeconfig). Plain HTTP only with
//! `--ace-insecure-http`, and only on a loopback address (as kube-api-auth listens on
//! `127.0.0.1:6440`).

mod cache;
mod webhook;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use kube::config::{KubeConfigOptions, Kubeconfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::AgentError;
use cache::TokenRecords;

/// The largest TokenReview accepted.
const BODY_LIMIT: usize = 64 * 1024;
/// How long a client has for the TLS handshake and the request head (kube-api-auth: 10 s).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The webhook's flags (part of `rancher-agent`'s).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct AceArgs {
    /// Serve the authorized cluster endpoint's TokenReview webhook (`POST /v1/authenticate`) here,
    /// e.g. `127.0.0.1:6440`. Off when not given.
    #[arg(long, value_name = "ADDR")]
    pub ace_listen: Option<SocketAddr>,
    /// The webhook's serving certificate (PEM); without it a self-signed one is made.
    #[arg(long, value_name = "FILE", requires = "ace_key")]
    pub ace_cert: Option<PathBuf>,
    /// The key of --ace-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "ace_cert")]
    pub ace_key: Option<PathBuf>,
    /// Serve plain HTTP instead of TLS; allowed only on a loopback address.
    #[arg(long)]
    pub ace_insecure_http: bool,
}

fn tls_config(args: &AceArgs, listen: SocketAddr) -> Result<Option<TlsAcceptor>, AgentError> {
    if args.ace_insecure_http {
        if !listen.ip().is_loopback() {
            return Err(AgentError::Config(format!(
                "--ace-insecure-http serves tokens in the clear: only on a loopback address, not {listen}"
            )));
        }
        if args.ace_cert.is_some() {
            return Err(AgentError::Config("--ace-insecure-http and --ace-cert exclude each other".into()));
        }
        return Ok(None);
    }
    let fail = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        AgentError::Config(format!("{what} {}: {e}", path.display()))
    };
    let (certs, key) = match (&args.ace_cert, &args.ace_key) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| fail("--ace-cert", cert, &e))?;
            if certs.is_empty() {
                return Err(fail("--ace-cert", cert, &"no certificate in the file"));
            }
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| fail("--ace-key", key, &e))?;
            (certs, key)
        }
        _ => {
            let mut names = vec!["localhost".to_owned(), listen.ip().to_string()];
            if listen.ip().is_unspecified() {
                names.push("127.0.0.1".into());
            }
            let made = rcgen::generate_simple_self_signed(names)
                .map_err(|e| AgentError::Config(format!("making the webhook's certificate: {e}")))?;
            tracing::info!(
                certificate = %made.cert.pem(),
                "the authorized cluster endpoint webhook uses a self-signed certificate; trust it in the \
                 API server's webhook kubeconfig"
            );
            let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
                .map_err(|e| AgentError::Config(format!("the webhook's key: {e}")))?;
            (vec![made.cert.der().clone()], key)
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AgentError::Config(format!("webhook TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| AgentError::Config(format!("webhook TLS: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(cfg))))
}

async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, AgentError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| AgentError::Downstream(format!("kubeconfig {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| AgentError::Downstream(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => kube::Config::incluster()
            .map_err(|e| AgentError::Downstream(format!("no --kubeconfig and not in a cluster: {e}")))?,
    };
    kube::Client::try_from(config).map_err(|e| AgentError::Downstream(format!("building the client: {e}")))
}

/// Binds the webhook's listener and starts serving until `stop`; `None` when `--ace-listen` is not
/// given. Independent of the management server: it starts before the agent reaches the server.
///
/// # Errors
/// [`AgentError::Config`] for bad flags, certificate files or an address that cannot be bound;
/// [`AgentError::Downstream`] when the cluster cannot be read.
pub async fn start(
    args: &AceArgs,
    kubeconfig: Option<&Path>,
    stop: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, AgentError> {
    let Some(listen) = args.ace_listen else { return Ok(None) };
    let tls = tls_config(args, listen)?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| AgentError::Config(format!("--ace-listen {listen}: {e}")))?;
    let local = listener.local_addr().map_err(|e| AgentError::Config(format!("--ace-listen: {e}")))?;
    let records = TokenRecords::start(client(kubeconfig).await?, stop.clone());
    let app = Router::new()
        .route("/v1/authenticate", post(webhook::authenticate))
        .route("/healthcheck", get(webhook::healthcheck))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(records);
    tracing::info!(addr = %local, tls = tls.is_some(), "authorized cluster endpoint webhook listening");
    Ok(Some(tokio::spawn(serve(listener, tls, app, stop))))
}

async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, app: Router, stop: CancellationToken) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    // The connections' tasks end on `stop`, and are aborted if this future is dropped.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("webhook accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (builder, tls, stop) = (builder.clone(), tls.clone(), stop.clone());
        let service = TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let served = async {
                match tls {
                    Some(acceptor) => {
                        match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => builder.serve_connection(TokioIo::new(s), service).await,
                            _ => {
                                tracing::debug!(%peer, "webhook TLS handshake failed or timed out");
                                Ok(())
                            }
                        }
                    }
                    None => builder.serve_connection(TokioIo::new(tcp), service).await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => {}
                r = served => if let Err(e) = r { tracing::debug!(%peer, "webhook connection: {e}") },
            }
        });
    }
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::agent::AgentArgs;

    fn ace(flags: &[&str]) -> Result<AceArgs, clap::Error> {
        let mut argv = vec!["rancher-agent"];
        argv.extend_from_slice(flags);
        AgentArgs::try_parse_from(argv).map(|a| a.ace)
    }

    #[test]
    fn plain_http_only_on_loopback_and_cert_needs_key() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let a = ace(&["--ace-listen", "0.0.0.0:6440", "--ace-insecure-http"]).unwrap();
        let err = tls_config(&a, a.ace_listen.unwrap()).err().unwrap();
        assert!(err.to_string().contains("loopback"), "{err}");
        let a = ace(&["--ace-listen", "127.0.0.1:6440", "--ace-insecure-http"]).unwrap();
        assert!(tls_config(&a, a.ace_listen.unwrap()).unwrap().is_none());
        assert!(ace(&["--ace-listen", "127.0.0.1:6440", "--ace-cert", "/x.crt"]).is_err());
        let a = ace(&["--ace-listen", "127.0.0.1:6440", "--ace-cert", "/nope.crt", "--ace-key", "/nope.key"])
            .unwrap();
        let err = tls_config(&a, a.ace_listen.unwrap()).err().unwrap();
        assert!(err.to_string().contains("/nope.crt"), "{err}");
        // Without files: a self-signed certificate.
        let a = ace(&["--ace-listen", "127.0.0.1:0"]).unwrap();
        assert!(tls_config(&a, a.ace_listen.unwrap()).unwrap().is_some());
        assert!(ace(&[]).unwrap().ace_listen.is_none());
    }
}
