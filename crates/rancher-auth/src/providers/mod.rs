//! Identity providers: who a user is and which groups they belong to, read from an outside directory.
//!
//! Every provider implements [`AuthProvider`]: it authenticates [`Credentials`] into an [`Identity`]
//! (a user [`Principal`] and its group principals), searches principals for the role-binding UI, and
//! re-reads a user's groups ([`AuthProvider::refresh_groups`]) so that a change at the provider reaches
//! the impersonation headers within the refresh interval. Principal ids follow Rancher's scheme,
//! `<provider>_<kind>://<id>`, for example `openldap_user://uid=alice,ou=people,dc=example,dc=org`,
//! `github_team://890` or `oidc_group://admins`.
//!
//! | provider | type | credentials |
//! |---|---|---|
//! | `openldap`, `activedirectory` | [`ldap::LdapProvider`] | [`Credentials::Password`] |
//! | `oidc` | [`oidc::OidcProvider`] | [`Credentials::OAuthCode`] after [`AuthProvider::authorize_url`] |
//! | `github` | [`github::GithubProvider`] | [`Credentials::OAuthCode`] after [`AuthProvider::authorize_url`] |
//!
//! The `local` provider (argon2 passwords in the store) lives with the user store, not here.
//!
//! Each provider is behind a cargo feature of the same name (`ldap`, `github`, `oidc`), all on by
//! default; with `default-features = false` only the trait and its types remain, for a program that
//! brings its own [`AuthProvider`]. The `mock` feature adds `MockAuthProvider` (mockall) for unit
//! tests of code that drives providers.
//!
//! Secrets (passwords, client secrets, codes, tokens) are held in [`Secret`], whose `Debug` prints
//! `<redacted>`; no error message in this module contains one.
//!
//! # Example: LDAP login
//!
//! ```no_run
//! use rancher_auth::providers::{AuthProvider, Credentials, ldap::{LdapConfig, LdapProvider, LdapTls}};
//!
//! # async fn run() -> Result<(), rancher_auth::providers::Error> {
//! let mut config = LdapConfig::openldap(
//!     vec!["ldap.example.org".into()],
//!     "cn=rancher,dc=example,dc=org",
//!     "service-password",
//!     "ou=people,dc=example,dc=org",
//!     "ou=groups,dc=example,dc=org",
//! );
//! config.tls = LdapTls::StartTls;
//! config.ca_pem = Some(std::fs::read_to_string("/etc/rancher/ldap-ca.pem").unwrap());
//! let ldap = LdapProvider::new(config)?;
//!
//! let identity = ldap.authenticate(&Credentials::password("alice", "alicepass")).await?;
//! println!("{} is in {:?}", identity.user.id, identity.groups.iter().map(|g| &g.display_name).collect::<Vec<_>>());
//! // Later, on the refresh interval:
//! let groups = ldap.refresh_groups(&identity.user).await?;
//! # let _ = groups; Ok(()) }
//! ```
//!
//! # Example: OIDC / GitHub login
//!
//! ```no_run
//! use rancher_auth::providers::{AuthProvider, AuthorizeRequest, Credentials, OAuthCallback, Pkce};
//! use rancher_auth::providers::oidc::{OidcConfig, OidcProvider};
//!
//! # async fn run() -> Result<(), rancher_auth::providers::Error> {
//! let oidc = OidcProvider::discover(OidcConfig::new("https://idp.example.org", "rancher", "secret")?).await?;
//! let pkce = Pkce::new_s256();
//! let request = AuthorizeRequest::new("http://127.0.0.1:8400/callback", &pkce);
//! let url = oidc.authorize_url(&request).await?;
//! println!("open {url}");
//! // ... the browser comes back to the redirect URI with ?code=…&state=…; check the state, then:
//! # let code = String::new();
//! let identity = oidc.authenticate(&Credentials::OAuthCode(OAuthCallback::new(code, &request, &pkce))).await?;
//! # let _ = identity; Ok(()) }
//! ```

use std::fmt;

use async_trait::async_trait;
use base64::Engine as _;
use sha2::Digest as _;

#[cfg(feature = "github")]
pub mod github;
#[cfg(any(feature = "github", feature = "oidc"))]
pub(crate) mod http_client;
#[cfg(feature = "ldap")]
pub mod ldap;
#[cfg(feature = "oidc")]
pub mod oidc;

/// The errors of identity providers. Messages never contain a password, code or token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user name, password, authorization code or PKCE verifier was not accepted. Deliberately
    /// does not say which, so that it cannot be used to find out which user names exist.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// No server of the provider could be reached (connection refused, timeout, DNS).
    #[error("{provider}: cannot reach {server}: {reason}")]
    Unreachable {
        /// The provider's name, e.g. `openldap`.
        provider: &'static str,
        /// The server or URL that was tried last.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// The TLS handshake with the provider failed, typically because its certificate is not signed
    /// by the configured CA.
    #[error("{provider}: TLS with {server} failed: {reason}")]
    Tls {
        /// The provider's name.
        provider: &'static str,
        /// The server that presented the certificate.
        server: String,
        /// The TLS error, e.g. `invalid peer certificate: UnknownIssuer`.
        reason: String,
    },
    /// The provider's configuration is wrong: a bad URL, CA PEM, service-account credentials, or a
    /// client id/secret the provider refuses.
    #[error("{provider}: misconfigured: {reason}")]
    Misconfigured {
        /// The provider's name.
        provider: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The principal id does not belong to this provider or is malformed.
    #[error("{provider}: not a principal of this provider: {id}")]
    ForeignPrincipal {
        /// The provider's name.
        provider: &'static str,
        /// The principal id that was given.
        id: String,
    },
    /// The principal no longer exists at the provider.
    #[error("{provider}: principal not found: {id}")]
    PrincipalNotFound {
        /// The provider's name.
        provider: &'static str,
        /// The principal id.
        id: String,
    },
    /// Groups cannot be refreshed without the user logging in again (no stored refresh or access
    /// token for this user, or the provider revoked it).
    #[error("{provider}: {id} must log in again to refresh groups")]
    LoginRequired {
        /// The provider's name.
        provider: &'static str,
        /// The user principal id.
        id: String,
    },
    /// The operation does not exist for this provider (e.g. a password login at an OAuth provider).
    #[error("{provider}: not supported: {what}")]
    Unsupported {
        /// The provider's name.
        provider: &'static str,
        /// The operation that was asked for.
        what: &'static str,
    },
    /// The provider answered with something unexpected (a protocol error, a malformed response, an
    /// ID token that fails verification).
    #[error("{provider}: {message}")]
    Provider {
        /// The provider's name.
        provider: &'static str,
        /// What the provider said or did wrong.
        message: String,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A secret string (password, client secret, code, token): its `Debug` output is `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is sent to the provider.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// Whether a principal is a user or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// A person (or service account) that can log in.
    User,
    /// A group, GitHub organisation or GitHub team.
    Group,
}

/// A user or group as a provider knows it. `id` is Rancher's principal id (`openldap_user://<dn>`,
/// `github_org://<id>`, `oidc_group://<name>`, …) and is what role bindings refer to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    /// `<provider>_<kind>://<provider-specific id>`.
    pub id: String,
    /// A human-readable name (`cn`, the GitHub name, the OIDC `name` claim).
    pub display_name: String,
    /// The name the principal logs in with or is known by (`uid`, `sAMAccountName`, GitHub login,
    /// `org/team-slug`, `preferred_username`).
    pub login_name: String,
    /// User or group.
    pub kind: PrincipalKind,
    /// The provider's name (`openldap`, `activedirectory`, `github`, `oidc`).
    pub provider: String,
}

impl Principal {
    // Used by the providers only, which are all optional.
    #[cfg_attr(not(any(feature = "ldap", feature = "github", feature = "oidc")), allow(dead_code))]
    /// Builds a principal whose id is `<provider>_<user|group|…>://<key>`.
    pub(crate) fn new(
        provider: &str,
        id_kind: &str,
        key: &str,
        display_name: impl Into<String>,
        login_name: impl Into<String>,
        kind: PrincipalKind,
    ) -> Self {
        Self {
            id: format!("{provider}_{id_kind}://{key}"),
            display_name: display_name.into(),
            login_name: login_name.into(),
            kind,
            provider: provider.to_owned(),
        }
    }

    #[cfg_attr(not(any(feature = "ldap", feature = "github", feature = "oidc")), allow(dead_code))]
    /// The provider-specific part of the id if it is `<provider>_<id_kind>://<key>`.
    pub(crate) fn key<'a>(&'a self, provider: &str, id_kind: &str) -> Option<&'a str> {
        self.id.strip_prefix(provider)?.strip_prefix('_')?.strip_prefix(id_kind)?.strip_prefix("://")
    }
}

/// Who logged in: the user and every group they belong to (nested groups included, deduplicated).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// The user principal.
    pub user: Principal,
    /// The user's group principals.
    pub groups: Vec<Principal>,
}

/// What a user presents to log in.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A user name and password (LDAP, Active Directory, local).
    Password {
        /// The login name (`uid`, `sAMAccountName`, …).
        username: String,
        /// The password; an empty one is always refused.
        password: Secret,
    },
    /// The result of an OAuth/OIDC authorization-code redirect (OIDC, GitHub).
    OAuthCode(OAuthCallback),
}

impl Credentials {
    /// A user name and password.
    pub fn password(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self::Password { username: username.into(), password: password.into() }
    }
}

/// The parts of an authorization-code login that come back with the browser, plus what the
/// client kept from the [`AuthorizeRequest`] (PKCE verifier, nonce).
#[derive(Debug, Clone)]
pub struct OAuthCallback {
    /// The `code` query parameter of the redirect.
    pub code: Secret,
    /// The redirect URI used in the authorization request (must match exactly).
    pub redirect_uri: String,
    /// The PKCE verifier whose challenge was sent in the authorization request.
    pub pkce_verifier: Option<Secret>,
    /// The nonce sent in the authorization request (OIDC checks the ID token carries it).
    pub nonce: Option<Secret>,
}

impl OAuthCallback {
    /// The callback for `request`, with the `code` the provider returned and the PKCE pair used.
    pub fn new(code: impl Into<Secret>, request: &AuthorizeRequest, pkce: &Pkce) -> Self {
        Self {
            code: code.into(),
            redirect_uri: request.redirect_uri.clone(),
            pkce_verifier: Some(pkce.verifier.clone()),
            nonce: Some(request.nonce.clone()),
        }
    }
}

/// The parameters of an authorization (browser) request. The caller keeps `state` (to check the
/// redirect), `nonce` and the PKCE verifier until the code comes back.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    /// Opaque CSRF value the provider echoes in the redirect.
    pub state: String,
    /// Value the ID token must carry (OIDC); ignored by GitHub.
    pub nonce: Secret,
    /// Where the provider sends the browser back (`http://127.0.0.1:<port>/callback` for the CLI).
    pub redirect_uri: String,
    /// `BASE64URL(SHA256(verifier))`, sent with `code_challenge_method=S256`.
    pub pkce_challenge: String,
}

impl AuthorizeRequest {
    /// A request with fresh random `state` and `nonce`, using the challenge of `pkce`.
    pub fn new(redirect_uri: impl Into<String>, pkce: &Pkce) -> Self {
        Self {
            state: random_token(),
            nonce: Secret::new(random_token()),
            redirect_uri: redirect_uri.into(),
            pkce_challenge: pkce.challenge.clone(),
        }
    }
}

/// A PKCE (RFC 7636) verifier and its S256 challenge.
#[derive(Debug, Clone)]
pub struct Pkce {
    /// The verifier: 43 characters of base64url randomness (256 bits). Kept by the client.
    pub verifier: Secret,
    /// `BASE64URL(SHA256(verifier))`: sent in the authorization request.
    pub challenge: String,
}

impl Pkce {
    /// A fresh random verifier and its S256 challenge.
    pub fn new_s256() -> Self {
        let verifier = random_token();
        let challenge = s256(&verifier);
        Self { verifier: Secret::new(verifier), challenge }
    }
}

/// `BASE64URL(SHA256(verifier))` (RFC 7636 §4.2).
fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

/// 32 random bytes, base64url without padding.
fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An identity provider. Object-safe: hold providers as `Box<dyn AuthProvider>` / `Arc<dyn …>`.
///
/// Implementations talk to the provider on every call (no caching of group membership), so the
/// caller decides the refresh interval.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait AuthProvider: Send + Sync {
    /// The provider's name: `local`, `openldap`, `activedirectory`, `github` or `oidc`. It is also
    /// the prefix of the principal ids it issues.
    fn name(&self) -> &'static str;

    /// Checks `credentials` and returns the user with all their groups.
    ///
    /// # Errors
    /// [`Error::InvalidCredentials`] for a wrong user, password, code or verifier (and for an empty
    /// password); [`Error::Unreachable`] / [`Error::Tls`] when the provider cannot be reached;
    /// [`Error::Unsupported`] for a kind of credentials the provider does not take.
    async fn authenticate(&self, credentials: &Credentials) -> Result<Identity>;

    /// Finds users and/or groups whose login or display name starts with `query`, for choosing
    /// principals in role bindings. `requester` is the logged-in user searching; providers that
    /// search with the user's own token (GitHub) need it, directory providers ignore it.
    async fn search_principals<'a>(
        &self,
        query: &str,
        kind: Option<PrincipalKind>,
        requester: Option<&'a Principal>,
    ) -> Result<Vec<Principal>>;

    /// Re-reads the groups of `user` (a principal this provider issued) from the provider.
    ///
    /// # Errors
    /// [`Error::PrincipalNotFound`] when the user was deleted; [`Error::LoginRequired`] when an
    /// OAuth provider holds no usable token for the user; [`Error::ForeignPrincipal`] for another
    /// provider's principal.
    async fn refresh_groups(&self, user: &Principal) -> Result<Vec<Principal>>;

    /// The URL to send the browser to for an authorization-code login (OAuth providers only).
    ///
    /// # Errors
    /// [`Error::Unsupported`] for password providers.
    async fn authorize_url(&self, request: &AuthorizeRequest) -> Result<url::Url> {
        let _ = request;
        Err(Error::Unsupported { provider: self.name(), what: "authorization-code login" })
    }
}

#[cfg(any(feature = "ldap", feature = "github", feature = "oidc"))]
/// Adds `p` to `out` unless a principal with the same id is already there.
pub(crate) fn push_unique(out: &mut Vec<Principal>, p: Principal) {
    if !out.iter().any(|q| q.id == p.id) {
        out.push(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let creds = Credentials::password("alice", "hunter2");
        let text = format!("{creds:?}");
        assert!(text.contains("alice"));
        assert!(!text.contains("hunter2"), "{text}");
        let pkce = Pkce::new_s256();
        assert!(!format!("{pkce:?}").contains(pkce.verifier.expose()));
    }

    #[test]
    fn pkce_challenge_is_s256_of_the_verifier() {
        // RFC 7636 appendix B.
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let pkce = Pkce::new_s256();
        assert_eq!(pkce.verifier.expose().len(), 43);
        assert_eq!(pkce.challenge, s256(pkce.verifier.expose()));
        assert_ne!(Pkce::new_s256().verifier, pkce.verifier);
    }

    #[test]
    fn principal_key_round_trips_only_for_its_own_provider() {
        let p = Principal::new("openldap", "user", "uid=a,dc=x", "A", "a", PrincipalKind::User);
        assert_eq!(p.id, "openldap_user://uid=a,dc=x");
        assert_eq!(p.key("openldap", "user"), Some("uid=a,dc=x"));
        assert_eq!(p.key("openldap", "group"), None);
        assert_eq!(p.key("activedirectory", "user"), None);
    }

    #[tokio::test]
    async fn the_trait_is_object_safe_and_mockable() {
        let mut mock = MockAuthProvider::new();
        mock.expect_name().return_const("openldap");
        mock.expect_authenticate().returning(|_| Err(Error::InvalidCredentials));
        let provider: Box<dyn AuthProvider> = Box::new(mock);
        assert_eq!(provider.name(), "openldap");
        let err = provider.authenticate(&Credentials::password("a", "b")).await.unwrap_err();
        assert!(matches!(err, Error::InvalidCredentials));
    }
}
