//! Identity providers for login: the store's own users ([`local`], always on), external ones
//! configured by `--auth-config FILE` (YAML, below), and any an embedder plugs in with
//! `ServerBuilder::auth_provider`. Each is served at `/v3-public/<kind>Providers/<name>` ([`routes`]):
//! `POST ?action=login` with a user name and password ([`login`]) or an authorization code, and
//! `GET ?action=authorize` to start an authorization-code login ([`oauth`]). A provider's user is
//! mapped to a local `u-xxxxx` user (made on first login) whose groups are refreshed at each login and
//! carried by the session token into the proxy's `Impersonate-Group` headers.
//!
//! ```yaml
//! openldap:
//!   servers: [ldap.example.org]
//!   port: 389
//!   tls: starttls            # plain | starttls | ldaps
//!   caPem: |                 # optional; the system roots otherwise
//!     -----BEGIN CERTIFICATE-----
//!   serviceAccountDn: cn=rancher,dc=example,dc=org
//!   serviceAccountPassword: service-password
//!   userSearchBase: ou=people,dc=example,dc=org
//!   groupSearchBase: ou=groups,dc=example,dc=org
//!   nestedGroups: true       # optional
//! oidc:                      # authorization-code login with PKCE ([`oauth`])
//!   issuer: https://idp.example.org
//!   clientId: rancher
//!   clientSecret: client-secret
//!   scopes: [profile, email, groups, offline_access]   # optional; `openid` is always asked
//!   groupsClaim: groups      # optional
//! github:
//!   clientId: Iv1.0123
//!   clientSecret: client-secret
//!   baseUrl: https://github.com          # optional (GitHub Enterprise: https://<host>)
//!   apiUrl: https://api.github.com       # optional (GitHub Enterprise: https://<host>/api/v3)
//! refreshInterval: 5m        # optional: how often provider groups are re-read ([`refresh`])
//! ```
//!
//! Each external kind is built only with the `rancher` crate's cargo feature of its name (`ldap` for
//! `openldap`, `oidc`, `github`; all on by default); a build without one refuses its section at start.

pub(crate) mod local;
pub(crate) mod login;
pub(crate) mod oauth;
pub(crate) mod refresh;
pub(crate) mod routes;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rancher_auth::providers::AuthProvider;
#[cfg(feature = "github")]
use rancher_auth::providers::github::{GithubConfig, GithubProvider};
#[cfg(feature = "ldap")]
use rancher_auth::providers::ldap::{LdapConfig, LdapProvider, LdapTls};
#[cfg(feature = "oidc")]
use rancher_auth::providers::oidc::{OidcConfig, OidcProvider};
use rancher_core::store::Store;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// The `--auth-config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AuthConfigFile {
    #[serde(default)]
    openldap: Option<LdapSettings>,
    #[serde(default)]
    oidc: Option<OidcSettings>,
    #[serde(default)]
    github: Option<GithubSettings>,
    #[serde(default)]
    refresh_interval: Option<String>,
}

// Each provider's section is parsed in every build, so that one built without the provider's cargo
// feature refuses the section by name instead of calling it an unknown field.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(not(feature = "oidc"), allow(dead_code))]
struct OidcSettings {
    issuer: String,
    client_id: String,
    client_secret: String,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    groups_claim: Option<String>,
    #[serde(default)]
    ca_pem: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(not(feature = "github"), allow(dead_code))]
struct GithubSettings {
    client_id: String,
    client_secret: String,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    api_url: Option<String>,
    #[serde(default)]
    ca_pem: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(not(feature = "ldap"), allow(dead_code))]
enum TlsMode {
    #[default]
    Starttls,
    Plain,
    Ldaps,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(not(feature = "ldap"), allow(dead_code))]
struct LdapSettings {
    servers: Vec<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    tls: TlsMode,
    #[serde(default)]
    ca_pem: Option<String>,
    service_account_dn: String,
    service_account_password: String,
    user_search_base: String,
    group_search_base: String,
    #[serde(default)]
    nested_groups: Option<bool>,
}

/// The default of `refreshInterval`.
pub(crate) const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);

#[cfg(feature = "oidc")]
/// An OIDC provider discovered on first use, so the server starts while the issuer is down; a failed
/// discovery is tried again at the next use.
pub(crate) struct LazyOidc {
    config: OidcConfig,
    provider: tokio::sync::OnceCell<Arc<dyn AuthProvider>>,
}

/// Where a registered provider comes from.
#[derive(Clone)]
pub(crate) enum Source {
    /// Ready to use (configured from the file, or plugged in with `ServerBuilder::auth_provider`).
    Ready(Arc<dyn AuthProvider>),
    /// OIDC, discovered on first use.
    #[cfg(feature = "oidc")]
    Oidc(Arc<LazyOidc>),
}

/// The names of the providers `--auth-config` can configure, for a helpful 404 when one is not.
const CONFIGURABLE: &[&str] = &["openldap", "oidc", "github"];

/// Providers that log in with a user name and password only: `GET ?action=authorize` is a 405 on them
/// whether or not they are configured.
pub(crate) const PASSWORD_ONLY: &[&str] = &[local::LOCAL, "openldap", "activedirectory"];

/// The `<kind>` of `/v3-public/<kind>Providers/<name>` for a provider name, in Rancher's spelling
/// (`openLdapProviders/openldap`, `activeDirectoryProviders/activedirectory`); any other name is its
/// own kind (`acmeProviders/acme`).
pub(crate) fn route_kind(name: &str) -> &str {
    match name {
        "openldap" => "openLdap",
        "activedirectory" => "activeDirectory",
        other => other,
    }
}

/// The providers registered for login besides `local` (always on, served by its own handler), by
/// name: the ones `--auth-config` configures and the ones an embedder plugs in.
#[derive(Clone)]
pub(crate) struct Providers {
    by_name: Arc<BTreeMap<String, Source>>,
    /// Authorization-code logins waiting for their redirect.
    pub(crate) pending: Arc<oauth::PendingLogins>,
    /// How often provider groups are re-read.
    pub(crate) refresh_interval: Duration,
    /// Set once the refresh task runs.
    refresh_started: Arc<OnceLock<()>>,
    /// Stops the refresh task (cancelled when the server's background tasks stop).
    pub(crate) stop: CancellationToken,
    /// The refresh task once started: [`ServerTasks`](crate::server::ServerTasks) waits for it.
    refresh_task: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Default for Providers {
    fn default() -> Self {
        Self {
            by_name: Arc::default(),
            pending: Arc::default(),
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            refresh_started: Arc::default(),
            stop: CancellationToken::new(),
            refresh_task: Arc::default(),
        }
    }
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("names", &self.names().collect::<Vec<_>>())
            .field("refresh_interval", &self.refresh_interval)
            .finish()
    }
}

/// Why an identity provider cannot be registered
/// ([`ServerBuilder::auth_provider`](crate::server::ServerBuilder::auth_provider)).
#[derive(Debug, thiserror::Error)]
pub enum AuthProviderError {
    /// The name cannot be a route segment and principal-id prefix.
    #[error("identity provider name {0:?}: use 1 to 32 lowercase letters and digits, starting with a letter")]
    BadName(
        /// The name.
        String,
    ),
    /// Another provider (or `local`) has the name already.
    #[error("identity provider {0:?} is registered twice")]
    Duplicate(
        /// The name.
        String,
    ),
}

impl Providers {
    fn insert(&mut self, name: &str, source: Source) -> Result<(), AuthProviderError> {
        let valid = (1..=32).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !valid {
            return Err(AuthProviderError::BadName(name.to_owned()));
        }
        if name == local::LOCAL || self.by_name.contains_key(name) {
            return Err(AuthProviderError::Duplicate(name.to_owned()));
        }
        Arc::make_mut(&mut self.by_name).insert(name.to_owned(), source);
        Ok(())
    }

    /// Adds `provider` under its [`AuthProvider::name`].
    ///
    /// # Errors
    /// [`AuthProviderError`] for a name that is not a lowercase identifier or is taken.
    pub(crate) fn register(&mut self, provider: Arc<dyn AuthProvider>) -> Result<(), AuthProviderError> {
        let name = provider.name();
        self.insert(name, Source::Ready(provider))
    }

    /// True when a provider besides `local` is registered.
    pub(crate) fn any(&self) -> bool {
        !self.by_name.is_empty()
    }

    /// The registered names, in order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// The provider called `name` (discovering OIDC on first use); `None` when none is registered.
    pub(crate) async fn get(
        &self,
        name: &str,
    ) -> Option<Result<Arc<dyn AuthProvider>, rancher_auth::providers::Error>> {
        match self.by_name.get(name)? {
            Source::Ready(p) => Some(Ok(p.clone())),
            #[cfg(feature = "oidc")]
            Source::Oidc(lazy) => Some(
                lazy.provider
                    .get_or_try_init(|| async {
                        let p = OidcProvider::discover(lazy.config.clone()).await?;
                        Ok(Arc::new(p) as Arc<dyn AuthProvider>)
                    })
                    .await
                    .cloned(),
            ),
        }
    }

    /// The refresh task, when it was started (taken: the caller stops it).
    pub(crate) fn take_refresh_task(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.refresh_task.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    /// Why there is no provider `name`: the `--auth-config` hint for the configurable ones.
    pub(crate) fn missing(name: &str) -> String {
        if CONFIGURABLE.contains(&name) {
            format!("the {name} provider is not configured (see rancher-server --auth-config)")
        } else {
            format!("no identity provider {name:?} is registered")
        }
    }

    /// Starts the group refresh task once: at server start when a provider is registered, and again
    /// (a no-op) at each external login. The OAuth providers can only refresh users who logged in
    /// through this process; the others report `LoginRequired`, which the pass skips. The task ends
    /// when [`Providers::stop`] is cancelled.
    pub(crate) fn start_refresh(&self, store: Arc<dyn Store>) {
        if self.refresh_started.set(()).is_ok() {
            let stop = self.stop.clone();
            let task = refresh::run(self.clone(), store);
            let handle = tokio::spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = task => {}
                }
            });
            *self.refresh_task.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(handle);
        }
    }
}

/// Why the `--auth-config` file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct AuthConfigError {
    /// The file.
    pub path: std::path::PathBuf,
    /// What is wrong with it.
    #[source]
    pub source: AuthConfigFileError,
}

/// What is wrong with an `--auth-config` file (never showing a password).
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigFileError {
    /// The file could not be read.
    #[error("{0}")]
    Read(#[source] std::io::Error),
    /// The file is not YAML of the expected shape (unknown or missing fields included).
    #[error("{0}")]
    Yaml(#[source] Box<serde_saphyr::Error>),
    /// `openldap.servers` lists no server.
    #[error("openldap.servers is empty")]
    NoLdapServers,
    /// The OpenLDAP settings are unusable.
    #[error("openldap: {0}")]
    Ldap(#[source] rancher_auth::providers::Error),
    /// The OIDC settings are unusable (e.g. the issuer is not a URL).
    #[error("oidc: {0}")]
    Oidc(#[source] rancher_auth::providers::Error),
    /// A GitHub URL does not parse.
    #[error("github.{field} {url:?}: {source}")]
    GithubUrl {
        /// `baseUrl` or `apiUrl`.
        field: &'static str,
        /// The value given.
        url: String,
        /// Why it does not parse.
        #[source]
        source: url::ParseError,
    },
    /// The GitHub settings are unusable.
    #[error("github: {0}")]
    Github(#[source] rancher_auth::providers::Error),
    /// A configured provider cannot be served under its name.
    #[error("{0}")]
    Register(#[source] AuthProviderError),
    /// The file configures a provider this build left out.
    #[error(
        "{section}: this build has no {section} provider (cargo feature `{feature}` of `rancher` is off)"
    )]
    NotBuilt {
        /// The file's section.
        section: &'static str,
        /// The cargo feature that builds it.
        feature: &'static str,
    },
    /// `refreshInterval` is not a duration of at least 100ms.
    #[error("refreshInterval {text:?}: {problem}")]
    RefreshInterval {
        /// The value given.
        text: String,
        /// What is wrong with it.
        problem: IntervalProblem,
    },
}

/// What is wrong with a `refreshInterval`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntervalProblem {
    /// It does not start with a number.
    #[error("expected e.g. 5m, 30s, 1500ms")]
    NotANumber,
    /// Its unit is none of `ms`, `s`, `m`, `h`.
    #[error("unknown unit {0:?} (ms, s, m, h)")]
    UnknownUnit(String),
    /// It is shorter than 100ms.
    #[error("at least 100ms")]
    TooShort,
}

/// Parses `5m`, `30s`, `1h`, `1500ms` or plain seconds.
fn parse_interval(text: &str) -> Result<Duration, AuthConfigFileError> {
    let problem = |problem| AuthConfigFileError::RefreshInterval { text: text.to_owned(), problem };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| problem(IntervalProblem::NotANumber))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(problem(IntervalProblem::UnknownUnit(unit.to_owned()))),
    };
    if d < Duration::from_millis(100) {
        return Err(problem(IntervalProblem::TooShort));
    }
    Ok(d)
}

/// Reads and checks `--auth-config`.
///
/// # Errors
/// An [`AuthConfigError`] naming the file and what is wrong (never a password).
pub(crate) fn load(path: &Path) -> Result<Providers, AuthConfigError> {
    let error = |source| AuthConfigError { path: path.to_owned(), source };
    let text = std::fs::read_to_string(path).map_err(|e| error(AuthConfigFileError::Read(e)))?;
    parse(&text).map_err(error)
}

fn parse(text: &str) -> Result<Providers, AuthConfigFileError> {
    use AuthConfigFileError as E;
    let file: AuthConfigFile = serde_saphyr::from_str(text).map_err(|e| E::Yaml(Box::new(e)))?;
    let mut providers = Providers::default();
    if let Some(s) = file.openldap {
        providers.register(ldap_provider(s)?).map_err(E::Register)?;
    }
    if let Some(s) = file.oidc {
        providers.insert("oidc", oidc_source(s)?).map_err(E::Register)?;
    }
    if let Some(s) = file.github {
        providers.register(github_provider(s)?).map_err(E::Register)?;
    }
    if let Some(text) = file.refresh_interval {
        providers.refresh_interval = parse_interval(&text)?;
    }
    Ok(providers)
}

/// The `openldap` section's provider.
#[cfg(feature = "ldap")]
fn ldap_provider(s: LdapSettings) -> Result<Arc<dyn AuthProvider>, AuthConfigFileError> {
    if s.servers.is_empty() {
        return Err(AuthConfigFileError::NoLdapServers);
    }
    let mut config = LdapConfig::openldap(
        s.servers,
        s.service_account_dn,
        s.service_account_password,
        s.user_search_base,
        s.group_search_base,
    );
    config.tls = match s.tls {
        TlsMode::Plain => LdapTls::Plain,
        TlsMode::Starttls => LdapTls::StartTls,
        TlsMode::Ldaps => LdapTls::Ldaps,
    };
    config.port = s.port.unwrap_or(if matches!(s.tls, TlsMode::Ldaps) { 636 } else { 389 });
    config.ca_pem = s.ca_pem;
    if let Some(nested) = s.nested_groups {
        config.nested_groups = nested;
    }
    let provider = LdapProvider::new(config).map_err(AuthConfigFileError::Ldap)?;
    Ok(Arc::new(provider))
}

#[cfg(not(feature = "ldap"))]
fn ldap_provider(_: LdapSettings) -> Result<Arc<dyn AuthProvider>, AuthConfigFileError> {
    Err(AuthConfigFileError::NotBuilt { section: "openldap", feature: "ldap" })
}

/// The `oidc` section's provider, discovered on first use.
#[cfg(feature = "oidc")]
fn oidc_source(s: OidcSettings) -> Result<Source, AuthConfigFileError> {
    let mut config =
        OidcConfig::new(&s.issuer, s.client_id, s.client_secret).map_err(AuthConfigFileError::Oidc)?;
    if let Some(scopes) = s.scopes {
        config.scopes = scopes.into_iter().filter(|s| s != "openid").collect();
    }
    if let Some(claim) = s.groups_claim {
        config.groups_claim = claim;
    }
    config.ca_pem = s.ca_pem;
    let lazy = LazyOidc { config, provider: tokio::sync::OnceCell::new() };
    Ok(Source::Oidc(Arc::new(lazy)))
}

#[cfg(not(feature = "oidc"))]
fn oidc_source(_: OidcSettings) -> Result<Source, AuthConfigFileError> {
    Err(AuthConfigFileError::NotBuilt { section: "oidc", feature: "oidc" })
}

/// The `github` section's provider.
#[cfg(feature = "github")]
fn github_provider(s: GithubSettings) -> Result<Arc<dyn AuthProvider>, AuthConfigFileError> {
    let parse = |field: &'static str, u: &str| {
        url::Url::parse(u).map_err(|source| AuthConfigFileError::GithubUrl {
            field,
            url: u.to_owned(),
            source,
        })
    };
    let mut config = match (s.base_url, s.api_url) {
        (None, None) => GithubConfig::github_com(s.client_id, s.client_secret),
        (Some(web), api) => {
            let web = parse("baseUrl", &web)?;
            let api = match api {
                Some(api) => parse("apiUrl", &api)?,
                None => web.join("api/v3").map_err(|source| AuthConfigFileError::GithubUrl {
                    field: "baseUrl",
                    url: web.to_string(),
                    source,
                })?,
            };
            GithubConfig::with_urls(s.client_id, s.client_secret, web, api)
        }
        (None, Some(api)) => {
            let web = parse("baseUrl", "https://github.com")?;
            GithubConfig::with_urls(s.client_id, s.client_secret, web, parse("apiUrl", &api)?)
        }
    };
    config.ca_pem = s.ca_pem;
    let provider = GithubProvider::new(config).map_err(AuthConfigFileError::Github)?;
    Ok(Arc::new(provider))
}

#[cfg(not(feature = "github"))]
fn github_provider(_: GithubSettings) -> Result<Arc<dyn AuthProvider>, AuthConfigFileError> {
    Err(AuthConfigFileError::NotBuilt { section: "github", feature: "github" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "ldap")]
    #[test]
    fn parses_openldap_and_refuses_unknown_or_missing_fields() {
        let ok = "openldap:\n  servers: [127.0.0.1]\n  tls: plain\n  port: 10389\n  serviceAccountDn: cn=svc\n  \
                  serviceAccountPassword: pw\n  userSearchBase: ou=people\n  groupSearchBase: ou=groups\n";
        assert_eq!(parse(ok).unwrap().names().collect::<Vec<_>>(), ["openldap"]);
        assert!(!parse("{}").unwrap().any());
        let typo = ok.replace("userSearchBase", "userSearchbase");
        assert!(parse(&typo).is_err());
        let empty = ok.replace("[127.0.0.1]", "[]");
        assert!(matches!(parse(&empty), Err(AuthConfigFileError::NoLdapServers)));
        let secret = ok.replace("tls: plain", "tls: maybe");
        let err = parse(&secret).unwrap_err();
        assert!(!err.to_string().contains("pw\n"), "{err}");
    }

    #[cfg(all(feature = "oidc", feature = "github"))]
    #[test]
    fn parses_oidc_github_and_the_refresh_interval() {
        let text = "oidc:\n  issuer: http://127.0.0.1:9/\n  clientId: rancher\n  clientSecret: s3cret\n  \
                    scopes: [openid, profile, groups]\n  groupsClaim: roles\ngithub:\n  clientId: gh\n  \
                    clientSecret: s\n  baseUrl: https://ghe.example.org\nrefreshInterval: 1500ms\n";
        let p = parse(text).unwrap();
        let Some(Source::Oidc(oidc)) = p.by_name.get("oidc") else { panic!("no oidc in {p:?}") };
        assert_eq!(oidc.config.scopes, ["profile", "groups"]);
        assert_eq!(oidc.config.groups_claim, "roles");
        assert_eq!(p.names().collect::<Vec<_>>(), ["github", "oidc"]);
        assert_eq!(p.refresh_interval, Duration::from_millis(1500));
        assert_eq!(parse("{}").unwrap().refresh_interval, DEFAULT_REFRESH_INTERVAL);
        assert!(parse("refreshInterval: 5x").unwrap_err().to_string().contains("unit"));
        assert!(parse("refreshInterval: 0s").is_err());
        assert!(parse("oidc:\n  issuer: not a url\n  clientId: a\n  clientSecret: b\n").is_err());
        assert!(parse("github:\n  clientId: a\n").is_err(), "clientSecret is required");
        assert_eq!(parse_interval("5m").unwrap(), Duration::from_secs(300));
    }
}
