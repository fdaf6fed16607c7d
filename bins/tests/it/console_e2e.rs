//! The web console in a real headless Chromium (WebDriver) against the real server: log in, import a
//! cluster from the console and see it go from waiting to active without reloading when its agent
//! connects (a `rancher-sim` cluster), its page with nodes and conditions; the session cookie is
//! out of the page's reach; a user without rights sees neither the admin pages nor the cluster, and
//! sees the cluster appear once made its member — without reloading either.
//!
//! With `RANCHER_CONSOLE_SCREENSHOTS=DIR` the main pages are saved there as PNG (the README's).

use std::path::PathBuf;
use std::time::Duration;

use rancher_test_support::browser::Browser;
use serde_json::{Value, json};

use crate::import_support::*;

async fn api(server: &Server, bearer: &str, method: reqwest::Method, path: &str, body: Value) -> Value {
    let mut req = insecure_client().request(method, format!("{}{path}", server.url)).bearer_auth(bearer);
    if !body.is_null() {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!((200..300).contains(&code), "{path}: {code} {v}");
    v
}

/// A kubeconfig that reaches `cluster` through the server's proxy with `token`.
fn proxied_kubeconfig(server: &Server, cluster: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}/k8s/clusters/{cluster}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n",
        server.url
    )
}

async fn log_in(browser: &Browser, user: &str, password: &str) {
    let name = browser.wait_for("#username", WAIT).await;
    browser.type_into(&name, user).await;
    browser.type_into(&browser.wait_for("#password", WAIT).await, password).await;
    browser.click(&browser.wait_for("#login", WAIT).await).await;
}

fn screenshots() -> Option<PathBuf> {
    std::env::var_os("RANCHER_CONSOLE_SCREENSHOTS").map(PathBuf::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_imports_a_cluster_that_turns_active_live_and_shows_each_user_their_own() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let server = Server::start(
        &dir.path().join("data"),
        0,
        &dir.path().join("server.log"),
        &["--audit-log", audit.to_str().unwrap()],
    )
    .await;
    let admin = login(&server.url).await;

    // The page is served with a policy that allows only the server's own scripts.
    let page = insecure_client().get(format!("{}/dashboard/", server.url)).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");

    let browser = Browser::start().await;
    browser.goto(&format!("{}/", server.url)).await;
    log_in(&browser, "admin", "not-the-password-1").await;
    let refused = browser.wait_text("[role=alert]", WAIT, |t| !t.is_empty()).await;
    assert!(refused.to_lowercase().contains("password"), "{refused}");
    let password = browser.wait_for("#password", WAIT).await;
    browser.execute("document.getElementById('password').value = ''; return null").await;
    browser.type_into(&password, ADMIN_PASSWORD).await;
    browser.click(&browser.wait_for("#login", WAIT).await).await;
    browser.wait_for("#clusters table, #clusters p", WAIT).await;

    // The session is the HttpOnly cookie: the page's scripts see only the CSRF token, and nothing
    // is kept in storage.
    let seen = browser.execute("return [document.cookie, localStorage.length, sessionStorage.length]").await;
    let cookies = seen[0].as_str().unwrap();
    assert!(cookies.contains("CSRF=") && !cookies.contains("R_SESS"), "{cookies}");
    assert_eq!((seen[1].as_u64(), seen[2].as_u64()), (Some(0), Some(0)));

    // Import from the console: the command to run shows.
    browser.click(&browser.wait_for("#import-link", WAIT).await).await;
    browser.type_into(&browser.wait_for("#cluster-name", WAIT).await, "web").await;
    browser.click(&browser.wait_for("#create-import", WAIT).await).await;
    let command =
        browser.wait_text("#import-command", WAIT, |t| t.starts_with("kubectl apply -f https://")).await;
    let manifest_url = command.trim_start_matches("kubectl apply -f ").trim().to_owned();

    // The list shows it waiting; the agent connects; the same page shows it active.
    browser.goto(&format!("{}/dashboard/#/clusters", server.url)).await;
    let first = browser.wait_text("[data-cluster=web]", WAIT, |t| !t.is_empty()).await;
    assert_ne!(first, "active");
    browser.execute("window.notReloaded = true; return null").await;
    let sim = rancher_sim::Sim::builder().name("web").nodes(3).start().await.unwrap();
    let kc = dir.path().join("web.kubeconfig");
    std::fs::write(&kc, sim.kubeconfig_yaml()).unwrap();
    let env = apply_manifest(&manifest_url, &kc, dir.path()).await;
    let _agent = start_agent(&env, &kc, &dir.path().join("agent.log"), &[]);
    browser.wait_text("[data-cluster=web]", WAIT, |t| t == "active").await;
    assert_eq!(browser.execute("return window.notReloaded === true").await, json!(true), "no reload");
    if let Some(d) = screenshots() {
        std::fs::create_dir_all(&d).unwrap();
        browser.wait_text("#clusters", WAIT, |t| t.contains("imported")).await;
        browser.screenshot(&d.join("clusters.png")).await;
    }

    // The cluster's page: state, nodes (through the authentication proxy), conditions.
    browser.click(&browser.wait_for("#clusters a[href='#/clusters/web']", WAIT).await).await;
    browser.wait_text("#cluster-state", WAIT, |t| t == "active").await;
    let text =
        browser.wait_text("main", WAIT, |t| t.contains("Ready") && t.matches("True").count() >= 3).await;
    assert!(text.contains("Conditions") && text.contains("Connected"), "{text}");
    if let Some(d) = screenshots() {
        browser.screenshot(&d.join("cluster.png")).await;
    }

    // The kubectl shell: the page runs get nodes against the cluster's API through the proxy, as
    // the user; what it does not run is refused, and nothing runs on the server.
    browser.click(&browser.wait_for("#shell-link", WAIT).await).await;
    let input = browser.wait_for("#shell-input:not([disabled])", WAIT).await;
    browser.type_into(&input, "get nodes").await;
    browser.click(&browser.wait_for("#shell-run", WAIT).await).await;
    let out = browser.wait_text("#shell-output", WAIT, |t| t.contains("[exit")).await;
    assert!(out.contains("web-control-plane") && out.contains("Ready") && out.contains("[exit 0]"), "{out}");
    for refused in ["cp web:/etc/passwd /tmp/x", "get nodes --server=http://169.254.169.254"] {
        let input = browser.wait_for("#shell-input:not([disabled])", WAIT).await;
        browser.type_into(&input, refused).await;
        browser.click(&browser.wait_for("#shell-run", WAIT).await).await;
    }
    let out = browser.wait_text("#shell-output", WAIT, |t| t.matches("[exit").count() == 3).await;
    assert!(out.contains("\"cp\" does not run in the browser"), "{out}");
    assert!(out.contains("--server=http://169.254.169.254: not a flag this shell knows"), "{out}");
    let input = browser.wait_for("#shell-input:not([disabled])", WAIT).await;
    browser.type_into(&input, "get pods -A -o name").await;
    browser.click(&browser.wait_for("#shell-run", WAIT).await).await;
    browser.wait_text("#shell-output", WAIT, |t| t.matches("[exit 0]").count() == 2).await;
    if let Some(d) = screenshots() {
        browser.screenshot(&d.join("shell.png")).await;
    }

    // What the shell did is in the audit log, for admins.
    browser.goto(&format!("{}/dashboard/#/audit", server.url)).await;
    let log = browser.wait_text("#audit", WAIT, |t| t.contains("nodes")).await;
    assert!(log.lines().any(|l| l.contains("web") && l.contains("list") && l.contains("nodes")), "{log}");

    // Create, with a form made from the provisioner's settings schema; the server's refusal names
    // the field.
    browser.goto(&format!("{}/dashboard/#/create", server.url)).await;
    browser.click(&browser.wait_for("#driver option[value=GKE]", WAIT).await).await;
    browser.wait_text("#settings legend", WAIT, |t| t.contains("spec.gkeConfig")).await;
    assert!(browser.find("input#setting-projectID").await.is_some(), "a text field per string setting");
    assert!(browser.find("textarea#setting-nodePools").await.is_some(), "JSON for a list of pools");
    browser.type_into(&browser.wait_for("#new-cluster-name", WAIT).await, "gke-one").await;
    browser.type_into(&browser.wait_for("#setting-nodePools", WAIT).await, "[not json").await;
    browser.click(&browser.wait_for("#create-submit", WAIT).await).await;
    let e = browser.wait_text("[role=alert]", WAIT, |t| !t.is_empty()).await;
    assert!(e.contains("nodePools: not JSON"), "{e}");
    browser.execute("document.getElementById('setting-nodePools').value = ''; return null").await;
    browser.click(&browser.wait_for("#create-submit", WAIT).await).await;
    let e = browser.wait_text("[role=alert]", WAIT, |t| t.contains("gkeConfig")).await;
    assert!(e.contains("spec.gkeConfig"), "the server names the field: {e}");

    // Users, for admins: add one, disable them, and their login is refused.
    browser.goto(&format!("{}/dashboard/#/users", server.url)).await;
    browser.type_into(&browser.wait_for("#new-username", WAIT).await, "dave").await;
    browser.type_into(&browser.wait_for("#new-password", WAIT).await, "dave-password-123").await;
    browser.click(&browser.wait_for("#new-user-submit", WAIT).await).await;
    browser.click(&browser.wait_for("button[data-user=dave]", WAIT).await).await;
    browser.wait_text("button[data-user=dave]", WAIT, |t| t == "Enable").await;
    let refused = insecure_client()
        .post(format!("{}/v3-public/localProviders/local?action=login", server.url))
        .json(&json!({"username": "dave", "password": "dave-password-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401, "a disabled user cannot log in");
    browser.goto(&format!("{}/dashboard/#/roles", server.url)).await;
    browser.wait_text("main", WAIT, |t| t.contains("cluster-owner") && t.contains("Standard User")).await;

    // A project member added in the console: their kubectl reaches the project's namespace, and
    // before it did not.
    for name in ["bob", "carol"] {
        let body =
            json!({"spec": {"username": name, "password": format!("{name}-password-123"), "enabled": true}});
        api(&server, &admin, reqwest::Method::POST, "/v3/users", body).await;
    }
    let bob_token = login_as(&server.url, "bob", "bob-password-123").await;
    let bob_kubeconfig = dir.path().join("bob.kubeconfig");
    std::fs::write(&bob_kubeconfig, proxied_kubeconfig(&server, "web", &bob_token)).unwrap();
    let bob_gets_pods = || {
        std::process::Command::new(kubectl())
            .arg("--kubeconfig")
            .arg(&bob_kubeconfig)
            .args(["get", "pods", "-n", "default"])
            .output()
            .unwrap()
    };
    assert!(!bob_gets_pods().status.success(), "bob has no access yet");
    let projects =
        api(&server, &admin, reqwest::Method::GET, "/v3/projects?clusterId=web", json!(null)).await;
    let default = projects["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["spec"]["displayName"] == "Default")
        .unwrap_or_else(|| panic!("no Default project: {projects}"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    browser.goto(&format!("{}/dashboard/#/clusters/web", server.url)).await;
    browser
        .click(
            &browser.wait_for(&format!("a[href='#/projects/{}']", default.replace(':', "%3A")), WAIT).await,
        )
        .await;
    browser.wait_text("main", WAIT, |t| t.contains("default")).await;
    browser.type_into(&browser.wait_for("#member-login", WAIT).await, "bob").await;
    browser.click(&browser.wait_for("#add-member-submit", WAIT).await).await;
    browser
        .wait_text("#project-members", WAIT, |t| t.contains("bob (u-") && t.contains("project-member"))
        .await;
    if let Some(d) = screenshots() {
        browser.screenshot(&d.join("project.png")).await;
    }
    eventually(WAIT, "bob reaches the project's namespace", || async {
        bob_gets_pods().status.success().then_some(())
    })
    .await;

    // A user without rights: no admin pages and no cluster — until made its member, on the page as
    // it is.
    browser.click(&browser.wait_for("#nav button", WAIT).await).await;
    log_in(&browser, "carol", "carol-password-123").await;
    browser.wait_text("#clusters", WAIT, |t| t.contains("No clusters you may see")).await;
    assert_eq!(browser.count("a[href='#/users']").await, 0, "no Users page for carol");
    assert_eq!(browser.count("a[href='#/audit']").await, 0, "no audit log for carol");
    browser.execute("window.notReloaded = true; return null").await;
    let users = api(&server, &admin, reqwest::Method::GET, "/v3/users", json!(null)).await;
    let carol = users["data"].as_array().unwrap().iter().find(|u| u["spec"]["username"] == "carol").unwrap()
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api(
        &server,
        &admin,
        reqwest::Method::POST,
        "/v3/clusterroletemplatebindings",
        json!({"metadata": {"namespace": "web"}, "spec": {"clusterName": "web", "userName": carol, "roleTemplateName": "cluster-member"}}),
    )
    .await;
    browser.wait_text("#clusters", WAIT, |t| t.contains("web")).await;
    assert_eq!(browser.execute("return window.notReloaded === true").await, json!(true), "no reload");
    // The users' page asked for by its address shows the refusal, not data.
    browser.goto(&format!("{}/dashboard/#/users", server.url)).await;
    let refusal = browser.wait_text("[role=alert]", WAIT, |t| !t.is_empty()).await;
    assert!(refusal.contains("forbidden"), "{refusal}");
    assert!(!browser.page_text().await.contains("bob"), "no user data on the page");
    drop(browser);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_fits_a_phone_and_labels_every_field() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), 0, &dir.path().join("server.log"), &[]).await;
    let admin = login(&server.url).await;
    for name in ["edge-berlin", "edge-lisbon", "core"] {
        create_imported(&server.url, &admin, name).await;
    }
    let browser = Browser::start_sized(390, 844).await;
    browser.goto(&format!("{}/", server.url)).await;
    let unlabelled = "return [...document.querySelectorAll('input, select, textarea')]\
                      .filter((e) => !e.labels || e.labels.length === 0).map((e) => e.id)";
    browser.wait_for("#username", WAIT).await;
    assert_eq!(browser.execute(unlabelled).await, json!([]), "the login form");
    log_in(&browser, "admin", ADMIN_PASSWORD).await;
    browser.wait_text("#clusters", WAIT, |t| t.contains("edge-lisbon")).await;
    let fits = "return document.documentElement.scrollWidth <= window.innerWidth";
    assert_eq!(browser.execute(fits).await, json!(true), "no sideways scrolling on a phone");
    if let Some(d) = screenshots() {
        std::fs::create_dir_all(&d).unwrap();
        browser.screenshot(&d.join("phone.png")).await;
    }
    for page in ["#/import", "#/create", "#/users"] {
        browser.goto(&format!("{}/dashboard/{page}", server.url)).await;
        browser.wait_for("main form", WAIT).await;
        assert_eq!(browser.execute(unlabelled).await, json!([]), "{page}");
        assert_eq!(browser.execute(fits).await, json!(true), "{page} on a phone");
    }
}
