//! The authentication webhook client: unknown bearer tokens are POSTed as a `TokenReview` to a
//! configured URL (the authorized-cluster-endpoint path), as kube-apiserver's
//! `--authentication-token-webhook-config-file` does.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::authn::UserInfo;

/// Why a webhook call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WebhookError {
    /// The URL is not `https://host:port/path` (or `http://` for loopback tests).
    #[error("invalid webhook url {0:?}")]
    Url(String),
    /// Connecting, TLS, or HTTP failed.
    #[error("webhook transport: {0}")]
    Transport(String),
    /// The answer was not a TokenReview.
    #[error("webhook answered {0}")]
    BadAnswer(String),
}

fn transport(e: impl std::fmt::Display) -> WebhookError {
    WebhookError::Transport(e.to_string())
}

/// Asks the webhook about `token`. `Ok(None)` means the webhook said "not authenticated".
pub(crate) async fn token_review(
    url: &str,
    ca_pem: Option<&str>,
    token: &str,
) -> Result<Option<UserInfo>, WebhookError> {
    let uri: http::Uri = url.parse().map_err(|_| WebhookError::Url(url.into()))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(WebhookError::Url(url.into())),
    };
    let host = uri.host().ok_or_else(|| WebhookError::Url(url.into()))?.to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let body = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    });
    let req = http::Request::post(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(transport)?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(transport)?;
    let call = async {
        let resp = if https {
            let mut roots = rustls::RootCertStore::empty();
            if let Some(pem) = ca_pem {
                for c in rustls_pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes()) {
                    let c: rustls_pki_types::CertificateDer<'static> = c.map_err(transport)?;
                    roots.add(c).map_err(transport)?;
                }
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(transport)?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(transport)?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(name, tcp)
                .await
                .map_err(transport)?;
            send(TokioIo::new(tls), req).await?
        } else {
            send(TokioIo::new(tcp), req).await?
        };
        Ok::<_, WebhookError>(resp)
    };
    let v = tokio::time::timeout(Duration::from_secs(10), call).await.map_err(transport)??;
    let status = &v["status"];
    if status["authenticated"].as_bool() != Some(true) {
        return Ok(None);
    }
    let u = &status["user"];
    let name = u["username"].as_str().ok_or_else(|| WebhookError::BadAnswer(v.to_string()))?;
    let groups = crate::meta::str_list(&u["groups"]);
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    let mut user = UserInfo::new(name, &groups);
    user.uid = u["uid"].as_str().unwrap_or("").to_string();
    Ok(Some(user))
}

async fn send<IO>(io: IO, req: http::Request<Full<Bytes>>) -> Result<Value, WebhookError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(transport)?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(transport)?;
    let code = resp.status();
    let body = resp.into_body().collect().await.map_err(transport)?.to_bytes();
    if !code.is_success() {
        return Err(WebhookError::BadAnswer(format!("HTTP {code}")));
    }
    serde_json::from_slice(&body).map_err(|e| WebhookError::BadAnswer(e.to_string()))
}
