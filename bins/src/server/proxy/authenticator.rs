//! The proxy's [`Authenticator`]: the same token checks as `/v3` ([`TokenAuthenticator`]), turned into
//! the identity the request runs as downstream. A cluster-scoped token also has to have been made for
//! the cluster as it exists now: one made for an earlier cluster of the same name is refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use http::HeaderMap;
use rancher_auth::proxy::{AuthError, Authenticator, UserInfo};
use rancher_core::model::{Cluster, Token, User};
use rancher_core::store::{Api, Store};

use crate::server::auth::{Scope, TokenAuthenticator};
use crate::server::cleanup::owner::{self, CLUSTER_UID_ANNOTATION};

/// The group every user authenticated by the server is in, besides Kubernetes' own.
pub(crate) const CATTLE_AUTHENTICATED: &str = "system:cattle:authenticated";
/// Kubernetes' group of authenticated users.
pub(crate) const SYSTEM_AUTHENTICATED: &str = "system:authenticated";

/// Authenticates proxied requests with the store's tokens.
#[derive(Clone)]
pub(crate) struct StoreAuthenticator {
    tokens: Arc<TokenAuthenticator>,
    store: Arc<dyn Store>,
    identities: Arc<Identities>,
}

/// At most this many tokens' identities are kept.
const MAX_IDENTITIES: usize = 10_000;

/// The identity built for each token, by the token's name, with what it was built from: the token's
/// uid and generation (its spec: a `status.lastUsedAt` written every minute does not count) and the
/// user's uid and resource version (its groups are status). Every request of a token shares one
/// `Arc<UserInfo>` (and the proxy the headers it states it with) until either changes.
#[derive(Default)]
struct Identities(Mutex<HashMap<String, BuiltIdentity>>);

struct BuiltIdentity {
    token: (String, i64),
    user: (String, String),
    info: Arc<UserInfo>,
}

impl Identities {
    fn for_token(&self, token: &Token, user: &User) -> Arc<UserInfo> {
        let (t, u) = (&token.metadata, &user.metadata);
        let mut built = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = built.get(&t.name)
            && b.token.0 == t.uid
            && b.token.1 == t.generation
            && b.user.0 == u.uid
            && b.user.1 == u.resource_version
        {
            return b.info.clone();
        }
        let info = Arc::new(user_info(token, user));
        if built.len() >= MAX_IDENTITIES {
            built.clear();
        }
        let identity = BuiltIdentity {
            token: (t.uid.clone(), t.generation),
            user: (u.uid.clone(), u.resource_version.clone()),
            info: info.clone(),
        };
        built.insert(t.name.clone(), identity);
        info
    }
}

impl std::fmt::Debug for StoreAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreAuthenticator").finish_non_exhaustive()
    }
}

impl StoreAuthenticator {
    pub(crate) fn new(tokens: Arc<TokenAuthenticator>, store: Arc<dyn Store>) -> Self {
        StoreAuthenticator { tokens, store, identities: Arc::default() }
    }
}

/// The downstream identity of a verified token: user id, group principals (from the token and the
/// user's last refresh) plus the authenticated groups, and the extras Rancher sends.
pub(crate) fn user_info(token: &Token, user: &User) -> UserInfo {
    let mut groups: Vec<String> = Vec::new();
    for g in token.spec.group_principals.iter().chain(&user.status.group_principals) {
        if !groups.contains(g) {
            groups.push(g.clone());
        }
    }
    groups.push(SYSTEM_AUTHENTICATED.to_owned());
    groups.push(CATTLE_AUTHENTICATED.to_owned());
    let principal = if token.spec.user_principal.is_empty() {
        format!("local://{}", user.metadata.name)
    } else {
        token.spec.user_principal.clone()
    };
    let mut extra = BTreeMap::new();
    extra.insert("principalid".to_owned(), vec![principal]);
    let login = if user.spec.username.is_empty() { &user.metadata.name } else { &user.spec.username };
    extra.insert("username".to_owned(), vec![login.clone()]);
    extra.insert("requesttokenid".to_owned(), vec![token.metadata.name.clone()]);
    UserInfo { username: user.metadata.name.clone(), uid: String::new(), groups, extra }
}

#[async_trait]
impl Authenticator for StoreAuthenticator {
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        cluster_id: Option<&str>,
    ) -> Result<Arc<UserInfo>, AuthError> {
        // The route layer refuses paths without a cluster; an unscoped check here would let a
        // cluster-scoped token through to nothing, so treat a missing id as a wrong cluster.
        let cluster = cluster_id.ok_or(AuthError::WrongCluster)?;
        let auth = self.tokens.verify(headers, Scope::Cluster(cluster)).await?;
        if !auth.token.spec.cluster_name.is_empty() {
            let current = Api::<Cluster>::all(self.store.clone())
                .get_opt(cluster)
                .await
                .map_err(|e| AuthError::Backend(Box::new(e)))?;
            if !current
                .is_some_and(|c| owner::belongs(&auth.token.metadata, CLUSTER_UID_ANNOTATION, &c.metadata))
            {
                return Err(AuthError::WrongCluster);
            }
        }
        Ok(self.identities.for_token(&auth.token, &auth.user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rancher_core::model::{TokenSpec, UserSpec};

    #[test]
    fn identity_has_user_id_groups_and_extras() {
        let token = Token::new(
            "token-abcde",
            TokenSpec {
                user_id: "u-bob".into(),
                user_principal: "local://u-bob".into(),
                group_principals: vec!["github_org://1".into()],
                ..Default::default()
            },
        );
        let mut user = User::new("u-bob", UserSpec { username: "bob".into(), ..Default::default() });
        user.status.group_principals = vec!["github_org://1".into(), "github_team://2".into()];
        let info = user_info(&token, &user);
        assert_eq!(info.username, "u-bob");
        assert_eq!(
            info.groups,
            ["github_org://1", "github_team://2", SYSTEM_AUTHENTICATED, CATTLE_AUTHENTICATED]
        );
        assert_eq!(info.extra["principalid"], ["local://u-bob"]);
        assert_eq!(info.extra["username"], ["bob"]);
        assert_eq!(info.extra["requesttokenid"], ["token-abcde"]);
    }

    /// A token's requests share one identity until the token or its user changes; a user whose
    /// groups changed is stated with the new ones at once.
    #[test]
    fn a_token_keeps_its_identity_until_it_or_its_user_changes() {
        let mut token =
            Token::new("token-abcde", TokenSpec { user_id: "u-bob".into(), ..Default::default() });
        token.metadata.resource_version = "1".into();
        let mut user = User::new("u-bob", UserSpec::default());
        user.metadata.resource_version = "2".into();
        let identities = Identities::default();
        let first = identities.for_token(&token, &user);
        assert!(Arc::ptr_eq(&first, &identities.for_token(&token, &user)), "shared while unchanged");

        user.status.group_principals = vec!["github_team://2".into()];
        user.metadata.resource_version = "3".into();
        let regrouped = identities.for_token(&token, &user);
        assert!(regrouped.groups.contains(&"github_team://2".to_owned()), "{:?}", regrouped.groups);
        token.metadata.resource_version = "4".into();
        token.status.last_used_at = Some(jiff::Timestamp::now());
        assert!(Arc::ptr_eq(&regrouped, &identities.for_token(&token, &user)), "a use noted changes nothing");
        token.spec.group_principals = vec!["github_org://9".into()];
        token.metadata.generation += 1;
        let changed = identities.for_token(&token, &user);
        assert!(changed.groups.contains(&"github_org://9".to_owned()), "rebuilt for a changed token");
        let mut other = token.clone();
        other.metadata.name = "token-other".into();
        assert_eq!(identities.for_token(&other, &user).extra["requesttokenid"], ["token-other"]);
    }
}
