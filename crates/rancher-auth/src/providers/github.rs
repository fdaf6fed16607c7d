//! GitHub OAuth (github.com or GitHub Enterprise Server): the authorize URL, code → token exchange at
//! `POST /login/oauth/access_token`, then `GET /user`, `/user/orgs` and `/user/teams`; organisations
//! and teams become group principals. GitHub is OAuth 2 only (no ID token), so the REST API is the
//! source of truth.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use async_trait::async_trait;
use serde::{Deserialize, de::DeserializeOwned};

use super::{
    AuthProvider, AuthorizeRequest, Credentials, Error, Identity, Principal, PrincipalKind, Result, Secret,
    http_client, push_unique,
};

const NAME: &str = "github";
/// Pages followed per list (100 items each).
const MAX_PAGES: usize = 10;

/// Configuration of the GitHub provider.
#[derive(Debug, Clone)]
pub struct GithubConfig {
    /// The OAuth app's client id.
    pub client_id: String,
    /// The OAuth app's client secret.
    pub client_secret: Secret,
    /// Where `/login/oauth/authorize` and `/login/oauth/access_token` live: `https://github.com`, or
    /// `https://<host>` for GitHub Enterprise Server.
    pub web_url: url::Url,
    /// The REST API root: `https://api.github.com`, or `https://<host>/api/v3`.
    pub api_url: url::Url,
    /// OAuth scopes; `read:org` is needed to see private organisation and team memberships.
    pub scopes: Vec<String>,
    /// PEM of a private CA (GitHub Enterprise); `None` uses the system roots.
    pub ca_pem: Option<String>,
    /// Timeout of each HTTP request.
    pub timeout: Duration,
}

impl GithubConfig {
    /// github.com.
    pub fn github_com(client_id: impl Into<String>, client_secret: impl Into<Secret>) -> Self {
        Self::with_urls(
            client_id,
            client_secret,
            url::Url::parse("https://github.com").expect("static URL"),
            url::Url::parse("https://api.github.com").expect("static URL"),
        )
    }

    /// GitHub Enterprise Server at `hostname` (`https://<hostname>`, API under `/api/v3`).
    ///
    /// # Errors
    /// [`Error::Misconfigured`] when `hostname` does not make a valid URL.
    pub fn enterprise(
        hostname: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> Result<Self> {
        let bad = |e: url::ParseError| Error::Misconfigured {
            provider: NAME,
            reason: format!("hostname {hostname:?}: {e}"),
        };
        let web = url::Url::parse(&format!("https://{hostname}")).map_err(bad)?;
        let api = web.join("api/v3").map_err(bad)?;
        Ok(Self::with_urls(client_id, client_secret, web, api))
    }

    /// Explicit web and API roots (tests, proxies).
    pub fn with_urls(
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
        web_url: url::Url,
        api_url: url::Url,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            web_url,
            api_url,
            scopes: vec!["read:user".into(), "read:org".into()],
            ca_pem: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// The GitHub [`AuthProvider`] (`github`).
///
/// GitHub has no refresh of group claims other than asking the API with the user's token, so access
/// tokens from logins are kept in memory per user id; [`AuthProvider::refresh_groups`] and
/// [`AuthProvider::search_principals`] work for users who logged in through this instance.
pub struct GithubProvider {
    config: GithubConfig,
    http: reqwest::Client,
    tokens: Mutex<HashMap<String, Secret>>,
}

impl std::fmt::Debug for GithubProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubProvider").field("config", &self.config).finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct User {
    login: String,
    id: u64,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Org {
    login: String,
    id: u64,
}

#[derive(Deserialize)]
struct Team {
    id: u64,
    name: String,
    slug: String,
    organization: Org,
}

#[derive(Deserialize)]
struct SearchResults {
    items: Vec<SearchItem>,
}

#[derive(Deserialize)]
struct SearchItem {
    login: String,
    id: u64,
}

/// Why an API call failed: the token is no longer accepted, or anything else.
enum ApiError {
    Unauthorized,
    Other(Error),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self::Other(e)
    }
}

impl GithubProvider {
    /// Builds the provider (no request is made).
    ///
    /// # Errors
    /// [`Error::Misconfigured`] for an empty client id or secret, URLs that are not http(s), or a bad
    /// CA PEM.
    pub fn new(mut config: GithubConfig) -> Result<Self> {
        let bad = |reason: &str| Err(Error::Misconfigured { provider: NAME, reason: reason.to_owned() });
        if config.client_id.is_empty() || config.client_secret.is_empty() {
            return bad("client id and secret are required");
        }
        for url in [&config.web_url, &config.api_url] {
            if !matches!(url.scheme(), "https" | "http") || url.cannot_be_a_base() {
                return bad("web and API URLs must be http(s) URLs");
            }
        }
        // Joining relative paths needs a trailing slash on the roots.
        for url in [&mut config.web_url, &mut config.api_url] {
            if !url.path().ends_with('/') {
                let path = format!("{}/", url.path());
                url.set_path(&path);
            }
        }
        let http = http_client::build(NAME, config.ca_pem.as_deref(), config.timeout)?;
        Ok(Self { config, http, tokens: Mutex::new(HashMap::new()) })
    }

    fn web(&self, path: &str) -> url::Url {
        self.config.web_url.join(path).expect("relative path joins a base URL")
    }

    fn api(&self, path: &str) -> url::Url {
        self.config.api_url.join(path).expect("relative path joins a base URL")
    }

    /// Exchanges an authorization code for an access token.
    async fn exchange(&self, code: &Secret, redirect_uri: &str, verifier: Option<&Secret>) -> Result<Secret> {
        let mut form = vec![
            ("client_id", self.config.client_id.as_str()),
            ("client_secret", self.config.client_secret.expose()),
            ("code", code.expose()),
            ("redirect_uri", redirect_uri),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v.expose()));
        }
        let resp = self
            .http
            .post(self.web("login/oauth/access_token"))
            .header(http::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| http_client::transport_error(NAME, &e))?;
        let status = resp.status();
        let body = http_client::read_body(NAME, resp).await?;
        if !status.is_success() {
            return Err(Error::Provider {
                provider: NAME,
                message: format!("token exchange: HTTP {status}"),
            });
        }
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| Error::Provider {
            provider: NAME,
            message: format!("token exchange response: {e}"),
        })?;
        // GitHub reports errors with 200 OK and an `error` field.
        match (token.access_token, token.error.as_deref()) {
            (Some(t), None) if !t.is_empty() => Ok(Secret::new(t)),
            (_, Some("bad_verification_code")) => Err(Error::InvalidCredentials),
            (_, Some(e @ ("incorrect_client_credentials" | "redirect_uri_mismatch"))) => {
                Err(Error::Misconfigured {
                    provider: NAME,
                    reason: format!("{e}: {}", token.error_description.unwrap_or_default()),
                })
            }
            (_, error) => Err(Error::Provider {
                provider: NAME,
                message: format!(
                    "token exchange: {} {}",
                    error.unwrap_or("no access_token"),
                    token.error_description.unwrap_or_default()
                ),
            }),
        }
    }

    /// One authenticated GET, decoded; returns the `next` page link if any.
    async fn get<T: DeserializeOwned>(
        &self,
        token: &Secret,
        url: url::Url,
    ) -> std::result::Result<(T, Option<url::Url>), ApiError> {
        let resp = self
            .http
            .get(url.clone())
            .bearer_auth(token.expose())
            .header(http::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .send()
            .await
            .map_err(|e| http_client::transport_error(NAME, &e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(ApiError::Unauthorized);
        }
        let next = next_link(resp.headers(), &self.config.api_url);
        let body = http_client::read_body(NAME, resp).await?;
        if !status.is_success() {
            let message = format!(
                "GET {}: HTTP {status}: {}",
                url.path(),
                String::from_utf8_lossy(&body[..body.len().min(200)])
            );
            return Err(ApiError::Other(Error::Provider { provider: NAME, message }));
        }
        let value = serde_json::from_slice(&body).map_err(|e| Error::Provider {
            provider: NAME,
            message: format!("GET {}: unexpected response: {e}", url.path()),
        })?;
        Ok((value, next))
    }

    /// A paginated list, following `Link: <…>; rel="next"` on the API's own origin.
    async fn list<T: DeserializeOwned>(
        &self,
        token: &Secret,
        path: &str,
    ) -> std::result::Result<Vec<T>, ApiError> {
        let mut url = self.api(path);
        url.query_pairs_mut().append_pair("per_page", "100");
        let mut out = Vec::new();
        let mut next = Some(url);
        for _ in 0..MAX_PAGES {
            let Some(url) = next.take() else { break };
            let (page, link): (Vec<T>, _) = self.get(token, url).await?;
            out.extend(page);
            next = link;
        }
        Ok(out)
    }

    async fn groups(&self, token: &Secret) -> std::result::Result<Vec<Principal>, ApiError> {
        let mut out = Vec::new();
        for org in self.list::<Org>(token, "user/orgs").await? {
            push_unique(&mut out, org_principal(&org));
        }
        for team in self.list::<Team>(token, "user/teams").await? {
            push_unique(&mut out, team_principal(&team));
        }
        Ok(out)
    }

    fn token_of(&self, user: &Principal) -> Result<Secret> {
        let Some(id) = user.key(NAME, "user") else {
            return Err(Error::ForeignPrincipal { provider: NAME, id: user.id.clone() });
        };
        self.tokens
            .lock()
            .expect("token map")
            .get(id)
            .cloned()
            .ok_or_else(|| Error::LoginRequired { provider: NAME, id: user.id.clone() })
    }

    /// Maps an API error for a stored token: a refused token is forgotten and means log in again.
    fn stored_token_error(&self, user: &Principal, e: ApiError) -> Error {
        match e {
            ApiError::Unauthorized => {
                if let Some(id) = user.key(NAME, "user") {
                    self.tokens.lock().expect("token map").remove(id);
                }
                Error::LoginRequired { provider: NAME, id: user.id.clone() }
            }
            ApiError::Other(e) => e,
        }
    }
}

fn user_principal(u: &User) -> Principal {
    let display = u.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| u.login.clone());
    Principal::new(NAME, "user", &u.id.to_string(), display, u.login.clone(), PrincipalKind::User)
}

fn org_principal(o: &Org) -> Principal {
    Principal::new(NAME, "org", &o.id.to_string(), o.login.clone(), o.login.clone(), PrincipalKind::Group)
}

fn team_principal(t: &Team) -> Principal {
    let login = format!("{}/{}", t.organization.login, t.slug);
    Principal::new(NAME, "team", &t.id.to_string(), t.name.clone(), login, PrincipalKind::Group)
}

/// The `rel="next"` target of a `Link` header, only if it stays on the API's origin (the token is
/// sent to it).
fn next_link(headers: &http::HeaderMap, api: &url::Url) -> Option<url::Url> {
    let link = headers.get(http::header::LINK)?.to_str().ok()?;
    let target = link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == r#"rel="next""#)
            .then(|| url.trim().trim_start_matches('<').trim_end_matches('>'))
    })?;
    let url = url::Url::parse(target).ok()?;
    (url.origin() == api.origin()).then_some(url)
}

#[async_trait]
impl AuthProvider for GithubProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn authorize_url(&self, request: &AuthorizeRequest) -> Result<url::Url> {
        let mut url = self.web("login/oauth/authorize");
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &request.redirect_uri)
            .append_pair("scope", &self.config.scopes.join(" "))
            .append_pair("state", &request.state)
            .append_pair("code_challenge", &request.pkce_challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url)
    }

    async fn authenticate(&self, credentials: &Credentials) -> Result<Identity> {
        let Credentials::OAuthCode(callback) = credentials else {
            return Err(Error::Unsupported { provider: NAME, what: "password login" });
        };
        if callback.code.is_empty() {
            return Err(Error::InvalidCredentials);
        }
        let token =
            self.exchange(&callback.code, &callback.redirect_uri, callback.pkce_verifier.as_ref()).await?;
        let api_error = |e: ApiError| match e {
            // A token that was just issued and is refused: treat as a failed login.
            ApiError::Unauthorized => Error::InvalidCredentials,
            ApiError::Other(e) => e,
        };
        let (user, _): (User, _) = self.get(&token, self.api("user")).await.map_err(api_error)?;
        let groups = self.groups(&token).await.map_err(api_error)?;
        self.tokens.lock().expect("token map").insert(user.id.to_string(), token);
        Ok(Identity { user: user_principal(&user), groups })
    }

    async fn search_principals<'a>(
        &self,
        query: &str,
        kind: Option<PrincipalKind>,
        requester: Option<&'a Principal>,
    ) -> Result<Vec<Principal>> {
        // GitHub searches need a token; use the searching user's own, so they see what they may see.
        let Some(requester) = requester else {
            return Err(Error::Unsupported { provider: NAME, what: "search without a logged-in requester" });
        };
        let token = self.token_of(requester)?;
        let query = query.trim();
        let mut out = Vec::new();
        if query.is_empty() {
            return Ok(out);
        }
        let search = |account_type: &'static str| {
            let mut url = self.api("search/users");
            url.query_pairs_mut()
                .append_pair("q", &format!("{query} in:login type:{account_type}"))
                .append_pair("per_page", "30");
            url
        };
        let (users_url, orgs_url) = (search("user"), search("org"));
        if kind != Some(PrincipalKind::Group) {
            let (found, _): (SearchResults, _) =
                self.get(&token, users_url).await.map_err(|e| self.stored_token_error(requester, e))?;
            for item in found.items {
                push_unique(&mut out, user_principal(&User { login: item.login, id: item.id, name: None }));
            }
        }
        if kind != Some(PrincipalKind::User) {
            let (found, _): (SearchResults, _) =
                self.get(&token, orgs_url).await.map_err(|e| self.stored_token_error(requester, e))?;
            for item in found.items {
                push_unique(&mut out, org_principal(&Org { login: item.login, id: item.id }));
            }
            // Teams cannot be searched; offer the requester's own teams that match.
            let lower = query.to_lowercase();
            let teams = self
                .list::<Team>(&token, "user/teams")
                .await
                .map_err(|e| self.stored_token_error(requester, e))?;
            for team in teams.iter().map(team_principal) {
                if team.display_name.to_lowercase().starts_with(&lower)
                    || team.login_name.to_lowercase().starts_with(&lower)
                {
                    push_unique(&mut out, team);
                }
            }
        }
        Ok(out)
    }

    async fn refresh_groups(&self, user: &Principal) -> Result<Vec<Principal>> {
        let token = self.token_of(user)?;
        self.groups(&token).await.map_err(|e| self.stored_token_error(user, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_stay_on_the_api_origin() {
        let api = url::Url::parse("https://ghe.example.org/api/v3/").unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::LINK,
            r#"<https://ghe.example.org/api/v3/user/teams?page=2>; rel="next", <https://ghe.example.org/api/v3/user/teams?page=5>; rel="last""#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&headers, &api).unwrap().as_str(),
            "https://ghe.example.org/api/v3/user/teams?page=2"
        );
        headers
            .insert(http::header::LINK, r#"<https://evil.example.net/steal>; rel="next""#.parse().unwrap());
        assert_eq!(next_link(&headers, &api), None);
    }

    #[test]
    fn enterprise_urls() {
        let c = GithubConfig::enterprise("ghe.example.org", "id", "secret").unwrap();
        let p = GithubProvider::new(c).unwrap();
        assert_eq!(
            p.web("login/oauth/access_token").as_str(),
            "https://ghe.example.org/login/oauth/access_token"
        );
        assert_eq!(p.api("user/orgs").as_str(), "https://ghe.example.org/api/v3/user/orgs");
        assert!(GithubProvider::new(GithubConfig::github_com("id", "")).is_err());
    }
}
