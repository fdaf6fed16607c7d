//! The GitHub provider against an in-test stand-in (axum on loopback) that serves GitHub's documented
//! OAuth and REST shapes — `/login/oauth/authorize`, `/login/oauth/access_token` (errors as 200 with an
//! `error` field), `/user`, `/user/orgs`, `/user/teams` (paginated with `Link`), `/search/users` — in
//! the GitHub Enterprise layout (API under `/api/v3`), and refuses requests that lack what GitHub
//! requires: client credentials, `Accept: application/json` on the token exchange, a token in
//! `Authorization`, a `User-Agent`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    Form, Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use base64::Engine as _;
use rancher_auth::providers::{
    AuthProvider, AuthorizeRequest, Credentials, Error, OAuthCallback, Pkce, Principal, PrincipalKind,
    github::{GithubConfig, GithubProvider},
};
use serde_json::{Value, json};
use sha2::Digest as _;

const CLIENT_ID: &str = "gh-client";
const CLIENT_SECRET: &str = "gh-secret";

#[derive(Default)]
struct Hub {
    /// code → (login, redirect_uri, PKCE challenge)
    codes: HashMap<String, (String, String, String)>,
    /// access token → login
    tokens: HashMap<String, String>,
    /// login → organisations
    orgs: HashMap<String, Vec<Value>>,
    next_id: u64,
}

type Shared = Arc<Mutex<Hub>>;

fn users() -> HashMap<&'static str, Value> {
    HashMap::from([
        ("octocat", json!({"login": "octocat", "id": 583231, "name": "The Octocat", "type": "User"})),
        ("hubot", json!({"login": "hubot", "id": 1001, "name": null, "type": "User"})),
    ])
}

fn teams(login: &str) -> Vec<Value> {
    let org = json!({"login": "rancher", "id": 9343010});
    match login {
        "octocat" => vec![
            json!({"id": 890, "name": "Platform Team", "slug": "platform", "organization": org}),
            json!({"id": 891, "name": "SRE", "slug": "sre", "organization": org}),
        ],
        _ => vec![],
    }
}

/// The browser's visit: the test names the user in a header, GitHub would show a login page.
async fn authorize(
    State(hub): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
        || !q.get("scope").is_some_and(|s| s.split(' ').any(|s| s == "read:org"))
    {
        return (StatusCode::BAD_REQUEST, format!("bad authorize request {q:?}")).into_response();
    }
    let login = headers["x-test-login"].to_str().unwrap().to_owned();
    let mut hub = hub.lock().unwrap();
    hub.next_id += 1;
    let code = format!("code-{}", hub.next_id);
    hub.codes.insert(code.clone(), (login, q["redirect_uri"].clone(), q["code_challenge"].clone()));
    Redirect::to(&format!("{}?code={code}&state={}", q["redirect_uri"], q["state"])).into_response()
}

async fn access_token(
    State(hub): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let error = |e: &str| {
        Json(json!({"error": e, "error_description": format!("{e} (stand-in)"), "error_uri": "https://docs.github.com"})).into_response()
    };
    if headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) != Some("application/json") {
        // What GitHub answers without Accept: JSON: a form-encoded body.
        return "access_token=unusable&token_type=bearer".into_response();
    }
    if f.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || f.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return error("incorrect_client_credentials");
    }
    let mut hub = hub.lock().unwrap();
    let Some((login, redirect, challenge)) = f.get("code").and_then(|c| hub.codes.remove(c)) else {
        return error("bad_verification_code");
    };
    if f.get("redirect_uri") != Some(&redirect) {
        return error("redirect_uri_mismatch");
    }
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    if base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier)) != challenge {
        return error("bad_verification_code");
    }
    hub.next_id += 1;
    let token = format!("gho_standin{}", hub.next_id);
    hub.tokens.insert(token.clone(), login);
    Json(json!({"access_token": token, "scope": "read:org,read:user", "token_type": "bearer"}))
        .into_response()
}

/// The checks GitHub's API makes on every request; returns the token's user.
fn api_user(hub: &Shared, headers: &HeaderMap) -> Result<String, Box<Response>> {
    if headers.get(header::USER_AGENT).is_none() {
        return Err((StatusCode::FORBIDDEN, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header").into_response().into());
    }
    if !headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/vnd.github+json"))
    {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "stand-in: Accept: application/vnd.github+json expected",
        )
            .into_response()
            .into());
    }
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let token = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("token ")).unwrap_or_default();
    hub.lock().unwrap().tokens.get(token).cloned().ok_or_else(|| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})),
        )
            .into_response()
            .into()
    })
}

async fn user(State(hub): State<Shared>, headers: HeaderMap) -> Response {
    match api_user(&hub, &headers) {
        Ok(login) => Json(users()[login.as_str()].clone()).into_response(),
        Err(r) => *r,
    }
}

async fn user_orgs(State(hub): State<Shared>, headers: HeaderMap) -> Response {
    match api_user(&hub, &headers) {
        Ok(login) => Json(hub.lock().unwrap().orgs.get(&login).cloned().unwrap_or_default()).into_response(),
        Err(r) => *r,
    }
}

/// One team per page, with GitHub's `Link` header, to make the client paginate.
async fn user_teams(
    State(hub): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let login = match api_user(&hub, &headers) {
        Ok(login) => login,
        Err(r) => return *r,
    };
    let all = teams(&login);
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let items: Vec<Value> = all.get(page - 1).cloned().into_iter().collect();
    let mut resp = Json(items).into_response();
    if page < all.len() {
        let host = headers[header::HOST].to_str().unwrap();
        let link = format!(
            r#"<http://{host}/api/v3/user/teams?per_page=1&page={}>; rel="next", <http://{host}/api/v3/user/teams?per_page=1&page={}>; rel="last""#,
            page + 1,
            all.len()
        );
        resp.headers_mut().insert(header::LINK, link.parse().unwrap());
    }
    resp
}

async fn search_users(
    State(hub): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = api_user(&hub, &headers) {
        return *r;
    }
    let query = q.get("q").cloned().unwrap_or_default();
    let term = query.split(' ').next().unwrap_or_default().to_owned();
    let items: Vec<Value> = if query.contains("type:org") {
        [
            json!({"login": "rancher", "id": 9343010, "type": "Organization"}),
            json!({"login": "rke", "id": 77, "type": "Organization"}),
        ]
        .into_iter()
        .filter(|o| o["login"].as_str().unwrap().starts_with(&term))
        .collect()
    } else {
        users().into_values().filter(|u| u["login"].as_str().unwrap().starts_with(&term)).collect()
    };
    Json(json!({"total_count": items.len(), "incomplete_results": false, "items": items})).into_response()
}

struct StandIn {
    hub: Shared,
    base: url::Url,
    _server: tokio::task::JoinHandle<()>,
}

impl StandIn {
    async fn start() -> Self {
        let hub: Shared = Arc::default();
        hub.lock()
            .unwrap()
            .orgs
            .insert("octocat".into(), vec![json!({"login": "rancher", "id": 9343010, "description": ""})]);
        let app = Router::new()
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(access_token))
            .route("/api/v3/user", get(user))
            .route("/api/v3/user/orgs", get(user_orgs))
            .route("/api/v3/user/teams", get(user_teams))
            .route("/api/v3/search/users", get(search_users))
            .with_state(hub.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { hub, base, _server: server }
    }

    fn config(&self) -> GithubConfig {
        GithubConfig::with_urls(
            CLIENT_ID,
            CLIENT_SECRET,
            self.base.clone(),
            self.base.join("api/v3").unwrap(),
        )
    }

    /// Authorize URL → the stand-in's redirect → the callback for `authenticate`.
    async fn callback(&self, github: &GithubProvider, login: &str) -> OAuthCallback {
        let pkce = Pkce::new_s256();
        let request = AuthorizeRequest::new("http://127.0.0.1:8400/callback", &pkce);
        let url = github.authorize_url(&request).await.unwrap();
        assert!(url.as_str().starts_with(self.base.join("login/oauth/authorize").unwrap().as_str()), "{url}");
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let resp = http.get(url).header("x-test-login", login).send().await.unwrap();
        assert!(resp.status().is_redirection(), "{}: {}", resp.status(), resp.text().await.unwrap());
        let location = url::Url::parse(resp.headers()[header::LOCATION].to_str().unwrap()).unwrap();
        let q: HashMap<_, _> = location.query_pairs().into_owned().collect();
        assert_eq!(q["state"], request.state);
        OAuthCallback::new(q["code"].clone(), &request, &pkce)
    }
}

fn ids(principals: &[Principal]) -> Vec<&str> {
    principals.iter().map(|p| p.id.as_str()).collect()
}

#[tokio::test]
async fn login_gives_the_user_with_orgs_and_teams_as_groups() {
    let standin = StandIn::start().await;
    let github = GithubProvider::new(standin.config()).unwrap();
    assert_eq!(github.name(), "github");

    let callback = standin.callback(&github, "octocat").await;
    let identity = github.authenticate(&Credentials::OAuthCode(callback)).await.unwrap();
    assert_eq!(identity.user.id, "github_user://583231");
    assert_eq!(identity.user.login_name, "octocat");
    assert_eq!(identity.user.display_name, "The Octocat");
    // Both pages of teams were read.
    assert_eq!(ids(&identity.groups), ["github_org://9343010", "github_team://890", "github_team://891"]);
    assert!(identity.groups.iter().all(|g| g.kind == PrincipalKind::Group));
    let team = &identity.groups[1];
    assert_eq!((team.display_name.as_str(), team.login_name.as_str()), ("Platform Team", "rancher/platform"));

    // A user without a name shows the login; no orgs or teams means no groups.
    let callback = standin.callback(&github, "hubot").await;
    let hubot = github.authenticate(&Credentials::OAuthCode(callback)).await.unwrap();
    assert_eq!((hubot.user.display_name.as_str(), hubot.groups.len()), ("hubot", 0));
}

#[tokio::test]
async fn bad_codes_verifiers_and_client_secrets_are_refused() {
    let standin = StandIn::start().await;
    let github = GithubProvider::new(standin.config()).unwrap();

    let callback = standin.callback(&github, "octocat").await;
    github.authenticate(&Credentials::OAuthCode(callback.clone())).await.unwrap();
    // Codes are single-use.
    let err = github.authenticate(&Credentials::OAuthCode(callback)).await.unwrap_err();
    assert!(matches!(err, Error::InvalidCredentials), "{err:?}");

    let mut callback = standin.callback(&github, "octocat").await;
    callback.pkce_verifier = Some(Pkce::new_s256().verifier);
    assert!(matches!(
        github.authenticate(&Credentials::OAuthCode(callback)).await,
        Err(Error::InvalidCredentials)
    ));

    let mut config = standin.config();
    config.client_secret = "wrong-secret".into();
    let misconfigured = GithubProvider::new(config).unwrap();
    let callback = standin.callback(&misconfigured, "octocat").await;
    let err = misconfigured.authenticate(&Credentials::OAuthCode(callback)).await.unwrap_err();
    assert!(matches!(err, Error::Misconfigured { .. }), "{err:?}");
    assert!(err.to_string().contains("incorrect_client_credentials"), "{err}");
    assert!(!err.to_string().contains("wrong-secret"), "{err}");

    let err = github.authenticate(&Credentials::password("octocat", "pw")).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
}

#[tokio::test]
async fn refresh_groups_rereads_orgs_and_a_revoked_token_requires_login() {
    let standin = StandIn::start().await;
    let github = GithubProvider::new(standin.config()).unwrap();
    let callback = standin.callback(&github, "octocat").await;
    let octocat = github.authenticate(&Credentials::OAuthCode(callback)).await.unwrap();

    standin.hub.lock().unwrap().orgs.get_mut("octocat").unwrap().push(json!({"login": "rke", "id": 77}));
    let groups = github.refresh_groups(&octocat.user).await.unwrap();
    assert_eq!(
        ids(&groups),
        ["github_org://9343010", "github_org://77", "github_team://890", "github_team://891"]
    );

    // Search uses the requester's token: users, orgs and the requester's teams.
    let found =
        github.search_principals("oct", Some(PrincipalKind::User), Some(&octocat.user)).await.unwrap();
    assert_eq!(ids(&found), ["github_user://583231"]);
    let found =
        github.search_principals("rk", Some(PrincipalKind::Group), Some(&octocat.user)).await.unwrap();
    assert_eq!(ids(&found), ["github_org://77"]);
    // Teams match on `org/slug` too.
    let found =
        github.search_principals("ran", Some(PrincipalKind::Group), Some(&octocat.user)).await.unwrap();
    assert_eq!(ids(&found), ["github_org://9343010", "github_team://890", "github_team://891"]);
    let found = github.search_principals("SR", None, Some(&octocat.user)).await.unwrap();
    assert_eq!(ids(&found), ["github_team://891"]);
    assert!(matches!(github.search_principals("oct", None, None).await, Err(Error::Unsupported { .. })));

    // The user revokes the app at GitHub: the token stops working, refresh asks for a new login.
    standin.hub.lock().unwrap().tokens.clear();
    assert!(matches!(github.refresh_groups(&octocat.user).await, Err(Error::LoginRequired { .. })));
    assert!(matches!(github.refresh_groups(&octocat.user).await, Err(Error::LoginRequired { .. })));

    let stranger = Principal { id: "openldap_user://uid=x".into(), ..octocat.user.clone() };
    assert!(matches!(github.refresh_groups(&stranger).await, Err(Error::ForeignPrincipal { .. })));
}
