//! The pods bound to this node: watched with `spec.nodeName=<node>`, "run" as simulated containers
//! (their status reported as a real kubelet would), and on deletion stopped and then deleted with
//! grace period 0 and a UID precondition, as the real kubelet finishes a graceful deletion.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::node::now;
use super::pod_status::{self, PodRuntime};

/// How often every known pod is synced again (init containers advance, failed patches are retried).
const RESYNC: Duration = Duration::from_secs(1);

/// Pod addresses handed out by this kubelet, from its node's `spec.podCIDR`.
#[derive(Default)]
struct IpPool {
    by_pod: HashMap<String, IpAddr>,
}

impl IpPool {
    /// The next free host address of `cidr` (IPv4 `a.b.c.d/n`), skipping the network address, the
    /// gateway (`.1`) and the broadcast address; `None` when the CIDR is not IPv4 or is full.
    fn allocate(&mut self, uid: &str, cidr: &str) -> Option<IpAddr> {
        let (net, bits) = cidr.split_once('/')?;
        let net: Ipv4Addr = net.parse().ok()?;
        let bits: u32 = bits.parse().ok().filter(|b| *b <= 30)?;
        let base = u32::from(net) & (u32::MAX.checked_shl(32 - bits).unwrap_or(0));
        let size = 1u32 << (32 - bits);
        let used: HashSet<&IpAddr> = self.by_pod.values().collect();
        let ip = (2..size - 1).map(|i| IpAddr::V4(Ipv4Addr::from(base + i))).find(|ip| !used.contains(ip))?;
        self.by_pod.insert(uid.to_owned(), ip);
        Some(ip)
    }

    fn adopt(&mut self, uid: &str, ip: IpAddr) {
        self.by_pod.insert(uid.to_owned(), ip);
    }

    fn release(&mut self, uid: &str) {
        self.by_pod.remove(uid);
    }
}

/// The /24 a node without a `spec.podCIDR` takes its pod addresses from: in 10.88.0.0/16, chosen by
/// the node's name, so it is the same after a restart.
fn fallback_cidr(node: &str) -> String {
    let h = node.bytes().fold(0u8, |acc, b| acc.wrapping_mul(31).wrapping_add(b));
    format!("10.88.{h}.0/24")
}

struct PodWorker {
    sh: Arc<Shared>,
    node_rx: watch::Receiver<Option<Node>>,
    runtimes: HashMap<String, PodRuntime>,
    pool: IpPool,
}

/// Runs the pods bound to this node until `cancel`.
pub(crate) async fn pod_loop(
    sh: Arc<Shared>,
    node_rx: watch::Receiver<Option<Node>>,
    cancel: CancellationToken,
) {
    let api: Api<Pod> = Api::all(sh.client.clone());
    let selector = format!("spec.nodeName={}", sh.config.node_name);
    let (reader, writer) = reflector::store::<Pod>();
    let events =
        reflector(writer, watcher(api, watcher::Config::default().fields(&selector))).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut worker = PodWorker { sh, node_rx, runtimes: HashMap::new(), pool: IpPool::default() };
    // Runtimes of pods missing from a complete listing are dropped; before the first one, none are.
    let mut listed = false;
    let mut tick = tokio::time::interval(RESYNC);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            ev = events.next() => match ev {
                Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => worker.sync(&pod).await,
                Some(Ok(watcher::Event::Delete(pod))) => worker.forget(pod.metadata.uid.as_deref().unwrap_or_default()),
                Some(Ok(watcher::Event::InitDone)) => listed = true,
                Some(Ok(watcher::Event::Init)) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "watching this node's pods failed; retrying"),
                None => return,
            },
            _ = tick.tick() => {
                let pods = reader.state();
                if listed {
                    let live: HashSet<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
                    let gone: Vec<String> = worker.runtimes.keys().filter(|u| !live.contains(*u)).cloned().collect();
                    for uid in gone {
                        worker.forget(&uid);
                    }
                }
                for pod in pods {
                    worker.sync(&pod).await;
                }
            }
        }
    }
}

impl PodWorker {
    fn forget(&mut self, uid: &str) {
        if self.runtimes.remove(uid).is_some() {
            tracing::debug!(uid, "pod gone");
        }
        self.pool.release(uid);
    }

    /// What the kubelet knows of `pod`: taken up from the pod's status when this kubelet (or an
    /// earlier run of it) already started it, else started now with a new address.
    async fn runtime(&mut self, pod: &Pod, uid: &str) -> PodRuntime {
        if let Some(rt) = self.runtimes.get(uid) {
            return rt.clone();
        }
        let status = pod.status.clone().unwrap_or_default();
        let ours = status
            .container_statuses
            .iter()
            .chain(status.init_container_statuses.iter())
            .flatten()
            .any(|c| c.container_id.as_deref().is_some_and(|id| id.starts_with("sim://")));
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
        let adopted = match (ours, status.start_time, status.pod_ip.as_deref().and_then(|s| s.parse().ok())) {
            (true, Some(started), Some(ip)) => {
                if !host_network {
                    self.pool.adopt(uid, ip);
                }
                Some(PodRuntime { started, ip })
            }
            _ => None,
        };
        let rt = match adopted {
            Some(rt) => rt,
            None => {
                let ip = if host_network { self.sh.node_ip } else { self.allocate(uid).await };
                PodRuntime { started: now(), ip }
            }
        };
        self.runtimes.insert(uid.to_owned(), rt.clone());
        rt
    }

    async fn allocate(&mut self, uid: &str) -> IpAddr {
        let name = self.sh.config.node_name.clone();
        let mut cidr = self.node_rx.borrow().as_ref().and_then(|n| n.spec.as_ref()?.pod_cidr.clone());
        if cidr.is_none() {
            // The controller-manager allocates it after registration; the cached Node may predate that.
            let api: Api<Node> = Api::all(self.sh.client.clone());
            cidr = api.get_opt(&name).await.ok().flatten().and_then(|n| n.spec?.pod_cidr);
        }
        if let Some(ip) = cidr.as_deref().and_then(|c| self.pool.allocate(uid, c)) {
            return ip;
        }
        let fallback = fallback_cidr(&name);
        tracing::warn!(node = %name, pod_cidr = ?cidr, %fallback, "no usable IPv4 spec.podCIDR; using a fixed private range");
        self.pool.allocate(uid, &fallback).unwrap_or(IpAddr::V4(Ipv4Addr::new(10, 88, 255, 254)))
    }

    async fn sync(&mut self, pod: &Pod) {
        let (Some(uid), Some(ns), Some(name)) =
            (pod.metadata.uid.clone(), pod.metadata.namespace.clone(), pod.metadata.name.clone())
        else {
            return;
        };
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        let stopping = pod.metadata.deletion_timestamp.is_some();
        if (phase == "Succeeded" || phase == "Failed") && !stopping {
            return; // terminal: nothing runs
        }
        let api: Api<Pod> = Api::namespaced(self.sh.client.clone(), &ns);
        let started = pod.status.as_ref().is_some_and(|s| s.start_time.is_some());
        if !stopping || started {
            let rt = self.runtime(pod, &uid).await;
            let desired = pod_status::desired(pod, &rt, self.sh.node_ip, &now(), stopping);
            if !pod_status::matches(pod, &desired) {
                let patch = json!({"metadata": {"uid": uid}, "status": desired});
                match api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch)).await {
                    Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), phase = %desired["phase"],
                                            ip = %rt.ip, stopping, "pod status reported"),
                    Err(e) => {
                        tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "reporting pod status failed");
                        return;
                    }
                }
            }
        }
        if stopping {
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), "pod stopped and deleted"),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {} // gone, or another pod now
                Err(e) => {
                    tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "deleting a stopped pod failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_come_from_the_pod_cidr_in_order_and_are_reused_when_freed() {
        let mut p = IpPool::default();
        assert_eq!(p.allocate("a", "10.42.1.0/24"), Some("10.42.1.2".parse().unwrap()));
        assert_eq!(p.allocate("b", "10.42.1.0/24"), Some("10.42.1.3".parse().unwrap()));
        p.release("a");
        assert_eq!(p.allocate("c", "10.42.1.0/24"), Some("10.42.1.2".parse().unwrap()));
        p.adopt("d", "10.42.1.4".parse().unwrap());
        assert_eq!(p.allocate("e", "10.42.1.0/24"), Some("10.42.1.5".parse().unwrap()));
        assert_eq!(p.allocate("f", "fd00::/64"), None);
        assert_eq!(p.allocate("g", "nonsense"), None);
        let mut small = IpPool::default();
        assert!(small.allocate("x", "10.0.0.0/30").is_some());
        assert_eq!(small.allocate("y", "10.0.0.0/30"), None, "a /30 has one usable pod address");
    }

    #[test]
    fn the_fallback_range_is_fixed_per_node() {
        assert_eq!(fallback_cidr("n1"), fallback_cidr("n1"));
        assert!(fallback_cidr("n1").starts_with("10.88."));
    }
}
