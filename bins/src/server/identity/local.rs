//! The `local` provider: users kept in the store with argon2 password hashes, behind the same
//! [`AuthProvider`] trait as the directory and OAuth providers. Local users have no groups.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use rancher_auth::password;
use rancher_auth::providers::{AuthProvider, Credentials, Error, Identity, Principal, PrincipalKind, Result};
use rancher_core::model::User;
use rancher_core::store::{Api, Store};

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

/// A hash to check against when the user does not exist, so both failures take as long.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| password::hash_password("decoy password never used").unwrap_or_default())
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

impl LocalProvider {
    /// Uses the users in `store`.
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        LocalProvider { store }
    }

    /// The enabled user with this username and password, or `None`; takes as long either way.
    ///
    /// # Errors
    /// [`Error::Unreachable`] when the store fails.
    pub(crate) async fn verify(&self, username: &str, pw: &str) -> Result<Option<User>> {
        let users = Api::<User>::all(self.store.clone()).list().await.map_err(store_error)?;
        let user = users.into_iter().find(|u| !username.is_empty() && u.spec.username == username);
        let hash = user.as_ref().map_or_else(|| decoy_hash().to_owned(), |u| u.spec.password.clone());
        let pw = pw.to_owned();
        let matches =
            tokio::task::spawn_blocking(move || !pw.is_empty() && password::verify_password(&pw, &hash))
                .await
                .map_err(|e| Error::Unreachable {
                    provider: LOCAL,
                    server: "argon2".into(),
                    reason: e.to_string(),
                })?;
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
        let user = self.verify(username, password.expose()).await?.ok_or(Error::InvalidCredentials)?;
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
