//! The Resource Manager client: endpoints, sign-in, one request with its retries, the call counter.
//!
//! Throttling follows ARM's documented contract ("Understand how Azure Resource Manager throttles
//! requests"): 429 with `Retry-After` seconds; 503 is retried the same way. Errors carry ARM's
//! `{"error":{"code","message"}}` body.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use super::auth::{AzureCredentials, TokenCache, request_token};
use super::error::{AksError, AzureErrorBody, Result};

/// Where Azure is: Resource Manager and the sign-in authority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureEndpoints {
    /// Resource Manager (`https://management.azure.com`).
    pub base_url: Url,
    /// The sign-in authority (`https://login.microsoftonline.com`).
    pub auth_base_url: Url,
}

impl Default for AzureEndpoints {
    fn default() -> Self {
        AzureEndpoints::for_environment("AzurePublicCloud").expect("the public cloud is known")
    }
}

impl AzureEndpoints {
    /// The endpoints of a named Azure cloud, as an Azure cloud credential's `environment` names it
    /// (`AzurePublicCloud` or empty, `AzureChinaCloud`, `AzureUSGovernmentCloud`); `None` for others.
    pub fn for_environment(environment: &str) -> Option<AzureEndpoints> {
        let (base, auth) = match environment {
            "" | "AzurePublicCloud" => ("https://management.azure.com", "https://login.microsoftonline.com"),
            "AzureChinaCloud" => ("https://management.chinacloudapi.cn", "https://login.chinacloudapi.cn"),
            "AzureUSGovernmentCloud" => {
                ("https://management.usgovcloudapi.net", "https://login.microsoftonline.us")
            }
            _ => return None,
        };
        Some(AzureEndpoints { base_url: Url::parse(base).ok()?, auth_base_url: Url::parse(auth).ok()? })
    }

    /// The public cloud's endpoints, replaced by `base_url` / `auth_base_url` where given
    /// (`spec.aksConfig.baseUrl`, `authBaseUrl`).
    ///
    /// # Errors
    /// [`AksError::InvalidConfig`] naming the field when it is not an https URL.
    pub fn with_overrides(base_url: Option<&str>, auth_base_url: Option<&str>) -> Result<AzureEndpoints> {
        let mut e = AzureEndpoints::default();
        let parse = |field: &str, u: &str| -> Result<Url> {
            let url = Url::parse(u.trim()).map_err(|err| AksError::InvalidConfig {
                field: format!("spec.aksConfig.{field}"),
                message: format!("{u:?} is not a URL: {err}"),
            })?;
            if url.scheme() != "https" || url.host_str().is_none() {
                return Err(AksError::InvalidConfig {
                    field: format!("spec.aksConfig.{field}"),
                    message: format!("{u:?} must be an https:// URL"),
                });
            }
            Ok(url)
        };
        if let Some(u) = base_url.filter(|u| !u.trim().is_empty()) {
            e.base_url = parse("baseUrl", u)?;
        }
        if let Some(u) = auth_base_url.filter(|u| !u.trim().is_empty()) {
            e.auth_base_url = parse("authBaseUrl", u)?;
        }
        Ok(e)
    }
}

/// How the client behaves: endpoints, trust, retries, polling.
#[derive(Clone, Debug)]
pub struct AksClientOptions {
    /// Where Azure is.
    pub endpoints: AzureEndpoints,
    /// PEM CA certificate(s) trusted besides the system's (a stand-in's test CA).
    pub extra_ca_pem: Option<String>,
    /// How many times one request is sent when Azure answers 429 or 503 (at least 1).
    pub max_attempts: u32,
    /// The wait before a retry when Azure gives no `Retry-After` (doubled each time).
    pub retry_backoff: Duration,
    /// The longest `Retry-After` honoured; a longer one ends the retries with [`AksError::Throttled`].
    pub max_retry_after: Duration,
    /// How often to poll an operation when Azure gives no `Retry-After`.
    pub poll_interval: Duration,
    /// A single request's time limit.
    pub request_timeout: Duration,
}

impl Default for AksClientOptions {
    fn default() -> Self {
        AksClientOptions {
            endpoints: AzureEndpoints::default(),
            extra_ca_pem: None,
            max_attempts: 4,
            retry_backoff: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(60),
            poll_interval: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// A client for AKS through Azure Resource Manager, signed in as one service principal.
///
/// Cheap to share (`Arc` it); the token is cached across calls. Every HTTP request sent to Azure
/// (sign-in, Resource Manager, retries, polls) adds one to [`api_calls`](Self::api_calls).
pub struct AksClient {
    pub(crate) http: reqwest::Client,
    pub(crate) creds: AzureCredentials,
    pub(crate) options: AksClientOptions,
    pub(crate) token: TokenCache,
    pub(crate) calls: Arc<AtomicU64>,
}

impl std::fmt::Debug for AksClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AksClient")
            .field("creds", &self.creds)
            .field("endpoints", &self.options.endpoints)
            .field("api_calls", &self.api_calls())
            .finish_non_exhaustive()
    }
}

/// An answer: its status, headers and body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: bytes::Bytes,
}

impl Answer {
    pub(crate) fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| AksError::InvalidResponse(format!("{what}: {e}")))
    }

    /// `Retry-After` as seconds (ARM sends seconds; an HTTP date is not used by ARM).
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers)
    }
}

pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

pub(crate) fn error_body(bytes: &[u8]) -> AzureErrorBody {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Option<Inner>,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Envelope>(bytes) {
        Ok(Envelope { error: Some(i) }) => AzureErrorBody { code: i.code, message: i.message },
        _ => AzureErrorBody {
            code: String::new(),
            message: String::from_utf8_lossy(bytes).chars().take(300).collect(),
        },
    }
}

impl AksClient {
    /// A client signed in as `creds` (the first call signs in).
    ///
    /// # Errors
    /// [`AksError::InvalidConfig`] when `extra_ca_pem` holds no certificate or the HTTP client cannot
    /// be built; the credentials' ids must not be empty.
    pub fn new(creds: AzureCredentials, options: AksClientOptions) -> Result<AksClient> {
        for (field, v) in [
            ("tenantId", &creds.tenant_id),
            ("clientId", &creds.client_id),
            ("subscriptionId", &creds.subscription_id),
        ] {
            let ok = !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !ok {
                return Err(AksError::InvalidConfig {
                    field: format!("credential.{field}"),
                    message: "an Azure id (a GUID or a tenant's domain name)".into(),
                });
            }
        }
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(options.request_timeout)
            // A redirect would carry the bearer token to another host.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &options.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| AksError::InvalidConfig {
                    field: "extraCaPem".into(),
                    message: "holds no PEM certificate".into(),
                })?;
            http = http.tls_certs_merge(certs);
        }
        let http = http
            .build()
            .map_err(|e| AksError::InvalidConfig { field: "http".into(), message: e.to_string() })?;
        Ok(AksClient { http, creds, options, token: TokenCache::new(), calls: Arc::new(AtomicU64::new(0)) })
    }

    /// How many HTTP requests this client has sent to Azure so far.
    pub fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The counter behind [`api_calls`](Self::api_calls), to share with a bench or metrics.
    pub fn api_call_counter(&self) -> Arc<AtomicU64> {
        self.calls.clone()
    }

    /// Counts this client's requests on `counter` instead (one counter for every client of a
    /// server, say); what it counted so far stays on the old counter.
    pub fn with_call_counter(mut self, counter: Arc<AtomicU64>) -> AksClient {
        self.calls = counter;
        self
    }

    /// The subscription this client works in.
    pub fn subscription_id(&self) -> &str {
        &self.creds.subscription_id
    }

    /// Signs in now (or reuses the cached token), to check the credentials before anything else.
    ///
    /// # Errors
    /// [`AksError::CredentialsRejected`] with Azure's `AADSTS…` message; transport errors.
    pub async fn sign_in(&self) -> Result<()> {
        self.bearer().await.map(|_| ())
    }

    async fn bearer(&self) -> Result<secrecy::SecretString> {
        let e = &self.options.endpoints;
        let mut token_url = e.auth_base_url.clone();
        token_url
            .path_segments_mut()
            .map_err(|_| AksError::InvalidConfig {
                field: "authBaseUrl".into(),
                message: "cannot be a base".into(),
            })?
            .pop_if_empty()
            .extend([self.creds.tenant_id.as_str(), "oauth2", "v2.0", "token"]);
        let scope = format!("{}/.default", e.base_url.as_str().trim_end_matches('/'));
        self.token
            .get(|| async {
                self.calls.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(tenant = %self.creds.tenant_id, "signing in to Azure");
                request_token(&self.http, &token_url, &self.creds, &scope).await
            })
            .await
    }

    /// `{baseUrl}{path}?api-version={version}` (`path` starts with `/`).
    pub(crate) fn url(&self, path: &str, api_version: &str) -> Result<Url> {
        let base = self.options.endpoints.base_url.as_str().trim_end_matches('/');
        let mut url = Url::parse(&format!("{base}{path}"))
            .map_err(|e| AksError::InvalidConfig { field: "path".into(), message: format!("{path}: {e}") })?;
        url.query_pairs_mut().append_pair("api-version", api_version);
        Ok(url)
    }

    /// Whether `url` is on Resource Manager's origin (the token is only ever sent there).
    pub(crate) fn same_origin(&self, url: &Url) -> bool {
        url.origin() == self.options.endpoints.base_url.origin()
    }

    /// Sends one request with the bearer token, retrying 429/503 after `Retry-After` (or a doubling
    /// backoff) up to `max_attempts`, and signing in again once if the token is refused.
    /// Error answers become typed errors; `what` names the resource in a NotFound.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Answer> {
        if !self.same_origin(&url) {
            return Err(AksError::InvalidResponse(format!(
                "refusing to send the token to {}",
                url.origin().ascii_serialization()
            )));
        }
        let mut attempt = 0u32;
        let mut refreshed = false;
        let mut backoff = self.options.retry_backoff;
        loop {
            attempt += 1;
            let token = self.bearer().await?;
            let mut req = self.http.request(method.clone(), url.clone()).bearer_auth(token.expose_secret());
            if let Some(b) = body {
                req = req.json(b);
            } else if method == Method::POST {
                req = req.header(reqwest::header::CONTENT_LENGTH, "0");
            }
            self.calls.fetch_add(1, Ordering::Relaxed);
            let resp = req.send().await.map_err(AksError::Transport)?;
            let answer = Answer {
                status: resp.status(),
                headers: resp.headers().clone(),
                body: resp.bytes().await.map_err(AksError::Transport)?,
            };
            let status = answer.status;
            tracing::debug!(%method, path = url.path(), status = status.as_u16(), attempt, "Azure call");
            if status.is_success() || status == StatusCode::ACCEPTED {
                return Ok(answer);
            }
            let err = error_body(&answer.body);
            match status {
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    let wait = answer.retry_after();
                    let pause = wait.unwrap_or(backoff);
                    if attempt >= self.options.max_attempts.max(1) || pause > self.options.max_retry_after {
                        return Err(AksError::Throttled { attempts: attempt, retry_after: wait, body: err });
                    }
                    tracing::debug!(?pause, attempt, "Azure throttled the call; retrying");
                    tokio::time::sleep(pause).await;
                    backoff = backoff.saturating_mul(2);
                }
                StatusCode::UNAUTHORIZED if !refreshed => {
                    // An expired or revoked token: sign in again once.
                    refreshed = true;
                    self.token.invalidate().await;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(AksError::CredentialsRejected { status: status.as_u16(), body: err });
                }
                StatusCode::NOT_FOUND => return Err(AksError::NotFound { what: what.to_owned(), body: err }),
                StatusCode::CONFLICT => return Err(AksError::Conflict(err)),
                s => return Err(AksError::Api { status: s.as_u16(), body: err }),
            }
        }
    }

    /// GET `url` and read the JSON answer.
    pub(crate) async fn get_json<T: DeserializeOwned>(&self, url: Url, what: &str) -> Result<T> {
        self.send(Method::GET, url, None, what).await?.json(what)
    }
}
