//! A process's health check: a TCP connect, or an HTTP(S) GET answering 200 — over HTTPS with the
//! plan's CA (required) and, when given, its client certificate. Each check has a short deadline.

use std::sync::Arc;
use std::time::Duration;

use rancher_provision::plan::HealthCheck;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How long one check may take.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `check`; the error says what failed.
pub(crate) async fn check(check: &HealthCheck) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, run(check)).await {
        Ok(r) => r,
        Err(_) => Err(format!("health check timed out after {CHECK_TIMEOUT:?}")),
    }
}

async fn run(check: &HealthCheck) -> Result<(), String> {
    match check {
        HealthCheck::Tcp { address } => tokio::net::TcpStream::connect(address.as_str())
            .await
            .map(drop)
            .map_err(|e| format!("health check: connect {address}: {e}")),
        HealthCheck::Http { url, ca_file, cert_file, key_file } => {
            let mut builder = reqwest::Client::builder().timeout(CHECK_TIMEOUT).no_proxy();
            if url.starts_with("https://") {
                let tls = tls_config(ca_file.as_deref(), cert_file.as_deref(), key_file.as_deref())
                    .map_err(|e| format!("health check {url}: {e}"))?;
                builder = builder.tls_backend_preconfigured(tls);
            } else if !url.starts_with("http://") {
                return Err(format!("health check: {url:?} is not an http(s) URL"));
            }
            let client = builder.build().map_err(|e| format!("health check {url}: {e}"))?;
            let resp = client.get(url).send().await.map_err(|e| format!("health check {url}: {e}"))?;
            if resp.status() == reqwest::StatusCode::OK {
                Ok(())
            } else {
                Err(format!("health check {url}: answered {}", resp.status()))
            }
        }
    }
}

fn tls_config(
    ca: Option<&str>,
    cert: Option<&str>,
    key: Option<&str>,
) -> Result<rustls::ClientConfig, String> {
    let ca = ca.ok_or("an https health check needs caFile")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| format!("caFile {ca}: {e}"))? {
        let c = c.map_err(|e| format!("caFile {ca}: {e}"))?;
        roots.add(c).map_err(|e| format!("caFile {ca}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("caFile {ca} holds no certificate"));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match (cert, key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("certFile {cert}: {e}"))?;
            // The key's content never appears in an error.
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|_| format!("keyFile {key}: no usable PEM key"))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("client certificate: {e}"))
        }
        _ => Err("certFile and keyFile go together".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tcp_checks_connect() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        check(&HealthCheck::Tcp { address: addr.clone() }).await.unwrap();
        drop(l);
        let err = check(&HealthCheck::Tcp { address: addr.clone() }).await.unwrap_err();
        assert!(err.contains(&addr), "{err}");
    }

    #[tokio::test]
    async fn https_without_a_ca_is_an_error_naming_what_is_missing() {
        let h = HealthCheck::Http {
            url: "https://127.0.0.1:1/healthz".into(),
            ca_file: None,
            cert_file: None,
            key_file: None,
        };
        assert!(check(&h).await.unwrap_err().contains("needs caFile"));
        let h = HealthCheck::Http { url: "ftp://x".into(), ca_file: None, cert_file: None, key_file: None };
        assert!(check(&h).await.unwrap_err().contains("not an http(s) URL"));
    }
}
