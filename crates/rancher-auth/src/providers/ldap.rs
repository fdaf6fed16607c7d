//! LDAP and Active Directory: login by service bind → user search → user bind, groups read from
//! `memberOf` or by searching groups for `member=<dn>`, nested groups followed on the client
//! (bounded depth, cycle-safe) because OpenLDAP has no `LDAP_MATCHING_RULE_IN_CHAIN`.

use std::{collections::HashSet, sync::Arc, time::Duration};

use async_trait::async_trait;
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, SearchOptions, ldap_escape,
};

use super::{
    AuthProvider, Credentials, Error, Identity, Principal, PrincipalKind, Result, Secret, push_unique,
};

mod config;
pub use config::{GroupLookup, LdapConfig, LdapFlavor, LdapTls};

/// An LDAP / Active Directory [`AuthProvider`]. Opens a connection per call (logins are rare and a
/// pooled connection would carry a user bind across requests).
pub struct LdapProvider {
    config: LdapConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for LdapProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapProvider").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Most principals returned by one search.
const SEARCH_LIMIT: i32 = 100;
/// LDAP result codes we act on (RFC 4511 §4.1.9).
const RC_SUCCESS: u32 = 0;
const RC_SIZE_LIMIT_EXCEEDED: u32 = 4;
const RC_NO_SUCH_OBJECT: u32 = 32;
const RC_INVALID_CREDENTIALS: u32 = 49;

impl LdapProvider {
    /// Checks the configuration and prepares TLS.
    ///
    /// # Errors
    /// [`Error::Misconfigured`] for no servers, empty bases or service DN, or a CA PEM without a
    /// usable certificate.
    pub fn new(config: LdapConfig) -> Result<Self> {
        let provider = config.flavor.name();
        let bad = |reason: &str| Err(Error::Misconfigured { provider, reason: reason.to_owned() });
        if config.servers.is_empty() || config.servers.iter().any(|s| s.trim().is_empty()) {
            return bad("no LDAP server configured");
        }
        if config.user_search_base.is_empty() || config.group_search_base.is_empty() {
            return bad("user and group search bases are required");
        }
        if config.service_account_dn.is_empty() || config.service_account_password.is_empty() {
            return bad("service account DN and password are required");
        }
        if config.max_nesting_depth == 0 && config.nested_groups {
            return bad("max_nesting_depth must be at least 1 when nested groups are on");
        }
        let tls = match (&config.tls, &config.ca_pem) {
            (LdapTls::Plain, _) => None,
            (_, Some(pem)) => Some(Arc::new(tls_config(provider, pem)?)),
            // ldap3 builds a config with the system roots from rustls' process-wide provider.
            (_, None) => {
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                None
            }
        };
        Ok(Self { config, tls })
    }

    fn provider(&self) -> &'static str {
        self.config.flavor.name()
    }

    /// Connects to the first server that answers.
    async fn connect(&self) -> Result<Conn> {
        let scheme = if self.config.tls == LdapTls::Ldaps { "ldaps" } else { "ldap" };
        let mut last_error = None;
        for server in &self.config.servers {
            let host = if server.contains(':') && !server.starts_with('[') {
                format!("[{server}]")
            } else {
                server.clone()
            };
            let url = format!("{scheme}://{host}:{}", self.config.port);
            let mut settings = LdapConnSettings::new().set_conn_timeout(self.config.timeout);
            if self.config.tls != LdapTls::Plain {
                settings = settings.set_starttls(self.config.tls == LdapTls::StartTls);
                if let Some(tls) = &self.tls {
                    settings = settings.set_config(tls.clone());
                }
            }
            match LdapConnAsync::with_settings(settings, &url).await {
                Ok((conn, ldap)) => {
                    ldap3::drive!(conn);
                    return Ok(Conn { ldap, timeout: self.config.timeout, provider: self.provider(), url });
                }
                Err(e) => {
                    tracing::warn!(provider = self.provider(), %url, error = %e, "LDAP server unavailable");
                    last_error = Some(connect_error(self.provider(), &url, e));
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Misconfigured {
            provider: self.provider(),
            reason: "no LDAP server configured".into(),
        }))
    }

    /// Connects and binds as the service account.
    async fn service_connection(&self) -> Result<Conn> {
        let mut conn = self.connect().await?;
        self.service_bind(&mut conn).await?;
        Ok(conn)
    }

    async fn service_bind(&self, conn: &mut Conn) -> Result<()> {
        if conn.bind(&self.config.service_account_dn, &self.config.service_account_password).await? {
            Ok(())
        } else {
            Err(Error::Misconfigured {
                provider: self.provider(),
                reason: format!(
                    "the directory refused the service account {}",
                    self.config.service_account_dn
                ),
            })
        }
    }

    /// The filter and login attribute for a login name, after AD's `DOMAIN\user` / `user@domain`.
    fn login_filter(&self, username: &str) -> String {
        let c = &self.config;
        let (attr, value) = match c.flavor {
            LdapFlavor::ActiveDirectory if username.contains('@') => ("userPrincipalName", username),
            LdapFlavor::ActiveDirectory => {
                (c.user_login_attribute.as_str(), username.rsplit('\\').next().unwrap_or(username))
            }
            LdapFlavor::OpenLdap => (c.user_login_attribute.as_str(), username),
        };
        format!("(&(objectClass={})({attr}={}))", ldap_escape(&c.user_object_class), ldap_escape(value))
    }

    fn user_attrs(&self) -> Vec<&str> {
        let c = &self.config;
        let mut attrs = vec![c.user_login_attribute.as_str(), c.user_name_attribute.as_str(), "cn"];
        if c.group_lookup == GroupLookup::MemberOf {
            // Operational: only returned when asked for by name.
            attrs.push("memberOf");
        }
        attrs
    }

    fn user_principal(&self, entry: &SearchEntry) -> Principal {
        let c = &self.config;
        let login = first(entry, &c.user_login_attribute).unwrap_or_default();
        let display = first(entry, &c.user_name_attribute)
            .or_else(|| first(entry, "cn"))
            .unwrap_or_else(|| login.clone());
        Principal::new(self.provider(), "user", &entry.dn, display, login, PrincipalKind::User)
    }

    fn group_principal(&self, dn: &str, name: Option<String>) -> Principal {
        let name = name.unwrap_or_else(|| rdn_value(dn));
        Principal::new(self.provider(), "group", dn, name.clone(), name, PrincipalKind::Group)
    }

    /// All groups of the user entry, nested ones included when configured.
    async fn groups_of(&self, conn: &mut Conn, user: &SearchEntry) -> Result<Vec<Principal>> {
        let c = &self.config;
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut level: Vec<(String, Option<String>)> = match c.group_lookup {
            GroupLookup::MemberOf => values(user, "memberOf").into_iter().map(|dn| (dn, None)).collect(),
            GroupLookup::MemberSearch => {
                self.groups_with_members(conn, std::slice::from_ref(&user.dn)).await?
            }
        };
        let mut depth = 0;
        loop {
            let mut fresh = Vec::new();
            for (dn, name) in level {
                // DNs compare case-insensitively; a group met again (a cycle or a diamond) is not followed twice.
                if seen.insert(dn.to_ascii_lowercase()) {
                    out.push(self.group_principal(&dn, name));
                    fresh.push(dn);
                }
            }
            depth += 1;
            if !c.nested_groups || fresh.is_empty() {
                break;
            }
            if depth > c.max_nesting_depth {
                tracing::warn!(provider = self.provider(), user = %user.dn, depth, "group nesting deeper than max_nesting_depth; not followed further");
                break;
            }
            level = match c.group_lookup {
                GroupLookup::MemberOf => self.member_of_groups(conn, &fresh).await?,
                GroupLookup::MemberSearch => self.groups_with_members(conn, &fresh).await?,
            };
        }
        Ok(out)
    }

    /// Groups (DN, name) whose member attribute holds any of `member_dns`.
    async fn groups_with_members(
        &self,
        conn: &mut Conn,
        member_dns: &[String],
    ) -> Result<Vec<(String, Option<String>)>> {
        let c = &self.config;
        let members: String = member_dns
            .iter()
            .map(|dn| format!("({}={})", c.group_member_attribute, ldap_escape(dn.as_str())))
            .collect();
        let filter = format!("(&(objectClass={})(|{members}))", ldap_escape(&c.group_object_class));
        let entries = conn
            .search(&c.group_search_base, Scope::Subtree, &filter, &[c.group_name_attribute.as_str()], 0)
            .await?;
        Ok(entries.into_iter().map(|e| (e.dn.clone(), first(&e, &c.group_name_attribute))).collect())
    }

    /// The groups listed in the `memberOf` of each of `group_dns`.
    async fn member_of_groups(
        &self,
        conn: &mut Conn,
        group_dns: &[String],
    ) -> Result<Vec<(String, Option<String>)>> {
        let mut out = Vec::new();
        for dn in group_dns {
            for entry in conn.search(dn, Scope::Base, "(objectClass=*)", &["memberOf"], 1).await? {
                out.extend(values(&entry, "memberOf").into_iter().map(|dn| (dn, None)));
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl AuthProvider for LdapProvider {
    fn name(&self) -> &'static str {
        self.provider()
    }

    async fn authenticate(&self, credentials: &Credentials) -> Result<Identity> {
        let Credentials::Password { username, password } = credentials else {
            return Err(Error::Unsupported { provider: self.provider(), what: "OAuth code login" });
        };
        // An empty password makes a simple bind anonymous (RFC 4513 §5.1.2), which "succeeds".
        if username.trim().is_empty() || password.is_empty() || username.len() > 256 {
            return Err(Error::InvalidCredentials);
        }
        let mut conn = self.service_connection().await?;
        let filter = self.login_filter(username);
        let entries = conn
            .search(&self.config.user_search_base, Scope::Subtree, &filter, &self.user_attrs(), 2)
            .await?;
        let user = match entries.as_slice() {
            [one] => one,
            [] => return Err(Error::InvalidCredentials),
            _ => {
                return Err(Error::Provider {
                    provider: self.provider(),
                    message: format!("login {username:?} matches more than one entry"),
                });
            }
        };
        if !conn.bind(&user.dn, password).await? {
            tracing::info!(provider = self.provider(), user = %user.dn, "LDAP login refused");
            return Err(Error::InvalidCredentials);
        }
        // Groups are read as the service account, the same view refresh_groups has.
        self.service_bind(&mut conn).await?;
        let groups = self.groups_of(&mut conn, user).await?;
        conn.close().await;
        Ok(Identity { user: self.user_principal(user), groups })
    }

    async fn search_principals<'a>(
        &self,
        query: &str,
        kind: Option<PrincipalKind>,
        _requester: Option<&'a Principal>,
    ) -> Result<Vec<Principal>> {
        let c = &self.config;
        let q = ldap_escape(query.trim());
        let mut conn = self.service_connection().await?;
        let mut out = Vec::new();
        if kind != Some(PrincipalKind::Group) {
            let filter = format!(
                "(&(objectClass={})(|({}={q}*)({}={q}*)))",
                ldap_escape(&c.user_object_class),
                c.user_login_attribute,
                c.user_name_attribute
            );
            let attrs = [c.user_login_attribute.as_str(), c.user_name_attribute.as_str(), "cn"];
            for entry in
                conn.search(&c.user_search_base, Scope::Subtree, &filter, &attrs, SEARCH_LIMIT).await?
            {
                push_unique(&mut out, self.user_principal(&entry));
            }
        }
        if kind != Some(PrincipalKind::User) {
            let filter = format!(
                "(&(objectClass={})({}={q}*))",
                ldap_escape(&c.group_object_class),
                c.group_name_attribute
            );
            let attrs = [c.group_name_attribute.as_str()];
            for entry in
                conn.search(&c.group_search_base, Scope::Subtree, &filter, &attrs, SEARCH_LIMIT).await?
            {
                let name = first(&entry, &c.group_name_attribute);
                push_unique(&mut out, self.group_principal(&entry.dn, name));
            }
        }
        conn.close().await;
        Ok(out)
    }

    async fn refresh_groups(&self, user: &Principal) -> Result<Vec<Principal>> {
        let Some(dn) = user.key(self.provider(), "user") else {
            return Err(Error::ForeignPrincipal { provider: self.provider(), id: user.id.clone() });
        };
        let mut conn = self.service_connection().await?;
        let filter = format!("(objectClass={})", ldap_escape(&self.config.user_object_class));
        let entries = conn.search(dn, Scope::Base, &filter, &self.user_attrs(), 1).await?;
        let Some(entry) = entries.first() else {
            return Err(Error::PrincipalNotFound { provider: self.provider(), id: user.id.clone() });
        };
        let groups = self.groups_of(&mut conn, entry).await?;
        conn.close().await;
        Ok(groups)
    }
}

// ---------------------------------------------------------------------------------------------
// One connection

/// An open connection with the per-operation timeout applied to every call.
struct Conn {
    ldap: Ldap,
    timeout: Duration,
    provider: &'static str,
    url: String,
}

impl Conn {
    /// Simple bind; `Ok(false)` when the directory says invalid credentials.
    async fn bind(&mut self, dn: &str, password: &Secret) -> Result<bool> {
        if password.is_empty() {
            return Ok(false);
        }
        let res = self
            .ldap
            .with_timeout(self.timeout)
            .simple_bind(dn, password.expose())
            .await
            .map_err(|e| self.error(e))?;
        match res.rc {
            RC_SUCCESS => Ok(true),
            RC_INVALID_CREDENTIALS => Ok(false),
            rc => Err(Error::Provider {
                provider: self.provider,
                message: format!("bind as {dn} failed with result code {rc}: {}", res.text),
            }),
        }
    }

    /// A search; a missing base gives no entries, a size limit gives the entries that came.
    async fn search(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        limit: i32,
    ) -> Result<Vec<SearchEntry>> {
        let ldap3::SearchResult(entries, res) = self
            .ldap
            .with_timeout(self.timeout)
            .with_search_options(SearchOptions::new().sizelimit(limit))
            .search(base, scope, filter, attrs.to_vec())
            .await
            .map_err(|e| self.error(e))?;
        match res.rc {
            RC_SUCCESS | RC_SIZE_LIMIT_EXCEEDED => {
                Ok(entries.into_iter().map(SearchEntry::construct).collect())
            }
            RC_NO_SUCH_OBJECT => Ok(Vec::new()),
            rc => Err(Error::Provider {
                provider: self.provider,
                message: format!("search {filter} under {base} failed with result code {rc}: {}", res.text),
            }),
        }
    }

    async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }

    fn error(&self, e: LdapError) -> Error {
        connect_error(self.provider, &self.url, e)
    }
}

/// Classifies a connection-level error: TLS, timeout/IO (unreachable), or anything else.
fn connect_error(provider: &'static str, url: &str, e: LdapError) -> Error {
    let server = url.to_owned();
    let tls_reason = match &e {
        LdapError::Rustls { source } => Some(source.to_string()),
        LdapError::Io { source } => {
            source.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).map(ToString::to_string)
        }
        _ => None,
    };
    if let Some(reason) = tls_reason {
        return Error::Tls { provider, server, reason };
    }
    match e {
        LdapError::Io { .. } | LdapError::Timeout { .. } | LdapError::EndOfStream => {
            Error::Unreachable { provider, server, reason: e.to_string() }
        }
        LdapError::UrlParsing { .. } | LdapError::UnknownScheme(_) => {
            Error::Misconfigured { provider, reason: format!("server URL {server}: {e}") }
        }
        other => Error::Provider { provider, message: format!("{server}: {other}") },
    }
}

/// A rustls client config trusting exactly the certificates in `pem`.
fn tls_config(provider: &'static str, pem: &str) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let bad = |reason: String| Error::Misconfigured { provider, reason };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| bad(format!("CA PEM: {e}")))?;
        roots.add(cert).map_err(|e| bad(format!("CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("CA PEM holds no certificate".into()));
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(config)
}

// ---------------------------------------------------------------------------------------------
// Entry helpers

/// Values of an attribute, matched case-insensitively (servers return their own spelling).
fn values(entry: &SearchEntry, attr: &str) -> Vec<String> {
    entry.attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(attr)).map(|(_, v)| v.clone()).unwrap_or_default()
}

fn first(entry: &SearchEntry, attr: &str) -> Option<String> {
    values(entry, attr).into_iter().next()
}

/// The value of a DN's first RDN, unescaped: `cn=Domain Admins,ou=ad,…` → `Domain Admins`.
fn rdn_value(dn: &str) -> String {
    let Some((_, rest)) = dn.split_once('=') else { return dn.to_owned() };
    let mut out = Vec::new();
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b',' | b'+' => break,
            b'\\' if i + 2 < bytes.len() + 1 && i + 1 < bytes.len() => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    out.push(byte);
                    i += 3;
                } else {
                    out.push(bytes[i + 1]);
                    i += 2;
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdn_value_unescapes() {
        assert_eq!(rdn_value("cn=Domain Admins,ou=ad,dc=example,dc=org"), "Domain Admins");
        assert_eq!(rdn_value(r"cn=Smith\, John,ou=people"), "Smith, John");
        assert_eq!(rdn_value(r"cn=a\2Cb,dc=x"), "a,b");
        assert_eq!(rdn_value("cn=last"), "last");
    }

    fn provider(flavor: LdapFlavor) -> LdapProvider {
        let mut config =
            LdapConfig::openldap(vec!["127.0.0.1".into()], "cn=svc", "pw", "ou=people", "ou=groups");
        if flavor == LdapFlavor::ActiveDirectory {
            config = LdapConfig::active_directory(vec!["127.0.0.1".into()], "cn=svc", "pw", "ou=ad", "ou=ad");
        }
        LdapProvider::new(config).unwrap()
    }

    #[test]
    fn login_filters_escape_the_user_input() {
        let p = provider(LdapFlavor::OpenLdap);
        assert_eq!(p.login_filter("*)(uid=*"), r"(&(objectClass=inetOrgPerson)(uid=\2a\29\28uid=\2a))");
        let ad = provider(LdapFlavor::ActiveDirectory);
        assert_eq!(ad.login_filter(r"EXAMPLE\dave"), "(&(objectClass=user)(sAMAccountName=dave))");
        assert_eq!(
            ad.login_filter("dave@example.org"),
            "(&(objectClass=user)(userPrincipalName=dave@example.org))"
        );
    }

    #[test]
    fn configuration_is_checked() {
        let mut config = LdapConfig::openldap(vec![], "cn=svc", "pw", "ou=p", "ou=g");
        assert!(matches!(LdapProvider::new(config.clone()), Err(Error::Misconfigured { .. })));
        config.servers = vec!["h".into()];
        config.tls = LdapTls::Ldaps;
        config.ca_pem = Some("not a pem".into());
        let err = LdapProvider::new(config).unwrap_err();
        assert!(err.to_string().contains("CA PEM"), "{err}");
    }

    #[tokio::test]
    async fn empty_password_is_refused_without_asking_the_server() {
        // Port 9 on loopback: nothing listens; an attempt to connect would give Unreachable.
        let mut config = LdapConfig::openldap(vec!["127.0.0.1".into()], "cn=svc", "pw", "ou=p", "ou=g");
        config.port = 9;
        let p = LdapProvider::new(config).unwrap();
        let err = p.authenticate(&Credentials::password("alice", "")).await.unwrap_err();
        assert!(matches!(err, Error::InvalidCredentials), "{err}");
        let err = p.authenticate(&Credentials::password("alice", "x")).await.unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    }
}
