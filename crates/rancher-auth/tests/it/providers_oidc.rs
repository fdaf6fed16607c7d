//! The OIDC provider against a real npm `oidc-provider` (fixture `tests/fixtures/oidc/server.mjs`)
//! started by each test on loopback. The browser's part of the authorization-code flow (login and
//! consent pages of the provider's dev interactions) is driven with plain HTTP requests.
//!
//! Needs node and `oidc-provider` in `.test-deps/oidc`: run `scripts/install-auth-deps.sh`.

use rancher_test_support::free_port;
use std::{collections::BTreeMap, path::Path, process::Stdio, time::Duration};

use rancher_auth::providers::{
    AuthProvider, AuthorizeRequest, Credentials, Error, Identity, OAuthCallback, Pkce, Principal,
    PrincipalKind, Secret,
    oidc::{OidcConfig, OidcProvider},
};
use tokio::process::{Child, Command};

struct Idp {
    _child: Child,
    _dir: tempfile::TempDir,
    issuer: String,
    redirect_uri: String,
}

impl Idp {
    async fn start() -> Self {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let modules = repo.join(".test-deps/oidc/node_modules");
        assert!(
            modules.join("oidc-provider/package.json").exists(),
            "npm oidc-provider is not installed in .test-deps/oidc: run scripts/install-auth-deps.sh"
        );
        let http = reqwest::Client::new();
        let mut last_log = String::new();
        for _attempt in 0..3 {
            // ESM resolves packages from the script's directory: run a copy next to a node_modules link.
            let dir = tempfile::tempdir().unwrap();
            let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oidc/server.mjs");
            std::fs::copy(fixture, dir.path().join("server.mjs")).unwrap();
            std::os::unix::fs::symlink(&modules, dir.path().join("node_modules")).unwrap();
            let port = free_port();
            let issuer = format!("http://127.0.0.1:{port}");
            // Nothing listens there: the tests read the code from the redirect's Location header.
            let redirect_uri = format!("http://127.0.0.1:{}/callback", free_port());
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

    fn config(&self) -> OidcConfig {
        OidcConfig::new(&self.issuer, "rancher", "rancher-secret").unwrap()
    }

    async fn provider(&self) -> OidcProvider {
        OidcProvider::discover(self.config()).await.unwrap()
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

    /// Plays the browser: follows the authorize URL through the dev login and consent pages as
    /// `account` and returns the `code` from the final redirect, after checking its `state`.
    async fn browser_login(&self, authorize_url: &url::Url, account: &str, state: &str) -> String {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let base = url::Url::parse(&self.issuer).unwrap();
        let mut cookies = BTreeMap::new();
        let mut location = authorize_url.clone();
        for _step in 0..12 {
            if location.as_str().starts_with(&self.redirect_uri) {
                let query: BTreeMap<_, _> = location.query_pairs().into_owned().collect();
                assert_eq!(query.get("state").map(String::as_str), Some(state), "{location}");
                return query.get("code").cloned().unwrap_or_else(|| panic!("no code in {location}"));
            }
            let resp = with_cookies(http.get(location.clone()), &cookies).send().await.unwrap();
            keep_cookies(&resp, &mut cookies);
            let resp = if resp.status().is_redirection() {
                resp
            } else {
                // The dev interaction page: a login form or a consent form, posted back to itself.
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

    /// A full login of `account`: authorize URL, browser, then the pieces for `authenticate`.
    async fn code_for(&self, oidc: &OidcProvider, account: &str) -> (OAuthCallback, AuthorizeRequest) {
        let pkce = Pkce::new_s256();
        let request = AuthorizeRequest::new(self.redirect_uri.clone(), &pkce);
        let url = oidc.authorize_url(&request).await.unwrap();
        let code = self.browser_login(&url, account, &request.state).await;
        (OAuthCallback::new(code, &request, &pkce), request)
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

fn names(groups: &[Principal]) -> Vec<&str> {
    let mut names: Vec<&str> = groups.iter().map(|g| g.display_name.as_str()).collect();
    names.sort();
    names
}

async fn login(oidc: &OidcProvider, callback: OAuthCallback) -> Result<Identity, Error> {
    oidc.authenticate(&Credentials::OAuthCode(callback)).await
}

#[tokio::test]
async fn authorization_code_flow_with_pkce_and_nonce_gives_the_users_groups() {
    let idp = Idp::start().await;
    let oidc = idp.provider().await;
    assert_eq!(oidc.name(), "oidc");

    let pkce = Pkce::new_s256();
    let request = AuthorizeRequest::new(idp.redirect_uri.clone(), &pkce);
    let url = oidc.authorize_url(&request).await.unwrap();
    let query: BTreeMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], "rancher");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"], pkce.challenge);
    assert_eq!(query["nonce"], request.nonce.expose());
    // offline_access (for refresh tokens) is only granted with prompt=consent.
    assert_eq!(query["prompt"], "consent");
    assert!(query["scope"].split(' ').any(|s| s == "openid"), "{}", query["scope"]);

    let code = idp.browser_login(&url, "alice", &request.state).await;
    let identity = login(&oidc, OAuthCallback::new(code, &request, &pkce)).await.unwrap();
    assert_eq!(identity.user.id, "oidc_user://alice");
    assert_eq!(identity.user.login_name, "alice");
    assert_eq!(identity.user.display_name, "Alice Example");
    assert_eq!(identity.user.kind, PrincipalKind::User);
    assert_eq!(names(&identity.groups), ["admins", "devs"]);
    assert_eq!(identity.groups[0].id, "oidc_group://admins");
    assert_eq!(identity.groups[0].kind, PrincipalKind::Group);
}

#[tokio::test]
async fn groups_missing_from_the_id_token_are_read_from_userinfo() {
    let idp = Idp::start().await;
    let oidc = idp.provider().await;
    let (callback, _) = idp.code_for(&oidc, "carol").await;
    let identity = login(&oidc, callback).await.unwrap();
    assert_eq!(names(&identity.groups), ["ops"]);

    // A custom claim name that nobody releases: no groups, but the login works.
    let mut config = idp.config();
    config.groups_claim = "roles".into();
    let other = OidcProvider::discover(config).await.unwrap();
    let (callback, _) = idp.code_for(&other, "alice").await;
    assert!(login(&other, callback).await.unwrap().groups.is_empty());
}

#[tokio::test]
async fn a_wrong_nonce_verifier_or_replayed_code_is_refused() {
    let idp = Idp::start().await;
    let oidc = idp.provider().await;

    // The ID token carries the nonce of the real request; the client expects another.
    let (mut callback, _) = idp.code_for(&oidc, "alice").await;
    callback.nonce = Some(Secret::new("a-nonce-from-another-login"));
    assert!(matches!(login(&oidc, callback).await, Err(Error::InvalidCredentials)));

    // No nonce at all is refused before the code is redeemed.
    let (mut callback, _) = idp.code_for(&oidc, "alice").await;
    callback.nonce = None;
    assert!(matches!(login(&oidc, callback).await, Err(Error::InvalidCredentials)));

    // PKCE: a verifier that does not match the challenge.
    let (mut callback, _) = idp.code_for(&oidc, "alice").await;
    callback.pkce_verifier = Some(Pkce::new_s256().verifier);
    assert!(matches!(login(&oidc, callback).await, Err(Error::InvalidCredentials)));

    // A code works once.
    let (callback, _) = idp.code_for(&oidc, "bob").await;
    assert_eq!(login(&oidc, callback.clone()).await.unwrap().user.id, "oidc_user://bob");
    assert!(matches!(login(&oidc, callback).await, Err(Error::InvalidCredentials)));

    // Password credentials are not something an OIDC provider takes.
    let err = oidc.authenticate(&Credentials::password("alice", "x")).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
}

#[tokio::test]
async fn a_wrong_client_secret_is_refused_as_misconfiguration() {
    let idp = Idp::start().await;
    let mut config = idp.config();
    config.client_secret = Secret::new("not-the-secret");
    let oidc = OidcProvider::discover(config).await.unwrap();
    let (callback, _) = idp.code_for(&oidc, "alice").await;
    let err = login(&oidc, callback).await.unwrap_err();
    assert!(matches!(err, Error::Misconfigured { .. }), "{err:?}");
    assert!(!err.to_string().contains("not-the-secret"), "{err}");
}

#[tokio::test]
async fn refresh_groups_uses_the_refresh_token_and_sees_changes() {
    let idp = Idp::start().await;
    let oidc = idp.provider().await;
    let (callback, _) = idp.code_for(&oidc, "alice").await;
    let alice = login(&oidc, callback).await.unwrap();

    idp.set_groups("alice", &["admins", "sre"]).await;
    assert_eq!(names(&oidc.refresh_groups(&alice.user).await.unwrap()), ["admins", "sre"]);
    // Again, with the (possibly rotated) refresh token.
    idp.set_groups("alice", &["sre"]).await;
    assert_eq!(names(&oidc.refresh_groups(&alice.user).await.unwrap()), ["sre"]);

    // A user who never logged in through this provider instance must log in.
    let stranger = Principal { id: "oidc_user://mallory".into(), ..alice.user.clone() };
    assert!(matches!(oidc.refresh_groups(&stranger).await, Err(Error::LoginRequired { .. })));

    // Search offers seen principals and the typed group name.
    let found = oidc.search_principals("ad", Some(PrincipalKind::Group), None).await.unwrap();
    assert_eq!(
        found.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        ["oidc_group://admins", "oidc_group://ad"]
    );
    let users = oidc.search_principals("ali", Some(PrincipalKind::User), None).await.unwrap();
    assert_eq!(users.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["oidc_user://alice"]);
}

#[tokio::test]
async fn an_issuer_that_is_down_is_unreachable() {
    let port = free_port();
    let config = OidcConfig::new(&format!("http://127.0.0.1:{port}"), "rancher", "s").unwrap();
    let err = OidcProvider::discover(config).await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
}
