//! The `local` provider: users kept in the store with argon2 password hashes, behind the same
//! [`AuthProvider`] trait as the directory and OAuth providers. Local users have no groups. Password
//! checks go through the process-wide limit of [`crate::server::hashing`].

use std::sync::Arc;

use async_trait::async_trait;
use rancher_auth::providers::{AuthProvider, Credentials, Error, Identity, Principal, PrincipalKind, Result};
use rancher_core::model::User;
use rancher_core::store::{Api, Store};

use crate::server::hashing::{self, HashError};

/// The provider's name and the scheme of its principal ids (`local://u-xxxxx`, as in Rancher).
pub(crate) const LOCAL: &str = "local";

/// Authenticates against the users in the store.
#[derive(Clone)]
pub(crate) struct LocalProvider {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProvider").finish_non_exhaustive()
    }
}

fn principal(user: &User) -> Principal {
    Principal {
        id: format!("{LOCAL}://{}", user.metadata.name),
        display_name: if user.spec.display_name.is_empty() {
            user.spec.username.clone()
        } else {
            user.spec.display_name.clone()
        },
        login_name: user.spec.username.clone(),
        kind: PrincipalKind::User,
        provider: LOCAL.to_owned(),
    }
}

fn store_error(e: rancher_core::store::StoreError) -> Error {
    Error::Unreachable { provider: LOCAL, server: "the store".into(), reason: e.to_string() }
}

/// Why a password could not be checked (as opposed to checked and wrong).
#[derive(Debug, thiserror::Error)]
pub(crate) enum VerifyError {
    /// Reading the users failed.
    #[error(transparent)]
    Store(Error),
    /// The password check was refused for load, or failed.
    #[error(transparent)]
    Hashing(#[from] HashError),
}

impl LocalProvider {
    /// Uses the users in `store`.
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        LocalProvider { store }
    }

    /// The enabled user with this username and password, or `None`; takes as long either way.
    ///
    /// # Errors
    /// [`VerifyError::Store`] when the store fails; [`VerifyError::Hashing`] when the password check
    /// is refused for load ([`HashError::Busy`]) or fails.
    pub(crate) async fn verify(&self, username: &str, pw: &str) -> Result<Option<User>, VerifyError> {
        let users = Api::<User>::all(self.store.clone())
            .list()
            .await
            .map_err(|e| VerifyError::Store(store_error(e)))?;
        let user = users.into_iter().find(|u| !username.is_empty() && u.spec.username == username);
        let matches = hashing::verify(pw.to_owned(), user.as_ref().map(|u| u.spec.password.clone())).await?;
        Ok(user.filter(|u| matches && u.spec.enabled))
    }
}

#[async_trait]
impl AuthProvider for LocalProvider {
    fn name(&self) -> &'static str {
        LOCAL
    }

    async fn authenticate(&self, credentials: &Credentials) -> Result<Identity> {
        let Credentials::Password { username, password } = credentials else {
            return Err(Error::Unsupported { provider: LOCAL, what: "authorization-code login" });
        };
        let user = match self.verify(username, password.expose()).await {
            Ok(user) => user.ok_or(Error::InvalidCredentials)?,
            Err(VerifyError::Store(e)) => return Err(e),
            Err(VerifyError::Hashing(e)) => {
                return Err(Error::Unreachable {
                    provider: LOCAL,
                    server: "argon2".into(),
                    reason: e.to_string(),
                });
            }
        };
        Ok(Identity { user: principal(&user), groups: Vec::new() })
    }

    async fn search_principals<'a>(
        &self,
        query: &str,
        kind: Option<PrincipalKind>,
        _requester: Option<&'a Principal>,
    ) -> Result<Vec<Principal>> {
        if kind == Some(PrincipalKind::Group) {
            return Ok(Vec::new());
        }
        let q = query.to_lowercase();
        let users = Api::<User>::all(self.store.clone()).list().await.map_err(store_error)?;
        Ok(users
            .iter()
            .filter(|u| !u.spec.username.is_empty())
            .filter(|u| {
                u.spec.username.to_lowercase().starts_with(&q)
                    || u.spec.display_name.to_lowercase().starts_with(&q)
            })
            .map(principal)
            .collect())
    }

    async fn refresh_groups(&self, user: &Principal) -> Result<Vec<Principal>> {
        let foreign = || Error::ForeignPrincipal { provider: LOCAL, id: user.id.clone() };
        let id = user.id.strip_prefix("local://").ok_or_else(foreign)?;
        match Api::<User>::all(self.store.clone()).get_opt(id).await.map_err(store_error)? {
            Some(_) => Ok(Vec::new()),
            None => Err(Error::PrincipalNotFound { provider: LOCAL, id: user.id.clone() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rancher_auth::password;
    use rancher_core::model::UserSpec;
    use rancher_core::store::MemoryStore;

    async fn provider() -> LocalProvider {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let hash = password::hash_password("alice-password-1").unwrap();
        let alice = UserSpec {
            username: "alice".into(),
            display_name: "Alice Archer".into(),
            password: hash.clone(),
            enabled: true,
            ..Default::default()
        };
        Api::<User>::all(store.clone()).create(&User::new("u-alice", alice)).await.unwrap();
        let off = UserSpec { username: "olga".into(), password: hash, enabled: false, ..Default::default() };
        Api::<User>::all(store.clone()).create(&User::new("u-olga", off)).await.unwrap();
        LocalProvider::new(store)
    }

    #[tokio::test]
    async fn password_logins_and_their_refusals() {
        let p = provider().await;
        let id = p.authenticate(&Credentials::password("alice", "alice-password-1")).await.unwrap();
        assert_eq!(id.user.id, "local://u-alice");
        assert_eq!((id.user.login_name.as_str(), id.user.display_name.as_str()), ("alice", "Alice Archer"));
        assert!(id.groups.is_empty());
        for (user, pw) in
            [("alice", "wrong"), ("alice", ""), ("nobody", "alice-password-1"), ("olga", "alice-password-1")]
        {
            let err = p.authenticate(&Credentials::password(user, pw)).await.unwrap_err();
            assert!(matches!(err, Error::InvalidCredentials), "{user}/{pw}: {err}");
        }
    }

    #[tokio::test]
    async fn search_and_refresh() {
        let p = provider().await;
        let found = p.search_principals("Ali", None, None).await.unwrap();
        assert_eq!(found.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["local://u-alice"]);
        assert!(p.search_principals("a", Some(PrincipalKind::Group), None).await.unwrap().is_empty());
        let alice = found[0].clone();
        assert_eq!(p.refresh_groups(&alice).await.unwrap(), Vec::<Principal>::new());
        let gone = Principal { id: "local://u-gone".into(), ..alice.clone() };
        assert!(matches!(p.refresh_groups(&gone).await, Err(Error::PrincipalNotFound { .. })));
        let ldap = Principal { id: "openldap_user://uid=a".into(), ..alice };
        assert!(matches!(p.refresh_groups(&ldap).await, Err(Error::ForeignPrincipal { .. })));
    }
}
