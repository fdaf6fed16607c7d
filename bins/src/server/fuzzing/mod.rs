//! Invariant checks over the JSON bodies the server reads — the `/v3` writes of every management kind,
//! the login, and a cluster agent's report — for fuzzing: one request through the real router on an
//! in-memory store, then what it answered and what it changed. The cargo-fuzz target `v3_bodies` in
//! `fuzz/` and the bounded run in `tests/it/fuzz_v3.rs` call [`v3_body`]. Not a stable API.

mod harness;
mod recording;

use http::{Method, StatusCode};
use rancher_core::model::{
    Cluster, ClusterRoleTemplateBinding, GlobalRole, GlobalRoleBinding, Project, ProjectRoleTemplateBinding,
    RoleTemplate, Token, User,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use self::harness::{App, IMPORTED_CLUSTER, STANDARD_USER, bearer, harness, send};
use self::recording::Change;

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

/// Who sends the request, and so what it may change.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    Admin,
    StandardUser,
    /// Anyone: the login endpoint.
    Anonymous,
    /// The imported cluster's agent, with its registration token.
    Agent,
}

/// Sends one request built from `data` and panics when an invariant breaks:
///
/// * the answer is never a 5xx (no panic, no internal error, whatever the body); a failure is a
///   Kubernetes `Status` whose `code` is the HTTP status;
/// * an accepted object decodes into its kind and re-encodes to the same JSON, and reading it back gives
///   the same metadata and spec;
/// * the request changes only what its caller may: a standard user creates clusters (and what lives in
///   their namespace) and tokens of its own and changes nothing that exists; a login creates a token;
///   an agent's report changes only its cluster's status; nobody changes the admin user or the rules
///   of a builtin role.
///
/// Input: byte 0 chooses the endpoint (`% 11`: the nine kinds of `KINDS`, login, agent report), for a
/// kind `POST /v3/<plural>` or `PUT` of its seed object (`/ 11 % 2`) and the admin or the standard user
/// (`/ 22 % 2`); the rest is the body. The store is put back as it was after every request.
pub fn v3_body(data: &[u8]) {
    let Some((&choice, body)) = data.split_first() else { return };
    let h = harness();
    let app = &h.app;
    let endpoint = usize::from(choice % 11);
    let put = (choice / 11) % 2 == 1;
    let (caller, method, path, kind) = match KINDS.get(endpoint) {
        Some(kind) => {
            let caller = if (choice / 22) % 2 == 0 { Caller::Admin } else { Caller::StandardUser };
            if put {
                let seed = if kind.plural == "tokens" { app.standard_token.as_str() } else { kind.seed };
                (caller, Method::PUT, format!("/v3/{}/{seed}", kind.plural), Some(kind))
            } else {
                (caller, Method::POST, format!("/v3/{}", kind.plural), Some(kind))
            }
        }
        None if endpoint == 9 => {
            (Caller::Anonymous, Method::POST, "/v3-public/localProviders/local?action=login".into(), None)
        }
        None => (Caller::Agent, Method::POST, "/v3/connect/report".into(), None),
    };
    let credential = match caller {
        Caller::Admin => vec![("authorization", bearer(&app.admin))],
        Caller::StandardUser => vec![("authorization", bearer(&app.standard))],
        Caller::Anonymous => vec![],
        Caller::Agent => vec![(rancher_tunnel::TOKEN_HEADER, app.registration_token.clone())],
    };
    let headers: Vec<(&str, &str)> = credential.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let what = format!("{method} {path} as {caller:?} with {}", String::from_utf8_lossy(body));
    h.runtime.block_on(async {
        let (status, answer) = send(&app.router, method, &path, &headers, body.to_vec()).await;
        assert!(!status.is_server_error(), "{what}: {status} {answer}");
        if !status.is_success() {
            assert_eq!(answer["kind"], "Status", "{what}: {status} {answer}");
            assert_eq!(answer["code"], status.as_u16(), "{what}: {answer}");
        } else if let Some(kind) = kind {
            check_accepted(app, kind, &answer, &what).await;
        } else if caller == Caller::Anonymous {
            round_trip::<Token>(&answer);
        }
        check_changes(&app.store.changes(), caller, &what);
        app.store.reset().await;
    });
}

async fn check_accepted(app: &App, kind: &Kind, answer: &Value, what: &str) {
    (kind.round_trip)(answer);
    let id = answer["id"].as_str().unwrap_or_else(|| panic!("{what}: no id in {answer}"));
    let path = format!("/v3/{}/{id}", kind.plural);
    let admin = bearer(&app.admin);
    let (status, stored) = send(&app.router, Method::GET, &path, &[("authorization", &admin)], vec![]).await;
    assert_eq!(status, StatusCode::OK, "{what}: reading {id} back: {stored}");
    for part in ["metadata", "spec"] {
        assert_eq!(answer[part], stored[part], "{what}: the answer's {part} is not what was stored");
    }
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

fn check_changes(changes: &[Change], caller: Caller, what: &str) {
    let created_clusters: Vec<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Created { resource, object } if resource == "clusters" => {
                object["metadata"]["name"].as_str()
            }
            _ => None,
        })
        .collect();
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
        let allowed = match (caller, change) {
            (Caller::Admin, _) => true,
            (_, Change::Updated { resource, old, new }) if resource == "tokens" => {
                same_but(old, new, &[("status", "lastUsedAt")])
            }
            (Caller::StandardUser, Change::Created { resource, object }) => match resource.as_str() {
                "clusters" => true,
                "tokens" => object["spec"]["userId"] == STANDARD_USER,
                _ => {
                    object["metadata"]["namespace"].as_str().is_some_and(|ns| created_clusters.contains(&ns))
                }
            },
            (Caller::Anonymous, Change::Created { resource, .. }) => resource == "tokens",
            (Caller::Agent, Change::Updated { resource, old, new }) => {
                resource == "clusters"
                    && old["metadata"]["name"] == IMPORTED_CLUSTER
                    && old["spec"] == new["spec"]
                    && same_but(&old["metadata"], &new["metadata"], &[("resourceVersion", "")])
            }
            _ => false,
        };
        assert!(allowed, "{what}: the request of {caller:?} made {} change: {change:?}", change.resource());
    }
}

/// Whether `a` and `b` are equal once the named `(field, subfield)` paths (empty subfield: the field
/// itself) and `metadata.resourceVersion` are ignored.
fn same_but(a: &Value, b: &Value, ignored: &[(&str, &str)]) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        for (field, sub) in ignored.iter().chain(&[("metadata", "resourceVersion")]) {
            let Some(map) = v.as_object_mut() else { break };
            if sub.is_empty() {
                map.remove(*field);
            } else if let Some(inner) = map.get_mut(*field).and_then(Value::as_object_mut) {
                inner.remove(*sub);
            }
        }
        v
    };
    strip(a) == strip(b)
}
