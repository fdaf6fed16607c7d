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
//! ```

pub(crate) mod local;
pub(crate) mod login;

use std::path::Path;
use std::sync::Arc;

use rancher_auth::providers::AuthProvider;
use rancher_auth::providers::ldap::{LdapConfig, LdapProvider, LdapTls};
use serde::Deserialize;

/// The `--auth-config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AuthConfigFile {
    #[serde(default)]
    openldap: Option<LdapSettings>,
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

/// The providers configured for login.
#[derive(Clone, Default)]
pub(crate) struct Providers {
    /// `openldap`, when configured.
    pub(crate) openldap: Option<Arc<dyn AuthProvider>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers").field("openldap", &self.openldap.is_some()).finish()
    }
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
}
