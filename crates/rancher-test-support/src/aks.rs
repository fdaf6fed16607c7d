//! A stand-in for Azure as an AKS client sees it, in memory, over HTTPS with a test CA on 127.0.0.1:
//! the Microsoft identity platform's token endpoint and the Resource Manager paths of resource groups,
//! managed clusters, agent pools, admin credentials and long-running operations.
//!
//! It follows the documented contracts (learn.microsoft.com):
//! - "Microsoft identity platform and the OAuth 2.0 client credentials flow":
//!   `POST /{tenant}/oauth2/v2.0/token`, `{token_type, expires_in, access_token}`, errors
//!   `{error, error_description: "AADSTS…"}` (400 / 401 `invalid_client`);
//! - AKS REST reference, "Managed Clusters" (Create Or Update, Get, List, List By Resource Group,
//!   Delete, Update Tags, List Cluster Admin Credentials) and "Agent Pools" (Create Or Update, Get,
//!   List, Delete): PUT answers 201 (new) or 200 with `Azure-AsyncOperation`, DELETE 202 with
//!   `Azure-AsyncOperation` and `Location` (204 when there is nothing to delete), `provisioningState`
//!   `Creating`/`Updating`/`Upgrading`/`Scaling`/`Deleting` until the operation ends;
//! - "Track asynchronous Azure operations": the status resource `{id, name, status, startTime,
//!   endTime, error{code,message}}` with `InProgress`/`Succeeded`/`Failed`/`Canceled`, the `Location`
//!   URL answering 202 until done;
//! - "Resource Groups" (Get, Create Or Update, Delete), and ARM's error body
//!   `{"error":{"code","message"}}`, 429 with `Retry-After` when throttled ("Understand how Azure
//!   Resource Manager throttles requests").
//!
//! The stand-in's own choices: operations finish after [`AksStandInConfig::operation_time`] (checked
//! whenever a request arrives); an upgrade may not skip or go back a minor version is NOT modelled,
//! only "a pool may not be newer than the control plane"; error codes for refused specs are
//! `InvalidParameter`; a revoked secret also invalidates the tokens already issued (Azure lets them
//! live until they expire) so that a test sees the revocation at once.

mod arm;
mod arm_clusters;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_util::sync::CancellationToken;

pub use state::Call;
use state::State;

/// What the stand-in accepts and answers.
#[derive(Clone, Debug)]
pub struct AksStandInConfig {
    /// The directory (tenant) id tokens are issued for.
    pub tenant_id: String,
    /// The application (client) id that may sign in.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// The one subscription that exists.
    pub subscription_id: String,
    /// How long an operation stays `InProgress`.
    pub operation_time: Duration,
    /// `Retry-After` (seconds) on operation polls and 202s; `None` sends none (the client then polls
    /// at its own interval, which lets tests run operations shorter than a second).
    pub poll_retry_after: Option<u64>,
    /// `expires_in` of issued tokens, in seconds.
    pub token_lifetime: u64,
}

impl Default for AksStandInConfig {
    fn default() -> Self {
        AksStandInConfig {
            tenant_id: "72f988bf-0000-4000-8000-000000000001".into(),
            client_id: "4fd5b2c1-0000-4000-8000-000000000002".into(),
            client_secret: "stand-in-client-secret".into(),
            subscription_id: "0b1f6471-0000-4000-8000-000000000003".into(),
            operation_time: Duration::from_millis(300),
            poll_retry_after: None,
            token_lifetime: 3599,
        }
    }
}

/// Where a managed cluster's admin kubeconfig points (a cluster the test started, e.g. a rancher-sim).
#[derive(Clone, Debug)]
pub struct KubeTarget {
    /// The API server URL (`https://127.0.0.1:6443`); the cluster's `fqdn` becomes its host[:port].
    pub server: String,
    /// The API server's CA (PEM).
    pub ca_pem: String,
    /// A bearer token for the admin user.
    pub token: String,
}

/// The running stand-in; stops when dropped.
pub struct AksStandIn {
    addr: SocketAddr,
    ca_pem: String,
    state: Arc<Mutex<State>>,
    cancel: CancellationToken,
}

impl Drop for AksStandIn {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl AksStandIn {
    /// Starts the stand-in on a free loopback port.
    ///
    /// # Panics
    /// When the port cannot be bound or the test PKI cannot be made.
    pub async fn start(config: AksStandInConfig) -> AksStandIn {
        crate::install_crypto();
        let (ca_pem, tls) = test_pki();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let base_url = format!("https://{addr}");
        let state = Arc::new(Mutex::new(State::new(config, base_url, ca_pem.clone())));
        let cancel = CancellationToken::new();
        let router = arm::router(state.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let stop = cancel.clone();
        tokio::spawn(async move {
            loop {
                let tcp = tokio::select! {
                    r = listener.accept() => match r { Ok((t, _)) => t, Err(_) => continue },
                    _ = stop.cancelled() => return,
                };
                let (acceptor, router, stop) = (acceptor.clone(), router.clone(), stop.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = TowerToHyperService::new(router);
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    tokio::select! {
                        _ = builder.serve_connection(TokioIo::new(tls), svc) => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
        });
        AksStandIn { addr, ca_pem, state, cancel }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `https://127.0.0.1:port`: both the Resource Manager base URL and the sign-in authority.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA (PEM) that signed the stand-in's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The configuration it was started with.
    pub fn config(&self) -> AksStandInConfig {
        self.state().config.clone()
    }

    /// Answers the next `n` Resource Manager calls with 429 and `Retry-After: retry_after_secs`.
    pub fn throttle_next(&self, n: usize, retry_after_secs: u64) {
        self.state().throttle = Some((n, retry_after_secs));
    }

    /// Makes the next operation that starts end `Failed` with this code and message.
    pub fn fail_next_operation(&self, code: &str, message: &str) {
        self.state().fail_next = Some((code.to_owned(), message.to_owned()));
    }

    /// While `hold` is true no operation ends, however long it runs: a test can look at a resource
    /// mid-operation (`Scaling`, `Deleting`, a 409) without racing the clock. Releasing lets every
    /// operation whose time has passed end at the next request.
    pub fn hold_operations(&self, hold: bool) {
        self.state().held = hold;
    }

    /// Revokes the client secret: sign-in fails with `AADSTS7000215`, issued tokens stop working.
    pub fn revoke_client_secret(&self) {
        let mut s = self.state();
        s.secret_revoked = true;
        s.tokens.clear();
    }

    /// Points every cluster's fqdn and admin kubeconfig at `target`.
    pub fn set_kube_target(&self, target: KubeTarget) {
        self.state().target = Some(target);
    }

    /// Every request so far (method, path without query, time, status), oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// How many tokens the token endpoint has issued.
    pub fn tokens_issued(&self) -> usize {
        self.state().tokens_issued
    }

    /// A managed cluster as a GET would show it now (`None` when there is none), without a request.
    pub fn cluster(&self, resource_group: &str, name: &str) -> Option<serde_json::Value> {
        let mut s = self.state();
        s.tick(Instant::now());
        s.cluster_view(resource_group, name)
    }

    /// Whether a resource group exists.
    pub fn has_resource_group(&self, name: &str) -> bool {
        let mut s = self.state();
        s.tick(Instant::now());
        s.groups.contains_key(&name.to_ascii_lowercase())
    }

    /// Adds a managed cluster that is already there (`Succeeded`), as one made outside Rancher, for
    /// import tests: `body` is a managed-cluster resource with its `agentPoolProfiles`.
    pub fn insert_cluster(&self, resource_group: &str, name: &str, body: serde_json::Value) {
        self.state().insert_existing(resource_group, name, body);
    }
}

/// A CA and a serving certificate for 127.0.0.1 and localhost.
fn test_pki() -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.distinguished_name.push(DnType::CommonName, "aks-stand-in-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(DnType::CommonName, "aks-stand-in");
    p.subject_alt_names = vec![
        SanType::IpAddress([127, 0, 0, 1].into()),
        SanType::DnsName("localhost".try_into().expect("DNS name")),
    ];
    let cert = p.signed_by(&key, &issuer).expect("serving cert");
    let mut cfg =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone(), ca_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("serving cert");
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (ca_pem, Arc::new(cfg))
}
