//! `POST /v3/clusters/<id>?action=backupEtcd` and `?action=restoreFromEtcdBackup` (Rancher's
//! names), allowed to whoever may update the cluster.
//!
//! `backupEtcd` takes a snapshot of a cluster built on hosts now (it takes seconds), uploads it when
//! the cluster has an S3 target, and answers with its record; a failed upload keeps the snapshot on
//! the hosts and the answer says why. `restoreFromEtcdBackup {"etcdBackupId": "<snapshot>"}` stamps
//! `spec.rkeConfig.restore` with the time of the request, which the provisioner carries out once:
//! the cluster's API is down while every etcd member is restored.

use axum::Json;
use axum::body::Body;
use http::HeaderMap;
use rancher_core::model::{Cluster, RkeRestore};
use rancher_core::store::Api;
use serde_json::{Map, Value, json};

use super::crud::authorize_object;
use super::kind::{ApiKind as _, Ctx};
use super::rotate_certs::read_body;
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiResult};
use crate::server::provisioning::rke::backups::{self, BackupError};
use crate::server::provisioning::rke_state;
use crate::server::state::AppState;
use rancher_provision::etcd_snapshots::SnapshotKind;

/// The action that takes a snapshot.
pub(crate) const BACKUP: &str = "backupEtcd";
/// The action that restores one.
pub(crate) const RESTORE: &str = "restoreFromEtcdBackup";

/// The cluster `id`, which the caller may update and which is built on hosts and not being deleted.
async fn cluster_to_change(state: &AppState, caller: &Caller, id: &str, what: &str) -> ApiResult<Cluster> {
    authorize_object::<Cluster>(state, caller, "update", None, id).await?;
    let cluster = Api::<Cluster>::all(state.store.clone()).get(id).await?;
    if cluster.metadata.deletion_timestamp.is_some() {
        return Err(ApiError::Conflict(format!("cluster {id:?} is being deleted")));
    }
    if cluster.spec.rke_config.is_none() {
        return Err(ApiError::Conflict(format!(
            "cluster {id:?} is not built on hosts (it has no rkeConfig): the server {what} only the etcd of \
             such clusters"
        )));
    }
    Ok(cluster)
}

fn api_error(e: BackupError) -> ApiError {
    if e.is_not_ready() {
        ApiError::Conflict(e.to_string())
    } else if e.is_transient() {
        ApiError::Unavailable(e.to_string())
    } else {
        ApiError::Internal(e.to_string())
    }
}

/// Serves `backupEtcd` on cluster `id`.
pub(crate) async fn backup_etcd(
    state: &AppState,
    caller: &Caller,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let cluster = cluster_to_change(state, caller, id, "snapshots").await?;
    for key in read_body(state, headers, body).await?.keys() {
        if key != "type" {
            return Err(ApiError::BadRequest(format!(
                "unknown field {key:?} in a backupEtcd request (it takes none)"
            )));
        }
    }
    let record = backups::take(&state.store, &state.sealer, &cluster, SnapshotKind::Manual)
        .await
        .map_err(api_error)?;
    tracing::info!(cluster = id, user = caller.user_id(), snapshot = %record.name, "etcd snapshot taken on request");
    let shown = backups::status_of(std::slice::from_ref(&record)).remove(0);
    let mut message = format!(
        "etcd snapshot {} taken ({} bytes, sha256 {}) and stored on {}",
        record.name,
        record.size,
        record.sha256,
        record.hosts.join(", ")
    );
    match &record.s3 {
        Some(s3) if s3.is_uploaded() => {
            message.push_str(&format!("; uploaded to s3://{}/{}", s3.bucket, s3.key))
        }
        Some(s3) => message.push_str(&format!(
            "; the upload to S3 bucket {} FAILED (the snapshot is kept on the hosts): {}",
            s3.bucket, s3.error
        )),
        None => {}
    }
    Ok(Json(json!({ "type": "etcdBackup", "message": message, "snapshot": shown })))
}

/// The snapshot named by a `restoreFromEtcdBackup` body: `etcdBackupId` is the snapshot's name, or
/// Rancher's `<cluster>:<name>`.
fn snapshot_asked(id: &str, body: &Map<String, Value>) -> ApiResult<String> {
    let mut asked = None;
    for (key, value) in body {
        match (key.as_str(), value) {
            ("etcdBackupId", Value::String(s)) => asked = Some(s.clone()),
            ("etcdBackupId", _) => {
                return Err(ApiError::invalid_field("etcdBackupId", "must be a snapshot's name (a string)"));
            }
            ("type" | "restoreRkeConfig", _) => {} // Rancher's clients send these
            (other, _) => {
                return Err(ApiError::BadRequest(format!(
                    "unknown field {other:?} in a restoreFromEtcdBackup request (known: etcdBackupId)"
                )));
            }
        }
    }
    let asked = asked.filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError::invalid_field(
            "etcdBackupId",
            format!("is required: the snapshot to restore (rancherctl cluster snapshot ls {id})"),
        )
    })?;
    let prefix = format!("{id}:");
    Ok(asked.strip_prefix(&prefix).unwrap_or(&asked).to_owned())
}

/// Serves `restoreFromEtcdBackup` on cluster `id`.
pub(crate) async fn restore_from_etcd_backup(
    state: &AppState,
    caller: &Caller,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let old = cluster_to_change(state, caller, id, "restores").await?;
    let name = snapshot_asked(id, &read_body(state, headers, body).await?)?;
    let recorded = rke_state::load(state.store.as_ref(), &state.sealer, &old)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .is_some_and(|(st, _)| st.snapshots.iter().any(|s| s.name == name));
    if !recorded {
        return Err(ApiError::invalid_field(
            "etcdBackupId",
            format!("cluster {id} has no snapshot {name:?} (rancherctl cluster snapshot ls {id} lists them)"),
        ));
    }
    let mut new = old.clone();
    let cfg = new.spec.rke_config.as_mut().expect("checked: built on hosts");
    // A later time than any earlier request's, even within one clock tick.
    let mut now = jiff::Timestamp::now();
    if let Some(last) = cfg.restore.as_ref().and_then(|r| r.requested_at.parse::<jiff::Timestamp>().ok())
        && last >= now
    {
        now = last + jiff::SignedDuration::from_micros(1);
    }
    let request = RkeRestore { restore: true, snapshot_name: name.clone(), requested_at: now.to_string() };
    cfg.restore = Some(request.clone());
    let cx = Ctx::new(state, caller);
    old.check_change(&cx).await?;
    new.prepare_update(&old, &cx).await?;
    Api::<Cluster>::all(state.store.clone()).update(&new).await?;
    tracing::info!(cluster = id, user = caller.user_id(), snapshot = %name, "etcd restore requested");
    Ok(Json(json!({
        "type": "restoreFromEtcdBackupOutput",
        "message": format!(
            "restoring cluster {id} from the etcd snapshot {name}: its API is down until every etcd member \
             is restored and the control plane is back"
        ),
        "restore": request,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_snapshot_is_named_plainly_or_rancher_s_way() {
        let got = snapshot_asked("c1", &body(json!({"etcdBackupId": "c1-manual-1", "type": "x"}))).unwrap();
        assert_eq!(got, "c1-manual-1");
        let got = snapshot_asked("c1", &body(json!({"etcdBackupId": "c1:c1-manual-1"}))).unwrap();
        assert_eq!(got, "c1-manual-1");
        let err = snapshot_asked("c1", &Map::new()).unwrap_err().to_string();
        assert!(err.starts_with("etcdBackupId: Invalid value: is required"), "{err}");
        let err = snapshot_asked("c1", &body(json!({"etcdBackupId": 7}))).unwrap_err().to_string();
        assert!(err.starts_with("etcdBackupId:"), "{err}");
        let err = snapshot_asked("c1", &body(json!({"snapshot": "x"}))).unwrap_err().to_string();
        assert!(err.contains("unknown field \"snapshot\""), "{err}");
    }
}
