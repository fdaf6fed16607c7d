//! The authorized cluster endpoint, server side: for every connected cluster, each enabled,
//! unexpired token scoped to that cluster (`spec.clusterName`) is written downstream as a
//! [`ClusterAuthToken`] record (a labelled Secret in `cattle-system` holding the salted hash, the
//! user id, groups and expiry — never the secret), and records of tokens that were deleted,
//! disabled or expired are removed. The agent's webhook reads the records from its own cluster, so
//! it keeps answering while the server is down.
//!
//! When a sync happens: a Token or User changes in the store (watched), after a failure (retried),
//! and every [`ACE_RESYNC`] (which also removes records of tokens that expired meanwhile; the agent
//! refuses an expired token by its `expiresAt` without waiting for that).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::PostParams;
use rancher_core::model::{Token, User};
use rancher_core::store::{Api, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::ace::{ACE_LABEL, ClusterAuthToken, NAMESPACE};
use crate::server::registration::Registration;
use crate::server::tenancy::SyncError;
use crate::server::tenancy::apply::{self, Changes, Key, Kind};
use crate::server::tenancy::workers::{BoxFut, ClusterSync, ClusterWorkers, follow};

/// How often every cluster's token records are re-checked even when nothing was seen to change.
pub(crate) const ACE_RESYNC: Duration = Duration::from_secs(30);

/// The records `cluster` should hold, from the tokens and users in the store, at time `now`.
pub(crate) fn desired_records(
    cluster: &str,
    tokens: &[Token],
    users: &[User],
    now: Timestamp,
) -> Vec<ClusterAuthToken> {
    let users: HashMap<&str, &User> = users.iter().map(|u| (u.metadata.name.as_str(), u)).collect();
    let mut out = Vec::new();
    for t in tokens {
        if t.spec.cluster_name != cluster || !t.spec.enabled || t.status.expired || t.status.hash.is_empty() {
            continue;
        }
        let expires_at = rancher_auth::token::expires_at(t);
        if expires_at.is_some_and(|at| at <= now) {
            continue;
        }
        let Some(user) = users.get(t.spec.user_id.as_str()).filter(|u| u.spec.enabled) else { continue };
        let groups = if user.status.group_principals.is_empty() {
            t.spec.group_principals.clone()
        } else {
            user.status.group_principals.clone()
        };
        out.push(ClusterAuthToken {
            token_name: t.metadata.name.clone(),
            hash: t.status.hash.clone(),
            user_name: t.spec.user_id.clone(),
            groups,
            expires_at,
            enabled: true,
        });
    }
    out
}

fn record_differs(want: &Value, have: &Value) -> bool {
    want["type"] != have["type"]
        || want["data"] != have["data"]
        || want["metadata"]["labels"]
            .as_object()
            .is_some_and(|l| l.iter().any(|(k, v)| have["metadata"]["labels"].get(k) != Some(v)))
}

/// Syncs token records into one cluster.
pub(crate) struct AceSync {
    store: Arc<dyn Store>,
}

impl AceSync {
    async fn ensure_namespace(client: &kube::Client) -> Result<(), SyncError> {
        let api = kube::Api::<Namespace>::all(client.clone());
        let fail = |action, e| SyncError::Downstream {
            action,
            kind: "Namespace".into(),
            name: NAMESPACE.into(),
            source: Box::new(e),
        };
        match api.get_opt(NAMESPACE).await.map_err(|e| fail("reading", e))? {
            Some(_) => Ok(()),
            None => {
                let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))
                    .map_err(|e| SyncError::Encode(e.to_string()))?;
                match api.create(&PostParams::default(), &ns).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    Err(e) => Err(fail("creating", e)),
                }
            }
        }
    }

    async fn run_once(&self, cluster: &str, client: kube::Client) -> Result<Changes, SyncError> {
        let tokens = Api::<Token>::all(self.store.clone()).list().await?;
        let users = Api::<User>::all(self.store.clone()).list().await?;
        let desired: BTreeMap<Key, Value> = desired_records(cluster, &tokens, &users, Timestamp::now())
            .into_iter()
            .map(|r| ((NAMESPACE.to_owned(), r.token_name.clone()), r.to_secret()))
            .collect();
        let kind = Kind::of::<Secret>(true);
        let live = apply::list_ours(&client, &kind, Some(&format!("{ACE_LABEL}=true"))).await?;
        if !desired.is_empty() {
            Self::ensure_namespace(&client).await?;
        }
        let (mut changes, mut errors) = (Changes::default(), Vec::new());
        apply::upsert(&client, &kind, &desired, &live, &mut changes, &mut errors, record_differs).await;
        apply::prune(&client, &kind, &desired, &live, &mut changes, &mut errors).await;
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(changes),
        }
    }
}

impl ClusterSync for AceSync {
    fn name(&self) -> &'static str {
        "ace-tokens"
    }

    fn sync<'a>(&'a self, cluster: &'a str, client: kube::Client) -> BoxFut<'a, Result<(), SyncError>> {
        Box::pin(async move {
            let changes = self.run_once(cluster, client).await?;
            if changes.any() {
                tracing::info!(
                    %cluster, created = changes.created, updated = changes.updated, deleted = changes.deleted,
                    "cluster auth token records synced"
                );
            }
            Ok(())
        })
    }
}

/// The last-seen fingerprint of each object, to tell changes that matter from churn.
struct Fingerprints<F>(std::sync::Mutex<HashMap<String, F>>);

impl<F> Default for Fingerprints<F> {
    fn default() -> Self {
        Fingerprints(std::sync::Mutex::new(HashMap::new()))
    }
}

impl<F: PartialEq> Fingerprints<F> {
    /// Records `print` for `name` (`None`: deleted); true when it differs from the last one, and
    /// always for a deletion (one missed while re-watching must still count).
    fn changed(&self, name: &str, print: Option<F>) -> bool {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match print {
            None => {
                map.remove(name);
                true
            }
            Some(p) => map.insert(name.to_owned(), p).as_ref() != map.get(name),
        }
    }
}

/// Runs the token record sync of every connected cluster until `stop`.
pub(crate) async fn run(store: Arc<dyn Store>, registration: Arc<Registration>, stop: CancellationToken) {
    let workers = ClusterWorkers::new(store.clone(), registration, ACE_RESYNC);
    let tasks = TaskTracker::new();
    // A token's lastUsedAt and a user's lastLogin change on every use: only what a record is made
    // of may cost a sync.
    let w = workers.clone();
    let seen = Fingerprints::default();
    tasks.spawn(follow::<Token>(store.clone(), stop.clone(), move |t, deleted| {
        let print = (!deleted).then(|| {
            let s = &t.spec;
            (
                s.user_id.clone(),
                s.enabled,
                s.ttl,
                t.status.expired,
                t.status.hash.clone(),
                s.group_principals.clone(),
            )
        });
        if !t.spec.cluster_name.is_empty() && seen.changed(&t.metadata.name, print) {
            w.poke(&t.spec.cluster_name);
        }
    }));
    let w = workers.clone();
    let seen = Fingerprints::default();
    tasks.spawn(follow::<User>(store.clone(), stop.clone(), move |u, deleted| {
        let print = (!deleted).then(|| (u.spec.enabled, u.status.group_principals.clone()));
        if seen.changed(&u.metadata.name, print) {
            w.poke_all();
        }
    }));
    tasks.spawn(workers.run(Arc::new(AceSync { store }), stop.clone()));
    tasks.close();
    tasks.wait().await;
}

#[cfg(test)]
mod tests {
    use rancher_core::model::{TokenSpec, UserSpec};

    use super::*;

    fn token(name: &str, cluster: &str, user: &str, ttl: i64, enabled: bool) -> Token {
        let mut t = Token::new(
            name,
            TokenSpec {
                user_id: user.into(),
                cluster_name: cluster.into(),
                ttl,
                enabled,
                ..Default::default()
            },
        );
        t.status.hash = rancher_auth::token::hash_secret("x");
        t.metadata.creation_timestamp = Some("2030-01-01T00:00:00Z".parse().unwrap());
        t
    }

    fn user(name: &str, enabled: bool, groups: &[&str]) -> User {
        let mut u = User::new(name, UserSpec { enabled, ..Default::default() });
        u.status.group_principals = groups.iter().map(|g| (*g).to_owned()).collect();
        u
    }

    #[test]
    fn churn_is_not_a_change() {
        let f = Fingerprints::default();
        assert!(f.changed("t", Some((true, 1))));
        assert!(!f.changed("t", Some((true, 1))));
        assert!(f.changed("t", Some((false, 1))));
        assert!(f.changed("t", None));
        assert!(f.changed("gone", None));
    }

    #[test]
    fn only_usable_tokens_of_this_cluster_are_synced() {
        let tokens = [
            token("token-ok", "c-1", "u-a", 0, true),
            token("token-other", "c-2", "u-a", 0, true),
            token("token-global", "", "u-a", 0, true),
            token("token-off", "c-1", "u-a", 0, false),
            token("token-old", "c-1", "u-a", 1000, true),
            token("token-ttl", "c-1", "u-a", 3_600_000, true),
            token("token-nouser", "c-1", "u-gone", 0, true),
            token("token-disabled-user", "c-1", "u-off", 0, true),
        ];
        let users = [user("u-a", true, &["local://g"]), user("u-off", false, &[])];
        let now: Timestamp = "2030-01-01T00:10:00Z".parse().unwrap();
        let got = desired_records("c-1", &tokens, &users, now);
        let names: Vec<&str> = got.iter().map(|r| r.token_name.as_str()).collect();
        assert_eq!(names, ["token-ok", "token-ttl"]);
        assert_eq!(got[0].groups, ["local://g"]);
        assert_eq!(got[0].expires_at, None);
        assert_eq!(got[1].expires_at, Some("2030-01-01T01:00:00Z".parse().unwrap()));
    }
}
