//! Generic OpenID Connect: discovery from the issuer, the authorization-code flow with PKCE (S256)
//! and a nonce, ID-token verification (signature against the discovered JWKS, issuer, audience,
//! expiry, nonce, `at_hash`), groups from a configurable claim with a userinfo fallback, and group
//! refresh with the refresh token.

use std::{borrow::Cow, collections::HashMap, sync::Mutex, time::Duration};

use async_trait::async_trait;
use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalClaims, AuthenticationFlow, AuthorizationCode, Client, ClientId,
    ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardErrorResponse, StandardTokenResponse, SubjectIdentifier,
    core::{
        CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
        CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreResponseType,
        CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
    },
};

use super::{
    AuthProvider, AuthorizeRequest, Credentials, Error, Identity, Principal, PrincipalKind, Result, Secret,
    http_client::{self, OidcHttp},
    push_unique,
};

const NAME: &str = "oidc";

/// Configuration of an OIDC provider.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer; `<issuer>/.well-known/openid-configuration` must describe it.
    pub issuer: url::Url,
    /// The client id registered at the provider.
    pub client_id: String,
    /// The client secret (sent with HTTP Basic auth to the token endpoint).
    pub client_secret: Secret,
    /// Scopes requested besides `openid`. Add `offline_access` for a refresh token and whatever
    /// scope releases the groups claim (often `groups`).
    pub scopes: Vec<String>,
    /// The claim holding the user's groups (an array of strings, or one string).
    pub groups_claim: String,
    /// PEM of a private CA for the provider's TLS certificate; `None` uses the system roots.
    pub ca_pem: Option<String>,
    /// Timeout of each HTTP request.
    pub timeout: Duration,
}

impl OidcConfig {
    /// Defaults: scopes `profile email groups offline_access`, groups from the `groups` claim, 30 s
    /// timeout.
    ///
    /// # Errors
    /// [`Error::Misconfigured`] when `issuer` is not an absolute URL.
    pub fn new(issuer: &str, client_id: impl Into<String>, client_secret: impl Into<Secret>) -> Result<Self> {
        let issuer = url::Url::parse(issuer).map_err(|e| Error::Misconfigured {
            provider: NAME,
            reason: format!("issuer {issuer:?}: {e}"),
        })?;
        Ok(Self {
            issuer,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scopes: ["profile", "email", "groups", "offline_access"].map(String::from).to_vec(),
            groups_claim: "groups".into(),
            ca_pem: None,
            timeout: Duration::from_secs(30),
        })
    }
}

/// Claims we do not know in advance (the groups claim is configurable).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct OtherClaims(HashMap<String, serde_json::Value>);

impl AdditionalClaims for OtherClaims {}

type IdTokenResponse = StandardTokenResponse<
    IdTokenFields<
        OtherClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;

type OidcClient = Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    IdTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// An OpenID Connect [`AuthProvider`] (`oidc`).
///
/// Refresh tokens from logins are kept in memory, per subject, so [`AuthProvider::refresh_groups`]
/// works for users who logged in through this instance since it started; other users get
/// [`Error::LoginRequired`].
pub struct OidcProvider {
    config: OidcConfig,
    http: OidcHttp,
    client: OidcClient,
    refresh_tokens: Mutex<HashMap<String, Secret>>,
    /// Users and groups seen in logins, for [`AuthProvider::search_principals`] (OIDC has no search API).
    seen: Mutex<Vec<Principal>>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The parts of a verified login or refresh we use.
struct Verified {
    user: Principal,
    groups: Option<Vec<String>>,
    access_token: AccessToken,
    refresh_token: Option<RefreshToken>,
}

impl OidcProvider {
    /// Fetches the issuer's discovery document and keys and builds the provider.
    ///
    /// # Errors
    /// [`Error::Unreachable`]/[`Error::Tls`] when the issuer cannot be fetched, [`Error::Provider`]
    /// when the document is invalid or names another issuer.
    pub async fn discover(config: OidcConfig) -> Result<Self> {
        let http = OidcHttp(http_client::build(NAME, config.ca_pem.as_deref(), config.timeout)?);
        // IssuerUrl keeps the string as given: no trailing slash is added, as the issuer must match exactly.
        let issuer_text = config.issuer.as_str().strip_suffix('/').filter(|_| config.issuer.path() == "/");
        let issuer = IssuerUrl::new(issuer_text.unwrap_or(config.issuer.as_str()).to_owned())
            .map_err(|e| Error::Misconfigured { provider: NAME, reason: format!("issuer: {e}") })?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &http).await.map_err(|e| {
            let reason = http_client::error_chain(&e);
            match e {
                openidconnect::DiscoveryError::Request(_) if reason.contains("certificate") => {
                    Error::Tls { provider: NAME, server: config.issuer.to_string(), reason }
                }
                openidconnect::DiscoveryError::Request(_) => {
                    Error::Unreachable { provider: NAME, server: config.issuer.to_string(), reason }
                }
                _ => Error::Provider { provider: NAME, message: format!("discovery: {reason}") },
            }
        })?;
        let client = OidcClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            Some(ClientSecret::new(config.client_secret.expose().to_owned())),
        );
        Ok(Self {
            config,
            http,
            client,
            refresh_tokens: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
        })
    }

    fn group_principal(name: &str) -> Principal {
        Principal::new(NAME, "group", name, name, name, PrincipalKind::Group)
    }

    fn groups_from(&self, claims: &OtherClaims) -> Option<Vec<String>> {
        match claims.0.get(&self.config.groups_claim)? {
            serde_json::Value::Array(items) => {
                Some(items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            }
            serde_json::Value::String(one) => Some(vec![one.clone()]),
            _ => None,
        }
    }

    /// Verifies the ID token of a token response; `nonce` is checked when given.
    fn verify(&self, resp: &IdTokenResponse, nonce: Option<&Nonce>) -> Result<Verified> {
        let id_token = resp.extra_fields().id_token().ok_or_else(|| Error::Provider {
            provider: NAME,
            message: "token response has no ID token (is `openid` among the client's scopes?)".into(),
        })?;
        let verifier = self.client.id_token_verifier();
        let checked = match nonce {
            Some(nonce) => id_token.claims(&verifier, nonce),
            // Refresh responses: the ID token may carry the original nonce or none at all.
            None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
        };
        let claims = checked.map_err(|e| match e {
            openidconnect::ClaimsVerificationError::InvalidNonce(_) => {
                tracing::warn!(provider = NAME, "ID token nonce does not match the login request");
                Error::InvalidCredentials
            }
            other => Error::Provider { provider: NAME, message: format!("ID token rejected: {other}") },
        })?;
        if let Some(expected) = claims.access_token_hash() {
            let reject = |what: String| Error::Provider {
                provider: NAME,
                message: format!("ID token rejected: {what}"),
            };
            let alg = id_token.signing_alg().map_err(|e| reject(e.to_string()))?;
            let key = id_token.signing_key(&verifier).map_err(|e| reject(e.to_string()))?;
            let actual = AccessTokenHash::from_token(resp.access_token(), alg, key)
                .map_err(|e| reject(e.to_string()))?;
            if actual != *expected {
                return Err(reject("at_hash does not match the access token".into()));
            }
        }
        let sub = claims.subject().as_str();
        let username = claims.preferred_username().map(|u| u.as_str().to_owned());
        let email = claims.email().map(|e| e.as_str().to_owned());
        let display = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned())
            .or_else(|| username.clone())
            .unwrap_or_else(|| sub.to_owned());
        let login = username.or(email).unwrap_or_else(|| sub.to_owned());
        Ok(Verified {
            user: Principal::new(NAME, "user", sub, display, login, PrincipalKind::User),
            groups: self.groups_from(claims.additional_claims()),
            access_token: resp.access_token().clone(),
            refresh_token: resp.refresh_token().cloned(),
        })
    }

    /// The groups of a verified response: from the ID token, else from userinfo.
    async fn groups(&self, verified: &Verified, sub: &str) -> Result<Vec<Principal>> {
        let names = match &verified.groups {
            Some(names) => names.clone(),
            None => self.userinfo_groups(&verified.access_token, sub).await?,
        };
        let mut out = Vec::new();
        for name in names.iter().filter(|n| !n.is_empty()) {
            push_unique(&mut out, Self::group_principal(name));
        }
        Ok(out)
    }

    async fn userinfo_groups(&self, access_token: &AccessToken, sub: &str) -> Result<Vec<String>> {
        let Ok(request) =
            self.client.user_info(access_token.clone(), Some(SubjectIdentifier::new(sub.to_owned())))
        else {
            return Ok(Vec::new()); // no userinfo endpoint: the groups claim simply is not there
        };
        let claims: openidconnect::UserInfoClaims<OtherClaims, CoreGenderClaim> =
            request.request_async(&self.http).await.map_err(|e| Error::Provider {
                provider: NAME,
                message: format!("userinfo: {}", http_client::error_chain(&e)),
            })?;
        Ok(self.groups_from(claims.additional_claims()).unwrap_or_default())
    }

    fn remember(&self, verified: &Verified, groups: &[Principal]) {
        let sub = verified.user.key(NAME, "user").unwrap_or_default().to_owned();
        if let Some(token) = &verified.refresh_token {
            self.refresh_tokens
                .lock()
                .expect("refresh token map")
                .insert(sub, Secret::new(token.secret().clone()));
        }
        let mut seen = self.seen.lock().expect("seen principals");
        seen.retain(|p| p.id != verified.user.id);
        seen.push(verified.user.clone());
        for g in groups {
            push_unique(&mut seen, g.clone());
        }
    }
}

/// Maps a token-endpoint failure. `invalid_grant` covers a wrong, reused or expired code and a
/// wrong PKCE verifier; `invalid_client` a wrong client id or secret.
fn token_error<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> Error {
    match e {
        RequestTokenError::ServerResponse(resp) => match resp.error() {
            CoreErrorResponseType::InvalidGrant => Error::InvalidCredentials,
            CoreErrorResponseType::InvalidClient | CoreErrorResponseType::UnauthorizedClient => {
                Error::Misconfigured {
                    provider: NAME,
                    reason: format!("the provider refused the client: {resp}"),
                }
            }
            _ => Error::Provider { provider: NAME, message: format!("token endpoint: {resp}") },
        },
        RequestTokenError::Request(e) => Error::Unreachable {
            provider: NAME,
            server: "token endpoint".into(),
            reason: http_client::error_chain(&e),
        },
        other => Error::Provider {
            provider: NAME,
            message: format!("token endpoint: {}", http_client::error_chain(&other)),
        },
    }
}

#[async_trait]
impl AuthProvider for OidcProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn authorize_url(&self, request: &AuthorizeRequest) -> Result<url::Url> {
        let redirect = RedirectUrl::new(request.redirect_uri.clone())
            .map_err(|e| Error::Misconfigured { provider: NAME, reason: format!("redirect URI: {e}") })?;
        let (state, nonce) = (request.state.clone(), request.nonce.expose().to_owned());
        let mut authorize = self
            .client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .add_scopes(self.config.scopes.iter().map(|s| Scope::new(s.clone())))
            .add_extra_param("code_challenge", request.pkce_challenge.clone())
            .add_extra_param("code_challenge_method", "S256")
            .set_redirect_uri(Cow::Owned(redirect));
        // OIDC Core §11: offline_access is only granted with prompt=consent (others drop the scope).
        if self.config.scopes.iter().any(|s| s == "offline_access") {
            authorize = authorize.add_prompt(CoreAuthPrompt::Consent);
        }
        let (url, _, _) = authorize.url();
        Ok(url)
    }

    async fn authenticate(&self, credentials: &Credentials) -> Result<Identity> {
        let Credentials::OAuthCode(callback) = credentials else {
            return Err(Error::Unsupported { provider: NAME, what: "password login" });
        };
        let Some(nonce) = &callback.nonce else {
            // Without the nonce an ID token replayed from another login would be accepted.
            return Err(Error::InvalidCredentials);
        };
        if callback.code.is_empty() {
            return Err(Error::InvalidCredentials);
        }
        let redirect = RedirectUrl::new(callback.redirect_uri.clone())
            .map_err(|e| Error::Misconfigured { provider: NAME, reason: format!("redirect URI: {e}") })?;
        let mut request = self
            .client
            .exchange_code(AuthorizationCode::new(callback.code.expose().to_owned()))
            .map_err(|e| Error::Misconfigured { provider: NAME, reason: e.to_string() })?
            .set_redirect_uri(Cow::Owned(redirect));
        if let Some(verifier) = &callback.pkce_verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(verifier.expose().to_owned()));
        }
        let resp = request.request_async(&self.http).await.map_err(token_error)?;
        let verified = self.verify(&resp, Some(&Nonce::new(nonce.expose().to_owned())))?;
        let sub = verified.user.key(NAME, "user").unwrap_or_default().to_owned();
        let groups = self.groups(&verified, &sub).await?;
        self.remember(&verified, &groups);
        Ok(Identity { user: verified.user, groups })
    }

    async fn search_principals<'a>(
        &self,
        query: &str,
        kind: Option<PrincipalKind>,
        _requester: Option<&'a Principal>,
    ) -> Result<Vec<Principal>> {
        // OIDC has no directory search: offer principals seen in logins, and (as Rancher does) a
        // group of exactly the typed name so a group can be bound before any member logged in.
        let query = query.trim();
        let lower = query.to_lowercase();
        let mut out: Vec<Principal> = self
            .seen
            .lock()
            .expect("seen principals")
            .iter()
            .filter(|p| kind.is_none_or(|k| k == p.kind))
            .filter(|p| {
                p.login_name.to_lowercase().starts_with(&lower)
                    || p.display_name.to_lowercase().starts_with(&lower)
            })
            .cloned()
            .collect();
        if !query.is_empty() && kind != Some(PrincipalKind::User) {
            push_unique(&mut out, Self::group_principal(query));
        }
        Ok(out)
    }

    async fn refresh_groups(&self, user: &Principal) -> Result<Vec<Principal>> {
        let Some(sub) = user.key(NAME, "user") else {
            return Err(Error::ForeignPrincipal { provider: NAME, id: user.id.clone() });
        };
        let token = self.refresh_tokens.lock().expect("refresh token map").get(sub).cloned();
        let Some(token) = token else {
            return Err(Error::LoginRequired { provider: NAME, id: user.id.clone() });
        };
        let refresh = RefreshToken::new(token.expose().to_owned());
        let request = self
            .client
            .exchange_refresh_token(&refresh)
            .map_err(|e| Error::Misconfigured { provider: NAME, reason: e.to_string() })?;
        let resp = match request.request_async(&self.http).await.map_err(token_error) {
            Ok(resp) => resp,
            Err(Error::InvalidCredentials) => {
                // Revoked or expired: forget it; the user must log in again.
                self.refresh_tokens.lock().expect("refresh token map").remove(sub);
                return Err(Error::LoginRequired { provider: NAME, id: user.id.clone() });
            }
            Err(e) => return Err(e),
        };
        let verified = match resp.extra_fields().id_token() {
            Some(_) => self.verify(&resp, None)?,
            None => Verified {
                user: user.clone(),
                groups: None,
                access_token: resp.access_token().clone(),
                refresh_token: resp.refresh_token().cloned(),
            },
        };
        if verified.user.id != user.id {
            return Err(Error::Provider {
                provider: NAME,
                message: "refreshed ID token is for another subject".into(),
            });
        }
        let groups = self.groups(&verified, sub).await?;
        // Providers that rotate refresh tokens return a new one; keep using the old one otherwise.
        if verified.refresh_token.is_some() {
            self.remember(&verified, &groups);
        }
        Ok(groups)
    }
}
