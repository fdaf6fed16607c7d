//! Projects through the management API of the real `rancher-server`: ids the server generates, unique
//! across clusters; bodies in Rancher's shape as well as ours; and the Default and System projects
//! every cluster gets, kept across restarts and removed with the cluster.

use std::time::Duration;

use crate::common::{ADMIN_PASSWORD, Api, ServerProc, assert_status};
use serde_json::{Value, json};

const DEFAULT_LABEL: &str = "authz.management.cattle.io/default-project";
const SYSTEM_LABEL: &str = "authz.management.cattle.io/system-project";

fn start(dir: &tempfile::TempDir) -> ServerProc {
    ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &[])
}

async fn user(admin: &Api, username: &str) -> String {
    let u = admin
        .post("/v3/users", &json!({"spec": {"username": username, "password": "a-password-1234"}}))
        .await;
    assert_eq!(u.code, 201, "{}", u.body);
    u.body["id"].as_str().unwrap().to_owned()
}

/// The projects of `cluster` carrying `label: "true"`, as `(id, displayName)`.
async fn labelled(admin: &Api, cluster: &str, label: &str) -> Vec<(String, String)> {
    let a = admin.get(&format!("/v3/projects?labelSelector={label}%3Dtrue")).await;
    assert_eq!(a.code, 200, "{}", a.body);
    a.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["spec"]["clusterName"] == cluster)
        .map(|p| {
            (p["id"].as_str().unwrap().to_owned(), p["spec"]["displayName"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// Waits until `cluster` has its Default and System projects; returns their ids.
async fn specials(admin: &Api, cluster: &str) -> (String, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (d, s) =
            (labelled(admin, cluster, DEFAULT_LABEL).await, labelled(admin, cluster, SYSTEM_LABEL).await);
        if let ([(d, _)], [(s, _)]) = (d.as_slice(), s.as_slice()) {
            return (d.clone(), s.clone());
        }
        assert!(d.len() <= 1 && s.len() <= 1, "never two: {d:?} {s:?}");
        assert!(tokio::time::Instant::now() < deadline, "no Default and System projects for {cluster}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn same_named_projects_and_bindings_in_two_clusters_do_not_collide() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let admin = Api::new(&server).logged_in("admin", ADMIN_PASSWORD).await;
    let alice = user(&admin, "alice").await;
    let mut ids = Vec::new();
    for cluster in ["edge", "demo"] {
        assert_eq!(admin.post("/v3/clusters", &json!({"metadata": {"name": cluster}})).await.code, 201);
        let p = admin.post("/v3/projects", &json!({"name": "team", "clusterId": cluster})).await;
        assert_eq!(p.code, 201, "{}", p.body);
        ids.push(p.body["id"].as_str().unwrap().to_owned());
    }
    let names: Vec<&str> = ids.iter().map(|id| id.split_once(':').unwrap().1).collect();
    assert_ne!(names[0], names[1], "project names are unique across the server: {ids:?}");
    for id in &ids {
        let b = admin
            .post(
                "/v3/projectroletemplatebindings",
                &json!({"metadata": {"name": "alice-member"},
                        "spec": {"projectName": id, "roleTemplateName": "project-member", "userName": alice}}),
            )
            .await;
        assert_eq!(b.code, 201, "{id}: {}", b.body);
        let name = id.split_once(':').unwrap().1;
        assert_eq!(b.body["id"], format!("{name}:alice-member"));
    }
    let all = admin.get("/v3/projectroletemplatebindings").await;
    let mine: Vec<&Value> = all.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["metadata"]["name"] == "alice-member")
        .collect();
    assert_eq!(mine.len(), 2, "{}", all.body);
}

#[tokio::test]
async fn rancher_shaped_bodies_are_accepted_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let admin = Api::new(&server).logged_in("admin", ADMIN_PASSWORD).await;
    let bob = user(&admin, "bob").await;
    assert_eq!(admin.post("/v3/clusters", &json!({"metadata": {"name": "edge"}})).await.code, 201);

    // A project: Rancher's `name` is what people see, and may be any text.
    let p = admin
        .post("/v3/projects", &json!({"name": "Web shop", "clusterId": "edge", "description": "the shop"}))
        .await;
    assert_eq!(p.code, 201, "{}", p.body);
    let project = p.body["id"].as_str().unwrap().to_owned();
    assert!(project.starts_with("edge:p-"), "{project}");
    assert_eq!(p.body["spec"]["displayName"], "Web shop");
    assert_eq!(p.body["spec"]["description"], "the shop");
    assert_eq!((p.body["type"].as_str(), p.body["clusterId"].as_str()), (Some("project"), Some("edge")));

    // A CRTB and a PRTB the way Rancher's API and its clients write them.
    let c = admin
        .post(
            "/v3/clusterroletemplatebindings",
            &json!({"clusterId": "edge", "roleTemplateId": "cluster-member", "userId": bob}),
        )
        .await;
    assert_eq!(c.code, 201, "{}", c.body);
    assert_eq!(c.body["spec"]["clusterName"], "edge");
    assert_eq!(c.body["spec"]["userName"], bob.as_str());
    for (field, want) in [
        ("type", "clusterRoleTemplateBinding"),
        ("clusterId", "edge"),
        ("roleTemplateId", "cluster-member"),
        ("userId", bob.as_str()),
    ] {
        assert_eq!(c.body[field], want, "{field}: {}", c.body);
    }
    let b = admin
        .post(
            "/v3/projectroletemplatebindings",
            &json!({"name": "bob-member", "projectId": project, "roleTemplateId": "project-member",
                    "userPrincipalId": format!("local://{bob}")}),
        )
        .await;
    assert_eq!(b.code, 201, "{}", b.body);
    let project_name = project.split_once(':').unwrap().1;
    assert_eq!(b.body["id"], format!("{project_name}:bob-member"));
    assert_eq!(b.body["spec"]["userName"], bob.as_str());
    assert_eq!(b.body["spec"]["projectName"], project.as_str());
    assert_eq!(b.body["projectId"], project.as_str());
    assert_eq!(b.body["userPrincipalId"], format!("local://{bob}"));
    // What GET answers can be sent back (the two shapes agree).
    let got = admin.get(&format!("/v3/projectroletemplatebindings/{project_name}:bob-member")).await;
    assert_eq!(got.code, 200, "{}", got.body);
    let put =
        admin.put(&format!("/v3/projectroletemplatebindings/{project_name}:bob-member"), &got.body).await;
    assert_eq!(put.code, 200, "{}", put.body);

    // Both shapes at once must agree; nothing is stored when they do not.
    let clash = admin
        .post(
            "/v3/clusterroletemplatebindings",
            &json!({"clusterId": "edge", "roleTemplateId": "cluster-member", "userId": bob,
                    "spec": {"userName": "u-other"}}),
        )
        .await;
    assert_status(&clash, 422, "Invalid");
    let message = clash.body["message"].as_str().unwrap();
    assert!(message.contains("userId") && message.contains("spec.userName"), "{message}");
    let clash = admin
        .post("/v3/projects", &json!({"clusterId": "edge", "name": "x", "spec": {"clusterName": "other"}}))
        .await;
    assert_status(&clash, 422, "Invalid");
    let unknown = admin
        .post(
            "/v3/projectroletemplatebindings",
            &json!({"projectId": project, "roleTemplateId": "project-member",
                    "userPrincipalId": "openldap_user://uid=nobody,dc=example,dc=org"}),
        )
        .await;
    assert_status(&unknown, 422, "Invalid");
    let all = admin.get("/v3/clusterroletemplatebindings").await;
    let bobs = all.body["data"].as_array().unwrap().iter().filter(|b| b["userId"] == bob.as_str()).count();
    assert_eq!(bobs, 1, "{}", all.body);
}

#[tokio::test]
async fn every_cluster_has_one_default_and_one_system_project_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir);
    let admin = Api::new(&server).logged_in("admin", ADMIN_PASSWORD).await;
    assert_eq!(admin.post("/v3/clusters", &json!({"metadata": {"name": "edge"}})).await.code, 201);
    let (default, system) = specials(&admin, "edge").await;
    assert!(default.starts_with("edge:p-") && system.starts_with("edge:p-"), "{default} {system}");
    assert_eq!(labelled(&admin, "edge", DEFAULT_LABEL).await[0].1, "Default");
    assert_eq!(labelled(&admin, "edge", SYSTEM_LABEL).await[0].1, "System");

    // Which projects they are is the server's to say: a client neither drops nor forges the labels.
    let mut got = admin.get(&format!("/v3/projects/{system}")).await.body;
    got["metadata"]["labels"] = json!({});
    got["spec"]["displayName"] = json!("Platform");
    let put = admin.put(&format!("/v3/projects/{system}"), &got).await;
    assert_eq!(put.code, 200, "{}", put.body);
    assert_eq!(
        (put.body["metadata"]["labels"][SYSTEM_LABEL].as_str(), put.body["spec"]["displayName"].as_str()),
        (Some("true"), Some("Platform"))
    );
    let forged = admin
        .post("/v3/projects", &json!({"metadata": {"name": "fake", "labels": {DEFAULT_LABEL: "true"}}, "spec": {"clusterName": "edge"}}))
        .await;
    assert_eq!(forged.code, 201, "{}", forged.body);
    assert!(forged.body["metadata"]["labels"].get(DEFAULT_LABEL).is_none(), "{}", forged.body);

    // Deleted by someone: made again (a cluster always has them).
    assert_eq!(admin.delete(&format!("/v3/projects/{default}")).await.code, 200);
    let (again, same_system) = specials(&admin, "edge").await;
    assert_ne!(again, default);
    assert_eq!(same_system, system);

    // A restart finds them: still exactly one of each, the same ones.
    server.stop_async().await;
    let server = start(&dir);
    let admin = Api::new(&server).logged_in("admin", ADMIN_PASSWORD).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(specials(&admin, "edge").await, (again.clone(), system.clone()));

    // They go with their cluster.
    assert_eq!(admin.delete("/v3/clusters/edge").await.code, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = admin.get("/v3/projects").await;
        let of_edge = left.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["spec"]["clusterName"] == "edge")
            .count();
        if of_edge == 0 && admin.get("/v3/clusters/edge").await.code == 404 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the deleted cluster's projects stay: {}", left.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
