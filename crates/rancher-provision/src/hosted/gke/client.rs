//! The `container/v1` calls (<https://cloud.google.com/kubernetes-engine/docs/reference/rest>):
//! clusters and node pools under `projects/{project}/locations/{location}`, and their long-running
//! operations. Every call carries the service account's bearer token; 429 and 503 are retried with
//! backoff honouring `Retry-After`; each request sent is counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::auth::{ServiceAccountKey, TokenSource};
use super::types::{Cluster, ClusterUpdate, ListClustersResponse, NodePool, NodePoolUpdate, Operation};
use super::{GkeError, Result};

/// Google's endpoint for the container API.
pub const DEFAULT_BASE_URL: &str = "https://container.googleapis.com";
/// The largest answer body read (a cluster list of a big project stays well under it).
const MAX_BODY: usize = 16 << 20;

/// How many requests a client (or several sharing it) sent: the bench reads these.
#[derive(Debug, Default)]
pub struct ApiCalls {
    pub(crate) api_calls: AtomicU64,
    pub(crate) token_requests: AtomicU64,
}

impl ApiCalls {
    /// Requests to the container API, retries included.
    pub fn api_calls(&self) -> u64 {
        self.api_calls.load(Ordering::Relaxed)
    }

    /// Requests to the token endpoint.
    pub fn token_requests(&self) -> u64 {
        self.token_requests.load(Ordering::Relaxed)
    }

    pub(crate) fn count_api_call(&self) {
        self.api_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_token_request(&self) {
        self.token_requests.fetch_add(1, Ordering::Relaxed);
    }
}

/// How throttled (429) and unavailable (503) answers are retried.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// The most times one call is sent (at least 1).
    pub max_attempts: u32,
    /// The first wait when Google gives no `Retry-After`; doubled on each retry.
    pub base_delay: Duration,
    /// The longest wait, also the cap on a `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// How a [`GkeClient`] reaches Google.
#[derive(Clone, Debug)]
pub struct GkeOptions {
    /// The container API's base URL (HTTPS); [`DEFAULT_BASE_URL`] by default.
    pub base_url: String,
    /// A CA (PEM) trusted besides the system's, for a stand-in or a proxy.
    pub extra_ca_pem: Option<String>,
    /// Retries of 429 and 503.
    pub retry: RetryPolicy,
    /// Where requests are counted; share one to count several clients.
    pub calls: Arc<ApiCalls>,
    /// The limit on one request.
    pub request_timeout: Duration,
}

impl Default for GkeOptions {
    fn default() -> Self {
        GkeOptions {
            base_url: DEFAULT_BASE_URL.to_owned(),
            extra_ca_pem: None,
            retry: RetryPolicy::default(),
            calls: Arc::default(),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Where clusters live: `projects/{project}/locations/{location}`, the location a region or a zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The project ID.
    pub project: String,
    /// The region or zone (`-` in [`GkeClient::list_clusters`] for all of them).
    pub location: String,
}

impl Location {
    /// `projects/{project}/locations/{location}`.
    pub fn new(project: impl Into<String>, location: impl Into<String>) -> Location {
        Location { project: project.into(), location: location.into() }
    }

    /// Where a `gkeConfig` puts its cluster.
    pub fn of(config: &rancher_core::model::GkeConfig) -> Location {
        Location::new(&config.project_id, config.location())
    }

    fn path(&self) -> String {
        format!("projects/{}/locations/{}", self.project, self.location)
    }
}

/// The HTTP side shared by the token endpoint and the API: sending with bounded retries.
pub(crate) struct Transport {
    pub(crate) http: reqwest::Client,
    retry: RetryPolicy,
    pub(crate) calls: Arc<ApiCalls>,
}

impl Transport {
    /// Sends what `build` makes, again on 429/503 (after `Retry-After`, else backoff) up to the
    /// policy's attempts; returns any other answer with its body.
    pub(crate) async fn send_retrying(
        &self,
        what: &str,
        count: fn(&ApiCalls),
        build: impl Fn() -> RequestBuilder,
    ) -> Result<(StatusCode, Bytes)> {
        let attempts = self.retry.max_attempts.max(1);
        let mut delay = self.retry.base_delay;
        for attempt in 1..=attempts {
            count(&self.calls);
            let resp = build()
                .send()
                .await
                .map_err(|source| GkeError::Transport { what: what.to_owned(), source })?;
            let status = resp.status();
            let retry_after = retry_after(resp.headers());
            let body = read_bounded(resp)
                .await
                .map_err(|source| GkeError::Transport { what: what.to_owned(), source })?;
            if !matches!(status.as_u16(), 429 | 503) {
                return Ok((status, body));
            }
            if attempt == attempts {
                let e = GkeError::from_answer(status.as_u16(), &body);
                let message = match e {
                    GkeError::Api { message, .. } => message,
                    other => other.to_string(),
                };
                return Err(GkeError::Throttled { code: status.as_u16(), attempts, message, retry_after });
            }
            let wait = retry_after.unwrap_or(delay).min(self.retry.max_delay);
            tracing::debug!(what, code = status.as_u16(), ?wait, attempt, "GKE throttled; retrying");
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(self.retry.max_delay);
        }
        unreachable!("the loop returns on its last attempt")
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let secs = at.as_second() - jiff::Timestamp::now().as_second();
    Some(Duration::from_secs(secs.max(0) as u64))
}

async fn read_bounded(mut resp: reqwest::Response) -> reqwest::Result<Bytes> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > MAX_BODY {
            out.extend_from_slice(&chunk[..MAX_BODY - out.len()]);
            break;
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.into())
}

/// A client of the GKE API signed in as one service account. Cheap to clone; clones share the
/// token cache and the call counters, so keep one per credential.
#[derive(Clone)]
pub struct GkeClient {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    tokens: TokenSource,
    base: String,
}

impl std::fmt::Debug for GkeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GkeClient")
            .field("base", &self.inner.base)
            .field("service_account", &self.inner.tokens.key().client_email)
            .finish_non_exhaustive()
    }
}

impl GkeClient {
    /// A client signing in with `key`.
    ///
    /// # Errors
    /// [`GkeError::Config`] when the base URL is not HTTPS or the extra CA is not PEM.
    pub fn new(key: ServiceAccountKey, options: GkeOptions) -> Result<GkeClient> {
        let base = url::Url::parse(&options.base_url)
            .map_err(|e| GkeError::Config(format!("base URL {:?}: {e}", options.base_url)))?;
        if base.scheme() != "https" {
            return Err(GkeError::Config(format!("base URL {:?} is not HTTPS", options.base_url)));
        }
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(options.request_timeout)
            // A redirect would carry the bearer token elsewhere.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &options.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| GkeError::Config(format!("extra CA: {e}")))?;
            if certs.is_empty() {
                return Err(GkeError::Config("extra CA: no certificate in the PEM".into()));
            }
            http = http.tls_certs_merge(certs);
        }
        let http = http.build().map_err(|e| GkeError::Config(format!("HTTP client: {e}")))?;
        Ok(GkeClient {
            inner: Arc::new(Inner {
                transport: Transport { http, retry: options.retry, calls: options.calls },
                tokens: TokenSource::new(key),
                base: options.base_url.trim_end_matches('/').to_owned(),
            }),
        })
    }

    /// A client from a service-account key JSON (a `CloudSecret::Gcp`'s).
    ///
    /// # Errors
    /// [`GkeError::InvalidKey`] or [`GkeError::Config`].
    pub fn from_key_json(json: &SecretString, options: GkeOptions) -> Result<GkeClient> {
        GkeClient::new(ServiceAccountKey::from_json(json)?, options)
    }

    /// The service account signed in as.
    pub fn key(&self) -> &ServiceAccountKey {
        self.inner.tokens.key()
    }

    /// The request counters.
    pub fn calls(&self) -> &Arc<ApiCalls> {
        &self.inner.transport.calls
    }

    /// A current access token for the service account (cached), e.g. to reach the cluster's own
    /// API server as that account.
    ///
    /// # Errors
    /// [`GkeError::CredentialsRejected`] when the token endpoint refuses the key.
    pub async fn access_token(&self) -> Result<SecretString> {
        self.inner.tokens.token(&self.inner.transport).await
    }

    /// One API call: `method` on `path` (under `/v1/`) with an optional JSON body. A 401 makes one
    /// more try with a fresh token (the cached one may have been revoked early).
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let url = format!("{}/v1/{path}", self.inner.base);
        let what = format!("{method} {path}");
        let body = body.map(serde_json::to_vec).transpose().map_err(|e| GkeError::InvalidResponse {
            what: what.clone(),
            reason: format!("request body: {e}"),
        })?;
        for fresh_token in [false, true] {
            let token = self.access_token().await?;
            let (status, answer) = self
                .inner
                .transport
                .send_retrying(&what, ApiCalls::count_api_call, || {
                    let mut req = self
                        .inner
                        .transport
                        .http
                        .request(method.clone(), &url)
                        .bearer_auth(token.expose_secret());
                    if let Some(b) = &body {
                        req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(b.clone());
                    }
                    req
                })
                .await?;
            if status == StatusCode::UNAUTHORIZED && !fresh_token {
                self.inner.tokens.invalidate().await;
                continue;
            }
            if !status.is_success() {
                return Err(GkeError::from_answer(status.as_u16(), &answer));
            }
            return serde_json::from_slice(&answer).map_err(|e| GkeError::InvalidResponse {
                what,
                reason: format!("not the documented JSON: {e}"),
            });
        }
        unreachable!("the second try returns")
    }

    // ---- clusters ----

    /// `clusters.create`: starts creating `cluster` (with its `nodePools`).
    ///
    /// # Errors
    /// [`GkeError::Conflict`] `ALREADY_EXISTS` when the name is taken; any [`GkeError`].
    pub async fn create_cluster(&self, at: &Location, cluster: &Cluster) -> Result<Operation> {
        let body = serde_json::json!({ "cluster": cluster });
        self.call(Method::POST, &format!("{}/clusters", at.path()), Some(&body)).await
    }

    /// `clusters.get`: status, endpoint, CA, versions and pools.
    ///
    /// # Errors
    /// [`GkeError::NotFound`] when there is no such cluster; any [`GkeError`].
    pub async fn get_cluster(&self, at: &Location, name: &str) -> Result<Cluster> {
        self.call(Method::GET, &format!("{}/clusters/{name}", at.path()), None::<&()>).await
    }

    /// `clusters.get`, with a missing cluster as `None`.
    ///
    /// # Errors
    /// Any [`GkeError`] but [`GkeError::NotFound`].
    pub async fn find_cluster(&self, at: &Location, name: &str) -> Result<Option<Cluster>> {
        match self.get_cluster(at, name).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `clusters.list` in one location (or `-` for all of the project's).
    ///
    /// # Errors
    /// [`GkeError::InvalidResponse`] when Google reports zones it could not list (`missingZones`):
    /// the list would be incomplete; any [`GkeError`].
    pub async fn list_clusters(&self, at: &Location) -> Result<Vec<Cluster>> {
        let path = format!("{}/clusters", at.path());
        let list: ListClustersResponse = self.call(Method::GET, &path, None::<&()>).await?;
        if !list.missing_zones.is_empty() {
            return Err(GkeError::InvalidResponse {
                what: format!("GET {path}"),
                reason: format!("zones not listed: {}", list.missing_zones.join(", ")),
            });
        }
        Ok(list.clusters)
    }

    /// `clusters.delete`: starts deleting the cluster and its pools.
    ///
    /// # Errors
    /// [`GkeError::NotFound`] when it is gone already; any [`GkeError`].
    pub async fn delete_cluster(&self, at: &Location, name: &str) -> Result<Operation> {
        self.call(Method::DELETE, &format!("{}/clusters/{name}", at.path()), None::<&()>).await
    }

    /// `clusters.update`: one change of `update` at a time, as Google requires.
    ///
    /// # Errors
    /// [`GkeError::Conflict`] while another operation runs on the cluster; any [`GkeError`].
    pub async fn update_cluster(
        &self,
        at: &Location,
        name: &str,
        update: &ClusterUpdate,
    ) -> Result<Operation> {
        let body = serde_json::json!({ "update": update });
        self.call(Method::PUT, &format!("{}/clusters/{name}", at.path()), Some(&body)).await
    }

    /// `clusters.updateMaster`: upgrades the control plane to `version`.
    ///
    /// # Errors
    /// [`GkeError::Conflict`] while another operation runs on the cluster; any [`GkeError`].
    pub async fn update_master(&self, at: &Location, name: &str, version: &str) -> Result<Operation> {
        let body = serde_json::json!({ "masterVersion": version });
        self.call(Method::POST, &format!("{}/clusters/{name}:updateMaster", at.path()), Some(&body)).await
    }

    /// `clusters.setResourceLabels`: replaces the labels; `fingerprint` is the cluster's current
    /// `labelFingerprint` (from [`get_cluster`](Self::get_cluster)).
    ///
    /// # Errors
    /// [`GkeError::Conflict`] when the labels changed since the fingerprint was read; any [`GkeError`].
    pub async fn set_resource_labels(
        &self,
        at: &Location,
        name: &str,
        labels: &std::collections::BTreeMap<String, String>,
        fingerprint: &str,
    ) -> Result<Operation> {
        let body = serde_json::json!({ "resourceLabels": labels, "labelFingerprint": fingerprint });
        self.call(Method::POST, &format!("{}/clusters/{name}:setResourceLabels", at.path()), Some(&body))
            .await
    }

    // ---- node pools ----

    /// `nodePools.create`: adds `pool` to the cluster.
    ///
    /// # Errors
    /// [`GkeError::Conflict`] when the name is taken or another operation runs; any [`GkeError`].
    pub async fn create_node_pool(&self, at: &Location, cluster: &str, pool: &NodePool) -> Result<Operation> {
        let body = serde_json::json!({ "nodePool": pool });
        self.call(Method::POST, &format!("{}/clusters/{cluster}/nodePools", at.path()), Some(&body)).await
    }

    /// `nodePools.get`.
    ///
    /// # Errors
    /// [`GkeError::NotFound`]; any [`GkeError`].
    pub async fn get_node_pool(&self, at: &Location, cluster: &str, pool: &str) -> Result<NodePool> {
        self.call(Method::GET, &format!("{}/clusters/{cluster}/nodePools/{pool}", at.path()), None::<&()>)
            .await
    }

    /// `nodePools.delete`.
    ///
    /// # Errors
    /// [`GkeError::NotFound`] when it is gone already; any [`GkeError`].
    pub async fn delete_node_pool(&self, at: &Location, cluster: &str, pool: &str) -> Result<Operation> {
        self.call(Method::DELETE, &format!("{}/clusters/{cluster}/nodePools/{pool}", at.path()), None::<&()>)
            .await
    }

    /// `nodePools.setSize`: `count` nodes (per zone).
    ///
    /// # Errors
    /// [`GkeError::Conflict`] while another operation runs; any [`GkeError`].
    pub async fn set_node_pool_size(
        &self,
        at: &Location,
        cluster: &str,
        pool: &str,
        count: u32,
    ) -> Result<Operation> {
        let body = serde_json::json!({ "nodeCount": count });
        let path = format!("{}/clusters/{cluster}/nodePools/{pool}:setSize", at.path());
        self.call(Method::POST, &path, Some(&body)).await
    }

    /// `nodePools.update`: the pool's version (and image).
    ///
    /// # Errors
    /// [`GkeError::Conflict`] while another operation runs; any [`GkeError`].
    pub async fn update_node_pool(
        &self,
        at: &Location,
        cluster: &str,
        pool: &str,
        update: &NodePoolUpdate,
    ) -> Result<Operation> {
        let path = format!("{}/clusters/{cluster}/nodePools/{pool}", at.path());
        self.call(Method::PUT, &path, Some(update)).await
    }

    // ---- operations ----

    /// `operations.get`: how far `operation` (its `name`) got.
    ///
    /// # Errors
    /// [`GkeError::NotFound`]; any [`GkeError`].
    pub async fn get_operation(&self, at: &Location, operation: &str) -> Result<Operation> {
        self.call(Method::GET, &format!("{}/operations/{operation}", at.path()), None::<&()>).await
    }

    /// Polls `operation` every `poll` until it is done, for at most `deadline`.
    ///
    /// # Errors
    /// [`GkeError::OperationFailed`] with the operation's error message;
    /// [`GkeError::OperationTimeout`] after `deadline` (the operation goes on at Google);
    /// [`GkeError::Cancelled`] when `cancel` fires; any [`GkeError`] of the polls.
    pub async fn wait_operation(
        &self,
        at: &Location,
        operation: &Operation,
        poll: Duration,
        deadline: Duration,
        cancel: &CancellationToken,
    ) -> Result<Operation> {
        let until = tokio::time::Instant::now() + deadline;
        let mut op = operation.clone();
        loop {
            if op.is_done() {
                return match op.failure() {
                    Some(message) => Err(GkeError::OperationFailed {
                        operation: op.name.clone(),
                        operation_type: op.operation_type.clone(),
                        message,
                    }),
                    None => Ok(op),
                };
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                return Err(GkeError::OperationTimeout { operation: op.name.clone(), waited: deadline });
            }
            tokio::select! {
                () = cancel.cancelled() => return Err(GkeError::Cancelled),
                () = tokio::time::sleep(poll.min(until - now)) => {}
            }
            op = self.get_operation(at, &operation.name).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            retry_after(&h)
        };
        assert_eq!(with("7"), Some(Duration::from_secs(7)));
        assert_eq!(with("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO), "a date in the past: now");
        let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(120);
        let date = jiff::fmt::rfc2822::to_string(&soon.to_zoned(jiff::tz::TimeZone::UTC)).unwrap();
        let d = with(&date).unwrap();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120), "{date} → {d:?}");
        assert_eq!(with("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn locations_name_the_config_s_region_or_zone() {
        let config = rancher_core::model::GkeConfig {
            project_id: "p-123456".into(),
            zone: "us-east1-b".into(),
            ..Default::default()
        };
        assert_eq!(Location::of(&config).path(), "projects/p-123456/locations/us-east1-b");
    }
}
