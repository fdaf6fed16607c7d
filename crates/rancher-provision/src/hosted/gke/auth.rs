//! Signing in as a Google service account: the key JSON, and the OAuth 2.0 JWT bearer grant
//! (RFC 7523) at the key's `token_uri` — an RS256 JWT `{iss, scope, aud, iat, exp}` exchanged for an
//! access token that is kept until shortly before it expires
//! (<https://developers.google.com/identity/protocols/oauth2/service-account#httprest>).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use super::GkeError;
use super::client::{ApiCalls, Transport};

/// The scope the client asks for: all of Google Cloud, which the container API needs.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// How long a signed assertion is valid (Google's maximum).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);
/// A token is renewed this long before it expires (or at half its life if that is shorter).
const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// A service-account key: the JSON Google hands out (`type: service_account`). Debug shows no key.
#[derive(Clone)]
pub struct ServiceAccountKey {
    /// The account (`name@project.iam.gserviceaccount.com`), the JWT's issuer.
    pub client_email: String,
    /// The key's id, the JWT header's `kid`.
    pub private_key_id: String,
    /// Where the JWT is exchanged for a token (`https://oauth2.googleapis.com/token`).
    pub token_uri: String,
    /// The project the account belongs to.
    pub project_id: String,
    signer: Arc<RsaKeyPair>,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("token_uri", &self.token_uri)
            .field("project_id", &self.project_id)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct KeyJson {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    client_email: String,
    #[serde(default)]
    private_key_id: String,
    #[serde(default)]
    private_key: String,
    #[serde(default)]
    token_uri: String,
    #[serde(default)]
    project_id: String,
}

impl ServiceAccountKey {
    /// Reads a service-account key JSON.
    ///
    /// # Errors
    /// [`GkeError::InvalidKey`] naming the field that is missing or unusable (the private key must
    /// be an RSA key in PKCS#8 PEM, the token URI HTTPS). The key's text never appears in it.
    pub fn from_json(json: &SecretString) -> Result<ServiceAccountKey, GkeError> {
        let raw: KeyJson = serde_json::from_str(json.expose_secret()).map_err(|e| {
            GkeError::InvalidKey(format!("not a key JSON object (line {}, column {})", e.line(), e.column()))
        })?;
        if raw.kind != "service_account" {
            return Err(GkeError::InvalidKey(format!("type is {:?}, not \"service_account\"", raw.kind)));
        }
        for (field, value) in [("client_email", &raw.client_email), ("private_key", &raw.private_key)] {
            if value.trim().is_empty() {
                return Err(GkeError::InvalidKey(format!("{field} is missing")));
            }
        }
        let token_uri = url::Url::parse(&raw.token_uri)
            .map_err(|e| GkeError::InvalidKey(format!("token_uri {:?}: {e}", raw.token_uri)))?;
        if token_uri.scheme() != "https" {
            return Err(GkeError::InvalidKey(format!("token_uri {:?} is not HTTPS", raw.token_uri)));
        }
        let der = PrivatePkcs8KeyDer::from_pem_slice(raw.private_key.as_bytes())
            .map_err(|_| GkeError::InvalidKey("private_key is not a PKCS#8 PEM private key".into()))?;
        let signer = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| GkeError::InvalidKey(format!("private_key is not a usable RSA key: {e}")))?;
        Ok(ServiceAccountKey {
            client_email: raw.client_email,
            private_key_id: raw.private_key_id,
            token_uri: raw.token_uri,
            project_id: raw.project_id,
            signer: Arc::new(signer),
        })
    }

    /// The signed JWT assertion for the bearer grant, issued at `now` (seconds since the epoch).
    fn assertion(&self, now: i64) -> Result<String, GkeError> {
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": self.private_key_id});
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": CLOUD_PLATFORM_SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME.as_secs() as i64,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.signer.public_modulus_len()];
        self.signer
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signing_input.as_bytes(), &mut signature)
            .map_err(|_| GkeError::InvalidKey("signing the assertion failed".into()))?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// A bearer token and when to stop using it.
struct Token {
    value: SecretString,
    renew_at: Instant,
}

/// Hands out the access token, fetching a new one only when the cached one is about to expire.
pub(crate) struct TokenSource {
    key: ServiceAccountKey,
    cached: tokio::sync::Mutex<Option<Token>>,
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: u64,
}

#[derive(serde::Deserialize, Default)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl TokenSource {
    pub(crate) fn new(key: ServiceAccountKey) -> TokenSource {
        TokenSource { key, cached: tokio::sync::Mutex::new(None) }
    }

    pub(crate) fn key(&self) -> &ServiceAccountKey {
        &self.key
    }

    /// Forgets the cached token (the API refused it).
    pub(crate) async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    /// The current token, fetched at the token endpoint if there is none or it is about to expire.
    /// Callers wait on one another, so a burst of calls makes one token request.
    pub(crate) async fn token(&self, transport: &Transport) -> Result<SecretString, GkeError> {
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(t.value.clone());
        }
        let token = self.fetch(transport).await?;
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    async fn fetch(&self, transport: &Transport) -> Result<Token, GkeError> {
        let what = format!("token request to {}", self.key.token_uri);
        let now = jiff::Timestamp::now().as_second();
        let assertion = SecretString::from(self.key.assertion(now)?);
        let (status, body) = transport
            .send_retrying(&what, ApiCalls::count_token_request, || {
                transport.http.post(&self.key.token_uri).form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.expose_secret()),
                ])
            })
            .await?;
        if !status.is_success() {
            let e: TokenError = serde_json::from_slice(&body).unwrap_or_default();
            let rejected = matches!(
                e.error.as_str(),
                "invalid_grant" | "invalid_client" | "unauthorized_client" | "access_denied"
            ) || matches!(status.as_u16(), 401 | 403);
            let message = format!("{} {}: {}", status.as_u16(), e.error, e.error_description);
            return Err(if rejected {
                GkeError::CredentialsRejected { message: format!("token endpoint answered {message}") }
            } else {
                GkeError::InvalidResponse { what, reason: message }
            });
        }
        let t: TokenAnswer = serde_json::from_slice(&body).map_err(|e| GkeError::InvalidResponse {
            what: what.clone(),
            reason: format!("not a token answer: {e}"),
        })?;
        if t.access_token.is_empty() {
            return Err(GkeError::InvalidResponse { what, reason: "no access_token".into() });
        }
        let life = Duration::from_secs(t.expires_in.max(1));
        let renew_at = Instant::now() + life.saturating_sub(RENEW_BEFORE.min(life / 2));
        Ok(Token { value: SecretString::from(t.access_token), renew_at })
    }
}
