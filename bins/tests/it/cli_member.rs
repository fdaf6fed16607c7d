//! `rancherctl` as a project member sees it: `cluster ls`, `project ls` and `cluster get` show exactly
//! what the member belongs to, and what they do not belong to is refused with the server's reason.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{ADMIN_PASSWORD, Api, ServerProc, ok};
use serde_json::{Value, json};

fn ctl(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rancherctl"))
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("RANCHER_PASSWORD")
        .output()
        .expect("run rancherctl")
}

/// The `id` of every item of a `-o json` list.
fn listed(out: &Output) -> Vec<String> {
    let v: Value = serde_json::from_str(&ok(out)).unwrap();
    let mut ids: Vec<String> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| {
            // Default and System projects, made by the server for every cluster (shared contract 3).
            let l = &o["metadata"]["labels"];
            l["authz.management.cattle.io/default-project"] != "true"
                && l["authz.management.cattle.io/system-project"] != "true"
        })
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_project_member_lists_and_gets_what_they_belong_to() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProc::start(&data, 0, Some(ADMIN_PASSWORD), &[]);
    let admin = Api::new(&server).logged_in("admin", ADMIN_PASSWORD).await;
    let mut projects = Vec::new();
    for cluster in ["edge", "core"] {
        assert_eq!(admin.post("/v3/clusters", &json!({"metadata": {"name": cluster}})).await.code, 201);
        let p = admin
            .post("/v3/projects", &json!({"spec": {"clusterName": cluster, "displayName": "team"}}))
            .await;
        assert_eq!(p.code, 201, "{}", p.body);
        projects.push(p.body["id"].as_str().unwrap().to_owned());
    }
    let u = admin
        .post("/v3/users", &json!({"spec": {"username": "carol", "password": "carol-password-11"}}))
        .await;
    assert_eq!(u.code, 201, "{}", u.body);
    let carol = u.body["id"].as_str().unwrap();
    let b = admin
        .post(
            "/v3/projectroletemplatebindings",
            &json!({"spec": {"projectName": projects[0], "userName": carol, "roleTemplateName": "project-member"}}),
        )
        .await;
    assert_eq!(b.code, 201, "{}", b.body);

    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let ca = data.join("tls/ca.crt");
    ok(&ctl(
        &home,
        &[
            "login",
            &server.url,
            "--username",
            "carol",
            "--password",
            "carol-password-11",
            "--cacert",
            ca.to_str().unwrap(),
        ],
    ));
    assert_eq!(listed(&ctl(&home, &["cluster", "ls", "-o", "json"])), ["edge"]);
    assert_eq!(listed(&ctl(&home, &["project", "ls", "-o", "json"])), [projects[0].clone()]);
    let table = ok(&ctl(&home, &["cluster", "ls"]));
    assert!(table.lines().any(|l| l.starts_with("edge")) && !table.contains("core"), "{table}");
    let got = ok(&ctl(&home, &["cluster", "get", "edge", "-o", "json"]));
    let got: Value = serde_json::from_str(&got).unwrap();
    assert_eq!(got["id"], "edge");
    let refused = ctl(&home, &["cluster", "get", "core"]);
    assert!(!refused.status.success());
    let e = String::from_utf8_lossy(&refused.stderr);
    assert!(e.contains("forbidden"), "{e}");
    drop(server);
}
