//! Plugging into a server from code, through the public API only: a custom identity provider serves
//! logins at `/v3-public/acmeProviders/acme`, a custom audit sink receives the proxy's events for a
//! request to an imported `rancher-sim` cluster (whose agent runs in-process from an `AgentBuilder`,
//! both tunnel ends through a plugged-in transport), an embedder's metrics registry carries the
//! tunnel's metrics, and `into_router` mounts the management API inside another axum app.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::import_support::*;
use async_trait::async_trait;
use rancher::agent::AgentBuilder;
use rancher::protocol::normalize_ca;
use rancher::server::{AuthProviderError, Server, ServerBuilder, ServerError};
use rancher_auth::providers::{
    AuthProvider, Credentials, Error as ProviderError, Identity, Principal, PrincipalKind,
};
use rancher_auth::proxy::{AuditEvent, AuditSink};
use rancher_core::store::MemoryStore;
use rancher_tunnel::{BoxedIo, SessionConfig, Transport, WsTransport};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

// === a custom identity provider and audit sink ===

const ACME: &str = "acme";

/// Users with passwords and teams, in memory.
struct Acme {
    users: BTreeMap<&'static str, (&'static str, &'static [&'static str])>,
}

fn principal(kind: PrincipalKind, key: &str) -> Principal {
    let id_kind = if kind == PrincipalKind::User { "user" } else { "team" };
    Principal {
        id: format!("{ACME}_{id_kind}://{key}"),
        display_name: key.to_owned(),
        login_name: key.to_owned(),
        kind,
        provider: ACME.to_owned(),
    }
}

impl Acme {
    fn new() -> Arc<Acme> {
        Arc::new(Acme { users: BTreeMap::from([("alice", ("alice-pass-1234", &["platform", "sre"][..]))]) })
    }
}

#[async_trait]
impl AuthProvider for Acme {
    fn name(&self) -> &'static str {
        ACME
    }

    async fn authenticate(&self, credentials: &Credentials) -> Result<Identity, ProviderError> {
        let Credentials::Password { username, password } = credentials else {
            return Err(ProviderError::Unsupported { provider: ACME, what: "OAuth code login" });
        };
        match self.users.get(username.as_str()) {
            Some((pw, teams)) if *pw == password.expose() => Ok(Identity {
                user: principal(PrincipalKind::User, username),
                groups: teams.iter().map(|t| principal(PrincipalKind::Group, t)).collect(),
            }),
            _ => Err(ProviderError::InvalidCredentials),
        }
    }

    async fn search_principals<'a>(
        &self,
        _query: &str,
        _kind: Option<PrincipalKind>,
        _requester: Option<&'a Principal>,
    ) -> Result<Vec<Principal>, ProviderError> {
        Ok(Vec::new())
    }

    async fn refresh_groups(&self, user: &Principal) -> Result<Vec<Principal>, ProviderError> {
        let login = user.id.strip_prefix("acme_user://").unwrap_or_default();
        let (_, teams) = self
            .users
            .get(login)
            .ok_or_else(|| ProviderError::PrincipalNotFound { provider: ACME, id: user.id.clone() })?;
        Ok(teams.iter().map(|t| principal(PrincipalKind::Group, t)).collect())
    }
}

/// Keeps every event.
#[derive(Default)]
struct Recorder(Mutex<Vec<AuditEvent>>);

impl AuditSink for Recorder {
    fn record(&self, event: &AuditEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

/// The WebSocket transport, counting the sessions it makes (agent side) and accepts (server side).
struct Counting {
    inner: WsTransport,
    sessions: AtomicUsize,
}

#[async_trait]
impl Transport for Counting {
    async fn connect(&self, headers: &http::HeaderMap) -> rancher_tunnel::Result<BoxedIo> {
        let io = self.inner.connect(headers).await?;
        self.sessions.fetch_add(1, Ordering::SeqCst);
        Ok(io)
    }

    async fn accept(&self, raw: BoxedIo) -> rancher_tunnel::Result<BoxedIo> {
        let io = self.inner.accept(raw).await?;
        self.sessions.fetch_add(1, Ordering::SeqCst);
        Ok(io)
    }
}

// === helpers ===

fn builder(dir: &std::path::Path) -> ServerBuilder {
    install_crypto();
    Server::builder()
        .data_dir(dir.join("data"))
        .store(Arc::new(MemoryStore::new()))
        .https_listen("127.0.0.1:0".parse().unwrap())
        .bootstrap_password(ADMIN_PASSWORD)
}

async fn call(
    url: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = insecure_client().request(method.parse().unwrap(), format!("{url}{path}"));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (code, body)
}

/// Logs in through the custom provider and checks the token works on `/v3`; returns the token.
async fn acme_login_works(url: &str) -> String {
    let login = "/v3-public/acmeProviders/acme?action=login";
    let (code, wrong) =
        call(url, "POST", login, None, Some(json!({"username": "alice", "password": "nope"}))).await;
    assert_eq!(code, 401, "{wrong}");
    let (code, session) =
        call(url, "POST", login, None, Some(json!({"username": "alice", "password": "alice-pass-1234"})))
            .await;
    assert_eq!(code, 201, "{session}");
    assert_eq!(session["spec"]["userPrincipal"], "acme_user://alice", "{session}");
    assert_eq!(session["spec"]["authProvider"], "acme", "{session}");
    let groups = session["spec"]["groupPrincipals"].to_string();
    assert!(groups.contains("acme_team://platform") && groups.contains("acme_team://sre"), "{session}");
    let token = session["token"].as_str().unwrap().to_owned();
    // The token works on /v3: the user sees its own session token.
    let (code, tokens) = call(url, "GET", "/v3/tokens", Some(&token), None).await;
    assert_eq!(code, 200, "{tokens}");
    let name = session["metadata"]["name"].as_str().unwrap();
    assert!(tokens["data"].as_array().unwrap().iter().any(|t| t["metadata"]["name"] == name), "{tokens}");
    // A password provider has no authorization-code login; a wrong kind is not its route.
    let authorize = "/v3-public/acmeProviders/acme?action=authorize&redirectUri=http://127.0.0.1:1/cb";
    let (code, body) = call(url, "GET", authorize, None, None).await;
    assert_eq!(code, 405, "{body}");
    let (code, body) = call(url, "POST", "/v3-public/localProviders/acme?action=login", None, None).await;
    assert_eq!(code, 404, "{body}");
    token
}

// === the tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_provider_logs_in_and_a_custom_sink_sees_the_proxied_request() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(Recorder::default());
    let mut registry = prometheus_client::registry::Registry::default();
    let accepting = Arc::new(Counting {
        inner: WsTransport::acceptor(rancher::server::registration::tunnel_session_config()),
        sessions: AtomicUsize::new(0),
    });
    let server = builder(dir.path())
        .auth_provider(Acme::new())
        .audit_sink(sink.clone())
        .metrics_registry(&mut registry)
        .tunnel_transport(accepting.clone())
        .session_config(rancher::server::registration::tunnel_session_config())
        .build()
        .await
        .unwrap();
    let (url, ca_pem) = (server.url(), server.ca_pem().to_owned());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));

    acme_login_works(&url).await;
    // The built-in providers keep their routes: local login, and openldap answers "not configured".
    let admin = login(&url).await;
    let (code, body) = call(
        &url,
        "POST",
        "/v3-public/openLdapProviders/openldap?action=login",
        None,
        Some(json!({"username": "a", "password": "b"})),
    )
    .await;
    assert_eq!(code, 404, "{body}");
    assert!(body["message"].as_str().unwrap().contains("--auth-config"), "{body}");

    // Import a sim cluster and connect its agent.
    let cluster = "c-plugins";
    let sim = rancher_sim::Sim::builder().name(cluster).start().await.unwrap();
    let kubeconfig = dir.path().join("sim.kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig_yaml()).unwrap();
    let crt = create_imported(&url, &admin, cluster).await;
    let manifest = crt["manifestUrl"].as_str().unwrap_or_else(|| panic!("no manifestUrl in {crt}"));
    let env = apply_manifest(manifest, &kubeconfig, dir.path()).await;
    // The agent in this process, from code, connecting through its own counting transport.
    let tls = rancher_tunnel::client_tls_pinned(normalize_ca(&ca_pem).as_bytes(), &env.checksum).unwrap();
    let connect_url = format!("{}{}", env.server, rancher_tunnel::CONNECT_PATH);
    let dialing = Arc::new(Counting {
        inner: WsTransport::new(&connect_url, tls, SessionConfig::default()).unwrap(),
        sessions: AtomicUsize::new(0),
    });
    let stop_agent = CancellationToken::new();
    let mut agent_registry = prometheus_client::registry::Registry::default();
    let agent = AgentBuilder::new(&env.server, &env.checksum, &env.token)
        .kubeconfig(&kubeconfig)
        .transport(dialing.clone())
        .metrics_registry(&mut agent_registry)
        .run(stop_agent.clone());
    let agent = tokio::spawn(agent);

    // One request through the proxy reaches the embedder's audit sink.
    let path = format!("/k8s/clusters/{cluster}/api/v1/namespaces");
    eventually(WAIT, "the proxy reaches the sim", || {
        let (url, admin, path) = (url.clone(), admin.clone(), path.clone());
        async move { (call(&url, "GET", &path, Some(&admin), None).await.0 == 200).then_some(()) }
    })
    .await;
    let events = sink.0.lock().unwrap().clone();
    let listed = events
        .iter()
        .find(|e| e.cluster == cluster && e.resource == "namespaces" && e.verb == "list" && e.status == 200)
        .unwrap_or_else(|| panic!("no audit event of the proxied list in {events:?}"));
    assert!(listed.path.ends_with("/api/v1/namespaces"), "{listed:?}");
    assert!(!listed.user.is_empty(), "{listed:?}");

    // The tunnel's metrics reach /metrics and the embedder's registry (the same counters).
    let (code, metrics) = call(&url, "GET", "/metrics", None, None).await;
    assert_eq!(code, 200);
    let text = metrics.as_str().unwrap();
    assert!(text.lines().any(|l| l == "rancher_tunnel_sessions 1"), "{text}");
    let mut rendered = String::new();
    prometheus_client::encoding::text::encode(&mut rendered, &registry).unwrap();
    assert!(rendered.lines().any(|l| l == "rancher_tunnel_sessions 1"), "{rendered}");
    assert!(rendered.contains("rancher_http_requests_total{"), "{rendered}");
    // The agent's registry counts its session and the proxied stream.
    let mut rendered = String::new();
    prometheus_client::encoding::text::encode(&mut rendered, &agent_registry).unwrap();
    assert!(rendered.lines().any(|l| l == "tunnel_sessions 1"), "{rendered}");
    let streams = rendered.lines().find_map(|l| l.strip_prefix("tunnel_streams_total "));
    assert!(streams.and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n >= 1), "{rendered}");
    // Both ends of the session went through the plugged-in transports.
    assert!(dialing.sessions.load(Ordering::SeqCst) >= 1);
    assert!(accepting.sessions.load(Ordering::SeqCst) >= 1);

    stop_agent.cancel();
    agent.await.unwrap().unwrap();
    stop_tx.send(()).unwrap();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn into_router_mounts_the_api_in_the_embedders_app() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = builder(dir.path())
        .insecure_http(true)
        .server_url(url.clone())
        .auth_provider(Acme::new())
        .build()
        .await
        .unwrap();
    let (rancher, tasks) = server.into_router();
    let app = axum::Router::new()
        .route("/embedder", axum::routing::get(|| async { "the embedder's" }))
        .merge(rancher);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });

    let (code, body) = call(&url, "GET", "/embedder", None, None).await;
    assert_eq!((code, body.as_str()), (200, Some("the embedder's")));
    acme_login_works(&url).await;
    let admin = login(&url).await;
    let (code, clusters) = call(&url, "GET", "/v3/clusters", Some(&admin), None).await;
    assert_eq!(code, 200, "{clusters}");
    // Import manifests point agents at the embedder's URL.
    let crt = create_imported(&url, &admin, "c-embedded").await;
    assert!(crt["manifestUrl"].as_str().unwrap().starts_with(&url), "{crt}");

    stop_tx.send(()).unwrap();
    serving.await.unwrap().unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(20), tasks.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn into_router_serves_over_tls_with_the_servers_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let server = builder(dir.path()).server_url(url.clone()).build().await.unwrap();
    let tls = tokio_rustls::TlsAcceptor::from(server.tls_config().expect("a TLS server"));
    let ca_pem = server.ca_pem().to_owned();
    let (rancher, tasks) = server.into_router();
    // The embedder's own TLS accept loop, serving the router with the server's certificate.
    let serving = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (tls, app) = (tls.clone(), rancher.clone());
            tokio::spawn(async move {
                let Ok(stream) = tls.accept(tcp).await else { return };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    // A client trusting only the published CA gets through.
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let pong = http.get(format!("{url}/ping")).send().await.unwrap();
    assert_eq!(pong.status().as_u16(), 200);
    assert_eq!(pong.text().await.unwrap(), "pong");
    serving.abort();
    tokio::time::timeout(std::time::Duration::from_secs(20), tasks.shutdown()).await.unwrap();
}

#[tokio::test]
async fn invalid_tunnel_session_settings_fail_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SessionConfig::default();
    config.max_streams = 0;
    match builder(dir.path()).session_config(config).build().await {
        Err(e @ ServerError::Tunnel(_)) => assert!(e.to_string().contains("max_streams"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_provider_name_that_cannot_be_served_fails_the_build() {
    struct Named(&'static str);
    #[async_trait]
    impl AuthProvider for Named {
        fn name(&self) -> &'static str {
            self.0
        }
        async fn authenticate(&self, _: &Credentials) -> Result<Identity, ProviderError> {
            Err(ProviderError::InvalidCredentials)
        }
        async fn search_principals<'a>(
            &self,
            _: &str,
            _: Option<PrincipalKind>,
            _: Option<&'a Principal>,
        ) -> Result<Vec<Principal>, ProviderError> {
            Ok(Vec::new())
        }
        async fn refresh_groups(&self, _: &Principal) -> Result<Vec<Principal>, ProviderError> {
            Ok(Vec::new())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    for (names, bad) in [
        (&["local"][..], "local"),
        (&["acme", "acme"][..], "acme"),
        (&["Acme"][..], "Acme"),
        (&["a/b"][..], "a/b"),
    ] {
        let mut b = builder(dir.path());
        for n in names {
            b = b.auth_provider(Arc::new(Named(n)));
        }
        match b.build().await {
            Err(ServerError::AuthProvider(
                e @ (AuthProviderError::Duplicate(_) | AuthProviderError::BadName(_)),
            )) => {
                assert!(e.to_string().contains(bad), "{e}");
            }
            other => panic!("{names:?}: {other:?}"),
        }
    }
}
