//! The HTTP client the OAuth providers share: the workspace's reqwest (rustls, aws-lc-rs), an optional
//! private CA, a timeout, no redirects, and a cap on response size; plus the adapter that lets
//! `openidconnect` drive it.

use std::time::Duration;
#[cfg(feature = "oidc")]
use std::{future::Future, pin::Pin};

use super::{Error, Result};

/// Largest response body read from a provider (discovery documents, JWKS, token and API responses).
pub(crate) const MAX_BODY: usize = 4 << 20;

/// Builds the client. `ca_pem`, when given, is trusted in addition to the system roots.
pub(crate) fn build(
    provider: &'static str,
    ca_pem: Option<&str>,
    timeout: Duration,
) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("rancher-rs/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| Error::Misconfigured { provider, reason: format!("CA PEM: {e}") })?;
        if certs.is_empty() {
            return Err(Error::Misconfigured { provider, reason: "CA PEM holds no certificate".into() });
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| Error::Misconfigured { provider, reason: format!("HTTP client: {e}") })
}

#[cfg(feature = "github")]
/// Maps a reqwest error to [`Error::Tls`] or [`Error::Unreachable`]. reqwest errors name the URL but
/// never its body, and our URLs carry no secrets (codes and tokens go in bodies and headers).
pub(crate) fn transport_error(provider: &'static str, err: &reqwest::Error) -> Error {
    let server = err.url().map(|u| u.origin().ascii_serialization()).unwrap_or_default();
    let chain = error_chain(err);
    if chain.contains("certificate") || chain.contains("tls") || chain.contains("TLS") {
        Error::Tls { provider, server, reason: chain }
    } else {
        Error::Unreachable { provider, server, reason: chain }
    }
}

/// `err` and its sources joined by `: `.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(feature = "github")]
/// Reads a response body, refusing more than [`MAX_BODY`] bytes.
pub(crate) async fn read_body(provider: &'static str, mut resp: reqwest::Response) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(provider, &e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(Error::Provider {
                provider,
                message: format!("response larger than {MAX_BODY} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(feature = "oidc")]
/// Errors of the `openidconnect` adapter; `openidconnect` wraps them in its own request errors.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdapterError {
    /// The request could not be sent or the response not read.
    #[error("{0}")]
    Transport(String),
    /// The response was larger than [`MAX_BODY`].
    #[error("response larger than {MAX_BODY} bytes")]
    TooLarge,
}

#[cfg(feature = "oidc")]
/// Lets `openidconnect`/`oauth2` send requests with our reqwest 0.13 client (their own reqwest
/// feature would pull a second reqwest and TLS stack).
#[derive(Clone)]
pub(crate) struct OidcHttp(pub(crate) reqwest::Client);

#[cfg(feature = "oidc")]
impl<'c> openidconnect::AsyncHttpClient<'c> for OidcHttp {
    type Error = AdapterError;
    type Future =
        Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, AdapterError>> + Send + 'c>>;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request =
                reqwest::Request::try_from(request).map_err(|e| AdapterError::Transport(error_chain(&e)))?;
            let mut resp =
                self.0.execute(request).await.map_err(|e| AdapterError::Transport(error_chain(&e)))?;
            let mut out = http::Response::builder().status(resp.status());
            for (name, value) in resp.headers() {
                out = out.header(name, value);
            }
            let mut body = Vec::new();
            while let Some(chunk) =
                resp.chunk().await.map_err(|e| AdapterError::Transport(error_chain(&e)))?
            {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(AdapterError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            out.body(body).map_err(|e| AdapterError::Transport(e.to_string()))
        })
    }
}
