//! The authorized cluster endpoint, server side: for every connected cluster, each enabled,
//! unexpired token scoped to that cluster (`spec.clusterName`, made for the cluster as it exists now)
//! whose user currently has access to the cluster (a global admin, or a member through a cluster or
//! project role template binding) is written downstream as a
//! [`ClusterAuthToken`] record (a labelled Secret in `cattle-system` holding the salted hash, the
//! user id, groups and expiry — never the secret), and records of tokens that were deleted,
//! disabled or expired are removed. The agent's webhook reads the records from its own cluster, so
//! it keeps answering while the server is down.
//!
//! When a sync happens: a Token, User, binding, project or global role changes in the store (watched),
//! after a failure (retried), and every [`ACE_RESYNC`] (which also removes records of tokens that expired meanwhile; the agent
//! refuses an expired token by its `expiresAt` without waiting for that).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::PostParams;
use rancher_core::model::{
    Cluster, ClusterRoleTemplateBinding, GlobalRole, GlobalRoleBinding, Project, Token, User,
};
use rancher_core::store::{Api, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::protocol::ace::{ACE_LABEL, ClusterAuthToken, NAMESPACE};
use crate::server::auth::is_cluster_admin;
use crate::server::cleanup::owner::{self, CLUSTER_UID_ANNOTATION};
use crate::server::proxy::membership::{ClusterMembers, global_rules};
use crate::server::proxy::user_info;
use crate::server::registration::Registration;
use crate::server::tenancy::SyncError;
use crate::server::tenancy::apply::{self, Changes, Key, Kind};
use crate::server::tenancy::workers::{
    BoxFut, ClusterSync, ClusterWorkers, Fingerprints, follow_membership, follow_with,
};

/// How often every cluster's token records are re-checked even when nothing was seen to change:
/// what this repairs is an edit by hand of a record (the agent reports a deleted one, and a record
/// carries its token's expiry, which the webhook checks itself). Spread wider over a big fleet.
pub(crate) const ACE_RESYNC: Duration = Duration::from_secs(600);

/// Everything the records of one cluster are made from.
pub(crate) struct AceInputs<'a> {
    /// Who is a member of the cluster (the cluster itself, its bindings and projects).
    pub(crate) members: ClusterMembers<'a>,
    /// Every token.
    pub(crate) tokens: &'a [Token],
    /// Every user.
    pub(crate) users: &'a [User],
    /// Global role bindings and roles (who is an admin).
    pub(crate) grbs: &'a [GlobalRoleBinding],
    /// Global roles.
    pub(crate) roles: &'a [GlobalRole],
}

/// Whether `t` is a token of `cluster` as it exists now, usable at `now`.
fn usable_for(t: &Token, cluster: &Cluster, now: Timestamp) -> bool {
    t.spec.cluster_name == cluster.metadata.name
        && t.spec.enabled
        && !t.status.expired
        && !t.status.hash.is_empty()
        && owner::belongs(&t.metadata, CLUSTER_UID_ANNOTATION, &cluster.metadata)
        && rancher_auth::token::expires_at(t).is_none_or(|at| at > now)
}

/// The records the cluster should hold at time `now`: usable tokens of users who may reach it.
pub(crate) fn desired_records(inputs: &AceInputs<'_>, now: Timestamp) -> Vec<ClusterAuthToken> {
    let cluster = inputs.members.cluster;
    let users: HashMap<&str, &User> = inputs.users.iter().map(|u| (u.metadata.name.as_str(), u)).collect();
    let mut out = Vec::new();
    for t in inputs.tokens.iter().filter(|t| usable_for(t, cluster, now)) {
        let Some(user) = users.get(t.spec.user_id.as_str()).filter(|u| u.spec.enabled) else { continue };
        // The same identity the proxy would decide on for this token.
        let identity = user_info(t, user);
        let admin = is_cluster_admin(&global_rules(&user.metadata.name, inputs.grbs, inputs.roles));
        if !admin && !inputs.members.is_member(&identity) {
            continue;
        }
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
            expires_at: rancher_auth::token::expires_at(t),
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
                    .map_err(SyncError::Encode)?;
                match api.create(&PostParams::default(), &ns).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    Err(e) => Err(fail("creating", e)),
                }
            }
        }
    }

    async fn run_once(&self, cluster: &Cluster, client: kube::Client) -> Result<Changes, SyncError> {
        let store = &self.store;
        let name = cluster.metadata.name.as_str();
        let tokens = Api::<Token>::all(store.clone()).list().await?;
        let users = Api::<User>::all(store.clone()).list().await?;
        let grbs = Api::<GlobalRoleBinding>::all(store.clone()).list().await?;
        let roles = Api::<GlobalRole>::all(store.clone()).list().await?;
        let crtbs = Api::<ClusterRoleTemplateBinding>::namespaced(store.clone(), name).list().await?;
        let projects = Api::<Project>::namespaced(store.clone(), name).list().await?;
        let prtbs = crate::server::tenancy::project_bindings(store, &projects).await?;
        let inputs = AceInputs {
            members: ClusterMembers { cluster, crtbs: &crtbs, prtbs: &prtbs, projects: &projects },
            tokens: &tokens,
            users: &users,
            grbs: &grbs,
            roles: &roles,
        };
        let desired: BTreeMap<Key, Value> = desired_records(&inputs, Timestamp::now())
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

/// Removes every token record we made in a cluster (it is being deleted).
///
/// # Errors
/// The first downstream failure.
pub(crate) async fn remove_records(client: &kube::Client) -> Result<(), SyncError> {
    let kind = Kind::of::<Secret>(true);
    let live = apply::list_ours(client, &kind, Some(&format!("{ACE_LABEL}=true"))).await?;
    let (mut changes, mut errors) = (Changes::default(), Vec::new());
    apply::prune(client, &kind, &BTreeMap::new(), &live, &mut changes, &mut errors).await;
    errors.into_iter().next().map_or(Ok(()), Err)
}

impl ClusterSync for AceSync {
    fn name(&self) -> &'static str {
        "ace-tokens"
    }

    /// Synced again when one of the records is deleted or added behind the server's back, as the
    /// cluster's agent reports.
    fn depends_on(&self) -> &'static [&'static str] {
        &[crate::protocol::report::ACE_RECORDS]
    }

    fn sync<'a>(&'a self, current: &'a Cluster, client: kube::Client) -> BoxFut<'a, Result<(), SyncError>> {
        Box::pin(async move {
            let cluster = &current.metadata.name;
            let changes = self.run_once(current, client).await?;
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

/// Runs the token record sync of every connected cluster until `stop`.
pub(crate) async fn run(store: Arc<dyn Store>, registration: Arc<Registration>, stop: CancellationToken) {
    let workers = ClusterWorkers::new(store.clone(), registration, ACE_RESYNC);
    let tasks = TaskTracker::new();
    // A token's lastUsedAt and a user's lastLogin change on every use: only what a record is made
    // of may cost a sync.
    let w = workers.clone();
    let seen = Fingerprints::default();
    let seen = Arc::new(seen);
    let (w_gone, seen_gone) = (w.clone(), seen.clone());
    // Kept of each: its name and cluster.
    let of = |t: &Token| (t.metadata.name.clone(), t.spec.cluster_name.clone());
    tasks.spawn(follow_with(
        store.clone(),
        stop.clone(),
        of,
        move |t, (name, cluster)| {
            let s = &t.spec;
            let print = (
                s.user_id.clone(),
                s.enabled,
                s.ttl,
                t.status.expired,
                t.status.hash.clone(),
                s.group_principals.clone(),
            );
            if !cluster.is_empty() && seen.changed(name, Some(print)) {
                w.poke(cluster);
            }
        },
        move |(name, cluster)| {
            if !cluster.is_empty() && seen_gone.changed(name, None) {
                w_gone.poke(cluster);
            }
        },
    ));
    let w = workers.clone();
    let seen = Fingerprints::default();
    let seen = Arc::new(seen);
    let (w_gone, seen_gone) = (w.clone(), seen.clone());
    tasks.spawn(follow_with(
        store.clone(),
        stop.clone(),
        |u: &User| u.metadata.name.clone(),
        move |u, name| {
            if seen.changed(name, Some((u.spec.enabled, u.status.group_principals.clone()))) {
                w.poke_all();
            }
        },
        move |name| {
            if seen_gone.changed(name, None) {
                w_gone.poke_all();
            }
        },
    ));
    // Membership: a removed binding, project or admin role takes the user's tokens off the cluster.
    follow_membership(&tasks, &store, &stop, &workers);
    tasks.spawn(workers.run(Arc::new(AceSync { store }), stop.clone()));
    tasks.close();
    tasks.wait().await;
}

#[cfg(test)]
mod tests {
    use rancher_core::model::{ClusterRoleTemplateBindingSpec, ClusterSpec, TokenSpec, UserSpec};

    use super::*;

    fn cluster(name: &str, uid: &str) -> Cluster {
        let mut c = Cluster::new(name, ClusterSpec::default());
        c.metadata.uid = uid.into();
        c.metadata.creation_timestamp = Some("2029-01-01T00:00:00Z".parse().unwrap());
        c
    }

    fn token(name: &str, cluster: &Cluster, user: &str, ttl: i64, enabled: bool) -> Token {
        let mut t = Token::new(
            name,
            TokenSpec {
                user_id: user.into(),
                cluster_name: cluster.metadata.name.clone(),
                ttl,
                enabled,
                ..Default::default()
            },
        );
        t.status.hash = rancher_auth::token::hash_secret("x");
        t.metadata.creation_timestamp = Some("2030-01-01T00:00:00Z".parse().unwrap());
        if !cluster.metadata.name.is_empty() {
            owner::stamp(&mut t.metadata, CLUSTER_UID_ANNOTATION, &cluster.metadata);
        }
        t
    }

    fn user(name: &str, enabled: bool, groups: &[&str]) -> User {
        let mut u = User::new(name, UserSpec { enabled, ..Default::default() });
        u.status.group_principals = groups.iter().map(|g| (*g).to_owned()).collect();
        u
    }

    fn member(user: &str, of: &Cluster) -> ClusterRoleTemplateBinding {
        let mut b = ClusterRoleTemplateBinding::new(
            &format!("m-{user}"),
            ClusterRoleTemplateBindingSpec {
                user_name: user.into(),
                cluster_name: of.metadata.name.clone(),
                role_template_name: "cluster-member".into(),
                ..Default::default()
            },
        );
        b.metadata.namespace = Some(of.metadata.name.clone());
        b
    }

    fn records(
        c: &Cluster,
        tokens: &[Token],
        users: &[User],
        crtbs: &[ClusterRoleTemplateBinding],
    ) -> Vec<String> {
        let inputs = AceInputs {
            members: ClusterMembers { cluster: c, crtbs, prtbs: &[], projects: &[] },
            tokens,
            users,
            grbs: &[],
            roles: &[],
        };
        let now: Timestamp = "2030-01-01T00:10:00Z".parse().unwrap();
        desired_records(&inputs, now).into_iter().map(|r| r.token_name).collect()
    }

    #[test]
    fn only_usable_tokens_of_members_of_this_cluster_are_synced() {
        let c1 = cluster("c-1", "uid-1");
        let tokens = [
            token("token-ok", &c1, "u-a", 0, true),
            token("token-other", &cluster("c-2", "uid-2"), "u-a", 0, true),
            token("token-global", &cluster("", ""), "u-a", 0, true),
            token("token-off", &c1, "u-a", 0, false),
            token("token-old", &c1, "u-a", 1000, true),
            token("token-ttl", &c1, "u-a", 3_600_000, true),
            token("token-nouser", &c1, "u-gone", 0, true),
            token("token-disabled-user", &c1, "u-off", 0, true),
            token("token-non-member", &c1, "u-b", 0, true),
            token("token-earlier-c-1", &cluster("c-1", "uid-0"), "u-a", 0, true),
        ];
        let users = [user("u-a", true, &["local://g"]), user("u-off", false, &[]), user("u-b", true, &[])];
        let crtbs = [member("u-a", &c1), member("u-off", &c1)];
        let inputs = AceInputs {
            members: ClusterMembers { cluster: &c1, crtbs: &crtbs, prtbs: &[], projects: &[] },
            tokens: &tokens,
            users: &users,
            grbs: &[],
            roles: &[],
        };
        let got = desired_records(&inputs, "2030-01-01T00:10:00Z".parse().unwrap());
        let names: Vec<&str> = got.iter().map(|r| r.token_name.as_str()).collect();
        assert_eq!(names, ["token-ok", "token-ttl"]);
        assert_eq!(got[0].groups, ["local://g"]);
        assert_eq!(got[0].expires_at, None);
        assert_eq!(got[1].expires_at, Some("2030-01-01T01:00:00Z".parse().unwrap()));
    }

    #[test]
    fn losing_the_membership_removes_the_record() {
        let c1 = cluster("c-1", "uid-1");
        let tokens = [token("token-a", &c1, "u-a", 0, true)];
        let users = [user("u-a", true, &[])];
        assert_eq!(records(&c1, &tokens, &users, &[member("u-a", &c1)]), ["token-a"]);
        assert!(records(&c1, &tokens, &users, &[]).is_empty());
    }
}
