//! A connected cluster's namespaces and the projects they are in, read and changed downstream through
//! the cluster agent's tunnel (the annotation `field.cattle.io/projectId: <cluster>:<p-xxxxx>`, which
//! the RBAC sync follows):
//!
//! * `GET /v3/clusters/<cluster>/namespaces` — the namespaces the caller may see: all of them for
//!   admins and cluster owners, else those of the projects the caller is a member of;
//! * `POST /v3/clusters/<cluster>/namespaces/<ns>?action=move` with `{"projectId": "<cluster>:<p>"}`
//!   or `{"projectId": null}` — needs `update` on namespaces where it is now (its project, or the
//!   cluster for a namespace in none) and `create` on namespaces where it goes.
//!
//! A cluster without a connected agent answers 503 at once.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use http::HeaderMap;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams};
use rancher_auth::rbac_render::PROJECT_ID_ANNOTATION;
use rancher_core::model::{Cluster, ClusterRoleTemplateBinding, Project, ProjectRoleTemplateBinding};
use rancher_core::store::Api;
use serde_json::{Value, json};

use super::body::json_object;
use super::kind::Ctx;
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiResult};
use crate::server::kubeconfig::caller_identity;
use crate::server::proxy::membership::{ClusterMembers, project_counts, project_ref, prtb_candidate};
use crate::server::services::access::{GrantScope, Grants};
use crate::server::state::AppState;

/// How long a downstream call may take before the request is answered 503.
const DOWNSTREAM_TIMEOUT: Duration = Duration::from_secs(15);
/// The management resource whose verbs authorize these routes (`update` to move a namespace out of
/// where it is, `create` to move one in, `list` to see all of a cluster's).
const RESOURCE: &str = "namespaces";

/// The cluster `name` as it exists now, or 404.
async fn cluster(state: &AppState, name: &str) -> ApiResult<Cluster> {
    match Api::<Cluster>::all(state.store.clone()).get_opt(name).await? {
        Some(c) if c.metadata.deletion_timestamp.is_none() => Ok(c),
        _ => Err(ApiError::NotFound(format!("clusters \"{name}\" not found"))),
    }
}

/// A client for the cluster's API server through its agent's session; 503 at once when it has none.
fn client(state: &AppState, cluster: &Cluster) -> ApiResult<kube::Client> {
    let (name, uid) = (&cluster.metadata.name, &cluster.metadata.uid);
    let registration = &state.registration;
    let not_connected =
        || ApiError::Unavailable(format!("cluster {name:?} is not connected: no agent session"));
    let access = registration.access(name).filter(|a| a.cluster_uid == *uid).ok_or_else(not_connected)?;
    if registration.session_keys_for(name, uid).is_empty() {
        return Err(not_connected());
    }
    registration.client_with(name, &access).map_err(|e| ApiError::Unavailable(e.to_string()))
}

/// Runs one downstream call, bounded in time, naming what failed.
async fn downstream<T>(
    cluster: &str,
    what: &str,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> ApiResult<T> {
    match tokio::time::timeout(DOWNSTREAM_TIMEOUT, call).await {
        Err(_) => Err(ApiError::Unavailable(format!(
            "cluster {cluster:?} did not answer {what} within {DOWNSTREAM_TIMEOUT:?}"
        ))),
        Ok(Err(kube::Error::Api(e))) if e.code == 404 => Err(ApiError::NotFound(e.message)),
        Ok(Err(kube::Error::Api(e))) => {
            Err(ApiError::Internal(format!("cluster {cluster:?} refused {what}: {}", e.message)))
        }
        Ok(Err(e)) => Err(ApiError::Unavailable(format!("cluster {cluster:?}: {what}: {e}"))),
        Ok(Ok(v)) => Ok(v),
    }
}

/// The project a namespace is in, as its annotation says (`None`: in none).
fn project_of(ns: &Namespace) -> Option<&str> {
    ns.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROJECT_ID_ANNOTATION))
        .map(String::as_str)
        .filter(|p| !p.is_empty())
}

/// A namespace as the API shows it.
fn output(ns: &Namespace) -> Value {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let state = if ns.metadata.deletion_timestamp.is_some() { "terminating" } else { "active" };
    json!({
        "id": name,
        "type": "namespace",
        "name": name,
        "projectId": project_of(ns),
        "state": state,
        "metadata": {
            "name": name,
            "creationTimestamp": ns.metadata.creation_timestamp,
        },
    })
}

/// The live projects of `cluster`.
async fn projects(state: &AppState, cluster: &Cluster) -> ApiResult<Vec<Project>> {
    let all = Api::<Project>::namespaced(state.store.clone(), &cluster.metadata.name).list().await?;
    Ok(all.into_iter().filter(|p| project_counts(&p.metadata, &cluster.metadata)).collect())
}

/// Whether the caller is a member of `cluster` at all, and the projects of it they are a member of
/// (have a binding in that counts).
async fn membership(
    state: &AppState,
    caller: &Caller,
    cluster: &Cluster,
    projects: &[Project],
) -> ApiResult<(bool, Vec<String>)> {
    let name = &cluster.metadata.name;
    let me = caller_identity(caller);
    let prtbs: Vec<ProjectRoleTemplateBinding> = Api::<ProjectRoleTemplateBinding>::all(state.store.clone())
        .list()
        .await?
        .into_iter()
        .filter(|b| prtb_candidate(b, &me, name))
        .collect();
    let crtbs = Api::<ClusterRoleTemplateBinding>::namespaced(state.store.clone(), name).list().await?;
    let members = ClusterMembers { cluster, crtbs: &crtbs, prtbs: &prtbs, projects };
    let mine = prtbs
        .iter()
        .filter(|b| members.prtb_counts(b))
        .filter_map(|b| project_ref(&b.spec.project_name).map(|(_, p)| p.to_owned()))
        .collect();
    Ok((members.is_member(&me), mine))
}

/// `verb` on namespaces in `scope`: by the caller's global roles or the roles they hold there.
async fn allowed(cx: &Ctx<'_>, verb: &str, scope: GrantScope, ns: Option<&str>) -> ApiResult<bool> {
    if cx.caller.can(verb, RESOURCE, ns) {
        return Ok(true);
    }
    Ok(Grants::load(&cx.state.store).await?.held_by(cx.caller, &scope).allows(verb, RESOURCE, ns))
}

/// `GET /v3/clusters/<cluster>/namespaces`
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let cluster = cluster(&state, &name).await?;
    let cx = Ctx::new(&state, &caller);
    let everything = allowed(&cx, "list", GrantScope { cluster: name.clone(), project: None }, None).await?;
    let projects = projects(&state, &cluster).await?;
    let mine = if everything {
        Vec::new()
    } else {
        let (member, mine) = membership(&state, &caller, &cluster, &projects).await?;
        if !member {
            // The same answer as for a cluster that does not exist: ids are not probed.
            return Err(ApiError::NotFound(format!("clusters \"{name}\" not found")));
        }
        mine
    };
    let client = client(&state, &cluster)?;
    let all = downstream(&name, "listing namespaces", async {
        kube::Api::<Namespace>::all(client).list(&Default::default()).await
    })
    .await?;
    let visible = |ns: &&Namespace| {
        everything
            || project_of(ns)
                .and_then(project_ref)
                .is_some_and(|(c, p)| c == name && mine.iter().any(|m| m == p))
    };
    let data: Vec<Value> = all.items.iter().filter(visible).map(output).collect();
    Ok(Json(json!({"type": "collection", "resourceType": "namespace", "data": data})))
}

/// Where a move goes: `Some(project name)` of this cluster, or `None` for out of every project.
fn target(
    cluster: &Cluster,
    projects: &[Project],
    body: &serde_json::Map<String, Value>,
) -> ApiResult<Option<String>> {
    let name = &cluster.metadata.name;
    let id = match body.get("projectId") {
        None => {
            return Err(ApiError::invalid_field(
                "projectId",
                "required: \"<cluster>:<project>\", or null to take the namespace out of every project",
            ));
        }
        Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => return Err(ApiError::invalid_field("projectId", "must be a string or null")),
    };
    let Some((c, p)) = project_ref(id) else {
        return Err(ApiError::invalid_field("projectId", format!("{id:?} is not <cluster>:<project>")));
    };
    if c != name {
        return Err(ApiError::invalid_field(
            "projectId",
            format!("{id:?} is a project of another cluster than {name:?}"),
        ));
    }
    if !projects.iter().any(|x| x.metadata.name == p) {
        return Err(ApiError::invalid_field("projectId", format!("project {id:?} not found")));
    }
    Ok(Some(p.to_owned()))
}

/// `POST /v3/clusters/<cluster>/namespaces/<ns>?action=move`
pub(crate) async fn action(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, ns)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let action = crate::server::api::query_value(query.as_deref(), "action");
    match action.as_deref() {
        Some("move") => {}
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "unknown action {other:?} on namespaces (known: move)"
            )));
        }
        None => return Err(ApiError::MethodNotAllowed("POST on a namespace needs ?action=move".into())),
    }
    let body = json_object(&headers, body, state.body_limit).await?;
    let cluster = cluster(&state, &name).await?;
    let projects = projects(&state, &cluster).await?;
    let to = target(&cluster, &projects, &body)?;
    let client = client(&state, &cluster)?;
    let namespaces = kube::Api::<Namespace>::all(client);
    let current = downstream(&name, "reading the namespace", namespaces.get_opt(&ns))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("namespaces \"{ns}\" not found in cluster {name:?}")))?;
    // Where it is now counts only as a live project of this cluster; a stale annotation is "in none".
    let from = project_of(&current)
        .and_then(project_ref)
        .filter(|(c, p)| *c == name && projects.iter().any(|x| x.metadata.name == *p))
        .map(|(_, p)| p.to_owned());
    let cx = Ctx::new(&state, &caller);
    let scope = |project: &Option<String>| GrantScope { cluster: name.clone(), project: project.clone() };
    let place = |project: &Option<String>| match project {
        Some(p) => format!("project {name}:{p}"),
        None => format!("cluster {name} (outside any project)"),
    };
    if !allowed(&cx, "update", scope(&from), Some(&ns)).await? {
        return Err(ApiError::Forbidden(format!(
            "namespaces \"{ns}\" is forbidden: user \"{}\" may not move namespaces out of {}",
            caller.user_id(),
            place(&from)
        )));
    }
    if !allowed(&cx, "create", scope(&to), None).await? {
        return Err(ApiError::Forbidden(format!(
            "namespaces \"{ns}\" is forbidden: user \"{}\" may not move namespaces into {}",
            caller.user_id(),
            place(&to)
        )));
    }
    if current.metadata.deletion_timestamp.is_some() {
        return Err(ApiError::invalid_field("namespace", format!("{ns:?} is being deleted")));
    }
    let value = to.as_ref().map(|p| format!("{name}:{p}"));
    let patch = json!({"metadata": {"annotations": {PROJECT_ID_ANNOTATION: value}}});
    let moved = downstream(
        &name,
        "annotating the namespace",
        namespaces.patch(&ns, &PatchParams::default(), &Patch::Merge(&patch)),
    )
    .await?;
    tracing::info!(cluster = %name, namespace = %ns, from = ?from, to = ?to, user = %caller.user_id(), "namespace moved");
    Ok(Json(output(&moved)))
}

#[cfg(test)]
mod tests {
    use rancher_core::model::ProjectSpec;

    use super::*;

    fn fixture() -> (Cluster, Vec<Project>) {
        let mut c = Cluster::default();
        c.metadata.name = "edge".into();
        let mut p =
            Project::new("p-abcde", ProjectSpec { cluster_name: "edge".into(), ..Default::default() });
        p.metadata.namespace = Some("edge".into());
        (c, vec![p])
    }

    fn body(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_move_names_a_project_of_this_cluster_or_none() {
        let (c, ps) = fixture();
        assert_eq!(
            target(&c, &ps, &body(json!({"projectId": "edge:p-abcde"}))).unwrap().as_deref(),
            Some("p-abcde")
        );
        assert_eq!(target(&c, &ps, &body(json!({"projectId": null}))).unwrap(), None);
        for (bad, why) in [
            (json!({}), "required"),
            (json!({"projectId": 3}), "string or null"),
            (json!({"projectId": "p-abcde"}), "<cluster>:<project>"),
            (json!({"projectId": "other:p-abcde"}), "another cluster"),
            (json!({"projectId": "edge:p-zzzzz"}), "not found"),
        ] {
            let e = target(&c, &ps, &body(bad.clone())).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn namespaces_show_their_project_and_state() {
        let mut ns = Namespace::default();
        ns.metadata.name = Some("shop".into());
        assert_eq!(output(&ns)["projectId"], Value::Null);
        assert_eq!(output(&ns)["state"], "active");
        ns.metadata.annotations =
            Some([(PROJECT_ID_ANNOTATION.to_owned(), "edge:p-abcde".to_owned())].into_iter().collect());
        ns.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2030-01-01T00:00:00Z".parse().unwrap(),
        ));
        let out = output(&ns);
        assert_eq!((out["id"].as_str(), out["projectId"].as_str()), (Some("shop"), Some("edge:p-abcde")));
        assert_eq!(out["state"], "terminating");
    }
}
