//! Before connecting: check the server answers `/ping`, download its `cacerts` setting without
//! verification (the only unverified request, as Rancher's `run.sh` does), and refuse to go on
//! unless its SHA-256 equals `CATTLE_CA_CHECKSUM`. Everything after that trusts only this CA.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use serde::Deserialize;

use super::AgentError;
use crate::protocol::normalize_ca;

/// The server's CA, checked against the pinned checksum.
pub(crate) struct ServerCa {
    /// A TLS config trusting only this CA.
    pub(crate) tls: Arc<ClientConfig>,
}

#[derive(Deserialize)]
struct Setting {
    #[serde(default)]
    value: String,
}

fn unverified_client() -> Result<reqwest::Client, AgentError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .tls_danger_accept_invalid_certs(true)
        .user_agent(concat!("rancher-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AgentError::Config(format!("building the bootstrap HTTP client: {e}")))
}

/// `GET /ping`, then `GET /v3/settings/cacerts`, then the checksum comparison.
///
/// # Errors
/// [`AgentError::Server`] when the server cannot be reached or answers oddly (worth retrying);
/// [`AgentError::CaChecksumMismatch`] when the CA is not the pinned one (fatal);
/// [`AgentError::Tunnel`] when the PEM holds no usable certificate.
pub(crate) async fn fetch_server_ca(server: &url::Url, expected: &str) -> Result<ServerCa, AgentError> {
    let http = unverified_client()?;
    let base = server.as_str().trim_end_matches('/');
    let ping = http
        .get(format!("{base}/ping"))
        .send()
        .await
        .map_err(|e| AgentError::Server(format!("{base}/ping: {e}")))?;
    if !ping.status().is_success() {
        return Err(AgentError::Server(format!("{base}/ping answered {}", ping.status())));
    }
    let resp = http
        .get(format!("{base}/v3/settings/cacerts"))
        .send()
        .await
        .map_err(|e| AgentError::Server(format!("{base}/v3/settings/cacerts: {e}")))?;
    if !resp.status().is_success() {
        return Err(AgentError::Server(format!("{base}/v3/settings/cacerts answered {}", resp.status())));
    }
    let setting: Setting = resp
        .json()
        .await
        .map_err(|e| AgentError::Server(format!("{base}/v3/settings/cacerts is not a setting: {e}")))?;
    if setting.value.trim().is_empty() {
        return Err(AgentError::Server(
            "the server publishes no cacerts (a publicly trusted certificate); this agent needs a pinned CA"
                .into(),
        ));
    }
    let pem = normalize_ca(&setting.value);
    let actual = rancher_tunnel::ca_checksum(pem.as_bytes());
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(AgentError::CaChecksumMismatch { configured: expected.to_owned(), server: actual });
    }
    let tls = rancher_tunnel::client_tls_pinned(pem.as_bytes(), expected).map_err(AgentError::Tunnel)?;
    Ok(ServerCa { tls })
}
