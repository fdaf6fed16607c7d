//! Identity providers for login: the store's own users ([`local`], always on) and external ones
//! configured by `--auth-config FILE` (YAML) — today OpenLDAP at
//! `POST /v3-public/openLdapProviders/openldap?action=login` ([`login`]). A provider's user is
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

pub(crate) mod local;
pub(crate) mod login;
pub(crate) mod oauth;
pub(crate) mod refresh;

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rancher_auth::providers::AuthProvider;
use rancher_auth::providers::github::{GithubConfig, GithubProvider};
use rancher_auth::providers::ldap::{LdapConfig, LdapProvider, LdapTls};
use rancher_auth::providers::oidc::{OidcConfig, OidcProvider};
use rancher_core::store::Store;
use serde::Deserialize;

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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
enum TlsMode {
    #[default]
    Starttls,
    Plain,
    Ldaps,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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

/// An OIDC provider discovered on first use, so the server starts while the issuer is down; a failed
/// discovery is tried again at the next use.
pub(crate) struct LazyOidc {
    config: OidcConfig,
    provider: tokio::sync::OnceCell<Arc<dyn AuthProvider>>,
}

/// The providers configured for login.
#[derive(Clone)]
pub(crate) struct Providers {
    /// `openldap`, when configured.
    pub(crate) openldap: Option<Arc<dyn AuthProvider>>,
    /// `oidc`, when configured.
    pub(crate) oidc: Option<Arc<LazyOidc>>,
    /// `github`, when configured.
    pub(crate) github: Option<Arc<dyn AuthProvider>>,
    /// Authorization-code logins waiting for their redirect.
    pub(crate) pending: Arc<oauth::PendingLogins>,
    /// How often provider groups are re-read.
    pub(crate) refresh_interval: Duration,
    /// Set once the refresh task runs.
    refresh_started: Arc<OnceLock<()>>,
}

impl Default for Providers {
    fn default() -> Self {
        Self {
            openldap: None,
            oidc: None,
            github: None,
            pending: Arc::default(),
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            refresh_started: Arc::default(),
        }
    }
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("openldap", &self.openldap.is_some())
            .field("oidc", &self.oidc.is_some())
            .field("github", &self.github.is_some())
            .field("refresh_interval", &self.refresh_interval)
            .finish()
    }
}

impl Providers {
    /// The OIDC provider (discovering it on first use), `None` when not configured.
    pub(crate) async fn oidc(&self) -> Option<Result<Arc<dyn AuthProvider>, rancher_auth::providers::Error>> {
        let lazy = self.oidc.as_ref()?;
        Some(
            lazy.provider
                .get_or_try_init(|| async {
                    let p = OidcProvider::discover(lazy.config.clone()).await?;
                    Ok(Arc::new(p) as Arc<dyn AuthProvider>)
                })
                .await
                .cloned(),
        )
    }

    /// Starts the group refresh task once: at server start when a provider is configured, and again
    /// (a no-op) at each external login. The OAuth providers can only refresh users who logged in
    /// through this process; the others report `LoginRequired`, which the pass skips.
    pub(crate) fn start_refresh(&self, store: Arc<dyn Store>) {
        if self.refresh_started.set(()).is_ok() {
            tokio::spawn(refresh::run(self.clone(), store));
        }
    }
}

/// Parses `5m`, `30s`, `1h`, `1500ms` or plain seconds.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 =
        num.parse().map_err(|_| format!("refreshInterval {text:?}: expected e.g. 5m, 30s, 1500ms"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("refreshInterval {text:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    if d < Duration::from_millis(100) {
        return Err(format!("refreshInterval {text:?}: at least 100ms"));
    }
    Ok(d)
}

/// Reads and checks `--auth-config`.
///
/// # Errors
/// A message naming the file and what is wrong (never a password).
pub(crate) fn load(path: &Path) -> Result<Providers, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse(text: &str) -> Result<Providers, String> {
    let file: AuthConfigFile = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let mut providers = Providers::default();
    if let Some(s) = file.openldap {
        if s.servers.is_empty() {
            return Err("openldap.servers is empty".into());
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
        let provider = LdapProvider::new(config).map_err(|e| format!("openldap: {e}"))?;
        providers.openldap = Some(Arc::new(provider));
    }
    if let Some(s) = file.oidc {
        let mut config =
            OidcConfig::new(&s.issuer, s.client_id, s.client_secret).map_err(|e| format!("oidc: {e}"))?;
        if let Some(scopes) = s.scopes {
            config.scopes = scopes.into_iter().filter(|s| s != "openid").collect();
        }
        if let Some(claim) = s.groups_claim {
            config.groups_claim = claim;
        }
        config.ca_pem = s.ca_pem;
        providers.oidc = Some(Arc::new(LazyOidc { config, provider: tokio::sync::OnceCell::new() }));
    }
    if let Some(s) = file.github {
        let parse = |what: &str, u: &str| url::Url::parse(u).map_err(|e| format!("github.{what} {u:?}: {e}"));
        let mut config = match (s.base_url, s.api_url) {
            (None, None) => GithubConfig::github_com(s.client_id, s.client_secret),
            (Some(web), api) => {
                let web = parse("baseUrl", &web)?;
                let api = match api {
                    Some(api) => parse("apiUrl", &api)?,
                    None => web.join("api/v3").map_err(|e| format!("github.baseUrl: {e}"))?,
                };
                GithubConfig::with_urls(s.client_id, s.client_secret, web, api)
            }
            (None, Some(api)) => {
                let web = parse("baseUrl", "https://github.com")?;
                GithubConfig::with_urls(s.client_id, s.client_secret, web, parse("apiUrl", &api)?)
            }
        };
        config.ca_pem = s.ca_pem;
        let provider = GithubProvider::new(config).map_err(|e| format!("github: {e}"))?;
        providers.github = Some(Arc::new(provider));
    }
    if let Some(text) = file.refresh_interval {
        providers.refresh_interval = parse_interval(&text)?;
    }
    Ok(providers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openldap_and_refuses_unknown_or_missing_fields() {
        let ok = "openldap:\n  servers: [127.0.0.1]\n  tls: plain\n  port: 10389\n  serviceAccountDn: cn=svc\n  \
                  serviceAccountPassword: pw\n  userSearchBase: ou=people\n  groupSearchBase: ou=groups\n";
        assert!(parse(ok).unwrap().openldap.is_some());
        assert!(parse("{}").unwrap().openldap.is_none());
        let typo = ok.replace("userSearchBase", "userSearchbase");
        assert!(parse(&typo).is_err());
        let empty = ok.replace("[127.0.0.1]", "[]");
        assert!(parse(&empty).unwrap_err().contains("servers"));
        let secret = ok.replace("tls: plain", "tls: maybe");
        let err = parse(&secret).unwrap_err();
        assert!(!err.contains("pw\n"), "{err}");
    }

    #[test]
    fn parses_oidc_github_and_the_refresh_interval() {
        let text = "oidc:\n  issuer: http://127.0.0.1:9/\n  clientId: rancher\n  clientSecret: s3cret\n  \
                    scopes: [openid, profile, groups]\n  groupsClaim: roles\ngithub:\n  clientId: gh\n  \
                    clientSecret: s\n  baseUrl: https://ghe.example.org\nrefreshInterval: 1500ms\n";
        let p = parse(text).unwrap();
        let oidc = p.oidc.as_ref().unwrap();
        assert_eq!(oidc.config.scopes, ["profile", "groups"]);
        assert_eq!(oidc.config.groups_claim, "roles");
        assert!(p.github.is_some());
        assert_eq!(p.refresh_interval, Duration::from_millis(1500));
        assert_eq!(parse("{}").unwrap().refresh_interval, DEFAULT_REFRESH_INTERVAL);
        assert!(parse("refreshInterval: 5x").unwrap_err().contains("unit"));
        assert!(parse("refreshInterval: 0s").is_err());
        assert!(parse("oidc:\n  issuer: not a url\n  clientId: a\n  clientSecret: b\n").is_err());
        assert!(parse("github:\n  clientId: a\n").is_err(), "clientSecret is required");
        assert_eq!(parse_interval("5m").unwrap(), Duration::from_secs(300));
    }
}
