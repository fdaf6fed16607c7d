//! A deleted user leaves nothing a new user can adopt: their tokens, global role bindings and cluster
//! and project role template bindings go with them, and nobody can create a user under their old
//! id (ids are the server's) to inherit whatever still named it.

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn a_deleted_users_bindings_go_and_their_id_cannot_be_taken_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &[]);
    let api = Api::new(&server);
    let admin = api.logged_in("admin", ADMIN_PASSWORD).await;
    // A cluster (no agent needed) and a project, where bob is a member.
    let c = admin.post("/v3/clusters", &json!({"metadata": {"name": "c1"}})).await;
    assert_eq!(c.code, 201, "{}", c.body);
    let p = admin
        .post("/v3/projects", &json!({"metadata": {"name": "p-web"}, "spec": {"clusterName": "c1"}}))
        .await;
    assert_eq!(p.code, 201, "{}", p.body);
    let web = p.body["id"].as_str().unwrap().to_owned();
    let web_name = web.split_once(':').unwrap().1.to_owned();
    let u =
        admin.post("/v3/users", &json!({"spec": {"username": "bob", "password": "bob-password-1234"}})).await;
    assert_eq!(u.code, 201, "{}", u.body);
    let bob_id = u.body["id"].as_str().unwrap().to_owned();
    let crtb = json!({"metadata": {"name": "bob-owner"},
                      "spec": {"clusterName": "c1", "roleTemplateName": "cluster-owner", "userName": bob_id}});
    assert_eq!(admin.post("/v3/clusterroletemplatebindings", &crtb).await.code, 201);
    let prtb = json!({"metadata": {"name": "bob-member"},
                      "spec": {"projectName": web, "roleTemplateName": "project-member", "userName": bob_id}});
    assert_eq!(admin.post("/v3/projectroletemplatebindings", &prtb).await.code, 201);
    let bob = api.logged_in("bob", "bob-password-1234").await;
    let bob_token = bob.post("/v3/tokens", &json!({"description": "ci"})).await;
    assert_eq!(bob_token.code, 201, "{}", bob_token.body);
    let bob_token_name = bob_token.body["id"].as_str().unwrap().to_owned();

    assert_eq!(admin.delete(&format!("/v3/users/{bob_id}")).await.code, 200);
    // Everything that named bob is gone.
    assert_status(&admin.get("/v3/clusterroletemplatebindings/c1:bob-owner").await, 404, "NotFound");
    assert_status(
        &admin.get(&format!("/v3/projectroletemplatebindings/{web_name}:bob-member")).await,
        404,
        "NotFound",
    );
    assert_status(&admin.get(&format!("/v3/tokens/{bob_token_name}")).await, 404, "NotFound");
    let grbs = admin.get("/v3/globalrolebindings").await;
    let left: Vec<_> =
        grbs.body["data"].as_array().unwrap().iter().filter(|b| b["spec"]["userName"] == bob_id).collect();
    assert!(left.is_empty(), "bob's global role bindings remain: {left:?}");

    // Nobody may pick bob's old id (nor any id) for a new user...
    for metadata in [json!({"name": bob_id}), json!({"generateName": "u-"})] {
        let again = admin
            .post(
                "/v3/users",
                &json!({"metadata": metadata, "spec": {"username": "mallory", "password": "mallory-password-1"}}),
            )
            .await;
        assert_status(&again, 422, "Invalid");
        assert!(
            again.body["message"].as_str().unwrap_or_default().contains("metadata.name"),
            "{}",
            again.body
        );
    }
    // ...and a new user gets a fresh id and none of bob's memberships.
    let m = admin
        .post("/v3/users", &json!({"spec": {"username": "mallory", "password": "mallory-password-1"}}))
        .await;
    assert_eq!(m.code, 201, "{}", m.body);
    assert_ne!(m.body["id"].as_str().unwrap(), bob_id);
    let admin_id = admin_id(&admin).await;
    let crtbs = admin.get("/v3/clusterroletemplatebindings").await;
    let inherited: Vec<_> =
        crtbs.body["data"].as_array().unwrap().iter().filter(|b| b["spec"]["userName"] != admin_id).collect();
    assert!(inherited.is_empty(), "a binding outlived its user: {inherited:?}");
    drop(server);
}

/// The admin's user id.
async fn admin_id(admin: &Api) -> String {
    let users = admin.get("/v3/users").await;
    users.body["data"].as_array().unwrap().iter().find(|u| u["spec"]["username"] == "admin").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}
