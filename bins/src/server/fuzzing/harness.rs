//! The fuzz harness's server: the real router over a [`Recording`] memory store, seeded once per process
//! with an object of every kind to update, a standard user, an imported cluster, and their credentials.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::recording::Recording;
use crate::server::Server;

const ADMIN_PASSWORD: &str = "fuzz-admin-password-long-enough";
const USER_PASSWORD: &str = "fuzz-user-password-long-enough";
/// The standard user's id.
pub(super) const STANDARD_USER: &str = "u-std";
/// The imported cluster whose agent posts reports.
pub(super) const IMPORTED_CLUSTER: &str = "c-imp";

pub(super) struct Harness {
    /// The runtime the server was built on and every request runs on.
    pub(super) runtime: tokio::runtime::Runtime,
    pub(super) app: App,
}

/// The seeded server and its credentials.
pub(super) struct App {
    pub(super) router: Router,
    pub(super) store: Arc<Recording>,
    /// Bearer tokens.
    pub(super) admin: String,
    pub(super) standard: String,
    /// The standard user's token name (the object a `PUT /v3/tokens/…` targets).
    pub(super) standard_token: String,
    /// The imported cluster's registration token.
    pub(super) registration_token: String,
}

/// The process's harness, started on first use.
pub(super) fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let app = runtime.block_on(start());
        Harness { runtime, app }
    })
}

/// One request through the router: the status and the body as JSON (`null` when empty).
pub(super) async fn send(
    router: &Router,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut request =
        Request::builder().method(method).uri(path).header(http::header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Body::from(body)).expect("a valid request");
    let response = router.clone().oneshot(request).await.expect("the router is infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("a buffered body");
    if bytes.is_empty() {
        return (status, Value::Null);
    }
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{path}: {status} with a body that is not JSON ({e}): {bytes:?}"));
    (status, value)
}

pub(super) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn start() -> App {
    let store = Arc::new(Recording::default());
    let dir = std::env::temp_dir().join(format!("rancher-fuzz-v3-{}", std::process::id()));
    let server = Server::builder()
        .data_dir(&dir)
        .store(store.clone())
        .insecure_http(true)
        .https_listen(([127, 0, 0, 1], 0).into())
        .bootstrap_password(ADMIN_PASSWORD)
        .build()
        .await
        .expect("the server builds on a memory store");
    let _ = std::fs::remove_dir_all(&dir);
    let router = crate::server::api::router(server.state.clone());
    let admin = login(&router, "admin", ADMIN_PASSWORD).await;
    let as_admin = bearer(&admin);
    // User ids are the server's (a body naming one is refused), so the two users with the fixed ids the
    // checks name are seeded in the store directly, with what a create through the API would add.
    let store_dyn: Arc<dyn rancher_core::store::Store> = store.clone();
    for (id, username) in [(STANDARD_USER, "fuzz-std"), ("u-target", "fuzz-target")] {
        let mut user = rancher_core::model::User::default();
        user.metadata.name = id.to_owned();
        user.spec.username = username.to_owned();
        user.spec.display_name = username.to_owned();
        user.spec.enabled = true;
        user.spec.principal_ids = vec![format!("local://{id}")];
        user.spec.password =
            rancher_auth::password::hash_password(USER_PASSWORD).expect("hashing a password");
        rancher_core::store::Api::<rancher_core::model::User>::all(store_dyn.clone())
            .create(&user)
            .await
            .expect("seeding a user");
        for role in ["user", "user-base"] {
            crate::server::services::users::bind_global_role(&store_dyn, id, role)
                .await
                .expect("seeding a role binding");
        }
    }
    let seeds = [
        ("clusters", json!({"metadata": {"name": "c-fuzz"}, "spec": {"displayName": "fuzz"}})),
        ("clusters", json!({"metadata": {"name": IMPORTED_CLUSTER}, "spec": {"importedConfig": {}}})),
        // Project names are the server's too: seeded in the store below, as a create would make it.
        ("projects", json!({"metadata": {"name": "p-fuzz", "namespace": "c-fuzz"}, "spec": {}})),
        ("globalroles", json!({"metadata": {"name": "fuzz-role"}, "spec": {"rules": []}})),
        (
            "globalrolebindings",
            json!({"metadata": {"name": "fuzz-grb"}, "spec": {"userName": "u-target", "globalRoleName": "fuzz-role"}}),
        ),
        ("roletemplates", json!({"metadata": {"name": "fuzz-rt"}, "spec": {"context": "cluster"}})),
        ("roletemplates", json!({"metadata": {"name": "fuzz-prt"}, "spec": {"context": "project"}})),
        (
            "clusterroletemplatebindings",
            json!({"metadata": {"name": "crtb-fuzz", "namespace": "c-fuzz"},
                   "spec": {"userName": "u-target", "roleTemplateName": "fuzz-rt"}}),
        ),
        (
            "projectroletemplatebindings",
            json!({"metadata": {"name": "prtb-fuzz", "namespace": "p-fuzz"},
                   "spec": {"projectName": "c-fuzz:p-fuzz", "userName": "u-target", "roleTemplateName": "fuzz-prt"}}),
        ),
    ];
    for (plural, body) in seeds {
        if plural == "projects" {
            seed_project(&store_dyn, &body).await;
            continue;
        }
        let path = format!("/v3/{plural}");
        let headers = [("authorization", as_admin.as_str())];
        let (status, answer) =
            send(&router, Method::POST, &path, &headers, body.to_string().into_bytes()).await;
        assert_eq!(status, StatusCode::CREATED, "seeding {plural}: {answer}");
    }
    let standard = login(&router, "fuzz-std", USER_PASSWORD).await;
    let standard_token = standard.split(':').next().unwrap_or_default().to_owned();
    let headers = [("authorization", as_admin.as_str())];
    let (_, tokens) = send(&router, Method::GET, "/v3/clusterregistrationtokens", &headers, vec![]).await;
    let registration_token = tokens["data"]
        .as_array()
        .and_then(|all| all.iter().find(|t| t["metadata"]["namespace"] == IMPORTED_CLUSTER))
        .and_then(|t| t["status"]["token"].as_str())
        .unwrap_or_else(|| panic!("no registration token for {IMPORTED_CLUSTER}: {tokens}"))
        .to_owned();
    store.reset_log();
    App { router, store, admin, standard, standard_token, registration_token }
}

/// Stores the project `body` names (with the fixed name the checks use) for its cluster as it exists.
async fn seed_project(store: &Arc<dyn rancher_core::store::Store>, body: &serde_json::Value) {
    use rancher_core::model::{Cluster, Project};
    use rancher_core::store::Api;
    let mut project: Project = serde_json::from_value(body.clone()).expect("a project seed");
    let cluster_name = project.metadata.namespace.clone().unwrap_or_default();
    let cluster = Api::<Cluster>::all(store.clone()).get(&cluster_name).await.expect("the seeded cluster");
    project.spec.cluster_name = cluster_name;
    project.spec.display_name = project.metadata.name.clone();
    crate::server::cleanup::owner::stamp(
        &mut project.metadata,
        crate::server::cleanup::owner::CLUSTER_UID_ANNOTATION,
        &cluster.metadata,
    );
    Api::<Project>::namespaced(store.clone(), project.metadata.namespace.as_deref().unwrap_or_default())
        .create(&project)
        .await
        .expect("seeding a project");
}

async fn login(router: &Router, username: &str, password: &str) -> String {
    let body = json!({"username": username, "password": password}).to_string().into_bytes();
    let path = "/v3-public/localProviders/local?action=login";
    let (status, answer) = send(router, Method::POST, path, &[], body).await;
    assert_eq!(status, StatusCode::CREATED, "logging in as {username}: {answer}");
    answer["token"].as_str().expect("a token in the login answer").to_owned()
}
