//! Lifecycle as a security property, attacked from outside with real processes (`rancher-server`, a
//! `rancher-sim` imported with a real `rancher-agent`, `kubectl`): a deleted cluster's agent, access,
//! registration token and bindings are gone, so a standard user who creates a cluster of the same
//! name owns a new, empty cluster — never the old one and its Secrets; a deleted project's bindings
//! stop granting; a demoted admin loses `cluster-admin` downstream without making any request; a
//! cluster-scoped token needs, and follows, access to its cluster.

use std::time::Duration;

use crate::tenancy_support::*;
use serde_json::{Value, json};

/// Logs `username` in; returns their session token.
async fn session(w: &World, username: &str, password: &str) -> String {
    let (code, b) = api(
        &w.server.url,
        "POST",
        "/v3-public/localProviders/local?action=login",
        "",
        Some(json!({"username": username, "password": password})),
    )
    .await;
    assert_eq!(code, 201, "{b}");
    b["token"].as_str().unwrap().to_owned()
}

/// Whether the proxy itself refused the request for want of a role in the cluster (as opposed to
/// passing it on, whatever the cluster then answered).
fn proxy_refuses((code, body): &(u16, Value)) -> bool {
    *code == 403 && body["message"].as_str().unwrap_or_default().contains("has no role")
}

/// A standard user (the `user` global role every new user gets): id and session token.
async fn standard_user(w: &World, username: &str) -> (String, String) {
    let password = format!("{username}-Passw0rd-77");
    let id = w.user(username, &password).await;
    (id, session(w, username, &password).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_cluster_leaves_nothing_a_namesake_can_adopt() {
    let w = World::start("edge", rancher_sim::Sim::builder(), &[]).await;
    let url = w.server.url.clone();
    // The old cluster holds a Secret; the admin can read it through the proxy.
    w.apply("apiVersion: v1\nkind: Secret\nmetadata:\n  name: crown-jewels\n  namespace: default\nstringData:\n  key: old-cluster-secret\n");
    let secret_path = "/k8s/clusters/edge/api/v1/namespaces/default/secrets/crown-jewels";
    eventually(WAIT, "the admin reads the old cluster's Secret", || {
        let (url, admin) = (url.clone(), w.admin.clone());
        async move { (api(&url, "GET", secret_path, &admin, None).await.0 == 200).then_some(()) }
    })
    .await;
    let (code, old_crt) = w.call("GET", "/v3/clusterregistrationtokens/edge:default-token", None).await;
    assert_eq!(code, 200, "{old_crt}");
    let old_token = old_crt["status"]["token"].as_str().unwrap().to_owned();
    let old_import = old_crt["status"]["manifestUrl"].as_str().unwrap().to_owned();

    // It has a project with a member, and the member a token scoped to the cluster.
    let (alice, alice_session) = standard_user(&w, "alice").await;
    let (code, b) = w
        .call(
            "POST",
            "/v3/projects",
            Some(json!({"metadata": {"name": "old"}, "spec": {"clusterName": "edge"}})),
        )
        .await;
    assert_eq!(code, 201, "{b}");
    let old_project = b["id"].as_str().unwrap().to_owned();
    let prtb = json!({"metadata": {"name": "alice-member"},
                      "spec": {"projectName": old_project, "roleTemplateName": "project-member", "userName": alice}});
    let (code, b) = w.call("POST", "/v3/projectroletemplatebindings", Some(prtb)).await;
    assert_eq!(code, 201, "{b}");
    let (code, b) = api(&url, "POST", "/v3/tokens", &alice_session, Some(json!({"clusterId": "edge"}))).await;
    assert_eq!(code, 201, "{b}");
    let alice_cluster_token = b["token"].as_str().unwrap().to_owned();
    let alice_token_name = alice_cluster_token.split(':').next().unwrap().to_owned();
    // The token is synced into the cluster for its authorized endpoint; our RBAC is there too.
    eventually(WAIT, "the member's token record reaches the cluster", || {
        let (ok, _) = w.kubectl(&["-n", "cattle-system", "get", "secret", &alice_token_name]);
        async move { ok.then_some(()) }
    })
    .await;
    let ours = |kind: &str| {
        let (ok, out) =
            w.kubectl(&["get", kind, "-A", "-l", "management.cattle.io/managed-by=rancher-rs", "-o", "name"]);
        assert!(ok, "{out}");
        out.lines().count()
    };
    assert!(ours("clusterrolebindings") > 0);

    // The admin deletes the cluster; it is gone once its clean-up is done.
    let (code, b) = w.call("DELETE", "/v3/clusters/edge", None).await;
    assert_eq!(code, 200, "{b}");
    eventually(WAIT, "the cluster is gone", || {
        let (url, admin) = (url.clone(), w.admin.clone());
        async move { (api(&url, "GET", "/v3/clusters/edge", &admin, None).await.0 == 404).then_some(()) }
    })
    .await;
    // Its agent was disconnected, and its reconnects are refused.
    eventually(WAIT, "the old agent is refused", || {
        let log = w.agent.log_text();
        async move { log.contains("server refused the tunnel credentials (HTTP 401)").then_some(()) }
    })
    .await;
    // Its supervisor stopped with it, and nothing has been synced into it since.
    let log = w.server.proc.log_text();
    let lines: Vec<&str> = log.lines().collect();
    let stopped = lines
        .iter()
        .rposition(|l| l.contains("cluster supervisor stopped") && l.contains("edge"))
        .expect("the deleted cluster's supervisor stopped");
    let late: Vec<&&str> = lines[stopped + 1..]
        .iter()
        .filter(|l| l.contains("downstream sync attempt") && l.contains("edge"))
        .collect();
    assert!(late.is_empty(), "syncs of a deleted cluster: {late:?}");
    // What we put in the cluster is gone with it: token records and rendered RBAC.
    let (ok, _) = w.kubectl(&["-n", "cattle-system", "get", "secret", &alice_token_name]);
    assert!(!ok, "the deleted cluster still holds a token record for its authorized endpoint");
    for kind in ["clusterrolebindings", "clusterroles", "rolebindings", "secrets"] {
        assert_eq!(ours(kind), 0, "our {kind} remain in the deleted cluster");
    }
    // Its registration token's import URL is dead.
    let (code, b) = api(&url, "GET", old_import.trim_start_matches(&url), "", None).await;
    assert_eq!(code, 404, "{b}");
    // Nothing of it is left in the store.
    for path in ["/v3/clusterroletemplatebindings", "/v3/projects", "/v3/clusterregistrationtokens"] {
        let (code, b) = w.call("GET", path, None).await;
        assert_eq!(code, 200, "{b}");
        let left: Vec<&Value> = b["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["id"].as_str().unwrap_or_default().starts_with("edge:"))
            .collect();
        assert!(left.is_empty(), "{path} still holds {left:?}");
    }
    let (_, b) = w.call("GET", "/v3/projectroletemplatebindings", None).await;
    let left: Vec<&Value> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["spec"]["projectName"] == old_project.as_str())
        .collect();
    assert!(left.is_empty(), "the deleted cluster's project bindings remain: {left:?}");
    let own = format!("/v3/tokens/{}", alice_cluster_token.split(':').next().unwrap());
    let (code, b) = api(&url, "GET", &own, &alice_cluster_token, None).await;
    assert_eq!(code, 401, "the deleted cluster's scoped token still authenticates: {b}");

    // A standard user creates `edge` again and owns it...
    let (_, mallory) = standard_user(&w, "mallory").await;
    let (code, b) = api(
        &url,
        "POST",
        "/v3/clusters",
        &mallory,
        Some(json!({"metadata": {"name": "edge"}, "spec": {"importedConfig": {}}})),
    )
    .await;
    assert_eq!(code, 201, "{b}");
    let (code, new_crt) = w.call("GET", "/v3/clusterregistrationtokens/edge:default-token", None).await;
    assert_eq!(code, 200, "{new_crt}");
    assert_ne!(
        new_crt["status"]["token"].as_str().unwrap(),
        old_token,
        "the new cluster reuses the old token"
    );
    // ...of a new, empty cluster: the old one and its Secrets are out of reach, however long the old
    // agent keeps trying to come back.
    let (code, b) = api(&url, "GET", old_import.trim_start_matches(&url), "", None).await;
    assert_eq!(code, 404, "the old import URL works for the new cluster: {b}");
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < until {
        let (code, b) = api(&url, "GET", secret_path, &mallory, None).await;
        assert!(code == 503 || code == 404, "the namesake's owner reached the old cluster: {code} {b}");
        assert!(!b.to_string().contains("crown-jewels"), "{b}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (code, b) = w.call("GET", "/v3/clusters/edge", None).await;
    assert_eq!(code, 200, "{b}");
    let connected = b["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Connected" && c["status"] == "True"));
    assert!(!connected, "the old agent connected the new cluster: {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_projects_bindings_grant_nothing_not_even_in_its_namesake() {
    let w = World::start("proj", rancher_sim::Sim::builder(), &[]).await;
    let url = w.server.url.clone();
    // A project member reaches the cluster; once the project is deleted, and even after a project
    // of the same name is made again, their binding grants nothing.
    let (alice, alice_token) = standard_user(&w, "alice").await;
    let project = json!({"metadata": {"name": "team"}, "spec": {"clusterName": "proj"}});
    let (code, b) = w.call("POST", "/v3/projects", Some(project.clone())).await;
    assert_eq!(code, 201, "{b}");
    let team = b["id"].as_str().unwrap().to_owned();
    let prtb = json!({"metadata": {"name": "alice-member"},
                      "spec": {"projectName": team, "roleTemplateName": "project-member", "userName": alice}});
    let (code, b) = w.call("POST", "/v3/projectroletemplatebindings", Some(prtb)).await;
    assert_eq!(code, 201, "{b}");
    // What the downstream cluster then allows is its RBAC's business; the proxy lets her through.
    let version = "/k8s/clusters/proj/version";
    eventually(WAIT, "the project member passes the proxy", || {
        let (url, t) = (url.clone(), alice_token.clone());
        async move { (!proxy_refuses(&api(&url, "GET", version, &t, None).await)).then_some(()) }
    })
    .await;
    let (code, b) = w.call("DELETE", &format!("/v3/projects/{team}"), None).await;
    assert_eq!(code, 200, "{b}");
    let answer = api(&url, "GET", version, &alice_token, None).await;
    assert!(proxy_refuses(&answer), "a deleted project's binding still grants: {answer:?}");
    let (code, b) = w.call("POST", "/v3/projects", Some(project)).await;
    assert_eq!(code, 201, "{b}");
    assert_ne!(b["id"].as_str(), Some(team.as_str()), "a new project gets a new id");
    let answer = api(&url, "GET", version, &alice_token, None).await;
    assert!(proxy_refuses(&answer), "a binding of the deleted project grants in its namesake: {answer:?}");
    let (_, team_name) = team.split_once(':').unwrap();
    let (code, b) =
        w.call("GET", &format!("/v3/projectroletemplatebindings/{team_name}:alice-member"), None).await;
    assert_eq!(code, 404, "the deleted project's binding is gone: {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_admin_loses_cluster_admin_downstream_without_making_a_request() {
    let w = World::start("dem", rancher_sim::Sim::builder(), &[]).await;
    let carol = w.user("carol", "carol-Passw0rd-55").await;
    let crb = format!("clusterrolebinding/globaladmin-{carol}");
    let exists = |w: &World| w.kubectl(&["get", &crb, "-o", "name"]).0;
    let grb =
        json!({"metadata": {"name": "carol-admin"}, "spec": {"userName": carol, "globalRoleName": "admin"}});
    let (code, b) = w.call("POST", "/v3/globalrolebindings", Some(grb)).await;
    assert_eq!(code, 201, "{b}");
    // Carol never sends a request: the controller binds her, and unbinds her.
    eventually(WAIT, "the promoted admin is bound downstream", || {
        let ok = exists(&w);
        async move { ok.then_some(()) }
    })
    .await;
    w.wait_access(&carol, &["get", "secrets", "-A"], true, "carol is cluster-admin downstream").await;
    let (code, b) = w.call("DELETE", "/v3/globalrolebindings/carol-admin", None).await;
    assert_eq!(code, 200, "{b}");
    let demoted = tokio::time::Instant::now();
    eventually(Duration::from_secs(15), "the demoted admin's binding is gone downstream", || {
        let gone = !exists(&w);
        async move { gone.then_some(()) }
    })
    .await;
    eprintln!("binding removed downstream {:?} after the demotion", demoted.elapsed());
    let (ok, out) = w.as_user(&carol, &["get", "secrets", "-A"]);
    assert!(!ok && out.contains("Forbidden"), "{out}");
    // A binding of that name someone made by hand is not ours: it is left alone.
    w.apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: globaladmin-{carol}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: view\nsubjects:\n- kind: User\n  apiGroup: rbac.authorization.k8s.io\n  name: {carol}\n"
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(exists(&w), "a hand-made binding was removed");
}

/// kubectl with a kubeconfig holding `token`, straight at the sim (the authorized cluster endpoint).
fn kubectl_with(w: &World, token: &str, args: &[&str]) -> (bool, String) {
    let kc = w.dir.path().join(format!("kc-{}", token.split(':').next().unwrap_or("x")));
    std::fs::write(&kc, w.sim.kubeconfig_for_token(token)).unwrap();
    kubectl_at(&kc, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_scoped_tokens_need_and_follow_access_to_the_cluster() {
    const CLUSTER: &str = "acel";
    let (w, _certs) = World::start_with_ace_webhook(CLUSTER).await;
    let url = w.server.url.clone();
    let mint = |bearer: String, cluster: &'static str| {
        let url = url.clone();
        async move { api(&url, "POST", "/v3/tokens", &bearer, Some(json!({"clusterId": cluster}))).await }
    };

    // A user with no role in the cluster cannot mint a token for it (nor for one that does not exist).
    let (_, dave) = standard_user(&w, "dave").await;
    let (code, b) = mint(dave.clone(), CLUSTER).await;
    assert_eq!(code, 403, "a non-member minted a token for the cluster: {b}");
    assert_eq!(b["kind"], "Status", "{b}");
    let (code, b) = mint(dave.clone(), "no-such-cluster").await;
    assert_eq!(code, 403, "{b}");

    // A member can; the token works straight against the cluster...
    let (erin, erin_session) = standard_user(&w, "erin").await;
    let crtb = json!({"metadata": {"name": "erin-member"},
                      "spec": {"clusterName": CLUSTER, "roleTemplateName": "cluster-member", "userName": erin}});
    let (code, b) = w.call("POST", "/v3/clusterroletemplatebindings", Some(crtb)).await;
    assert_eq!(code, 201, "{b}");
    let (code, t) = mint(erin_session.clone(), CLUSTER).await;
    assert_eq!(code, 201, "{t}");
    let token = t["token"].as_str().unwrap().to_owned();
    eventually(WAIT, "the member's token works at the authorized cluster endpoint", || {
        let (ok, out) =
            kubectl_with(&w, &token, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
        let erin = erin.clone();
        async move { (ok && out.trim() == erin).then_some(()) }
    })
    .await;
    // ...until the membership is removed: then the cluster refuses it.
    let (code, b) =
        w.call("DELETE", &format!("/v3/clusterroletemplatebindings/{CLUSTER}:erin-member"), None).await;
    assert_eq!(code, 200, "{b}");
    let removed = tokio::time::Instant::now();
    eventually(WAIT, "the former member's token is refused by the cluster", || {
        let (ok, out) = kubectl_with(&w, &token, &["get", "nodes"]);
        async move { (!ok && (out.contains("Unauthorized") || out.contains("logged in"))).then_some(()) }
    })
    .await;
    eprintln!("the former member's token refused {:?} after the binding was removed", removed.elapsed());
    let name = token.split(':').next().unwrap();
    let (ok, _) = w.kubectl(&["-n", "cattle-system", "get", "secret", name]);
    assert!(!ok, "the token's record is gone from the cluster");
    // And it no longer passes the proxy either.
    let (code, b) = api(&url, "GET", &format!("/k8s/clusters/{CLUSTER}/version"), &token, None).await;
    assert_eq!(code, 403, "{b}");
}
