//! A stand-in for Google Kubernetes Engine: the documented `container/v1` REST API
//! (<https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters>,
//! `…/projects.locations.clusters.nodePools`, `…/projects.locations.operations`) and an OAuth 2.0
//! token endpoint for service-account keys
//! (<https://developers.google.com/identity/protocols/oauth2/service-account#httprest>), over HTTPS
//! on 127.0.0.1 with a CA of its own.
//!
//! It keeps clusters and node pools in memory; changes are long-running operations that go
//! PENDING → RUNNING → DONE over [`GkeStandInOptions::operation_time`]. A created cluster is
//! PROVISIONING until its operation is done, then RUNNING with the `endpoint` and
//! `masterAuth.clusterCaCertificate` the test configured. Errors are Google's
//! `{"error": {"code", "message", "status"}}`. Faults on demand: throttle the next calls (429 with
//! `Retry-After`), fail the next operation, revoke the credentials. Every call is recorded.
//!
//! Where it is simpler than GKE (and says so): it refuses any change to a cluster while another
//! operation runs on it (GKE allows some in parallel); `nodePools.setSize` also sets the pool's
//! `initialNodeCount` (the only place the API shows a pool's size without Compute Engine, and where
//! Rancher's gke-operator reads it back).
//!
//! ```no_run
//! # async fn example() {
//! use rancher_test_support::gke::{GkeStandIn, GkeStandInOptions};
//! let gke = GkeStandIn::start(GkeStandInOptions::default()).await;
//! let key_json = gke.service_account_json(); // token_uri points at the stand-in
//! let (base_url, ca) = (gke.base_url(), gke.ca_pem());
//! gke.throttle_next(2, std::time::Duration::from_secs(1));
//! # let _ = (key_json, base_url, ca);
//! # }
//! ```

mod api;
mod ops;
mod token;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Request, State as AxState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use api::google_error;
use ops::Inner;
use token::Account;

/// How the stand-in behaves.
#[derive(Clone, Debug)]
pub struct GkeStandInOptions {
    /// How long an operation takes from start to DONE (PENDING for the first quarter).
    pub operation_time: Duration,
    /// What a RUNNING cluster reports as `endpoint` (`host[:port]`): point it at a rancher-sim. The
    /// default is a closed loopback port, so nothing is reached by accident.
    pub endpoint: String,
    /// The CA (PEM) a RUNNING cluster reports in `masterAuth.clusterCaCertificate` (base64 of it);
    /// the stand-in's own CA when unset.
    pub cluster_ca_pem: Option<String>,
    /// How long an issued access token lives (`expires_in`).
    pub token_lifetime: Duration,
    /// The version `latest`, `-` and an unset version resolve to.
    pub default_version: String,
    /// The service account's project.
    pub project_id: String,
}

impl Default for GkeStandInOptions {
    fn default() -> Self {
        GkeStandInOptions {
            operation_time: Duration::from_millis(400),
            endpoint: "127.0.0.1:1".to_owned(),
            cluster_ca_pem: None,
            token_lifetime: Duration::from_secs(3600),
            default_version: "1.29.4-gke.1043002".to_owned(),
            project_id: "rancher-rs-test".to_owned(),
        }
    }
}

/// One request the stand-in answered.
#[derive(Clone, Debug)]
pub struct Call {
    /// When it arrived.
    pub at: Instant,
    /// `GET`, `POST`, …
    pub method: String,
    /// The path (`/token`, `/v1/projects/p/locations/l/clusters`).
    pub path: String,
    /// The answer's status.
    pub status: u16,
}

struct State {
    base_url: String,
    token_uri: String,
    account: Account,
    options: GkeStandInOptions,
    cluster_ca_b64: String,
    inner: Mutex<Inner>,
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running stand-in; stops when dropped.
pub struct GkeStandIn {
    state: Arc<State>,
    ca_pem: String,
    server: JoinHandle<()>,
}

impl Drop for GkeStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl GkeStandIn {
    /// Starts a stand-in on a free loopback port.
    ///
    /// # Panics
    /// When it cannot listen or make its certificates.
    pub async fn start(options: GkeStandInOptions) -> GkeStandIn {
        crate::install_crypto();
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("listen");
        let port = listener.local_addr().expect("address").port();
        let base_url = format!("https://127.0.0.1:{port}");
        let (ca_pem, tls) = tls_config();
        let cluster_ca = options.cluster_ca_pem.clone().unwrap_or_else(|| ca_pem.clone());
        let email = format!("rancher-rs@{}.iam.gserviceaccount.com", options.project_id);
        let state = Arc::new(State {
            token_uri: format!("{base_url}/token"),
            base_url,
            account: Account::generate(&email),
            cluster_ca_b64: base64::engine::general_purpose::STANDARD.encode(cluster_ca),
            options,
            inner: Mutex::default(),
        });
        let app = axum::Router::new()
            .route("/token", axum::routing::post(token_endpoint))
            .route(TOKEN_REVIEW_PATH, axum::routing::post(token_review))
            .fallback(container_api)
            .layer(axum::middleware::from_fn_with_state(state.clone(), record))
            .with_state(state.clone());
        let server = tokio::spawn(serve(listener, TlsAcceptor::from(Arc::new(tls)), app));
        GkeStandIn { state, ca_pem, server }
    }

    /// From now on, clusters that become RUNNING report `endpoint` (`host:port`) and the CA `ca_pem`
    /// (a `rancher-sim` started after the stand-in, with [`token_review_url`](Self::token_review_url)
    /// as its authentication webhook).
    pub fn set_cluster_endpoint(&self, endpoint: &str, ca_pem: &str) {
        let ca_b64 = base64::engine::general_purpose::STANDARD.encode(ca_pem);
        self.state.lock().endpoint = Some((endpoint.to_owned(), ca_b64));
    }

    /// The URL of a Kubernetes authentication webhook (TokenReview) that accepts the access tokens
    /// this stand-in issued, as GKE's control planes accept Google tokens: give it to the
    /// `rancher-sim` a cluster's `endpoint` points at (`Sim::builder().auth_webhook(url, Some(ca))`).
    /// A live token is the service account, in `system:masters` (a project owner's key).
    pub fn token_review_url(&self) -> String {
        format!("{}{TOKEN_REVIEW_PATH}", self.state.base_url)
    }

    /// The container API's base URL (`https://127.0.0.1:PORT`).
    pub fn base_url(&self) -> &str {
        &self.state.base_url
    }

    /// The token endpoint (the key JSON's `token_uri`).
    pub fn token_uri(&self) -> &str {
        &self.state.token_uri
    }

    /// The CA (PEM) of the stand-in's HTTPS certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The service account's project.
    pub fn project_id(&self) -> &str {
        &self.state.options.project_id
    }

    /// The service-account key JSON the stand-in accepts.
    pub fn service_account_json(&self) -> String {
        self.state.account.key_json(&self.state.options.project_id, &self.state.token_uri)
    }

    /// A key JSON for the same account with another private key (one that was never issued, or
    /// was deleted): the token endpoint refuses its signature.
    pub fn unknown_key_json(&self) -> String {
        Account::generate(&self.state.account.email)
            .key_json(&self.state.options.project_id, &self.state.token_uri)
    }

    /// The next `n` container API calls answer 429 `RESOURCE_EXHAUSTED` with `Retry-After` (whole
    /// seconds, rounded up).
    pub fn throttle_next(&self, n: u32, retry_after: Duration) {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        self.state.lock().throttle = Some((n, secs));
    }

    /// While `held`, operations do not advance (a cluster being created stays PROVISIONING), so a test
    /// can assert on the states in between without racing the clock; once released, they move on
    /// by their age.
    pub fn hold_operations(&self, held: bool) {
        self.state.lock().held = held;
    }

    /// The next operation started ends DONE with `error.message` = `message` (a create leaves the
    /// cluster in ERROR).
    pub fn fail_next_operation(&self, message: &str) {
        self.state.lock().fail_next = Some(message.to_owned());
    }

    /// Revokes the key and every token issued: the token endpoint answers `invalid_grant`, the API
    /// 401.
    pub fn revoke_credentials(&self) {
        let mut inner = self.state.lock();
        inner.revoked = true;
        inner.tokens.clear();
    }

    /// Every request answered so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().calls.clone()
    }

    /// How many requests reached the token endpoint.
    pub fn token_requests(&self) -> usize {
        self.state.lock().calls.iter().filter(|c| c.path == "/token").count()
    }

    /// The cluster as `clusters.get` would show it now, if it exists.
    pub fn cluster(&self, location: &str, name: &str) -> Option<serde_json::Value> {
        let mut inner = self.state.lock();
        inner.advance(&self.state, Instant::now());
        let key = (self.state.options.project_id.clone(), location.to_owned(), name.to_owned());
        inner.clusters.get(&key).cloned()
    }

    /// Adds a RUNNING cluster that exists already (for import): `cluster` is a `Cluster` JSON with at
    /// least `name`; the stand-in fills in status, versions, endpoint and CA.
    pub fn insert_running_cluster(&self, location: &str, mut cluster: serde_json::Value) {
        let name = cluster["name"].as_str().expect("a cluster name").to_owned();
        let o = &self.state.options;
        let version = cluster["currentMasterVersion"].as_str().unwrap_or(&o.default_version).to_owned();
        let link = format!(
            "{}/v1/projects/{}/locations/{location}/clusters/{name}",
            self.state.base_url, o.project_id
        );
        cluster["location"] = location.into();
        cluster["selfLink"] = link.into();
        cluster["status"] = "RUNNING".into();
        cluster["currentMasterVersion"] = version.clone().into();
        cluster["currentNodeVersion"] = version.clone().into();
        let (endpoint, ca_b64) = self
            .state
            .lock()
            .endpoint
            .clone()
            .unwrap_or_else(|| (o.endpoint.clone(), self.state.cluster_ca_b64.clone()));
        cluster["endpoint"] = endpoint.into();
        cluster["masterAuth"] = serde_json::json!({"clusterCaCertificate": ca_b64});
        if let Some(pools) = cluster.get_mut("nodePools").and_then(|p| p.as_array_mut()) {
            for p in pools {
                p["status"] = "RUNNING".into();
                if p["version"].is_null() {
                    p["version"] = version.clone().into();
                }
            }
        }
        self.state.lock().clusters.insert((o.project_id.clone(), location.to_owned(), name), cluster);
    }
}

/// Records each request with its answer's status.
async fn record(AxState(state): AxState<Arc<State>>, req: Request, next: Next) -> Response {
    let (at, method, path) = (Instant::now(), req.method().to_string(), req.uri().path().to_owned());
    let resp = next.run(req).await;
    state.lock().calls.push(Call { at, method, path, status: resp.status().as_u16() });
    resp
}

async fn token_endpoint(
    AxState(state): AxState<Arc<State>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let now = jiff::Timestamp::now().as_second();
    let mut inner = state.lock();
    let checked = if inner.revoked {
        Err(("invalid_grant", "Invalid JWT Signature.".to_owned()))
    } else {
        state.account.check_grant(&form, &state.token_uri, now)
    };
    if let Err((error, description)) = checked {
        let body = serde_json::json!({"error": error, "error_description": description});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let token = format!("ya29.stand-in-{}", token::random_hex(24));
    let life = state.options.token_lifetime;
    inner.tokens.insert(token.clone(), Instant::now() + life);
    axum::Json(
        serde_json::json!({"access_token": token, "expires_in": life.as_secs(), "token_type": "Bearer"}),
    )
    .into_response()
}

/// Where [`GkeStandIn::token_review_url`] is served.
const TOKEN_REVIEW_PATH: &str = "/tokenreview";

/// `TokenReview` (authentication.k8s.io/v1) of an access token this stand-in issued.
async fn token_review(AxState(state): AxState<Arc<State>>, body: axum::body::Bytes) -> Response {
    let review: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let token = review["spec"]["token"].as_str().unwrap_or_default();
    let live = state.lock().tokens.get(token).is_some_and(|expires| *expires > Instant::now());
    let status = if live {
        serde_json::json!({
            "authenticated": true,
            "user": {"username": state.account.email, "groups": ["system:masters", "system:authenticated"]},
        })
    } else {
        serde_json::json!({"authenticated": false, "error": "not a live access token"})
    };
    axum::Json(serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "status": status,
    }))
    .into_response()
}

async fn container_api(AxState(state): AxState<Arc<State>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 4 << 20).await else {
        return google_error(400, "INVALID_ARGUMENT", "The request body is too large.");
    };
    let now = Instant::now();
    let mut inner = state.lock();
    let bearer = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let authorized = bearer
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| inner.tokens.get(t))
        .is_some_and(|expires| *expires > now);
    if !authorized {
        return google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or \
             other valid authentication credential.",
        );
    }
    if let Some((left, secs)) = inner.throttle.as_mut()
        && *left > 0
    {
        *left -= 1;
        let mut resp = google_error(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Read requests' of service 'container.googleapis.com'.",
        );
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*secs));
        return resp;
    }
    inner.advance(&state, now);
    api::route(&state, &mut inner, parts.method.as_str(), parts.uri.path(), &body)
}

/// The stand-in's CA and a serving certificate for 127.0.0.1 and localhost signed by it.
fn tls_config() -> (String, rustls::ServerConfig) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.distinguished_name.push(DnType::CommonName, "gke-stand-in-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_pem = ca.self_signed(&ca_key).expect("CA cert").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("serving key");
    let mut p = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    p.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
    p.distinguished_name.push(DnType::CommonName, "container.googleapis.com");
    let cert = p.signed_by(&key, &issuer).expect("serving cert");
    let key_der = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into();
    let mut tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .expect("TLS config");
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (ca_pem, tls)
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, app: axum::Router) {
    // Connections live in this set, so aborting the server ends them too.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        while connections.try_join_next().is_some() {}
        let (acceptor, app) = (acceptor.clone(), app.clone());
        connections.spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(app)).await;
        });
    }
}
