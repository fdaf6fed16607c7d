//! Projects and namespaces end to end with real processes: `rancher-server`, `rancher-sim` clusters
//! imported with `rancher-agent`, `kubectl` and `rancherctl`. A connected cluster's `default` and
//! system namespaces land in its Default and System projects; namespaces move between projects
//! through the API and the CLI, and a project member gains (and loses) access to a moved namespace
//! through the proxy; same-named projects and bindings in two clusters each render in their own.

use std::path::Path;
use std::time::Duration;

use crate::tenancy_support::*;
use serde_json::{Value, json};

/// `GET /v3/clusters/<cluster>/namespaces` as `bearer`: `(name, projectId)` pairs.
async fn namespaces(w: &World, cluster: &str, bearer: &str) -> Vec<(String, Option<String>)> {
    let (code, list) =
        api(&w.server.url, "GET", &format!("/v3/clusters/{cluster}/namespaces"), bearer, None).await;
    assert_eq!(code, 200, "{list}");
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap().to_owned(), n["projectId"].as_str().map(str::to_owned)))
        .collect()
}

/// `POST …/namespaces/<ns>?action=move` as `bearer`.
async fn move_ns(w: &World, bearer: &str, ns: &str, to: Option<&str>) -> (u16, Value) {
    let path = format!("/v3/clusters/{}/namespaces/{ns}?action=move", w.cluster);
    api(&w.server.url, "POST", &path, bearer, Some(json!({ "projectId": to }))).await
}

/// The id of the cluster's project labelled `label`.
async fn labelled(w: &World, cluster: &str, label: &str) -> String {
    let (url, admin) = (w.server.url.clone(), w.admin.clone());
    eventually(WAIT, label, || {
        let (url, admin) = (url.clone(), admin.clone());
        async move {
            let path = format!("/v3/projects?labelSelector={label}%3Dtrue");
            let (_, list) = api(&url, "GET", &path, &admin, None).await;
            list["data"].as_array()?.iter().find(|p| p["spec"]["clusterName"] == cluster)?["id"]
                .as_str()
                .map(str::to_owned)
        }
    })
    .await
}

async fn project(w: &World, cluster: &str, name: &str) -> String {
    let (code, p) = w.call("POST", "/v3/projects", Some(json!({"name": name, "clusterId": cluster}))).await;
    assert_eq!(code, 201, "{p}");
    p["id"].as_str().unwrap().to_owned()
}

async fn bind(w: &World, project: &str, user: &str, role: &str) {
    let body = json!({"projectId": project, "roleTemplateId": role, "userId": user});
    let (code, b) = w.call("POST", "/v3/projectroletemplatebindings", Some(body)).await;
    assert_eq!(code, 201, "{b}");
}

async fn session(w: &World, username: &str, password: &str) -> String {
    let (code, login) = api(
        &w.server.url,
        "POST",
        "/v3-public/localProviders/local?action=login",
        "",
        Some(json!({"username": username, "password": password})),
    )
    .await;
    assert_eq!(code, 201, "{login}");
    login["token"].as_str().unwrap().to_owned()
}

async fn kubeconfig(w: &World, token: &str, file: &Path) {
    let path = format!("/v3/clusters/{}?action=generateKubeconfig", w.cluster);
    let (code, kc) = api(&w.server.url, "POST", &path, token, None).await;
    assert_eq!(code, 200, "{kc}");
    std::fs::write(file, kc["config"].as_str().unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_move_between_projects_and_access_follows() {
    let w = World::start("nsm", rancher_sim::Sim::builder(), &[]).await;
    let cluster = w.cluster.clone();
    let default = labelled(&w, &cluster, "authz.management.cattle.io/default-project").await;
    let system = labelled(&w, &cluster, "authz.management.cattle.io/system-project").await;

    // The controller put `default` into Default and the system namespaces into System.
    eventually(WAIT, "default and the system namespaces are in their projects", || {
        let (w, default, system) = (&w, default.clone(), system.clone());
        async move {
            let all = namespaces(w, &w.cluster, &w.admin).await;
            let of = |ns: &str| all.iter().find(|(n, _)| n == ns).and_then(|(_, p)| p.clone());
            (of("default") == Some(default)
                && of("kube-system") == Some(system.clone())
                && of("cattle-system") == Some(system))
            .then_some(())
        }
    })
    .await;

    // Alice is a member of `shop`, carol owns `shop` and `team`.
    let alice = w.user("alice", "alice-password-11").await;
    let carol = w.user("carol", "carol-password-33").await;
    let shop = project(&w, &cluster, "shop").await;
    let team = project(&w, &cluster, "team").await;
    bind(&w, &shop, &alice, "project-member").await;
    bind(&w, &shop, &carol, "project-owner").await;
    bind(&w, &team, &carol, "project-owner").await;
    w.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: work\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: loose\n");
    let alice_token = session(&w, "alice", "alice-password-11").await;
    let carol_token = session(&w, "carol", "carol-password-33").await;
    let alice_kc = w.dir.path().join("alice.kubeconfig");
    kubeconfig(&w, &alice_token, &alice_kc).await;

    // Alice sees only her projects' namespaces: none yet. She may not move anything.
    assert!(namespaces(&w, &cluster, &alice_token).await.is_empty());
    let (code, b) = move_ns(&w, &alice_token, "work", Some(&shop)).await;
    assert_eq!((code, b["reason"].as_str()), (403, Some("Forbidden")), "{b}");
    let (ok, out) = kubectl_at(&alice_kc, &["get", "pods", "-n", "work"]);
    assert!(!ok && out.contains("Forbidden"), "{out}");

    // The admin moves `work` into shop: alice sees it and reaches it through the proxy.
    let (code, b) = move_ns(&w, &w.admin, "work", Some(&shop)).await;
    assert_eq!(code, 200, "{b}");
    assert_eq!((b["type"].as_str(), b["projectId"].as_str()), (Some("namespace"), Some(shop.as_str())));
    assert_eq!(namespaces(&w, &cluster, &alice_token).await, [("work".to_owned(), Some(shop.clone()))]);
    eventually(WAIT, "alice lists pods in work through the proxy", || {
        let (ok, _) = kubectl_at(&alice_kc, &["get", "pods", "-n", "work"]);
        async move { ok.then_some(()) }
    })
    .await;

    // Carol moves it between her projects; alice loses it. Namespaces outside her projects are
    // not hers to move, nor is a move into a project she does not own.
    let (code, b) = move_ns(&w, &carol_token, "work", Some(&team)).await;
    assert_eq!(code, 200, "{b}");
    eventually(WAIT, "alice loses work", || {
        let (ok, out) = kubectl_at(&alice_kc, &["get", "pods", "-n", "work"]);
        async move { (!ok && out.contains("Forbidden")).then_some(()) }
    })
    .await;
    for (ns, to) in [
        ("loose", Some(team.as_str())),
        ("kube-system", Some(team.as_str())),
        ("work", Some(default.as_str())),
        ("work", None),
    ] {
        let (code, b) = move_ns(&w, &carol_token, ns, to).await;
        assert_eq!((code, b["reason"].as_str()), (403, Some("Forbidden")), "{ns} → {to:?}: {b}");
    }
    let (code, b) = move_ns(&w, &w.admin, "work", Some("other:p-abcde")).await;
    assert_eq!(code, 422, "{b}");
    let (code, b) = move_ns(&w, &w.admin, "nope", Some(&shop)).await;
    assert_eq!(code, 404, "{b}");

    // The CLI: by display name, then out of every project.
    let home = w.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let (ok, out) =
        rancherctl(&home, &["login", &w.server.url, "-u", "admin", "-p", ADMIN_PASSWORD, "--insecure"]);
    assert!(ok, "{out}");
    let (ok, out) = rancherctl(&home, &["namespace", "move", &cluster, "work", "shop"]);
    assert!(ok && out.contains(&shop), "{out}");
    let (ok, out) = rancherctl(&home, &["namespace", "ls", &cluster]);
    assert!(ok, "{out}");
    let row = out.lines().find(|l| l.starts_with("work ")).unwrap_or_else(|| panic!("{out}"));
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["work", shop.as_str(), "active"]);
    let kube_system = out.lines().find(|l| l.starts_with("kube-system ")).unwrap_or_else(|| panic!("{out}"));
    assert!(kube_system.contains(&system), "{out}");
    eventually(WAIT, "alice has work again", || {
        let (ok, _) = kubectl_at(&alice_kc, &["get", "pods", "-n", "work"]);
        async move { ok.then_some(()) }
    })
    .await;
    let (ok, out) = rancherctl(&home, &["namespace", "move", &cluster, "work", "--none"]);
    assert!(ok, "{out}");
    let (ok, out) = w.kubectl(&["get", "namespace", "work", "-o", "jsonpath={.metadata.annotations}"]);
    assert!(ok && !out.contains("field.cattle.io/projectId"), "{out}");
    eventually(WAIT, "alice loses work again", || {
        let (ok, out) = kubectl_at(&alice_kc, &["get", "pods", "-n", "work"]);
        async move { (!ok && out.contains("Forbidden")).then_some(()) }
    })
    .await;
    let (ok, out) = rancherctl(&home, &["namespace", "move", &cluster, "work", "no-such-project"]);
    assert!(!ok && out.contains("no project"), "{out}");

    // A cluster whose agent is gone answers 503 at once.
    w.agent.signal("KILL");
    eventually(WAIT, "the namespaces API answers 503 at once", || {
        let w = &w;
        async move {
            let started = tokio::time::Instant::now();
            let (code, _) =
                api(&w.server.url, "GET", &format!("/v3/clusters/{}/namespaces", w.cluster), &w.admin, None)
                    .await;
            (code == 503 && started.elapsed() < Duration::from_secs(2)).then_some(())
        }
    })
    .await;
    let started = tokio::time::Instant::now();
    let (code, b) = move_ns(&w, &w.admin, "work", Some(&shop)).await;
    assert_eq!((code, b["kind"].as_str()), (503, Some("Status")), "{b}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_named_projects_and_bindings_render_in_their_own_clusters() {
    let w = World::start("edge", rancher_sim::Sim::builder(), &[]).await;
    // A second cluster, imported into the same server.
    let sim2 = rancher_sim::Sim::builder().name("demo").start().await.unwrap();
    let kc2 = w.dir.path().join("demo.kubeconfig");
    std::fs::write(&kc2, sim2.kubeconfig_yaml()).unwrap();
    let crt = create_imported(&w.server.url, &w.admin, "demo").await;
    let dir2 = w.dir.path().join("demo");
    std::fs::create_dir_all(&dir2).unwrap();
    let env = apply_manifest(crt["manifestUrl"].as_str().unwrap(), &kc2, &dir2).await;
    let _agent2 = start_agent(&env, &kc2, &dir2.join("agent.log"), &[]);
    let alice = w.user("alice", "alice-password-11").await;

    let mut ids = Vec::new();
    for (cluster, kc) in [("edge", w.kubeconfig.clone()), ("demo", kc2.clone())] {
        let id = project(&w, cluster, "team").await;
        kubectl_at(&kc, &["create", "namespace", "work"]);
        let (ok, out) =
            kubectl_at(&kc, &["annotate", "namespace", "work", &format!("field.cattle.io/projectId={id}")]);
        assert!(ok, "{out}");
        let body = json!({"name": "alice-member", "projectId": id, "roleTemplateId": "project-member", "userId": alice});
        let (code, b) = w.call("POST", "/v3/projectroletemplatebindings", Some(body)).await;
        assert_eq!(code, 201, "{cluster}: {b}");
        ids.push(id);
    }
    assert_ne!(ids[0].split_once(':').unwrap().1, ids[1].split_once(':').unwrap().1);
    for kc in [&w.kubeconfig, &kc2] {
        eventually(WAIT, "alice reaches work in each cluster", || {
            let (ok, _) = kubectl_at(kc, &["--as", &alice, "get", "pods", "-n", "work"]);
            async move { ok.then_some(()) }
        })
        .await;
    }
    // Each binding is its own: removing edge's leaves demo's.
    let edge_binding = format!("{}:alice-member", ids[0].split_once(':').unwrap().1);
    let (code, b) = w.call("DELETE", &format!("/v3/projectroletemplatebindings/{edge_binding}"), None).await;
    assert_eq!(code, 200, "{b}");
    eventually(WAIT, "alice loses work in edge", || {
        let (ok, out) = kubectl_at(&w.kubeconfig, &["--as", &alice, "get", "pods", "-n", "work"]);
        async move { (!ok && out.contains("Forbidden")).then_some(()) }
    })
    .await;
    let (ok, out) = kubectl_at(&kc2, &["--as", &alice, "get", "pods", "-n", "work"]);
    assert!(ok, "demo's binding still grants: {out}");
}
