//! First-start setup, idempotent across restarts: the builtin global roles and role templates, and the
//! `admin` user.

use std::sync::Arc;

use rancher_core::Resource;
use rancher_core::model::{
    GlobalRole, GlobalRoleSpec, PolicyRule, RoleTemplate, RoleTemplateSpec, User, UserSpec,
};
use rancher_core::store::{Api, Store, StoreError};

use super::hashing::{self, HashError};
use super::services::users;

/// Why the first-start setup failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// A builtin global role or role template could not be read or written.
    #[error("builtin {kind} {name:?}: {source}")]
    Builtin {
        /// `globalroles` or `roletemplates`.
        kind: &'static str,
        /// The builtin's name.
        name: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// `CATTLE_BOOTSTRAP_PASSWORD` (or the builder's `bootstrap_password`) is too weak.
    #[error("CATTLE_BOOTSTRAP_PASSWORD is not acceptable: spec.password: Invalid value: {0}")]
    WeakPassword(#[source] rancher_auth::password::PasswordError),
    /// Reading the users, to find the admin, failed.
    #[error("finding the admin user: {0}")]
    FindAdmin(#[source] StoreError),
    /// Hashing the admin's password failed.
    #[error("hashing the admin password: {0}")]
    HashPassword(#[source] HashError),
    /// Storing the admin user failed.
    #[error("creating the admin user: {0}")]
    CreateAdmin(#[source] StoreError),
    /// Binding the admin user to the `admin` global role failed.
    #[error("binding the admin user to global role admin: {0}")]
    BindAdmin(#[source] StoreError),
}

/// The username of the administrator made on first start.
pub const ADMIN_USERNAME: &str = "admin";

const MGMT: &str = "management.cattle.io";

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    let v = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect();
    PolicyRule { verbs: v(verbs), api_groups: v(groups), resources: v(resources), ..Default::default() }
}

fn everything() -> Vec<PolicyRule> {
    vec![
        rule(&["*"], &["*"], &["*"]),
        PolicyRule { verbs: vec!["*".into()], non_resource_urls: vec!["*".into()], ..Default::default() },
    ]
}

/// The builtin global roles. Every user may always read their own user and manage their own tokens;
/// `user-base` grants nothing beyond that, `user` adds creating clusters and cloud credentials, and reading the role catalogue.
fn global_roles() -> Vec<GlobalRole> {
    let role = |name: &str, display: &str, description: &str, rules: Vec<PolicyRule>, default: bool| {
        GlobalRole::new(
            name,
            GlobalRoleSpec {
                display_name: display.into(),
                description: description.into(),
                rules,
                new_user_default: default,
                builtin: true,
                inherited_cluster_roles: if name == "admin" { vec!["cluster-owner".into()] } else { vec![] },
            },
        )
    };
    vec![
        role("admin", "Admin", "Full control of the server and every cluster.", everything(), false),
        role(
            "user",
            "Standard User",
            "May create clusters and cloud credentials and read the role catalogue; their own user, \
             tokens and cloud credentials.",
            vec![
                rule(&["create"], &[MGMT], &["clusters", "cloudcredentials"]),
                rule(&["get", "list", "watch"], &[MGMT], &["roletemplates", "globalroles"]),
                rule(&["*"], &[MGMT], &["preferences"]),
            ],
            true,
        ),
        role(
            "user-base",
            "User Base",
            "Log in, read their own user, manage their own tokens; nothing else.",
            vec![rule(&["*"], &[MGMT], &["preferences"])],
            false,
        ),
    ]
}

/// The builtin role templates, as Rancher ships them: the project roles inherit Kubernetes' own
/// `admin`, `edit` and `view` ClusterRoles through the hidden external templates of those names (so
/// a project member is exactly `edit` in the project's namespaces, and `read-only` cannot read
/// Secrets), plus the management rules of their own.
fn role_templates() -> Vec<RoleTemplate> {
    let rt = |name: &str, display: &str, context: &str, rules: Vec<PolicyRule>, inherits: &[&str]| {
        RoleTemplate::new(
            name,
            RoleTemplateSpec {
                display_name: display.into(),
                context: context.into(),
                rules,
                role_template_names: inherits.iter().map(|s| (*s).to_owned()).collect(),
                builtin: true,
                cluster_creator_default: name == "cluster-owner",
                project_creator_default: name == "project-owner",
                ..Default::default()
            },
        )
    };
    // Kubernetes' own ClusterRoles, referenced downstream instead of being rendered.
    let kube = |name: &str, display: &str| {
        let mut t = rt(name, display, "project", vec![], &[]);
        t.spec.external = true;
        t.spec.hidden = true;
        t
    };
    vec![
        rt("cluster-owner", "Cluster Owner", "cluster", everything(), &[]),
        rt(
            "cluster-member",
            "Cluster Member",
            "cluster",
            vec![
                rule(
                    &["get", "list", "watch"],
                    &[MGMT],
                    &["clusterroletemplatebindings", "nodes", "nodepools"],
                ),
                rule(&["create"], &[MGMT], &["projects"]),
                rule(&["get", "list", "watch"], &[""], &["nodes", "persistentvolumes", "namespaces"]),
                rule(&["get", "list", "watch"], &["storage.k8s.io"], &["storageclasses"]),
            ],
            &[],
        ),
        kube("admin", "Kubernetes admin"),
        kube("edit", "Kubernetes edit"),
        kube("view", "Kubernetes view"),
        rt(
            "project-owner",
            "Project Owner",
            "project",
            vec![
                rule(&["*"], &[MGMT], &["projectroletemplatebindings"]),
                rule(&["get", "list", "watch", "update", "delete"], &[MGMT], &["projects"]),
                // Moving namespaces between projects (`/v3/clusters/<c>/namespaces/<ns>?action=move`):
                // out of (`update`) and into (`create`) the projects this is bound in.
                rule(&["create", "update"], &[MGMT], &["namespaces"]),
            ],
            &["admin"],
        ),
        rt(
            "project-member",
            "Project Member",
            "project",
            vec![rule(&["get", "list", "watch"], &[MGMT], &["projectroletemplatebindings"])],
            &["edit"],
        ),
        rt(
            "read-only",
            "Read-only",
            "project",
            vec![rule(&["get", "list", "watch"], &[MGMT], &["projectroletemplatebindings"])],
            &["view"],
        ),
    ]
}

/// Creates a builtin object, or brings a stored one's spec back to what this version ships.
async fn ensure<K: Resource + PartialEq>(
    api: &Api<K>,
    wanted: K,
    same: impl Fn(&K, &K) -> bool,
    set: impl Fn(&mut K, &K),
) -> Result<(), BootstrapError> {
    let failed = |source| BootstrapError::Builtin { kind: K::PLURAL, name: wanted.name().to_owned(), source };
    match api.get_opt(wanted.name()).await.map_err(failed)? {
        None => match api.create(&wanted).await {
            Ok(_) | Err(rancher_core::store::StoreError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(failed(e)),
        },
        Some(mut stored) if !same(&stored, &wanted) => {
            set(&mut stored, &wanted);
            api.update(&stored).await.map_err(failed)?;
            Ok(())
        }
        Some(_) => Ok(()),
    }
}

/// What the first start produced.
#[derive(Debug, Default)]
pub(crate) struct Bootstrapped {
    /// The admin password, when it was generated on this start (show it once).
    pub(crate) generated_admin_password: Option<String>,
}

/// Ensures the builtin roles and the admin user exist. `bootstrap_password` is used only when the admin
/// is created; without it a password is generated and returned.
pub(crate) async fn bootstrap(
    store: &Arc<dyn Store>,
    bootstrap_password: Option<String>,
) -> Result<Bootstrapped, BootstrapError> {
    let roles: Api<GlobalRole> = Api::all(store.clone());
    for r in global_roles() {
        ensure(&roles, r, |a, b| a.spec == b.spec, |a, b| a.spec = b.spec.clone()).await?;
    }
    let templates: Api<RoleTemplate> = Api::all(store.clone());
    for t in role_templates() {
        ensure(&templates, t, |a, b| a.spec == b.spec, |a, b| a.spec = b.spec.clone()).await?;
    }

    let mut out = Bootstrapped::default();
    let admin = match users::find_by_username(store, ADMIN_USERNAME)
        .await
        .map_err(BootstrapError::FindAdmin)?
    {
        Some(u) => u,
        None => {
            let (password, generated) = match bootstrap_password.filter(|p| !p.is_empty()) {
                Some(p) => (p, false),
                None => (rancher_auth::token::random_id(24), true),
            };
            rancher_auth::password::check_strength(&password).map_err(BootstrapError::WeakPassword)?;
            let hash = hashing::hash(password.clone()).await.map_err(BootstrapError::HashPassword)?;
            let id = format!("u-{}", rancher_auth::token::random_id(5));
            let user = User::new(
                &id,
                UserSpec {
                    display_name: "Default Admin".into(),
                    username: ADMIN_USERNAME.into(),
                    password: hash,
                    principal_ids: vec![format!("local://{id}")],
                    enabled: true,
                    ..Default::default()
                },
            );
            let created =
                Api::<User>::all(store.clone()).create(&user).await.map_err(BootstrapError::CreateAdmin)?;
            if generated {
                out.generated_admin_password = Some(password);
            }
            created
        }
    };
    users::bind_global_role(store, &admin.metadata.name, "admin").await.map_err(BootstrapError::BindAdmin)?;
    Ok(out)
}
