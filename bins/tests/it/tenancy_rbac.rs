//! Tenancy end to end with real processes: `rancher-server`, a `rancher-sim` cluster imported with a
//! `rancher-agent`, and `kubectl`. Project and cluster role template bindings made through the
//! management API become RBAC in the sim (through the tunnel), and the sim's own RBAC decides what a
//! user may do — checked by impersonating the user against the sim (`kubectl --as u-xxxxx`).

use crate::tenancy_support::*;
use serde_json::json;

const CLUSTER: &str = "ten";
const MANAGED: &str = "management.cattle.io/managed-by=rancher-rs";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_bindings_become_downstream_rbac_and_follow_changes() {
    let w = World::start(CLUSTER, rancher_sim::Sim::builder(), &[]).await;
    let alice = w.user("alice", "alice-password-11").await;
    let bob = w.user("bob", "bob-password-22").await;
    // The cluster's creator (the admin) got cluster-owner with the cluster: that is rendered too.
    let (_, users) = w.call("GET", "/v3/users", None).await;
    let admin_id =
        users["data"].as_array().unwrap().iter().find(|u| u["spec"]["username"] == "admin").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
    w.wait_access(&admin_id, &["get", "secrets", "-A"], true, "the creator owns the cluster downstream")
        .await;

    // Project P holds `shop` (annotated now) and later `later`; `other` is in no project.
    let (code, p) = w
        .call(
            "POST",
            "/v3/projects",
            Some(json!({"metadata": {"name": "shop"}, "spec": {"clusterName": CLUSTER}})),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    let shop = p["id"].as_str().unwrap().to_owned();
    let shop_name = shop.split_once(':').unwrap().1.to_owned();
    w.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  annotations:\n    field.cattle.io/projectId: {shop}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: other\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: later\n"
    ));
    // A RoleBinding someone made by hand, without our label: it must survive everything below.
    w.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: hand-made\n  namespace: shop\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: view\nsubjects:\n- kind: User\n  apiGroup: rbac.authorization.k8s.io\n  name: someone\n",
    );
    let pods_in = |ns: &'static str| ["get", "pods", "-n", ns];
    w.wait_access(&alice, &pods_in("shop"), false, "alice has nothing before her binding").await;

    // Alice becomes a project member of P.
    let (code, prtb) = w
        .call(
            "POST",
            "/v3/projectroletemplatebindings",
            Some(json!({"metadata": {"name": "alice-member"},
                        "spec": {"projectName": shop, "roleTemplateName": "project-member",
                                 "userName": alice}})),
        )
        .await;
    assert_eq!(code, 201, "{prtb}");
    let bound_at = tokio::time::Instant::now();
    w.wait_access(&alice, &pods_in("shop"), true, "alice lists pods in shop").await;
    eprintln!(
        "binding → downstream RoleBinding effective within {:?} (incl. kubectl polls)",
        bound_at.elapsed()
    );
    // The refusal elsewhere comes from the sim's RBAC.
    let (ok, out) = w.as_user(&alice, &pods_in("other"));
    assert!(!ok && out.contains("Forbidden"), "{out}");
    assert!(out.contains(&alice), "the sim names the impersonated user: {out}");
    let (ok, out) = w.as_user(&alice, &["get", "nodes"]);
    assert!(!ok && out.contains("Forbidden"), "a project member cannot list nodes: {out}");
    // The same through the server's proxy, with the kubeconfig alice generates for herself.
    let (code, login) = api(
        &w.server.url,
        "POST",
        "/v3-public/localProviders/local?action=login",
        "",
        Some(json!({"username": "alice", "password": "alice-password-11"})),
    )
    .await;
    assert_eq!(code, 201, "{login}");
    let session = login["token"].as_str().unwrap();
    let (code, kc) = api(
        &w.server.url,
        "POST",
        &format!("/v3/clusters/{CLUSTER}?action=generateKubeconfig"),
        session,
        None,
    )
    .await;
    assert_eq!(code, 200, "{kc}");
    let alice_kc = w.dir.path().join("alice.kubeconfig");
    std::fs::write(&alice_kc, kc["config"].as_str().unwrap()).unwrap();
    let (ok, out) = kubectl_at(&alice_kc, &["get", "pods", "-n", "shop"]);
    assert!(ok, "through the proxy: {out}");
    let (ok, out) = kubectl_at(&alice_kc, &["get", "pods", "-n", "other"]);
    assert!(!ok && out.contains("Forbidden") && out.contains(&alice), "through the proxy: {out}");
    let (_, out) = kubectl_at(&alice_kc, &["auth", "can-i", "create", "deployments", "-n", "shop"]);
    assert_eq!(out.trim(), "yes");
    let (_, out) = kubectl_at(&alice_kc, &["auth", "can-i", "list", "pods", "-n", "other"]);
    assert_eq!(out.trim(), "no");

    // What we made is labelled: project-member renders its own ClusterRole (its management rules)
    // and, through the external `edit` template it inherits, a binding to Kubernetes' own `edit`.
    let (ok, out) = w.kubectl(&["-n", "shop", "get", "rolebindings", "-l", MANAGED, "-o", "json"]);
    assert!(ok, "{out}");
    let rbs: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut refs: Vec<&str> =
        rbs["items"].as_array().unwrap().iter().map(|i| i["roleRef"]["name"].as_str().unwrap()).collect();
    refs.sort();
    assert_eq!(refs, ["cattle-rt-project-member", "edit"], "{out}");
    assert!(rbs["items"].as_array().unwrap().iter().all(|i| i["subjects"][0]["name"] == alice.as_str()));
    let (ok, out) = w.kubectl(&["get", "clusterrole", "cattle-rt-project-member", "-o", "jsonpath={.rules}"]);
    assert!(ok && out.contains("projectroletemplatebindings"), "{out}");
    // Edit-like: no quota or RBAC changes.
    let (_, out) = kubectl_at(&alice_kc, &["auth", "can-i", "create", "resourcequotas", "-n", "shop"]);
    assert_eq!(out.trim(), "no");
    let (_, out) = kubectl_at(&alice_kc, &["auth", "can-i", "create", "rolebindings", "-n", "shop"]);
    assert_eq!(out.trim(), "no");

    // Our RoleBindings deleted by hand come back; alice keeps her access.
    let before = w.role_bindings("shop");
    let (ok, out) = w.kubectl(&["-n", "shop", "delete", "rolebindings", "-l", MANAGED]);
    assert!(ok, "{out}");
    let deleted_at = tokio::time::Instant::now();
    eventually(WAIT, "our RoleBindings are put back", || {
        let now = w.role_bindings("shop");
        let before = before.clone();
        async move { (now == before).then_some(()) }
    })
    .await;
    eprintln!("hand-deleted RoleBindings restored within {:?}", deleted_at.elapsed());
    w.wait_access(&alice, &pods_in("shop"), true, "alice lists pods in shop again").await;

    // A read-only member of P lists pods but cannot read Secrets (view-like).
    let dora = w.user("dora", "dora-password-44").await;
    let (code, b) = w
        .call(
            "POST",
            "/v3/projectroletemplatebindings",
            Some(json!({"spec": {"projectName": shop, "roleTemplateName": "read-only",
                                 "userName": dora}})),
        )
        .await;
    assert_eq!(code, 201, "{b}");
    let dora_prtb = b["id"].as_str().unwrap().to_owned();
    w.wait_access(&dora, &pods_in("shop"), true, "dora lists pods in shop").await;
    let (ok, out) = w.as_user(&dora, &["get", "secrets", "-n", "shop"]);
    assert!(!ok && out.contains("Forbidden"), "read-only reads no secrets: {out}");
    let (ok, out) = w.as_user(&dora, &["create", "configmap", "x", "-n", "shop"]);
    assert!(!ok && out.contains("is forbidden: User"), "read-only writes nothing: {out}");

    // A namespace annotated into P later gets the RoleBinding.
    w.wait_access(&alice, &pods_in("later"), false, "later is not in P yet").await;
    let (ok, out) =
        w.kubectl(&["annotate", "namespace", "later", &format!("field.cattle.io/projectId={shop}")]);
    assert!(ok, "{out}");
    w.wait_access(&alice, &pods_in("later"), true, "alice lists pods in later once it joins P").await;

    // A custom template with inheritance, bound through a cluster binding; then the template changes.
    let (code, rt) = w
        .call(
            "POST",
            "/v3/roletemplates",
            Some(json!({"metadata": {"name": "node-reader"},
                        "spec": {"context": "cluster", "roleTemplateNames": ["ns-reader"],
                                 "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["nodes"]}]}})),
        )
        .await;
    assert_eq!(code, 201, "{rt}");
    let (code, rt) = w
        .call(
            "POST",
            "/v3/roletemplates",
            Some(json!({"metadata": {"name": "ns-reader"},
                        "spec": {"context": "cluster", "roleTemplateNames": ["node-reader"],
                                 "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["namespaces"]}]}})),
        )
        .await;
    assert_eq!(code, 201, "{rt}");
    let (code, crtb) = w
        .call(
            "POST",
            "/v3/clusterroletemplatebindings",
            Some(json!({"metadata": {"name": "bob-nodes"},
                        "spec": {"clusterName": CLUSTER, "roleTemplateName": "node-reader", "userName": bob}})),
        )
        .await;
    assert_eq!(code, 201, "{crtb}");
    w.wait_access(&bob, &["get", "nodes"], true, "bob lists nodes").await;
    w.wait_access(&bob, &["get", "namespaces"], true, "bob lists namespaces (inherited, through a cycle)")
        .await;
    w.wait_access(&bob, &["get", "pods", "-A"], false, "bob cannot list pods").await;
    let (code, mut rt) = w.call("GET", "/v3/roletemplates/node-reader", None).await;
    assert_eq!(code, 200);
    rt["spec"]["rules"] =
        json!([{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["nodes", "pods"]}]);
    let (code, body) = w.call("PUT", "/v3/roletemplates/node-reader", Some(rt)).await;
    assert_eq!(code, 200, "{body}");
    w.wait_access(&bob, &["get", "pods", "-A"], true, "bob lists pods once the template allows it").await;

    // Removing the bindings removes what they rendered, and only that.
    let (code, body) =
        w.call("DELETE", &format!("/v3/projectroletemplatebindings/{shop_name}:alice-member"), None).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = w.call("DELETE", &format!("/v3/projectroletemplatebindings/{dora_prtb}"), None).await;
    assert_eq!(code, 200, "{body}");
    w.wait_access(&alice, &pods_in("shop"), false, "alice loses shop").await;
    w.wait_access(&dora, &pods_in("shop"), false, "dora loses shop").await;
    w.wait_access(&alice, &pods_in("later"), false, "alice loses later").await;
    eventually(WAIT, "our RoleBindings are gone", || {
        let (shop, later) = (w.role_bindings("shop"), w.role_bindings("later"));
        async move { (shop == ["hand-made"] && later.is_empty()).then_some(()) }
    })
    .await;
    let (code, body) =
        w.call("DELETE", &format!("/v3/clusterroletemplatebindings/{CLUSTER}:bob-nodes"), None).await;
    assert_eq!(code, 200, "{body}");
    w.wait_access(&bob, &["get", "nodes"], false, "bob loses nodes").await;
    // Only the cluster creator's cluster-owner binding (made with the cluster) and the global admin's
    // binding to cluster-admin are left of ours.
    let admin_crb = format!("clusterrolebinding.rbac.authorization.k8s.io/globaladmin-{admin_id}");
    eventually(WAIT, "only the creator's ClusterRoleBinding and ClusterRole of ours are left", || {
        let (ok1, crbs) = w.kubectl(&["get", "clusterrolebindings", "-l", MANAGED, "-o", "name"]);
        let (ok2, roles) = w.kubectl(&["get", "clusterroles", "-l", MANAGED, "-o", "name"]);
        let admin_crb = admin_crb.clone();
        async move {
            let admin_bound = crbs.lines().any(|l| l == admin_crb);
            let crbs =
                crbs.lines().filter(|l| l.starts_with("clusterrolebinding") && *l != admin_crb).count();
            let roles: Vec<&str> = roles.lines().collect();
            (ok1 && ok2
                && admin_bound
                && crbs == 1
                && roles == ["clusterrole.rbac.authorization.k8s.io/cattle-rt-cluster-owner"])
            .then_some(())
        }
    })
    .await;
    let (ok, _) = w.kubectl(&["-n", "shop", "get", "rolebinding", "hand-made"]);
    assert!(ok, "the hand-made RoleBinding survived");
    let (ok, _) = w.kubectl(&["get", "clusterrole", "view"]);
    assert!(ok, "the sim's own ClusterRoles are untouched");
}

/// The lines of the server's log after the last one that holds every one of `marks`.
fn log_after(w: &World, marks: &[&str]) -> Option<Vec<String>> {
    let text = w.server.proc.log_text();
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().rposition(|l| marks.iter().all(|m| l.contains(m)))?;
    Some(lines[at + 1..].iter().map(|l| (*l).to_owned()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnected_cluster_is_resynced_and_a_disconnected_one_is_left_alone() {
    const C: &str = "resync-c";
    let mut w = World::start(C, rancher_sim::Sim::builder(), &[]).await;
    let alice = w.user("alice", "alice-password-11").await;
    let (_, users) = w.call("GET", "/v3/users", None).await;
    let admin_id =
        users["data"].as_array().unwrap().iter().find(|u| u["spec"]["username"] == "admin").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
    w.wait_access(&admin_id, &["get", "secrets", "-A"], true, "the first sync bound the creator").await;
    let attempt = |l: &str| l.contains("downstream sync attempt") && l.contains(C);
    assert!(w.server.proc.log_text().lines().any(attempt), "attempts are logged");

    // The agent leaves: the cluster's supervisor stops, and with it every sync of the cluster.
    w.agent.signal("TERM");
    assert!(w.agent.exit_within(WAIT).await.is_some(), "the agent stops on SIGTERM");
    eventually(WAIT, "the cluster's supervisor stops", || {
        let stopped = log_after(&w, &["cluster supervisor stopped", C]).is_some();
        async move { stopped.then_some(()) }
    })
    .await;
    // A change that would cost a sync, while nobody can be reached.
    let (code, b) = w
        .call(
            "POST",
            "/v3/clusterroletemplatebindings",
            Some(json!({"metadata": {"name": "alice-owner"},
                        "spec": {"clusterName": C, "roleTemplateName": "cluster-owner", "userName": alice}})),
        )
        .await;
    assert_eq!(code, 201, "{b}");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let after = log_after(&w, &["cluster supervisor stopped", C]).unwrap();
    let late: Vec<&String> = after.iter().filter(|l| attempt(l.as_str())).collect();
    assert!(late.is_empty(), "no sync of a disconnected cluster: {late:?}");
    let (ok, out) = w.as_user(&alice, &["get", "secrets", "-A"]);
    assert!(!ok && out.contains("orbidden"), "nothing reached the cluster meanwhile: {out}");

    // The agent comes back: a new supervisor syncs what changed through the new session.
    w.agent = start_agent(&w.agent_env, &w.kubeconfig, &w.dir.path().join("agent-2.log"), &[]);
    w.wait_access(&alice, &["get", "secrets", "-A"], true, "the binding made while away is rendered").await;
    let after = log_after(&w, &["cluster supervisor stopped", C]).unwrap();
    assert!(after.iter().any(|l| l.contains("cluster supervisor started") && l.contains(C)), "{after:?}");
    assert!(after.iter().any(|l| attempt(l)), "the new supervisor syncs");
}
