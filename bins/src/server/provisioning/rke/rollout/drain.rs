//! Taking a host's workloads away before it changes or leaves, as `kubectl drain` does: cordon its
//! Node, evict its pods through the Eviction API (which honours PodDisruptionBudgets: a refused
//! eviction is retried until the deadline), wait until they are gone; and the way back (uncordon),
//! or out (delete the Node).

use std::time::Duration;

use http::StatusCode;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use tokio::time::Instant;

/// How often a refused eviction is tried again, and the pods still there are counted.
const RETRY: Duration = Duration::from_secs(2);

/// Why a host could not be drained.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DrainError {
    /// The API server refused or failed a call.
    #[error("draining {node}: {action}: {source}")]
    Api {
        /// The Node.
        node: String,
        /// What was done (`cordoning`, `evicting default/web-1`, …).
        action: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// Pods were still there at the deadline.
    #[error("draining {node}: {left} pods still there after {after:?}: {why}")]
    Timeout {
        /// The Node.
        node: String,
        /// How many.
        left: usize,
        /// The deadline.
        after: Duration,
        /// The first pod's reason (a PodDisruptionBudget refusing its eviction, …).
        why: String,
    },
}

/// Marks the Node unschedulable (or schedulable again); a Node that is not there is fine.
pub(crate) async fn cordon(client: &kube::Client, node: &str, unschedulable: bool) -> Result<(), DrainError> {
    let nodes = kube::Api::<Node>::all(client.clone());
    let patch = serde_json::json!({"spec": {"unschedulable": unschedulable}});
    match nodes.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(DrainError::Api {
            node: node.to_owned(),
            action: if unschedulable { "cordoning" } else { "uncordoning" }.into(),
            source,
        }),
    }
}

/// Cordons `node` and evicts its pods (not DaemonSet pods, not mirror pods), waiting until they are
/// gone or `within` has passed.
pub(crate) async fn drain(client: &kube::Client, node: &str, within: Duration) -> Result<(), DrainError> {
    cordon(client, node, true).await?;
    let pods = kube::Api::<Pod>::all(client.clone());
    let on_node = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let deadline = Instant::now() + within;
    loop {
        let list = pods.list(&on_node).await.map_err(|source| DrainError::Api {
            node: node.to_owned(),
            action: "listing its pods".into(),
            source,
        })?;
        let left: Vec<&Pod> = list.items.iter().filter(|p| evictable(p)).collect();
        if left.is_empty() {
            return Ok(());
        }
        let mut why = String::from("terminating");
        for pod in &left {
            let (ns, name) = (
                pod.metadata.namespace.as_deref().unwrap_or("default"),
                pod.metadata.name.as_deref().unwrap_or(""),
            );
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match evict(client, ns, name).await {
                Ok(()) => {}
                Err(kube::Error::Api(s)) if s.code == 429 => {
                    why = format!("evicting {ns}/{name}: {}", s.message);
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    return Err(DrainError::Api {
                        node: node.to_owned(),
                        action: format!("evicting {ns}/{name}"),
                        source,
                    });
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(DrainError::Timeout { node: node.to_owned(), left: left.len(), after: within, why });
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Deletes the Node (gone already is fine).
pub(crate) async fn delete_node(client: &kube::Client, node: &str) -> Result<(), DrainError> {
    let nodes = kube::Api::<Node>::all(client.clone());
    match nodes.delete(node, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => {
            Err(DrainError::Api { node: node.to_owned(), action: "deleting its Node".into(), source })
        }
    }
}

/// A pod a drain takes away: not one of a DaemonSet (it would come back), not a mirror pod (its
/// kubelet owns it), not one that has finished.
fn evictable(pod: &Pod) -> bool {
    let daemon = pod.metadata.owner_references.iter().flatten().any(|o| o.kind == "DaemonSet");
    let mirror =
        pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let done = matches!(phase, Some("Succeeded" | "Failed"));
    !(daemon || mirror || done)
}

/// `POST …/pods/<name>/eviction`: `policy/v1` (Kubernetes 1.22 and later), else `policy/v1beta1`
/// (which a 1.20 API server knows and later ones still take).
async fn evict(client: &kube::Client, ns: &str, name: &str) -> Result<(), kube::Error> {
    match evict_as(client, ns, name, "policy/v1").await {
        // An API server that does not know this version of Eviction.
        Err(kube::Error::Api(s)) if s.code == StatusCode::BAD_REQUEST.as_u16() => {
            evict_as(client, ns, name, "policy/v1beta1").await
        }
        other => other,
    }
}

async fn evict_as(client: &kube::Client, ns: &str, name: &str, version: &str) -> Result<(), kube::Error> {
    let body = serde_json::json!({
        "apiVersion": version,
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": ns},
    });
    let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/eviction"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body).unwrap_or_default())
        .map_err(kube::Error::HttpError)?;
    client.request_text(req).await.map(drop)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    #[test]
    fn a_drain_leaves_daemonset_mirror_and_finished_pods() {
        let mut pod = Pod::default();
        assert!(evictable(&pod));
        pod.metadata.owner_references =
            Some(vec![OwnerReference { kind: "DaemonSet".into(), ..Default::default() }]);
        assert!(!evictable(&pod));
        let mut mirror = Pod::default();
        mirror.metadata.annotations =
            Some([("kubernetes.io/config.mirror".to_owned(), "x".to_owned())].into());
        assert!(!evictable(&mirror));
        let done = Pod {
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                phase: Some("Succeeded".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!evictable(&done));
    }
}
