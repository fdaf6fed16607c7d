//! Invariant checks over `/v3` request bodies, for fuzzing: one request through the real router (on an
//! in-memory store, as the admin or as a standard user), then what it answered and what it changed.
//! The cargo-fuzz target `v3_bodies` in `fuzz/` and the bounded run in `tests/fuzz_v3.rs` call
//! [`v3_body`]. Not a stable API: hidden from the docs, shaped for the fuzzer.

mod recording;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use http::{Method, Request, StatusCode};
use rancher_core::model::{
    Cluster, ClusterRoleTemplateBinding, GlobalRole, GlobalRoleBinding, Project, ProjectRoleTemplateBinding,
    RoleTemplate, Token, User,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use self::recording::{Change, Recording};
use super::Server;

const ADMIN_PASSWORD: &str = "fuzz-admin-password-long-enough";
const USER_PASSWORD: &str = "fuzz-user-password-long-enough";

/// A management kind the fuzzer writes: its plural, the object a `PUT` targets, and the decode check.
struct Kind {
    plural: &'static str,
    seed: &'static str,
    round_trip: fn(&Value),
}

const KINDS: [Kind; 9] = [
    Kind { plural: "clusters", seed: "c-fuzz", round_trip: round_trip::<Cluster> },
    Kind { plural: "projects", seed: "c-fuzz:p-fuzz", round_trip: round_trip::<Project> },
    Kind { plural: "users", seed: "u-target", round_trip: round_trip::<User> },
    Kind { plural: "tokens", seed: "", round_trip: round_trip::<Token> },
    Kind { plural: "globalroles", seed: "fuzz-role", round_trip: round_trip::<GlobalRole> },
    Kind { plural: "globalrolebindings", seed: "fuzz-grb", round_trip: round_trip::<GlobalRoleBinding> },
    Kind { plural: "roletemplates", seed: "fuzz-rt", round_trip: round_trip::<RoleTemplate> },
    Kind {
        plural: "clusterroletemplatebindings",
        seed: "c-fuzz:crtb-fuzz",
        round_trip: round_trip::<ClusterRoleTemplateBinding>,
    },
    Kind {
        plural: "projectroletemplatebindings",
        seed: "p-fuzz:prtb-fuzz",
        round_trip: round_trip::<ProjectRoleTemplateBinding>,
    },
];

/// What a standard user's request may change: it may create a cluster (and so its owner binding and
/// registration token) and tokens of its own, and its token's `lastUsedAt` is written.
const STANDARD_USER_CREATES: [&str; 4] =
    ["clusters", "clusterroletemplatebindings", "clusterregistrationtokens", "tokens"];

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
    store: Arc<Recording>,
    admin: String,
    standard: String,
    /// The standard user's token name (the seed a `PUT /v3/tokens/…` targets).
    standard_token: String,
}

/// Sends one `/v3` write built from `data` and panics when an invariant breaks:
///
/// * the answer is never a 5xx (no panic, no internal error for any body); a failure is a Kubernetes
///   `Status` whose `code` is the HTTP status;
/// * an accepted object decodes into its kind and re-encodes to the same JSON, and reading it back gives
///   the same metadata and spec;
/// * nothing else is harmed: a standard user's request creates only clusters (with their owner binding
///   and registration token) and tokens, and changes nothing that exists; no request changes the admin
///   user or the rules of a builtin role.
///
/// Input: byte 0 chooses the kind (`% 9`, see `KINDS`), `POST /v3/<plural>` or `PUT` of the kind's seed
/// object (`/ 9 % 2`), and the caller, admin or standard user (`/ 18 % 2`); the rest is the JSON body.
/// The store is put back as it was after every request.
pub fn v3_body(data: &[u8]) {
    let Some((&choice, body)) = data.split_first() else { return };
    let h = harness();
    let kind = &KINDS[usize::from(choice) % KINDS.len()];
    let put = (choice / 9) % 2 == 1;
    let as_admin = (choice / 18) % 2 == 0;
    let (method, path) = if put {
        let seed = if kind.plural == "tokens" { h.standard_token.as_str() } else { kind.seed };
        (Method::PUT, format!("/v3/{}/{seed}", kind.plural))
    } else {
        (Method::POST, format!("/v3/{}", kind.plural))
    };
    let caller = if as_admin { &h.admin } else { &h.standard };
    let who = if as_admin { "admin" } else { "standard user" };
    let what = format!("{method} {path} as {who} with {}", String::from_utf8_lossy(body));
    h.runtime.block_on(async {
        let (status, answer) = send(&h.router, method, &path, caller, body.to_vec()).await;
        assert!(!status.is_server_error(), "{what}: {status} {answer}");
        if status.is_success() {
            (kind.round_trip)(&answer);
            let id = answer["id"].as_str().unwrap_or_else(|| panic!("{what}: no id in {answer}"));
            let (read, stored) =
                send(&h.router, Method::GET, &format!("/v3/{}/{id}", kind.plural), &h.admin, vec![]).await;
            assert_eq!(read, StatusCode::OK, "{what}: reading {id} back: {stored}");
            for part in ["metadata", "spec"] {
                assert_eq!(answer[part], stored[part], "{what}: the answer's {part} is not what was stored");
            }
        } else {
            assert_eq!(answer["kind"], "Status", "{what}: {status} {answer}");
            assert_eq!(answer["code"], status.as_u16(), "{what}: {answer}");
        }
        check_changes(&h.store.changes(), as_admin, &what);
        h.store.reset().await;
    });
}

/// `K` from `answer`, and back to the same JSON.
fn round_trip<K: DeserializeOwned + Serialize>(answer: &Value) {
    let decoded: K = serde_json::from_value(answer.clone())
        .unwrap_or_else(|e| panic!("an accepted object does not decode: {e}: {answer}"));
    let encoded = serde_json::to_value(&decoded).expect("a decoded object encodes");
    let again: K = serde_json::from_value(encoded.clone())
        .unwrap_or_else(|e| panic!("a re-encoded object does not decode: {e}: {encoded}"));
    assert_eq!(serde_json::to_value(&again).expect("encodes"), encoded, "encoding is not stable");
}

fn check_changes(changes: &[Change], as_admin: bool, what: &str) {
    for change in changes {
        if let Change::Updated { resource, old, new } = change {
            if resource == "users" && old["spec"]["username"] == "admin" {
                assert_eq!(old["spec"], new["spec"], "{what}: changed the admin user");
            }
            let builtin = old["spec"]["builtin"] == true;
            if builtin && (resource == "globalroles" || resource == "roletemplates") {
                assert_eq!(
                    old["spec"]["rules"], new["spec"]["rules"],
                    "{what}: changed a builtin role's rules"
                );
            }
        }
        if as_admin {
            continue;
        }
        let allowed = match change {
            Change::Created { resource, .. } => STANDARD_USER_CREATES.contains(&resource.as_str()),
            Change::Updated { resource, old, new } => {
                let mut without_use = new.clone();
                without_use["status"]["lastUsedAt"] = old["status"]["lastUsedAt"].clone();
                without_use["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
                resource == "tokens" && without_use == *old
            }
            Change::Deleted { .. } => false,
        };
        assert!(allowed, "{what}: a standard user's request made {} change {change:?}", change.resource());
    }
}

async fn send(
    router: &Router,
    method: Method,
    path: &str,
    bearer: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut request =
        Request::builder().method(method).uri(path).header(http::header::CONTENT_TYPE, "application/json");
    if !bearer.is_empty() {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {bearer}"));
    }
    let request = request.body(Body::from(body)).expect("a valid request");
    let response = router.clone().oneshot(request).await.expect("the router is infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("a buffered body");
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{path}: {status} with a body that is not JSON ({e}): {bytes:?}"));
    (status, value)
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let (router, store, admin, standard, standard_token) = runtime.block_on(start());
        Harness { runtime, router, store, admin, standard, standard_token }
    })
}

async fn start() -> (Router, Arc<Recording>, String, String, String) {
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
    let router = super::api::router(server.state.clone());
    let admin = login(&router, "admin", ADMIN_PASSWORD).await;
    let seeds = [
        (
            "users",
            json!({"metadata": {"name": "u-std"}, "spec": {"username": "fuzz-std", "password": USER_PASSWORD}}),
        ),
        (
            "users",
            json!({"metadata": {"name": "u-target"}, "spec": {"username": "fuzz-target", "password": USER_PASSWORD}}),
        ),
        ("clusters", json!({"metadata": {"name": "c-fuzz"}, "spec": {"displayName": "fuzz"}})),
        (
            "projects",
            json!({"metadata": {"name": "p-fuzz", "namespace": "c-fuzz"}, "spec": {"clusterName": "c-fuzz"}}),
        ),
        ("globalroles", json!({"metadata": {"name": "fuzz-role"}, "spec": {"rules": []}})),
        (
            "globalrolebindings",
            json!({"metadata": {"name": "fuzz-grb"}, "spec": {"userName": "u-target", "globalRoleName": "fuzz-role"}}),
        ),
        (
            "roletemplates",
            json!({"metadata": {"name": "fuzz-rt"}, "spec": {"context": "cluster", "rules": []}}),
        ),
        (
            "roletemplates",
            json!({"metadata": {"name": "fuzz-prt"}, "spec": {"context": "project", "rules": []}}),
        ),
        (
            "clusterroletemplatebindings",
            json!({"metadata": {"name": "crtb-fuzz", "namespace": "c-fuzz"}, "spec": {"userName": "u-target", "roleTemplateName": "fuzz-rt"}}),
        ),
        (
            "projectroletemplatebindings",
            json!({"metadata": {"name": "prtb-fuzz", "namespace": "p-fuzz"}, "spec": {"projectName": "c-fuzz:p-fuzz", "userName": "u-target", "roleTemplateName": "fuzz-prt"}}),
        ),
    ];
    for (plural, body) in seeds {
        let (status, answer) =
            send(&router, Method::POST, &format!("/v3/{plural}"), &admin, body.to_string().into_bytes())
                .await;
        assert_eq!(status, StatusCode::CREATED, "seeding {plural}: {answer}");
    }
    let standard = login(&router, "fuzz-std", USER_PASSWORD).await;
    let standard_token = standard.split(':').next().unwrap_or_default().to_owned();
    store.reset_log();
    (router, store, admin, standard, standard_token)
}

async fn login(router: &Router, username: &str, password: &str) -> String {
    let body = json!({"username": username, "password": password}).to_string().into_bytes();
    let path = "/v3-public/localProviders/local?action=login";
    let (status, answer) = send(router, Method::POST, path, "", body).await;
    assert_eq!(status, StatusCode::CREATED, "logging in as {username}: {answer}");
    answer["token"].as_str().expect("a token in the login answer").to_owned()
}
