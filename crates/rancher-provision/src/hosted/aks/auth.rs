//! Sign-in: the OAuth 2.0 client-credentials grant of the Microsoft identity platform
//! (`POST {authority}/{tenant}/oauth2/v2.0/token` with `grant_type=client_credentials`, `client_id`,
//! `client_secret`, `scope={resource}/.default`; answer `{token_type, expires_in, access_token}`, or
//! `{error, error_description: "AADSTS…"}` — learn.microsoft.com, "Microsoft identity platform and
//! the OAuth 2.0 client credentials flow"). The token is cached until shortly before it expires.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::{AksError, AzureErrorBody, Result};

/// A token is renewed this long before Azure says it expires (clock skew, a slow request).
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// The service principal the client signs in as. Debug shows no secret.
#[derive(Clone)]
pub struct AzureCredentials {
    /// The directory (tenant) id.
    pub tenant_id: String,
    /// The application (client) id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretString,
    /// The subscription the clusters are in.
    pub subscription_id: String,
}

impl std::fmt::Debug for AzureCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureCredentials")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("subscription_id", &self.subscription_id)
            .finish()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

struct Cached {
    token: SecretString,
    renew_at: Instant,
}

/// The cached access token.
pub(crate) struct TokenCache {
    cached: Mutex<Option<Cached>>,
}

impl TokenCache {
    pub(crate) fn new() -> TokenCache {
        TokenCache { cached: Mutex::new(None) }
    }

    /// Forgets the token (after Resource Manager refused it).
    pub(crate) async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    /// The cached token, or a new one from `fetch` (one sign-in at a time).
    pub(crate) async fn get<F, Fut>(&self, fetch: F) -> Result<SecretString>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(SecretString, Duration)>>,
    {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = fetch().await?;
        // A short-lived token is renewed at half its life instead of never being cached.
        let margin = RENEW_BEFORE.min(lifetime / 2);
        *cached = Some(Cached { token: token.clone(), renew_at: Instant::now() + lifetime - margin });
        Ok(token)
    }
}

/// Sends the token request; `calls` is counted by the caller.
pub(crate) async fn request_token(
    http: &reqwest::Client,
    token_url: &url::Url,
    creds: &AzureCredentials,
    scope: &str,
) -> Result<(SecretString, Duration)> {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", creds.client_id.as_str()),
        ("client_secret", creds.client_secret.expose_secret()),
        ("scope", scope),
    ];
    let resp = http.post(token_url.clone()).form(&form).send().await.map_err(AksError::Transport)?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(AksError::Transport)?;
    if status.is_success() {
        let answer: TokenAnswer = serde_json::from_slice(&bytes)
            .map_err(|e| AksError::InvalidResponse(format!("token endpoint answer: {e}")))?;
        // `expires_in` is a number of seconds (some authorities send it as a string).
        let secs = match answer.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .unwrap_or(3600);
        return Ok((SecretString::from(answer.access_token), Duration::from_secs(secs)));
    }
    let err: TokenError = serde_json::from_slice(&bytes).unwrap_or_default();
    let body = AzureErrorBody { code: err.error, message: err.error_description };
    // 400 invalid_request/unauthorized_client/invalid_scope and 401 invalid_client are all the
    // credentials (or the tenant) being wrong; retrying will not help. 429/5xx are Azure's.
    match status.as_u16() {
        400 | 401 | 403 => Err(AksError::CredentialsRejected { status: status.as_u16(), body }),
        s => Err(AksError::Api { status: s, body }),
    }
}
