//! The kubelet's own Node and Lease: register the Node (again, when someone deletes it), report its
//! status every `--node-status-update-frequency`, and renew its Lease in `kube-node-lease` every quarter
//! of `--node-lease-duration-seconds`, which is what keeps the node lifecycle controller content.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sha2::Digest;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{KubeletError, Shared};

/// The namespace of node Leases.
pub(crate) const LEASE_NAMESPACE: &str = "kube-node-lease";

/// How long to wait before trying a failed registration again.
const RETRY: Duration = Duration::from_secs(2);

pub(crate) fn now() -> Time {
    Time(jiff::Timestamp::now())
}

pub(crate) fn time_json(t: &Time) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

fn short_hash(s: &str) -> String {
    hex_lower(&sha2::Sha256::digest(s.as_bytes())[..16])
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Node the kubelet registers: labels, taints, capacity, addresses, node info and conditions.
fn node_object(sh: &Shared, since: &Time) -> Value {
    let c = &sh.config;
    let mut labels = serde_json::Map::new();
    labels.insert("kubernetes.io/hostname".into(), json!(c.node_name));
    labels.insert("kubernetes.io/os".into(), json!("linux"));
    labels.insert("kubernetes.io/arch".into(), json!("amd64"));
    labels.insert("beta.kubernetes.io/os".into(), json!("linux"));
    labels.insert("beta.kubernetes.io/arch".into(), json!("amd64"));
    for (k, v) in &c.labels {
        labels.insert(k.clone(), json!(v));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": c.node_name,
            "labels": labels,
            "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": {"taints": c.taints},
        "status": status(sh, since),
    })
}

/// The Node's status as the kubelet reports it; `since` is when this kubelet became Ready.
fn status(sh: &Shared, since: &Time) -> Value {
    let c = &sh.config;
    let beat = time_json(&now());
    let since = time_json(since);
    let cond = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": beat, "lastTransitionTime": since})
    };
    json!({
        "capacity": c.capacity,
        "allocatable": c.capacity,
        "addresses": [
            {"type": "InternalIP", "address": sh.node_ip.to_string()},
            {"type": "Hostname", "address": c.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": short_hash(&format!("machine/{}", c.node_name)),
            "systemUUID": short_hash(&format!("system/{}", c.node_name)),
            "bootID": sh.boot_id,
            "kernelVersion": "5.10.0-rancher-sim",
            "osImage": "rancher-sim Linux",
            "containerRuntimeVersion": "sim://1.0.0",
            "kubeletVersion": sh.kubelet_version,
            "kubeProxyVersion": sh.kubelet_version,
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
    })
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Creates the Node, or takes up the one that exists (a restarted kubelet): its default and given
/// labels are set again (NodeRestriction lets a node set those), its taints are left alone (a node may
/// not change its own taints once registered), and its status is reported. Publishes the Node.
async fn register(
    sh: &Shared,
    since: &Time,
    node_tx: &watch::Sender<Option<Node>>,
) -> Result<(), KubeletError> {
    let api: Api<Node> = Api::all(sh.client.clone());
    let name = &sh.config.node_name;
    let wanted = node_object(sh, since);
    let desired: Node = serde_json::from_value(wanted.clone()).map_err(KubeletError::Encode)?;
    let node = match api.create(&PostParams::default(), &desired).await {
        Ok(n) => {
            tracing::info!(node = %name, "registered the node");
            n
        }
        Err(e) if is_status(&e, 409) => {
            let labels = json!({"metadata": {"labels": wanted["metadata"]["labels"],
                                             "annotations": wanted["metadata"]["annotations"]}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(labels))
                .await
                .map_err(|source| KubeletError::Register { node: name.clone(), source })?;
            let n = api
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Strategic(json!({"status": wanted["status"]})),
                )
                .await
                .map_err(|source| KubeletError::Register { node: name.clone(), source })?;
            tracing::info!(node = %name, "the node was registered before; took it up");
            n
        }
        Err(source) => return Err(KubeletError::Register { node: name.clone(), source }),
    };
    node_tx.send_replace(Some(node));
    Ok(())
}

/// Registers the Node, then reports its status every `status_every` until `cancel`; registers again
/// when the Node is gone.
pub(crate) async fn node_loop(
    sh: Arc<Shared>,
    node_tx: watch::Sender<Option<Node>>,
    cancel: CancellationToken,
) {
    let since = now();
    let api: Api<Node> = Api::all(sh.client.clone());
    let name = sh.config.node_name.clone();
    let mut registered = false;
    loop {
        if !registered {
            match register(&sh, &since, &node_tx).await {
                Ok(()) => registered = true,
                Err(e) => tracing::warn!(node = %name, error = %e, "registration failed; retrying"),
            }
        } else {
            let patch = json!({"status": status(&sh, &since)});
            match api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch)).await {
                Ok(n) => {
                    node_tx.send_replace(Some(n));
                }
                Err(e) if is_status(&e, 404) => {
                    tracing::warn!(node = %name, "the node was deleted; registering it again");
                    node_tx.send_replace(None);
                    registered = false;
                    continue;
                }
                Err(e) => tracing::warn!(node = %name, error = %e, "reporting the node status failed"),
            }
        }
        let wait = if registered { sh.config.status_every } else { RETRY };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Renews the node's Lease every quarter of its duration until `cancel`, creating it (owned by the
/// Node, so it goes with it) when it is missing.
pub(crate) async fn lease_loop(
    sh: Arc<Shared>,
    mut node_rx: watch::Receiver<Option<Node>>,
    cancel: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(sh.client.clone(), LEASE_NAMESPACE);
    let name = sh.config.node_name.clone();
    loop {
        let node = node_rx.borrow_and_update().clone();
        let wait = match node {
            None => None, // not registered (yet, or again): a Lease needs its owner's UID
            Some(node) => match renew(&sh, &api, &node).await {
                Ok(()) => Some(sh.config.lease_renew_every()),
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "renewing the node lease failed");
                    Some(RETRY.min(sh.config.lease_renew_every()))
                }
            },
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = node_rx.changed(), if wait.is_none() => if changed.is_err() { return },
            () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
        }
    }
}

async fn renew(sh: &Shared, api: &Api<Lease>, node: &Node) -> Result<(), kube::Error> {
    let name = &sh.config.node_name;
    let spec = |previous: Option<LeaseSpec>| LeaseSpec {
        holder_identity: Some(name.clone()),
        lease_duration_seconds: Some(i32::try_from(sh.config.lease_duration_seconds).unwrap_or(i32::MAX)),
        renew_time: Some(MicroTime(jiff::Timestamp::now())),
        ..previous.unwrap_or_default()
    };
    match api.get_opt(name).await? {
        Some(mut lease) => {
            lease.spec = Some(spec(lease.spec.take()));
            api.replace(name, &PostParams::default(), &lease).await?;
        }
        None => {
            let owner = OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: name.clone(),
                uid: node.metadata.uid.clone().unwrap_or_default(),
                ..OwnerReference::default()
            };
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    owner_references: Some(vec![owner]),
                    ..ObjectMeta::default()
                },
                spec: Some(spec(None)),
            };
            api.create(&PostParams::default(), &lease).await?;
            tracing::info!(node = %name, "created the node lease");
        }
    }
    Ok(())
}
