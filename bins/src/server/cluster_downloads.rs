//! `POST /v3/clusters/<id>?action=exportState` and `?action=exportAdminKubeconfig`: a cluster built on
//! hosts, as its owners download it — its state (`cluster.rkestate`) and the admin's kubeconfig
//! (`kube_config_<name>.yml`). Both hold the cluster's CA keys, so only a global admin or an owner of
//! the cluster gets them (a member who is not an owner gets 403; someone who cannot reach the cluster
//! gets the 404 of a cluster that does not exist), every attempt is written to the audit log, and
//! answers are never cached.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use rancher_auth::proxy::AuditEvent;
use rancher_core::model::Cluster;
use rancher_core::store::Api;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::server::auth::{Caller, is_cluster_admin};
use crate::server::error::{ApiError, ApiResult};
use crate::server::provisioning::{rke_export as export, rke_state};
use crate::server::services::access::{GrantScope, Grants, may_reach_cluster};
use crate::server::state::AppState;

/// What is downloaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Download {
    /// `exportState`: `cluster.rkestate`.
    State,
    /// `exportAdminKubeconfig`: `kube_config_<name>.yml`.
    AdminKubeconfig,
}

impl Download {
    /// The download named by a cluster action, if it is one.
    pub(crate) fn of_action(action: &str) -> Option<Download> {
        match action {
            "exportState" => Some(Download::State),
            "exportAdminKubeconfig" => Some(Download::AdminKubeconfig),
            _ => None,
        }
    }

    fn action(self) -> &'static str {
        match self {
            Download::State => "exportState",
            Download::AdminKubeconfig => "exportAdminKubeconfig",
        }
    }
}

/// True when `caller` may hold the cluster's keys: a global admin, or whoever holds every
/// permission on the cluster there (its owners: `cluster-owner`).
async fn owns(state: &AppState, caller: &Caller, id: &str) -> ApiResult<bool> {
    if is_cluster_admin(&caller.rules) {
        return Ok(true);
    }
    let grants = Grants::load(&state.store).await?;
    let scope = GrantScope { cluster: id.to_owned(), project: None };
    Ok(grants.held_by(caller, &scope).allows("*", "clusters", Some(id)))
}

/// Serves `what` of cluster `id`, auditing the attempt whatever its outcome.
pub(crate) async fn serve(state: &AppState, caller: &Caller, id: &str, what: Download) -> Response {
    let started = Instant::now();
    let result = answer(state, caller, id, what).await;
    let status = match &result {
        Ok(_) => StatusCode::OK.as_u16(),
        Err(e) => e.to_status().code,
    };
    state.audit.record(&AuditEvent {
        time: jiff::Timestamp::now(),
        user: caller.user_id().to_owned(),
        groups: caller.user.status.group_principals.clone(),
        cluster: id.to_owned(),
        verb: "get".into(),
        api_group: crate::server::auth::MANAGEMENT_GROUP.into(),
        resource: "clusters".into(),
        subresource: what.action().into(),
        namespace: String::new(),
        name: id.to_owned(),
        path: format!("/v3/clusters/{id}"),
        status,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        request_body: None,
        request_body_omitted: None,
    });
    match result {
        Ok(body) => {
            tracing::info!(
                cluster = id,
                user = caller.user_id(),
                action = what.action(),
                "cluster keys downloaded"
            );
            let mut resp = Json(body).into_response();
            resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => e.into_response(),
    }
}

async fn answer(state: &AppState, caller: &Caller, id: &str, what: Download) -> ApiResult<Value> {
    let not_found = || ApiError::NotFound(format!("clusters \"{id}\" not found"));
    let cluster = Api::<Cluster>::all(state.store.clone()).get_opt(id).await?.ok_or_else(not_found)?;
    if !may_reach_cluster(&state.store, caller, id).await? {
        // The same answer as for a cluster that does not exist: ids are not probed.
        return Err(not_found());
    }
    if !owns(state, caller, id).await? {
        return Err(ApiError::Forbidden(format!(
            "clusters \"{id}\" is forbidden: User \"{}\" cannot {} it: only a global admin or an owner of \
             the cluster may download its keys",
            caller.user_id(),
            what.action()
        )));
    }
    let conflict = |e: export::ExportError| ApiError::Conflict(e.to_string());
    if cluster.spec.rke_config.is_none() {
        return Err(conflict(export::ExportError::NotOnHosts(id.to_owned())));
    }
    let (st, _) = rke_state::load(state.store.as_ref(), &state.sealer, &cluster)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or_else(|| conflict(export::ExportError::NoStateYet(id.to_owned())))?;
    Ok(match what {
        Download::State => json!({
            "type": "exportStateOutput",
            "fileName": "cluster.rkestate",
            "state": export::rkestate(&cluster, &st).map_err(conflict)?,
        }),
        Download::AdminKubeconfig => json!({
            "type": "exportAdminKubeconfigOutput",
            "fileName": format!("kube_config_{id}.yml"),
            "config": export::admin_kubeconfig(&cluster, &st).map_err(conflict)?,
        }),
    })
}
