//! API tokens: `token-<id>:<secret>`.
//!
//! The server keeps a [`Token`] object named `token-<id>` whose `status.hash` is a salted SHA-256 of the
//! secret (`sha256$<salt hex>$<digest hex>`); the secret itself is shown to the user once, when the token
//! is made. A request presents the token as `Authorization: Bearer token-<id>:<secret>`, as
//! `Authorization: Basic base64(token-<id>:<secret>)`, or in the `R_SESS` cookie. A browser sends the
//! cookie on its own, whichever site asked it to; [`uses_session_cookie`] tells such requests apart so
//! they can be held to the same-origin and CSRF rules of [`BrowserPolicy`](crate::proxy::BrowserPolicy).

use base64::Engine;
use http::HeaderMap;
use jiff::Timestamp;
use rancher_core::model::Token;
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Length of a token's secret part.
pub const SECRET_LEN: usize = 54;
/// Length of the random id after `token-`.
pub const ID_LEN: usize = 5;
/// The cookie browsers carry a session token in.
pub const SESSION_COOKIE: &str = "R_SESS";
/// The cookie the login response sets next to [`SESSION_COOKIE`], readable by the page's scripts,
/// whose value state-changing requests echo in [`CSRF_HEADER`].
pub const CSRF_COOKIE: &str = "CSRF";
/// The header a browser session's state-changing requests carry the [`CSRF_COOKIE`] value in.
pub const CSRF_HEADER: &str = "x-api-csrf";
/// The label a Token carries with its user's id, so a user's tokens can be listed with a selector.
pub const USER_ID_LABEL: &str = "authn.management.cattle.io/token-userId";

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const HASH_SCHEME: &str = "sha256";
const SALT_LEN: usize = 16;

/// What is wrong with a presented or stored token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The credential is not of the form `token-<id>:<secret>` (or its Basic encoding is broken).
    #[error("malformed token: expected token-<id>:<secret>")]
    Malformed,
    /// The `Authorization` header uses a scheme other than Bearer or Basic.
    #[error("unsupported authorization scheme {0:?}: use Bearer or Basic")]
    UnsupportedScheme(String),
    /// The secret does not match the stored hash (or the token names another object).
    #[error("invalid token")]
    Invalid,
    /// The stored hash is not in a format this version understands.
    #[error("the stored token hash is not in a known format")]
    UnknownHash,
    /// The token was disabled.
    #[error("the token is disabled")]
    Disabled,
    /// The token's ttl has passed.
    #[error("the token has expired")]
    Expired,
}

/// A token as a client presents it: the object's name and the secret. `Debug` and `Display` never show
/// the secret.
///
/// ```
/// use rancher_auth::token::ApiToken;
/// let t = ApiToken::generate();
/// assert!(t.name().starts_with("token-"));
/// assert!(!format!("{t} {t:?}").contains(t.expose_secret()));
/// let parsed: ApiToken = t.expose().parse().unwrap();
/// assert_eq!(parsed.name(), t.name());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    name: String,
    secret: String,
}

fn random_string(len: usize) -> String {
    // ThreadRng is a CSPRNG (ChaCha) reseeded from the OS.
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// A random id of `len` lower-case alphanumerics, for object names like `u-xxxxx`.
pub fn random_id(len: usize) -> String {
    random_string(len)
}

impl ApiToken {
    /// A new token `token-<5 random>` with a fresh 54-character secret.
    pub fn generate() -> Self {
        Self::generate_named(&format!("token-{}", random_string(ID_LEN)))
    }

    /// A new secret for a token object of the given name (e.g. `kubeconfig-u-abcde`).
    pub fn generate_named(name: &str) -> Self {
        ApiToken { name: name.to_owned(), secret: random_string(SECRET_LEN) }
    }

    /// The token object's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The secret part. Show it to the token's owner once; never log it.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }

    /// The full credential `token-<id>:<secret>`, as the client must present it.
    pub fn expose(&self) -> String {
        format!("{}:{}", self.name, self.secret)
    }

    /// The salted hash of this token's secret, to keep in `status.hash`.
    pub fn hash(&self) -> String {
        hash_secret(&self.secret)
    }

    /// Reads the token from a request's headers: `Authorization: Bearer`, `Authorization: Basic`
    /// (user = token name, password = secret), or the `R_SESS` cookie, in that order.
    /// `Ok(None)` when the request carries no credential.
    ///
    /// # Errors
    /// [`TokenError::Malformed`] or [`TokenError::UnsupportedScheme`] for a credential that is present
    /// but unusable.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, TokenError> {
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let value = value.to_str().map_err(|_| TokenError::Malformed)?.trim();
            let (scheme, rest) = value.split_once(' ').ok_or(TokenError::Malformed)?;
            let rest = rest.trim();
            return match scheme.to_ascii_lowercase().as_str() {
                "bearer" => rest.parse().map(Some),
                "basic" => {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(rest)
                        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(rest))
                        .map_err(|_| TokenError::Malformed)?;
                    String::from_utf8(raw).map_err(|_| TokenError::Malformed)?.parse().map(Some)
                }
                other => Err(TokenError::UnsupportedScheme(other.to_owned())),
            };
        }
        match cookie(headers, SESSION_COOKIE) {
            Some(v) => v.parse().map(Some),
            None => Ok(None),
        }
    }
}

/// The value of the first cookie called `name` in the request's `Cookie` headers (quotes removed).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// Whether the request's credential is the [`SESSION_COOKIE`]: it has one and no `Authorization`
/// header (which [`ApiToken::from_headers`] would read first).
pub fn uses_session_cookie(headers: &HeaderMap) -> bool {
    !headers.contains_key(http::header::AUTHORIZATION) && cookie(headers, SESSION_COOKIE).is_some()
}

impl std::str::FromStr for ApiToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, secret) = s.split_once(':').ok_or(TokenError::Malformed)?;
        let name_ok = rancher_core::validation::dns1123_label(name).is_ok();
        let secret_ok =
            !secret.is_empty() && secret.len() <= 256 && secret.bytes().all(|b| b.is_ascii_alphanumeric());
        if !name_ok || !secret_ok {
            return Err(TokenError::Malformed);
        }
        Ok(ApiToken { name: name.to_owned(), secret: secret.to_owned() })
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken").field("name", &self.name).field("secret", &"<redacted>").finish()
    }
}

impl std::fmt::Display for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:<redacted>", self.name)
    }
}

fn digest(salt: &[u8], secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret.as_bytes());
    h.finalize().into()
}

/// Hashes a secret with a fresh random salt: `sha256$<salt hex>$<digest hex>`.
pub fn hash_secret(secret: &str) -> String {
    let salt: [u8; SALT_LEN] = rand::rng().random();
    format!("{HASH_SCHEME}${}${}", hex::encode(salt), hex::encode(digest(&salt, secret)))
}

/// Checks a secret against a stored hash in constant time.
///
/// # Errors
/// [`TokenError::UnknownHash`] for a hash this version cannot read, [`TokenError::Invalid`] on mismatch.
pub fn verify_secret(secret: &str, stored: &str) -> Result<(), TokenError> {
    let mut parts = stored.split('$');
    let (Some(HASH_SCHEME), Some(salt), Some(want), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::UnknownHash);
    };
    let salt = hex::decode(salt).map_err(|_| TokenError::UnknownHash)?;
    let want = hex::decode(want).map_err(|_| TokenError::UnknownHash)?;
    let got = digest(&salt, secret);
    if bool::from(got.as_slice().ct_eq(want.as_slice())) { Ok(()) } else { Err(TokenError::Invalid) }
}

/// When the token expires: creation time plus `spec.ttl` milliseconds; `None` for `ttl == 0` (never).
pub fn expires_at(token: &Token) -> Option<Timestamp> {
    if token.spec.ttl <= 0 {
        return None;
    }
    let created = token.metadata.creation_timestamp?;
    created.checked_add(jiff::SignedDuration::from_millis(token.spec.ttl)).ok()
}

/// Verifies a presented token against its stored object at time `now`: the names match, the secret
/// matches the hash, the token is enabled and has not expired.
///
/// # Errors
/// [`TokenError::Invalid`], [`TokenError::UnknownHash`], [`TokenError::Disabled`] or
/// [`TokenError::Expired`].
pub fn verify(presented: &ApiToken, stored: &Token, now: Timestamp) -> Result<(), TokenError> {
    if presented.name != stored.metadata.name {
        return Err(TokenError::Invalid);
    }
    verify_secret(&presented.secret, &stored.status.hash)?;
    if !stored.spec.enabled {
        return Err(TokenError::Disabled);
    }
    if stored.status.expired || expires_at(stored).is_some_and(|at| at <= now) {
        return Err(TokenError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use rancher_core::model::TokenSpec;

    fn stored(t: &ApiToken, ttl: i64) -> Token {
        let mut obj = Token::new(
            t.name(),
            TokenSpec { user_id: "u-abcde".into(), ttl, enabled: true, ..Default::default() },
        );
        obj.status.hash = t.hash();
        obj.metadata.creation_timestamp = Some("2030-01-01T00:00:00Z".parse().unwrap());
        obj
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn generated_tokens_have_the_promised_shape() {
        let t = ApiToken::generate();
        let (id, secret) = t.expose().split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())).unwrap();
        let id = id.strip_prefix("token-").unwrap();
        assert_eq!(id.len(), ID_LEN);
        assert_eq!(secret.len(), SECRET_LEN);
        assert!(id.bytes().chain(secret.bytes()).all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_ne!(ApiToken::generate().expose_secret(), t.expose_secret());
    }

    #[test]
    fn hash_is_salted_and_verifies_only_the_right_secret() {
        let t = ApiToken::generate();
        let (h1, h2) = (t.hash(), t.hash());
        assert_ne!(h1, h2);
        assert!(h1.starts_with("sha256$") && !h1.contains(t.expose_secret()));
        verify_secret(t.expose_secret(), &h1).unwrap();
        assert!(matches!(verify_secret("x", &h1), Err(TokenError::Invalid)));
        assert!(matches!(verify_secret("x", "plain"), Err(TokenError::UnknownHash)));
        assert!(matches!(verify_secret("x", "sha256$zz$00"), Err(TokenError::UnknownHash)));
    }

    #[test]
    fn never_prints_the_secret() {
        let t = ApiToken::generate();
        for s in [format!("{t}"), format!("{t:?}"), format!("{t:#?}")] {
            assert!(!s.contains(t.expose_secret()), "{s}");
            assert!(s.contains(t.name()));
        }
    }

    #[test]
    fn reads_bearer_basic_and_cookie() {
        let t = ApiToken::generate();
        let mut h = HeaderMap::new();
        assert_eq!(ApiToken::from_headers(&h).unwrap(), None);
        h.insert("authorization", HeaderValue::from_str(&format!("Bearer {}", t.expose())).unwrap());
        assert_eq!(ApiToken::from_headers(&h).unwrap(), Some(t.clone()));
        let basic = base64::engine::general_purpose::STANDARD.encode(t.expose());
        h.insert("authorization", HeaderValue::from_str(&format!("Basic {basic}")).unwrap());
        assert_eq!(ApiToken::from_headers(&h).unwrap(), Some(t.clone()));
        let mut c = HeaderMap::new();
        c.insert("cookie", HeaderValue::from_str(&format!("a=b; R_SESS={}; c=d", t.expose())).unwrap());
        assert_eq!(ApiToken::from_headers(&c).unwrap(), Some(t.clone()));
        h.insert("authorization", HeaderValue::from_static("Digest abc"));
        assert!(matches!(ApiToken::from_headers(&h), Err(TokenError::UnsupportedScheme(_))));
        h.insert("authorization", HeaderValue::from_static("Bearer no-colon"));
        assert!(matches!(ApiToken::from_headers(&h), Err(TokenError::Malformed)));
        h.insert("authorization", HeaderValue::from_static("Basic !!!"));
        assert!(matches!(ApiToken::from_headers(&h), Err(TokenError::Malformed)));
    }

    #[test]
    fn the_session_cookie_is_in_use_only_without_authorization() {
        let mut h = HeaderMap::new();
        assert!(!uses_session_cookie(&h));
        h.append("cookie", HeaderValue::from_static("theme=dark"));
        h.append("cookie", HeaderValue::from_static("CSRF=abc; R_SESS=\"token-abcde:x\""));
        assert!(uses_session_cookie(&h));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("token-abcde:x"));
        assert_eq!(cookie(&h, CSRF_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "r_sess"), None);
        h.insert("authorization", HeaderValue::from_static("Bearer token-abcde:y"));
        assert!(!uses_session_cookie(&h));
    }

    #[test]
    fn verify_checks_name_secret_enabled_and_expiry() {
        let t = ApiToken::generate();
        let obj = stored(&t, 60_000);
        verify(&t, &obj, at("2030-01-01T00:00:59Z")).unwrap();
        assert!(matches!(verify(&t, &obj, at("2030-01-01T00:01:00Z")), Err(TokenError::Expired)));
        let never = stored(&t, 0);
        verify(&t, &never, at("2999-01-01T00:00:00Z")).unwrap();
        let mut disabled = never.clone();
        disabled.spec.enabled = false;
        assert!(matches!(verify(&t, &disabled, at("2030-01-01T00:00:00Z")), Err(TokenError::Disabled)));
        let other = ApiToken::generate_named(t.name());
        assert!(matches!(verify(&other, &never, at("2030-01-01T00:00:00Z")), Err(TokenError::Invalid)));
        let renamed = ApiToken::generate();
        assert!(matches!(verify(&renamed, &never, at("2030-01-01T00:00:00Z")), Err(TokenError::Invalid)));
    }
}
