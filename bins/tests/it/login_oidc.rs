//! OIDC login end to end: the real `rancher-server` configured with `--auth-config` against a real npm
//! `oidc-provider` (the fixture of rancher-auth, run from `.test-deps/oidc`), the browser's part of the
//! authorization-code flow played with plain HTTP requests, and the real `rancherctl login --oidc`.
//!
//! Needs node and `oidc-provider` in `.test-deps/oidc`: run `scripts/install-auth-deps.sh`.

use rancher_test_support::free_port;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{Api, ServerProc, install_crypto};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

struct Idp {
    _child: Child,
    _dir: tempfile::TempDir,
    issuer: String,
    /// The client's registered redirect URI (loopback; the client is `native`, so any port works).
    redirect_uri: String,
}

impl Idp {
    async fn start() -> Self {
        let redirect_uri = format!("http://127.0.0.1:{}/callback", free_port());
        // A native client (RFC 8252): the provider accepts its loopback redirect URI on any port, as
        // `rancherctl login --oidc` listens on a port it is given by the system.
        Self::start_at(free_port(), redirect_uri, true).await
    }

    /// The provider at `http://127.0.0.1:<port>` whose one client redirects to `redirect_uri` (a
    /// native client, or a web one).
    async fn start_at(port: u16, redirect_uri: String, native: bool) -> Self {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let modules = repo.join(".test-deps/oidc/node_modules");
        assert!(
            modules.join("oidc-provider/package.json").exists(),
            "npm oidc-provider is not installed in .test-deps/oidc: run scripts/install-auth-deps.sh"
        );
        let fixture = repo.join("crates/rancher-auth/tests/fixtures/oidc/server.mjs");
        let mut script = std::fs::read_to_string(&fixture).unwrap();
        if native {
            let patched = script.replacen(
                "response_types: ['code'],",
                "response_types: ['code'], application_type: 'native',",
                1,
            );
            assert_ne!(patched, script, "the fixture's client definition changed: update this test");
            script = patched;
        }
        let http = reqwest::Client::new();
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("server.mjs"), &script).unwrap();
            std::os::unix::fs::symlink(&modules, dir.path().join("node_modules")).unwrap();
            let issuer = format!("http://127.0.0.1:{port}");
            let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
            let mut child = Command::new("node")
                .arg("server.mjs")
                .current_dir(dir.path())
                .env("PORT", port.to_string())
                .env("REDIRECT_URI", &redirect_uri)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("node is not installed: install Node.js >= 20, then scripts/install-auth-deps.sh");
            let discovery = format!("{issuer}/.well-known/openid-configuration");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while tokio::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                if http.get(&discovery).send().await.is_ok_and(|r| r.status().is_success()) {
                    return Self { _child: child, _dir: dir, issuer, redirect_uri };
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            last_log = std::fs::read_to_string(dir.path().join("node.log")).unwrap_or_default();
        }
        panic!("oidc-provider did not start; its log:\n{last_log}");
    }

    async fn set_groups(&self, account: &str, groups: &[&str]) {
        let resp = reqwest::Client::new()
            .put(format!("{}/test/groups/{account}", self.issuer))
            .body(serde_json::to_vec(groups).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
    }

    /// Plays the browser: follows `authorize_url` through the dev login and consent pages as `account`
    /// and returns the final redirect (to `redirect_uri`, not followed).
    async fn browser(&self, authorize_url: &str, account: &str, redirect_uri: &str) -> url::Url {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let base = url::Url::parse(&self.issuer).unwrap();
        let mut cookies = BTreeMap::new();
        let mut location = url::Url::parse(authorize_url).unwrap();
        assert!(location.as_str().starts_with(&self.issuer), "{location}");
        for _step in 0..12 {
            if location.as_str().starts_with(redirect_uri) {
                return location;
            }
            let resp = with_cookies(http.get(location.clone()), &cookies).send().await.unwrap();
            keep_cookies(&resp, &mut cookies);
            let resp = if resp.status().is_redirection() {
                resp
            } else {
                assert_eq!(resp.status(), 200, "GET {location}");
                let page = resp.text().await.unwrap();
                let form: Vec<(&str, &str)> = if page.contains(r#"name="prompt" value="login""#) {
                    vec![("prompt", "login"), ("login", account), ("password", "any password works here")]
                } else if page.contains(r#"name="prompt" value="consent""#) {
                    vec![("prompt", "consent")]
                } else {
                    panic!("unexpected page at {location}:\n{page}");
                };
                let resp =
                    with_cookies(http.post(location.clone()).form(&form), &cookies).send().await.unwrap();
                keep_cookies(&resp, &mut cookies);
                assert!(resp.status().is_redirection(), "POST {location}: {}", resp.status());
                resp
            };
            let next = resp.headers()[reqwest::header::LOCATION].to_str().unwrap();
            location = base.join(next).unwrap();
        }
        panic!("the flow did not reach the redirect URI");
    }
}

fn with_cookies(req: reqwest::RequestBuilder, cookies: &BTreeMap<String, String>) -> reqwest::RequestBuilder {
    if cookies.is_empty() {
        return req;
    }
    let header = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
    req.header(reqwest::header::COOKIE, header)
}

fn keep_cookies(resp: &reqwest::Response, cookies: &mut BTreeMap<String, String>) {
    for value in resp.headers().get_all(reqwest::header::SET_COOKIE) {
        let pair = value.to_str().unwrap().split(';').next().unwrap();
        if let Some((k, v)) = pair.split_once('=') {
            cookies.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
}

fn query_of(url: &url::Url) -> BTreeMap<String, String> {
    url.query_pairs().into_owned().collect()
}

struct Env {
    idp: Idp,
    server: ServerProc,
    api: Api,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn start(refresh_interval: &str) -> Env {
        install_crypto();
        let idp = Idp::start().await;
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("auth.yaml");
        std::fs::write(
            &conf,
            format!(
                "oidc:\n  issuer: {}\n  clientId: rancher\n  clientSecret: rancher-secret\nrefreshInterval: {refresh_interval}\n",
                idp.issuer
            ),
        )
        .unwrap();
        let data = dir.path().join("data");
        let server = ServerProc::start(
            &data,
            0,
            Some(crate::common::ADMIN_PASSWORD),
            &["--auth-config", conf.to_str().unwrap()],
        );
        let api = Api::new(&server);
        Env { idp, server, api, _dir: dir }
    }

    async fn authorize(&self, redirect_uri: &str) -> crate::common::Answer {
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("redirectUri", redirect_uri)
            .finish();
        self.api.get(&format!("/v3-public/oidcProviders/oidc?action=authorize&{q}")).await
    }

    async fn login(&self, code: &str, state: &str) -> crate::common::Answer {
        self.api
            .post("/v3-public/oidcProviders/oidc?action=login", &json!({"code": code, "state": state}))
            .await
    }

    /// authorize → browser → (code, state).
    async fn code_for(&self, account: &str) -> (String, String) {
        let a = self.authorize(&self.idp.redirect_uri).await;
        assert_eq!(a.code, 200, "{}", a.body);
        let state = a.body["state"].as_str().unwrap().to_owned();
        let back =
            self.idp.browser(a.body["redirectUrl"].as_str().unwrap(), account, &self.idp.redirect_uri).await;
        let q = query_of(&back);
        assert_eq!(q.get("state"), Some(&state), "{back}");
        (q["code"].clone(), state)
    }
}

fn groups_of(token: &Value) -> Vec<String> {
    let mut g: Vec<String> = token["spec"]["groupPrincipals"]
        .as_array()
        .unwrap_or_else(|| panic!("no groupPrincipals in {token}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    g.sort();
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_login_issues_a_token_with_the_users_groups() {
    let env = Env::start("5m").await;
    let (code, state) = env.code_for("alice").await;
    let session = env.login(&code, &state).await;
    assert_eq!(session.code, 201, "{}", session.body);
    assert_eq!(session.body["spec"]["authProvider"], "oidc", "{}", session.body);
    assert_eq!(groups_of(&session.body), ["oidc_group://admins", "oidc_group://devs"]);
    let user_id = session.body["spec"]["userId"].as_str().unwrap().to_owned();
    assert!(user_id.starts_with("u-"), "{user_id}");

    // The token works on /v3 and names the OIDC user.
    let alice = env.api.with_token(session.body["token"].as_str().unwrap());
    let me = alice.get(&format!("/v3/users/{user_id}")).await;
    assert_eq!(me.code, 200, "{}", me.body);
    assert!(
        me.body["spec"]["principalIds"].as_array().unwrap().iter().any(|p| p == "oidc_user://alice"),
        "{}",
        me.body
    );

    // A second login finds the same user.
    let (code, state) = env.code_for("alice").await;
    let again = env.login(&code, &state).await;
    assert_eq!((again.code, again.body["spec"]["userId"].as_str()), (201, Some(user_id.as_str())));

    let log = env.server.stdout_lines.join("\n");
    assert!(!log.contains(&code), "a code is in the server log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_states_and_codes_and_foreign_redirects_are_refused() {
    let env = Env::start("5m").await;
    let (code, state) = env.code_for("bob").await;
    let first = env.login(&code, &state).await;
    assert_eq!(first.code, 201, "{}", first.body);
    // The same state and code again: the state was used.
    let replay = env.login(&code, &state).await;
    crate::common::assert_status(&replay, 401, "Unauthorized");
    // The used code with a fresh, valid state: the provider refuses the code.
    let fresh = env.authorize(&env.idp.redirect_uri).await;
    let fresh_state = fresh.body["state"].as_str().unwrap();
    let replay = env.login(&code, fresh_state).await;
    crate::common::assert_status(&replay, 401, "Unauthorized");
    // A made-up state.
    let unknown = env.login("whatever", "no-such-state").await;
    crate::common::assert_status(&unknown, 401, "Unauthorized");
    // Redirects only to loopback or the server itself.
    for bad in ["https://evil.example.org/cb", "http://127.0.0.1/cb", "http://localhost.evil.org:1/cb"] {
        let a = env.authorize(bad).await;
        crate::common::assert_status(&a, 400, "BadRequest");
    }
    let own = env.authorize(&format!("{}/verify-auth", env.server.url)).await;
    assert_eq!(own.code, 200, "{}", own.body);
    // Missing fields.
    let a = env.api.post("/v3-public/oidcProviders/oidc?action=login", &json!({"code": "x"})).await;
    crate::common::assert_status(&a, 400, "BadRequest");
    // GitHub is not configured here.
    let a = env
        .api
        .get("/v3-public/githubProviders/github?action=authorize&redirectUri=http://127.0.0.1:1/")
        .await;
    crate::common::assert_status(&a, 404, "NotFound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_change_at_the_provider_reaches_the_token_within_the_refresh_interval() {
    let env = Env::start("1s").await;
    let (code, state) = env.code_for("carol").await;
    let session = env.login(&code, &state).await;
    assert_eq!(session.code, 201, "{}", session.body);
    assert_eq!(groups_of(&session.body), ["oidc_group://ops"]);
    let name = session.body["metadata"]["name"].as_str().unwrap().to_owned();
    let user_id = session.body["spec"]["userId"].as_str().unwrap().to_owned();
    let carol = env.api.with_token(session.body["token"].as_str().unwrap());

    env.idp.set_groups("carol", &["auditors"]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let t = carol.get(&format!("/v3/tokens/{name}")).await;
        assert_eq!(t.code, 200, "{}", t.body);
        let u = carol.get(&format!("/v3/users/{user_id}")).await;
        if groups_of(&t.body) == ["oidc_group://auditors"]
            && u.body["status"]["groupPrincipals"] == json!(["oidc_group://auditors"])
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "groups not refreshed: {} / {}", t.body, u.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `rancherctl` with its config under `home`.
fn rancherctl(home: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rancherctl"));
    cmd.env("HOME", home).env("XDG_CONFIG_HOME", home.join(".config")).env_remove("RANCHER_PASSWORD");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rancherctl_login_oidc_prints_the_url_and_saves_the_token() {
    let env = Env::start("5m").await;
    let home = tempfile::tempdir().unwrap();
    let ca = home.path().join("ca.crt");
    std::fs::write(&ca, env.server.ca_pem()).unwrap();
    let mut child = rancherctl(home.path())
        .args(["login", &env.server.url, "--oidc", "--cacert"])
        .arg(&ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).expect("rancherctl printed no URL");
    let url =
        line.strip_prefix("open this URL in a browser: ").unwrap_or_else(|| panic!("{line}")).to_owned();
    let redirect = query_of(&url::Url::parse(&url).unwrap())["redirect_uri"].clone();
    assert!(redirect.starts_with("http://127.0.0.1:"), "{redirect}");
    let back = env.idp.browser(&url, "alice", &redirect).await;
    // The browser follows the redirect to rancherctl's loopback listener.
    let page = reqwest::get(back.as_str()).await.unwrap();
    assert_eq!(page.status(), 200);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The reader thread ends at EOF (the process has exited), so this drains every remaining line; a
    // non-blocking read could run before the thread has forwarded the last one.
    let rest: Vec<String> = rx.iter().collect();
    let done = rest.iter().find(|l| l.starts_with("logged in")).unwrap_or_else(|| panic!("{rest:?}"));
    let user_id = done.split(" as ").nth(1).and_then(|r| r.split(' ').next()).unwrap().to_owned();
    assert!(user_id.starts_with("u-"), "{done}");

    // The saved token is alice's: without a role or membership she sees no cluster, with admin she does.
    let admin = env.api.logged_in("admin", crate::common::ADMIN_PASSWORD).await;
    let created = admin.post("/v3/clusters", &json!({"metadata": {"name": "oidc-seen"}})).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let ls = rancherctl(home.path()).args(["cluster", "ls"]).output().unwrap();
    assert!(ls.status.success(), "{}", String::from_utf8_lossy(&ls.stderr));
    assert!(
        !String::from_utf8_lossy(&ls.stdout).contains("oidc-seen"),
        "{}",
        String::from_utf8_lossy(&ls.stdout)
    );
    let grb = admin
        .post("/v3/globalrolebindings", &json!({"spec": {"userName": user_id, "globalRoleName": "admin"}}))
        .await;
    assert_eq!(grb.code, 201, "{}", grb.body);
    let ls = rancherctl(home.path()).args(["cluster", "ls"]).output().unwrap();
    assert!(ls.status.success(), "{}", String::from_utf8_lossy(&ls.stderr));
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains("oidc-seen"),
        "{}",
        String::from_utf8_lossy(&ls.stdout)
    );
}

/// The console's login page offers the OIDC provider as a button: the browser (headless Chromium)
/// goes to the provider, logs in there, comes back to the console with the code, and is logged in;
/// the code leaves the address bar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oidc_user_logs_in_to_the_console() {
    use rancher_test_support::browser::{Browser, WAIT};
    install_crypto();
    // The server finds its provider on first use, so it may start before the provider, whose one
    // redirect URI is the server's console.
    let idp_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("auth.yaml");
    std::fs::write(
        &conf,
        format!("oidc:\n  issuer: http://127.0.0.1:{idp_port}\n  clientId: rancher\n  clientSecret: rancher-secret\n"),
    )
    .unwrap();
    let server = ServerProc::start(
        &dir.path().join("data"),
        0,
        Some(crate::common::ADMIN_PASSWORD),
        &["--auth-config", conf.to_str().unwrap()],
    );
    let _idp = Idp::start_at(idp_port, format!("{}/dashboard/", server.url), false).await;

    let browser = Browser::start().await;
    browser.goto(&format!("{}/", server.url)).await;
    browser.click(&browser.wait_for("#login-oidc", WAIT).await).await;
    // The provider's own pages: its login form, then its consent.
    browser.type_into(&browser.wait_for("input[name=login]", WAIT).await, "alice").await;
    browser.type_into(&browser.wait_for("input[name=password]", WAIT).await, "any password works here").await;
    browser.click(&browser.wait_for("button[type=submit]", WAIT).await).await;
    // The consent page, by its own form (the login page's button may still be there until it goes).
    browser.wait_for("input[name=prompt][value=consent]", WAIT).await;
    browser.click(&browser.wait_for("button[type=submit]", WAIT).await).await;
    browser.wait_for("#clusters", WAIT).await;
    let nav = browser.wait_text("#nav", WAIT, |t| t.contains("Log out")).await;
    assert!(nav.to_lowercase().contains("alice"), "the page shows who logged in: {nav}");
    let address = browser.execute("return location.href").await;
    let address = address.as_str().unwrap();
    assert!(!address.contains("code="), "the code left the address bar: {address}");
    assert_eq!(browser.execute("return sessionStorage.length").await, json!(0));
}
