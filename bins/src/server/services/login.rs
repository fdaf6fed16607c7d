//! Local logins apart from HTTP: username and password in, a session token out. Attempts are counted
//! per (username, client address) and per address ([`LoginThrottle`]) before the password is
//! checked, and the check itself runs within the server's limit on password hashing.

use std::net::IpAddr;
use std::sync::Arc;

use jiff::Timestamp;
use rancher_auth::token::ApiToken;
use rancher_core::model::{Token, User};
use rancher_core::store::{Api, Store};

#[cfg(test)]
use super::login_throttle::ThrottlePolicy;
pub(crate) use super::login_throttle::{LoginThrottle, Throttled};
use super::tokens::{self, DEFAULT_SESSION_TTL_MS, TokenError, TokenRequest};
use crate::server::identity::local::{LocalProvider, VerifyError};

/// The same answer for an unknown user and a wrong password, so logins do not reveal who exists.
pub(crate) const LOGIN_FAILED: &str = "authentication failed: wrong username or password";

/// Why a login did not give a token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoginError {
    /// Too many failures from this client (for this username, or for any): refused unchecked.
    #[error(transparent)]
    Throttled(#[from] Throttled),
    /// The password could not be checked: the users could not be read, or hashing is busy or failed.
    #[error("checking the password: {0}")]
    CheckPassword(#[source] VerifyError),
    /// No such user, a disabled one, or a wrong password (one answer for all).
    #[error("{LOGIN_FAILED}")]
    WrongCredentials,
    /// The password was right but the session token was not issued.
    #[error(transparent)]
    IssueToken(#[from] TokenError),
}

/// What a login asks for.
pub(crate) struct LoginRequest {
    pub(crate) username: String,
    pub(crate) password: String,
    /// The client's address, for the throttle.
    pub(crate) client: Option<IpAddr>,
    /// The session's lifetime; the server's default when `None`.
    pub(crate) ttl_ms: Option<i64>,
    pub(crate) description: String,
}

/// Logs `req.username` in with the local provider: the throttle first, then the password, then a
/// `session` token within `max_ttl_ms`. The login time is noted on the user (best effort).
///
/// # Errors
/// See [`LoginError`]; only a wrong password counts as a failure for the throttle.
pub(crate) async fn login_local(
    store: &Arc<dyn Store>,
    throttle: &LoginThrottle,
    max_ttl_ms: i64,
    req: LoginRequest,
) -> Result<(Token, ApiToken), LoginError> {
    let attempt = throttle.begin(&req.username, req.client).await?;
    let verified = match LocalProvider::new(store.clone()).verify(&req.username, &req.password).await {
        Ok(verified) => verified,
        Err(e) => {
            attempt.not_checked();
            return Err(LoginError::CheckPassword(e));
        }
    };
    let Some(user) = verified else {
        attempt.failed();
        return Err(LoginError::WrongCredentials);
    };
    attempt.succeeded();
    let token =
        TokenRequest::local("session", req.ttl_ms.unwrap_or(DEFAULT_SESSION_TTL_MS), req.description, false);
    let issued = tokens::issue(store, max_ttl_ms, &user, token).await?;
    record_login(store, user).await;
    Ok(issued)
}

/// Notes the login time; a failure here (e.g. a concurrent update) does not fail the login.
async fn record_login(store: &Arc<dyn Store>, mut user: User) {
    user.status.last_login = Some(Timestamp::now());
    if let Err(e) = Api::<User>::all(store.clone()).update(&user).await {
        tracing::debug!(user = %user.metadata.name, "recording the login time: {e}");
    }
}

#[cfg(test)]
mod tests {

    use rancher_core::model::UserSpec;
    use rancher_core::store::MemoryStore;

    use super::*;

    async fn store_with_bob() -> Arc<dyn Store> {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let hash = rancher_auth::password::hash_password("a-long-password").unwrap();
        let bob = User::new(
            "u-bob",
            UserSpec { username: "bob".into(), password: hash, enabled: true, ..Default::default() },
        );
        Api::<User>::all(store.clone()).create(&bob).await.unwrap();
        store
    }

    fn req(password: &str, last: u8) -> LoginRequest {
        LoginRequest {
            username: "bob".into(),
            password: password.into(),
            client: Some(IpAddr::from([10, 0, 0, last])),
            ttl_ms: None,
            description: String::new(),
        }
    }

    #[tokio::test]
    async fn wrong_passwords_lock_out_that_client_even_for_the_right_one() {
        let store = store_with_bob().await;
        let throttle = LoginThrottle::new(ThrottlePolicy { per_pair: 2, ..Default::default() });
        for _ in 0..2 {
            let e = login_local(&store, &throttle, 0, req("wrong-password", 1)).await.unwrap_err();
            assert!(matches!(e, LoginError::WrongCredentials), "{e}");
            assert_eq!(e.to_string(), LOGIN_FAILED);
        }
        let e = login_local(&store, &throttle, 0, req("a-long-password", 1)).await.unwrap_err();
        let LoginError::Throttled(t) = e else { panic!("{e}") };
        assert_eq!(t.retry_after_secs(), 1);
        assert!(Api::<Token>::all(store.clone()).list().await.unwrap().is_empty(), "no token issued");

        let (token, _) =
            login_local(&store, &throttle, 0, req("a-long-password", 2)).await.expect("elsewhere");
        assert_eq!((token.spec.kind.as_str(), token.spec.user_id.as_str()), ("session", "u-bob"));
        assert_eq!(token.spec.ttl, DEFAULT_SESSION_TTL_MS, "a session of the default lifetime");
        let bob = Api::<User>::all(store).get("u-bob").await.unwrap();
        assert!(bob.status.last_login.is_some(), "the login time is noted");
    }
}
