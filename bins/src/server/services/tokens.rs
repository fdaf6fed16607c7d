//! Tokens apart from HTTP: issuing (logins, `POST /v3/tokens`, kubeconfigs) within the server's
//! maximum lifetime, who may have a cluster-scoped token, what an update may change, and revoking.
//! The secret exists only in what [`issue`] returns; only its hash is stored. A cluster-scoped token
//! records the cluster's uid: it never works for a later cluster of the same name.

use std::sync::Arc;

use rancher_auth::token::{ApiToken, USER_ID_LABEL};
use rancher_core::model::{Cluster, Token, TokenSpec, User};
use rancher_core::store::{Api, Store, StoreError};

use super::access::{MembershipUnreadable, may_reach_cluster};
use crate::server::auth::Caller;
use crate::server::cleanup::owner::{self, CLUSTER_UID_ANNOTATION};

/// Lifetime of a login session when the request names none: 16 hours, Rancher's default.
pub(crate) const DEFAULT_SESSION_TTL_MS: i64 = 16 * 3600 * 1000;

/// The longest any token lives unless `--auth-token-max-ttl` says otherwise: 90 days (Rancher's
/// `auth-token-max-ttl-minutes`).
pub const DEFAULT_TOKEN_MAX_TTL_MS: i64 = 90 * 24 * 3600 * 1000;

/// How many generated token names are tried before giving up (a 5-character id collides rarely).
const NAME_ATTEMPTS: usize = 5;

/// Why a token was not issued or revoked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    /// The requested lifetime is negative.
    #[error("must be 0 (as long as the server allows) or a positive number of milliseconds")]
    NegativeTtl {
        /// What was asked, in milliseconds.
        requested_ms: i64,
    },
    /// The cluster a scoped token was asked for does not exist (or is being deleted).
    #[error("cluster {cluster:?} not found")]
    ClusterNotFound {
        /// The cluster's id.
        cluster: String,
    },
    /// Reading the cluster a scoped token was asked for failed.
    #[error("reading cluster {cluster:?}: {source}")]
    ReadCluster {
        /// The cluster's id.
        cluster: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// Whether the user is a member of the cluster could not be decided.
    #[error(transparent)]
    CheckMembership(#[from] MembershipUnreadable),
    /// The user has no role in the cluster a scoped token was asked for.
    #[error(
        "user {user} has no role in cluster {cluster:?}: a token scoped to a cluster needs a cluster or \
         project membership there"
    )]
    NotClusterMember {
        /// The user's id.
        user: String,
        /// The cluster's id.
        cluster: String,
    },
    /// Storing the token failed.
    #[error("storing the token: {0}")]
    Store(#[source] StoreError),
    /// Every generated name was taken.
    #[error("could not find a free token name")]
    NoFreeName,
    /// Deleting the token failed.
    #[error("revoking token {name}: {source}")]
    Revoke {
        /// The token's name.
        name: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}

/// The lifetime a new token gets: what was asked, `0` meaning "as long as allowed", and never more
/// than the server's maximum `max_ms` (`0` there: no maximum, so `0` asked is "never expires").
///
/// # Errors
/// [`TokenError::NegativeTtl`] for a negative TTL.
pub(crate) fn bounded_ttl(requested_ms: i64, max_ms: i64) -> Result<i64, TokenError> {
    if requested_ms < 0 {
        return Err(TokenError::NegativeTtl { requested_ms });
    }
    Ok(match (requested_ms, max_ms) {
        (r, m) if m <= 0 => r,
        (0, m) => m,
        (r, m) => r.min(m),
    })
}

/// What a new token is for.
pub(crate) struct TokenRequest {
    pub(crate) kind: &'static str,
    pub(crate) ttl_ms: i64,
    pub(crate) description: String,
    pub(crate) derived: bool,
    /// When not empty, the token works for this cluster's proxy only.
    pub(crate) cluster_name: String,
    /// The provider the user logged in with; empty for `local`.
    pub(crate) auth_provider: String,
    /// The user's principal at that provider; empty for `local://<user id>`.
    pub(crate) user_principal: String,
    /// The user's group principals at login.
    pub(crate) group_principals: Vec<String>,
}

impl TokenRequest {
    /// A request for a token of the local provider.
    pub(crate) fn local(kind: &'static str, ttl_ms: i64, description: String, derived: bool) -> Self {
        TokenRequest {
            kind,
            ttl_ms,
            description,
            derived,
            cluster_name: String::new(),
            auth_provider: String::new(),
            user_principal: String::new(),
            group_principals: Vec::new(),
        }
    }
}

/// Issues a token for `user`: stores the hash, returns the stored object and the one-time credential.
/// Every token is issued here, so every one gets a lifetime within `max_ttl_ms` ([`bounded_ttl`]).
///
/// # Errors
/// A negative TTL, a scoped token's cluster missing or unreadable, or the store failing.
pub(crate) async fn issue(
    store: &Arc<dyn Store>,
    max_ttl_ms: i64,
    user: &User,
    req: TokenRequest,
) -> Result<(Token, ApiToken), TokenError> {
    let ttl = bounded_ttl(req.ttl_ms, max_ttl_ms)?;
    // A cluster-scoped token is one of the cluster as it exists now.
    let cluster = if req.cluster_name.is_empty() {
        None
    } else {
        let cluster = &req.cluster_name;
        match Api::<Cluster>::all(store.clone())
            .get_opt(cluster)
            .await
            .map_err(|source| TokenError::ReadCluster { cluster: cluster.clone(), source })?
        {
            Some(c) if c.metadata.deletion_timestamp.is_none() => Some(c),
            _ => return Err(TokenError::ClusterNotFound { cluster: cluster.clone() }),
        }
    };
    let tokens: Api<Token> = Api::all(store.clone());
    for _ in 0..NAME_ATTEMPTS {
        let secret = ApiToken::generate();
        let mut obj = Token::new(
            secret.name(),
            TokenSpec {
                user_id: user.metadata.name.clone(),
                auth_provider: if req.auth_provider.is_empty() {
                    "local".into()
                } else {
                    req.auth_provider.clone()
                },
                user_principal: if req.user_principal.is_empty() {
                    format!("local://{}", user.metadata.name)
                } else {
                    req.user_principal.clone()
                },
                group_principals: req.group_principals.clone(),
                ttl,
                description: req.description.clone(),
                kind: req.kind.into(),
                is_derived: req.derived,
                cluster_name: req.cluster_name.clone(),
                enabled: true,
                ..Default::default()
            },
        );
        obj.metadata.labels.insert(USER_ID_LABEL.into(), user.metadata.name.clone());
        if let Some(c) = &cluster {
            owner::stamp(&mut obj.metadata, CLUSTER_UID_ANNOTATION, &c.metadata);
        }
        obj.status.hash = secret.hash();
        match tokens.create(&obj).await {
            Ok(mut stored) => {
                stored.status.expires_at = rancher_auth::token::expires_at(&stored);
                return Ok((stored, secret));
            }
            Err(StoreError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(TokenError::Store(e)),
        }
    }
    Err(TokenError::NoFreeName)
}

/// A token scoped to `cluster` is for those who may reach it: admins, and members through a cluster
/// or project role template binding. Everyone else — a cluster that does not exist included, so ids
/// cannot be probed — is refused.
///
/// # Errors
/// [`TokenError::NotClusterMember`], or [`TokenError::CheckMembership`] when the bindings cannot be read.
pub(crate) async fn check_cluster_scope(
    store: &Arc<dyn Store>,
    caller: &Caller,
    cluster: &str,
) -> Result<(), TokenError> {
    if may_reach_cluster(store, caller, cluster).await? {
        return Ok(());
    }
    Err(TokenError::NotClusterMember { user: caller.user_id().to_owned(), cluster: cluster.to_owned() })
}

/// An update of `old` as `new` asked for it, narrowed to what may change: the description, and
/// whether the token is enabled — re-enabling a disabled one only when `may_reenable` (admins). Who
/// it acts for, its scope and its lifetimes never change: a cluster-scoped or short-lived token
/// cannot widen itself.
pub(crate) fn restrict_update(new: &mut Token, old: &Token, may_reenable: bool) {
    let (description, enabled) = (std::mem::take(&mut new.spec.description), new.spec.enabled);
    new.spec = old.spec.clone();
    new.spec.description = description;
    new.spec.enabled = enabled && (old.spec.enabled || may_reenable);
    new.metadata.labels.insert(USER_ID_LABEL.into(), old.spec.user_id.clone());
    owner::preserve(&mut new.metadata, &old.metadata, CLUSTER_UID_ANNOTATION);
}

/// Revokes the token `name` (a logout).
///
/// # Errors
/// [`TokenError::Revoke`] when the store refuses (`NotFound` included).
pub(crate) async fn revoke(store: &Arc<dyn Store>, name: &str) -> Result<(), TokenError> {
    Api::<Token>::all(store.clone())
        .delete(name)
        .await
        .map(drop)
        .map_err(|source| TokenError::Revoke { name: name.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use rancher_core::store::MemoryStore;

    use super::*;

    #[test]
    fn lifetimes_are_bounded_by_the_maximum_and_zero_asks_for_the_maximum() {
        let max = DEFAULT_TOKEN_MAX_TTL_MS;
        assert_eq!(bounded_ttl(0, max).unwrap(), max, "never expiring becomes the maximum");
        assert_eq!(bounded_ttl(i64::MAX, max).unwrap(), max);
        assert_eq!(bounded_ttl(1000, max).unwrap(), 1000);
        assert_eq!(bounded_ttl(max, max).unwrap(), max);
        // Without a maximum, what was asked, including never.
        assert_eq!(bounded_ttl(0, 0).unwrap(), 0);
        assert_eq!(bounded_ttl(i64::MAX, 0).unwrap(), i64::MAX);
        assert!(matches!(bounded_ttl(-1, max), Err(TokenError::NegativeTtl { requested_ms: -1 })));
        assert!(matches!(bounded_ttl(-1, 0), Err(TokenError::NegativeTtl { .. })));
    }

    fn alice() -> User {
        User::new("u-alice", Default::default())
    }

    #[tokio::test]
    async fn an_issued_token_is_capped_stored_hashed_and_labelled_with_its_user() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let hour = 3600 * 1000;
        let req = TokenRequest::local("api", 10 * hour, "ci".into(), true);
        let (stored, secret) = issue(&store, hour, &alice(), req).await.unwrap();
        assert_eq!(stored.spec.ttl, hour, "ten hours asked, the one-hour maximum given");
        assert_eq!(stored.spec.user_principal, "local://u-alice");
        assert!(stored.status.expires_at.is_some());
        let read = Api::<Token>::all(store.clone()).get(secret.name()).await.unwrap();
        rancher_auth::token::verify_secret(secret.expose_secret(), &read.status.hash)
            .expect("its hash is stored");
        assert!(!read.status.hash.contains(secret.expose_secret()), "never the secret");
        assert_eq!(read.metadata.labels.get(USER_ID_LABEL).map(String::as_str), Some("u-alice"));
    }

    #[tokio::test]
    async fn a_token_for_a_missing_cluster_is_refused_before_anything_is_stored() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let req = TokenRequest {
            cluster_name: "c-gone".into(),
            ..TokenRequest::local("api", 0, String::new(), true)
        };
        let err = issue(&store, 0, &alice(), req).await.unwrap_err();
        assert!(matches!(&err, TokenError::ClusterNotFound { cluster } if cluster == "c-gone"), "{err}");
        assert!(Api::<Token>::all(store).list().await.unwrap().is_empty());
    }

    #[test]
    fn an_update_changes_only_the_description_and_never_re_enables_on_its_own() {
        let mut old = Token::new(
            "token-abcde",
            TokenSpec {
                user_id: "u-alice".into(),
                ttl: 1000,
                cluster_name: "c1".into(),
                ..Default::default()
            },
        );
        old.spec.enabled = false;
        let mut new = old.clone();
        new.spec = TokenSpec {
            user_id: "u-admin".into(),
            ttl: 0,
            description: "renamed".into(),
            enabled: true,
            ..Default::default()
        };
        let mut by_owner = new.clone();
        restrict_update(&mut by_owner, &old, false);
        assert_eq!(by_owner.spec.user_id, "u-alice", "who it acts for stays");
        assert_eq!(
            (by_owner.spec.ttl, by_owner.spec.cluster_name.as_str()),
            (1000, "c1"),
            "scope and lifetime stay"
        );
        assert_eq!(by_owner.spec.description, "renamed");
        assert!(!by_owner.spec.enabled, "a disabled token is not re-enabled by its owner");
        restrict_update(&mut new, &old, true);
        assert!(new.spec.enabled, "an admin re-enables it");
    }
}
