//! `rancherctl cluster members …` and `project members …`: who holds which role template in a cluster
//! (cluster role template bindings) or a project (project role template bindings). A user is named by
//! login name — found through the server's principal search, which any signed-in user may use for
//! exact names — or by user id; a project by `<cluster>:<id>` or `<cluster>:<display name>`.

use http::Method;
use serde_json::{Value, json};

use super::client::ApiClient;
use super::commands::{data, list_output, path_segment, str_at};
use super::error::CliError;
use super::output::Format;
use super::{ClusterMembersCommand, ProjectMembersCommand};

const COLUMNS: &[&str] = &["BINDING", "USER", "ROLE"];

/// Where members are: a cluster, or a project of a cluster.
enum Scope {
    Cluster(String),
    /// The cluster, the project's name (`p-xxxxx`), and what the user typed.
    Project {
        cluster: String,
        name: String,
        shown: String,
    },
}

impl Scope {
    fn plural(&self) -> &'static str {
        match self {
            Scope::Cluster(_) => "clusterroletemplatebindings",
            Scope::Project { .. } => "projectroletemplatebindings",
        }
    }

    fn project_id(cluster: &str, name: &str) -> String {
        format!("{cluster}:{name}")
    }

    /// True when binding `b` is of this cluster or project.
    fn holds(&self, b: &Value) -> bool {
        match self {
            Scope::Cluster(c) => str_at(b, &["spec", "clusterName"]) == c,
            Scope::Project { cluster, name, .. } => {
                str_at(b, &["spec", "projectName"]) == Self::project_id(cluster, name)
            }
        }
    }

    /// A new binding of `user` to `role` here, in the shape the server has always accepted.
    fn binding(&self, user: &str, role: &str) -> Value {
        match self {
            Scope::Cluster(c) => json!({
                "metadata": { "namespace": c },
                "spec": { "clusterName": c, "roleTemplateName": role, "userName": user },
            }),
            Scope::Project { cluster, name, .. } => json!({
                "metadata": { "namespace": name },
                "spec": { "projectName": Self::project_id(cluster, name), "roleTemplateName": role, "userName": user },
            }),
        }
    }

    fn describe(&self) -> String {
        match self {
            Scope::Cluster(c) => format!("cluster {c}"),
            Scope::Project { cluster, name, shown } if shown.ends_with(&format!(":{name}")) => {
                format!("project {}", Self::project_id(cluster, name))
            }
            Scope::Project { cluster, name, shown } => {
                format!("project {shown} ({})", Self::project_id(cluster, name))
            }
        }
    }
}

pub(super) async fn cluster(client: &ApiClient, cmd: ClusterMembersCommand) -> Result<String, CliError> {
    match cmd {
        ClusterMembersCommand::Ls { cluster, out } => {
            ls(client, &Scope::Cluster(path_segment(&cluster)?.to_owned()), out.output).await
        }
        ClusterMembersCommand::Add { cluster, user, role } => {
            add(client, &Scope::Cluster(path_segment(&cluster)?.to_owned()), &user, &role).await
        }
        ClusterMembersCommand::Rm { cluster, user, role } => {
            rm(client, &Scope::Cluster(path_segment(&cluster)?.to_owned()), &user, role.as_deref()).await
        }
    }
}

pub(super) async fn project(client: &ApiClient, cmd: ProjectMembersCommand) -> Result<String, CliError> {
    match cmd {
        ProjectMembersCommand::Ls { project, out } => {
            ls(client, &resolve_project(client, &project).await?, out.output).await
        }
        ProjectMembersCommand::Add { project, user, role } => {
            add(client, &resolve_project(client, &project).await?, &user, &role).await
        }
        ProjectMembersCommand::Rm { project, user, role } => {
            rm(client, &resolve_project(client, &project).await?, &user, role.as_deref()).await
        }
    }
}

/// `<cluster>:<id>` or `<cluster>:<display name>` → the project, found among those the caller sees
/// (see [`super::namespaces::resolve_project`]).
async fn resolve_project(client: &ApiClient, given: &str) -> Result<Scope, CliError> {
    let (cluster, wanted) =
        given.split_once(':').filter(|(c, p)| !c.is_empty() && !p.is_empty()).ok_or_else(|| {
            CliError::Input(format!("{given:?}: a project is named CLUSTER:ID or CLUSTER:DISPLAY-NAME"))
        })?;
    path_segment(cluster)?;
    let id = super::namespaces::resolve_project(client, cluster, wanted).await?;
    let name = id.split_once(':').map_or(id.as_str(), |(_, p)| p);
    Ok(Scope::Project {
        cluster: cluster.to_owned(),
        name: path_segment(name)?.to_owned(),
        shown: given.to_owned(),
    })
}

/// A login name (found by principal search), a principal id `local://u-xxxxx`, or a user id → the user id.
pub(super) async fn resolve_user(client: &ApiClient, user: &str) -> Result<String, CliError> {
    if let Some(id) = user.strip_prefix("local://") {
        return Ok(path_segment(id)?.to_owned());
    }
    let found = client
        .call(
            Method::POST,
            "/v3/principals?action=search",
            Some(&json!({"name": user, "principalType": "user"})),
        )
        .await?;
    let hit = data(found).into_iter().find(|p| str_at(p, &["loginName"]) == user);
    if let Some(p) = hit {
        let id = str_at(&p, &["id"]);
        return id.strip_prefix("local://").map(str::to_owned).ok_or_else(|| {
            CliError::Http(format!("the principal search answered {id:?}, not a local user"))
        });
    }
    if user.starts_with("u-") {
        return Ok(path_segment(user)?.to_owned());
    }
    Err(CliError::Input(format!(
        "no user with login name {user:?}: give the exact login name, or the user id (u-xxxxx)"
    )))
}

/// The bindings of this scope.
async fn bindings(client: &ApiClient, scope: &Scope) -> Result<Vec<Value>, CliError> {
    let all = data(client.call(Method::GET, &format!("/v3/{}", scope.plural()), None).await?);
    Ok(all.into_iter().filter(|b| scope.holds(b)).collect())
}

/// Login names by user id, when the caller may list users (otherwise ids are shown).
async fn login_names(client: &ApiClient) -> std::collections::HashMap<String, String> {
    match client.call(Method::GET, "/v3/users", None).await {
        Ok(list) => data(list)
            .iter()
            .map(|u| (str_at(u, &["id"]).to_owned(), str_at(u, &["spec", "username"]).to_owned()))
            .collect(),
        Err(_) => Default::default(),
    }
}

async fn ls(client: &ApiClient, scope: &Scope, out: Format) -> Result<String, CliError> {
    let items = bindings(client, scope).await?;
    let names = if out == Format::Table { login_names(client).await } else { Default::default() };
    list_output(out, items, COLUMNS, |b| {
        let user = str_at(b, &["spec", "userName"]);
        let who = match (user, names.get(user)) {
            ("", _) => str_at(b, &["spec", "groupPrincipalName"]).to_owned(),
            (id, Some(name)) if !name.is_empty() => format!("{name} ({id})"),
            (id, _) => id.to_owned(),
        };
        vec![str_at(b, &["id"]).to_owned(), who, str_at(b, &["spec", "roleTemplateName"]).to_owned()]
    })
}

async fn add(client: &ApiClient, scope: &Scope, user: &str, role: &str) -> Result<String, CliError> {
    path_segment(role)?;
    let id = resolve_user(client, user).await?;
    // Adding a role the user holds already changes nothing (the server would keep a duplicate).
    if let Ok(held) = bindings(client, scope).await
        && held.iter().any(|b| {
            str_at(b, &["spec", "userName"]) == id && str_at(b, &["spec", "roleTemplateName"]) == role
        })
    {
        return Ok(format!("{user} already holds {role} in {}\n", scope.describe()));
    }
    let created = client
        .call(Method::POST, &format!("/v3/{}", scope.plural()), Some(&scope.binding(&id, role)))
        .await?;
    Ok(format!(
        "{user} ({id}) is now {role} in {} (binding {})\n",
        scope.describe(),
        str_at(&created, &["id"])
    ))
}

async fn rm(client: &ApiClient, scope: &Scope, user: &str, role: Option<&str>) -> Result<String, CliError> {
    let id = resolve_user(client, user).await?;
    let doomed: Vec<Value> = bindings(client, scope)
        .await?
        .into_iter()
        .filter(|b| str_at(b, &["spec", "userName"]) == id)
        .filter(|b| role.is_none_or(|r| str_at(b, &["spec", "roleTemplateName"]) == r))
        .collect();
    if doomed.is_empty() {
        let what = role.map_or_else(|| "no role".to_owned(), |r| format!("no {r} role"));
        return Err(CliError::Input(format!("{user} has {what} in {}", scope.describe())));
    }
    let mut out = String::new();
    for b in &doomed {
        let bid = str_at(b, &["id"]);
        let (ns, name) = bid
            .split_once(':')
            .ok_or_else(|| CliError::Http(format!("the server listed a binding with the id {bid:?}")))?;
        client
            .call(
                Method::DELETE,
                &format!("/v3/{}/{}:{}", scope.plural(), path_segment(ns)?, path_segment(name)?),
                None,
            )
            .await?;
        out.push_str(&format!(
            "{user} is no longer {} in {} (binding {bid} deleted)\n",
            str_at(b, &["spec", "roleTemplateName"]),
            scope.describe()
        ));
    }
    Ok(out)
}
