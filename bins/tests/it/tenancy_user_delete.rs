//! Deleting a user takes away what was rendered downstream for them, with real processes:
//! `rancher-server`, a `rancher-sim` cluster imported with a `rancher-agent`, and `kubectl`. A user who
//! was a project member, a cluster member and a global admin is deleted; every RoleBinding and
//! ClusterRoleBinding that named them goes from the cluster, the sim's RBAC refuses them, and another
//! member keeps their access.

use crate::tenancy_support::*;
use serde_json::{Value, json};

const CLUSTER: &str = "gone";

/// The names of our RoleBindings and ClusterRoleBindings whose subjects include `user`.
fn rendered_for(w: &World, user: &str) -> Vec<String> {
    let mut out = Vec::new();
    for kind in ["rolebindings", "clusterrolebindings"] {
        let (ok, text) = w.kubectl(&["get", kind, "-A", "-o", "json"]);
        assert!(ok, "{text}");
        let list: Value = serde_json::from_str(&text).unwrap();
        for item in list["items"].as_array().unwrap() {
            let named = item["subjects"].as_array().is_some_and(|s| s.iter().any(|s| s["name"] == user));
            if named {
                out.push(format!("{kind}/{}", item["metadata"]["name"].as_str().unwrap()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_users_downstream_rbac_goes_with_them() {
    let w = World::start(CLUSTER, rancher_sim::Sim::builder(), &[]).await;
    let bob = w.user("bob", "bob-password-22").await;
    let kim = w.user("kim", "kim-password-33").await;
    let (code, p) = w
        .call("POST", "/v3/projects", Some(json!({"spec": {"clusterName": CLUSTER, "displayName": "shop"}})))
        .await;
    assert_eq!(code, 201, "{p}");
    let project = p["id"].as_str().unwrap().to_owned();
    w.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  annotations:\n    field.cattle.io/projectId: {project}\n"
    ));
    for (user, role) in [(&bob, "project-member"), (&kim, "project-member")] {
        let (code, b) = w
            .call(
                "POST",
                "/v3/projectroletemplatebindings",
                Some(json!({"spec": {"projectName": project, "roleTemplateName": role, "userName": user}})),
            )
            .await;
        assert_eq!(code, 201, "{b}");
    }
    let (code, b) = w
        .call(
            "POST",
            "/v3/clusterroletemplatebindings",
            Some(json!({"spec": {"clusterName": CLUSTER, "roleTemplateName": "cluster-member", "userName": bob}})),
        )
        .await;
    assert_eq!(code, 201, "{b}");
    let (code, b) = w
        .call(
            "POST",
            "/v3/globalrolebindings",
            Some(json!({"spec": {"userName": bob, "globalRoleName": "admin"}})),
        )
        .await;
    assert_eq!(code, 201, "{b}");
    w.wait_access(&bob, &["get", "pods", "-n", "shop"], true, "bob lists pods in shop").await;
    w.wait_access(&bob, &["get", "secrets", "-A"], true, "bob, a global admin, reads every secret").await;
    w.wait_access(&kim, &["get", "pods", "-n", "shop"], true, "kim lists pods in shop").await;
    let rendered = rendered_for(&w, &bob);
    assert!(rendered.iter().any(|r| r.starts_with("rolebindings/")), "{rendered:?}");
    assert!(rendered.iter().any(|r| r.ends_with(&format!("globaladmin-{bob}"))), "{rendered:?}");

    let (code, body) = w.call("DELETE", &format!("/v3/users/{bob}"), None).await;
    assert_eq!(code, 200, "{body}");
    let deleted_at = tokio::time::Instant::now();
    eventually(WAIT, "nothing downstream names bob", || {
        let left = rendered_for(&w, &bob);
        async move { left.is_empty().then_some(()) }
    })
    .await;
    eprintln!("a deleted user's downstream RBAC was gone within {:?}", deleted_at.elapsed());
    w.wait_access(&bob, &["get", "pods", "-n", "shop"], false, "bob no longer lists pods").await;
    w.wait_access(&bob, &["get", "secrets", "-A"], false, "bob no longer reads secrets").await;
    w.wait_access(&bob, &["get", "nodes"], false, "bob no longer lists nodes").await;
    let (ok, out) = w.as_user(&kim, &["get", "pods", "-n", "shop"]);
    assert!(ok, "kim keeps her access: {out}");
    assert!(!rendered_for(&w, &kim).is_empty(), "kim's bindings stay");
}
