//! Configuration of the LDAP / Active Directory provider: dialect, transport security, where users and
//! groups live and how membership is read.

use std::time::Duration;

use crate::providers::Secret;

/// Which directory dialect: decides the provider name and the defaults of [`LdapConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdapFlavor {
    /// OpenLDAP / generic LDAP (`openldap`).
    OpenLdap,
    /// Active Directory (`activedirectory`).
    ActiveDirectory,
}

impl LdapFlavor {
    /// The provider name, also the principal id prefix.
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenLdap => "openldap",
            Self::ActiveDirectory => "activedirectory",
        }
    }
}

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdapTls {
    /// `ldap://` without TLS. Passwords cross the network in clear text: for tests and loopback only.
    Plain,
    /// `ldap://` upgraded with the StartTLS extended operation before any bind.
    StartTls,
    /// `ldaps://`: TLS from the first byte.
    Ldaps,
}

/// Where a user's groups are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupLookup {
    /// The user's `memberOf` attribute (operational in OpenLDAP: the `memberof` overlay must be on),
    /// and each group's own `memberOf` for nesting.
    MemberOf,
    /// Searching the group base for groups whose member attribute holds the user's (or a group's) DN.
    MemberSearch,
}

/// Configuration of an LDAP or Active Directory provider. Start from [`LdapConfig::openldap`] or
/// [`LdapConfig::active_directory`] and adjust fields.
#[derive(Debug, Clone)]
pub struct LdapConfig {
    /// OpenLDAP or Active Directory.
    pub flavor: LdapFlavor,
    /// Host names or IP addresses, tried in order until one answers.
    pub servers: Vec<String>,
    /// TCP port (389 for `ldap://`, 636 for `ldaps://`).
    pub port: u16,
    /// Transport security.
    pub tls: LdapTls,
    /// PEM of the CA(s) that sign the servers' certificates; `None` uses the system roots.
    pub ca_pem: Option<String>,
    /// DN the provider binds as to search (service account).
    pub service_account_dn: String,
    /// The service account's password.
    pub service_account_password: Secret,
    /// Base DN of user searches.
    pub user_search_base: String,
    /// Attribute users log in with: `uid` (OpenLDAP) or `sAMAccountName` (AD).
    pub user_login_attribute: String,
    /// Object class of user entries: `inetOrgPerson` (OpenLDAP) or `user` (AD).
    pub user_object_class: String,
    /// Attribute holding a user's display name: `cn` or `displayName`.
    pub user_name_attribute: String,
    /// Base DN of group searches.
    pub group_search_base: String,
    /// Object class of group entries: `groupOfNames` (OpenLDAP) or `group` (AD).
    pub group_object_class: String,
    /// Attribute of a group listing its members' DNs (`member`).
    pub group_member_attribute: String,
    /// Attribute holding a group's name (`cn`).
    pub group_name_attribute: String,
    /// Where membership is read from.
    pub group_lookup: GroupLookup,
    /// Follow groups of groups.
    pub nested_groups: bool,
    /// How many levels of nesting are followed at most.
    pub max_nesting_depth: usize,
    /// Timeout for connecting and for each LDAP operation.
    pub timeout: Duration,
}

impl LdapConfig {
    /// OpenLDAP defaults: `uid` logins, `inetOrgPerson` users, `groupOfNames` groups with `member`,
    /// groups found by member search, nested groups on, plain `ldap://` on port 389 (set `tls`).
    pub fn openldap(
        servers: Vec<String>,
        service_account_dn: impl Into<String>,
        service_account_password: impl Into<Secret>,
        user_search_base: impl Into<String>,
        group_search_base: impl Into<String>,
    ) -> Self {
        Self {
            flavor: LdapFlavor::OpenLdap,
            servers,
            port: 389,
            tls: LdapTls::Plain,
            ca_pem: None,
            service_account_dn: service_account_dn.into(),
            service_account_password: service_account_password.into(),
            user_search_base: user_search_base.into(),
            user_login_attribute: "uid".into(),
            user_object_class: "inetOrgPerson".into(),
            user_name_attribute: "cn".into(),
            group_search_base: group_search_base.into(),
            group_object_class: "groupOfNames".into(),
            group_member_attribute: "member".into(),
            group_name_attribute: "cn".into(),
            group_lookup: GroupLookup::MemberSearch,
            nested_groups: true,
            max_nesting_depth: 5,
            timeout: Duration::from_secs(10),
        }
    }

    /// Active Directory defaults: `sAMAccountName` logins (or `userPrincipalName` when the login
    /// contains `@`; a `DOMAIN\` prefix is dropped), `user`/`group` object classes, `displayName`,
    /// groups from `memberOf`, nested groups on.
    pub fn active_directory(
        servers: Vec<String>,
        service_account_dn: impl Into<String>,
        service_account_password: impl Into<Secret>,
        user_search_base: impl Into<String>,
        group_search_base: impl Into<String>,
    ) -> Self {
        Self {
            flavor: LdapFlavor::ActiveDirectory,
            user_login_attribute: "sAMAccountName".into(),
            user_object_class: "user".into(),
            user_name_attribute: "displayName".into(),
            group_object_class: "group".into(),
            group_lookup: GroupLookup::MemberOf,
            ..Self::openldap(
                servers,
                service_account_dn,
                service_account_password,
                user_search_base,
                group_search_base,
            )
        }
    }
}
