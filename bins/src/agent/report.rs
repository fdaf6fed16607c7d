//! The cluster report: watch nodes (a kube-runtime reflector) and pods (counted, not kept) of the
//! agent's cluster, and what the server's syncs depend on ([`digests`]), and post a
//! [`ClusterReport`] to the server when the tunnel connects and whenever the numbers or the digests
//! change (debounced), retrying until the server takes it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use rancher_core::model::KubernetesVersion;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::digests::{self, Entry, Watched};
use super::quantity;
use crate::protocol::ace;
use crate::protocol::report::ClusterReport;

/// Quiet time after a change before reporting (many pods starting at once make one report).
const DEBOUNCE: Duration = Duration::from_secs(1);
/// A busy cluster still reports at least this often.
const DEBOUNCE_MAX: Duration = Duration::from_secs(5);
/// Wait before retrying a report the server did not take.
const RETRY: Duration = Duration::from_secs(5);
/// Resend even without a change, so a server that lost a report catches up.
const REFRESH: Duration = Duration::from_secs(300);

/// Posts reports for one cluster.
pub(crate) struct Reporter {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    pub(crate) token: String,
    pub(crate) client: Client,
}

fn to_map(
    q: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> BTreeMap<String, String> {
    q.map(|m| m.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()).unwrap_or_default()
}

/// The report from what the reflectors hold now, with the `digests` of what else is watched.
pub(crate) fn build_report(
    version: KubernetesVersion,
    nodes: &[Arc<Node>],
    pod_count: usize,
    mut digests: BTreeMap<String, String>,
) -> ClusterReport {
    let caps: Vec<_> =
        nodes.iter().map(|n| to_map(n.status.as_ref().and_then(|s| s.capacity.as_ref()))).collect();
    let allocs: Vec<_> =
        nodes.iter().map(|n| to_map(n.status.as_ref().and_then(|s| s.allocatable.as_ref()))).collect();
    let (capacity, bad_cap) = quantity::sum(caps.iter());
    let (allocatable, bad_alloc) = quantity::sum(allocs.iter());
    if !bad_cap.is_empty() || !bad_alloc.is_empty() {
        debug!(?bad_cap, ?bad_alloc, "node quantities that do not parse were left out of the sums");
    }
    digests
        .insert(digests::UNLABELLED_NODES.into(), digests::unlabelled_nodes(nodes.iter().map(AsRef::as_ref)));
    ClusterReport {
        version,
        node_count: u32::try_from(nodes.len()).unwrap_or(u32::MAX),
        pod_count: u32::try_from(pod_count).unwrap_or(u32::MAX),
        capacity,
        allocatable,
        digests,
    }
}

impl Reporter {
    async fn version(&self) -> Option<KubernetesVersion> {
        match self.client.apiserver_version().await {
            Ok(info) => Some(KubernetesVersion {
                git_version: info.git_version,
                major: info.major,
                minor: info.minor,
                platform: info.platform,
            }),
            Err(e) => {
                warn!(error = %e, "reading the cluster's /version failed");
                None
            }
        }
    }

    async fn post(&self, report: &ClusterReport) -> Result<(), String> {
        let resp = self
            .http
            .post(&self.url)
            .header(rancher_tunnel::TOKEN_HEADER, &self.token)
            .json(report)
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        Err(format!("{} answered {status}: {}", self.url, body.chars().take(300).collect::<String>()))
    }

    /// Watches and reports until `stop`.
    pub(crate) async fn run(self, mut connected: watch::Receiver<bool>, stop: CancellationToken) {
        let (nodes, node_writer) = reflector::store::<Node>();
        let mut pods = PodCount::default();
        let mut node_events = reflector::reflector(
            node_writer,
            watcher(Api::<Node>::all(self.client.clone()), watcher::Config::default()),
        )
        .default_backoff()
        .boxed();
        let mut pod_events = watcher(Api::<Pod>::all(self.client.clone()), watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut watched = Digests::start(&self.client);
        let (mut nodes_ready, mut pods_ready) = (false, false);
        let mut version: Option<KubernetesVersion> = None;
        let mut last_sent: Option<ClusterReport> = None;
        // When set, a report is due at this instant; `first_change` caps the debounce.
        let mut due: Option<Instant> = None;
        let mut first_change: Option<Instant> = None;
        let mut force = false;
        let mut refresh = Instant::now() + REFRESH;
        loop {
            let wake = due.unwrap_or(refresh).min(refresh);
            tokio::select! {
                () = stop.cancelled() => return,
                ev = node_events.next() => match ev {
                    Some(Ok(watcher::Event::InitDone)) => { nodes_ready = true; self.changed(&mut due, &mut first_change) }
                    Some(Ok(_)) => self.changed(&mut due, &mut first_change),
                    Some(Err(e)) => debug!(error = %e, "node watch error (retrying)"),
                    None => return,
                },
                ev = pod_events.next() => match ev {
                    Some(Ok(ev)) => {
                        pods_ready |= matches!(ev, watcher::Event::InitDone);
                        if pods.apply(&ev) {
                            self.changed(&mut due, &mut first_change);
                        }
                    }
                    Some(Err(e)) => debug!(error = %e, "pod watch error (retrying)"),
                    None => return,
                },
                ev = watched.events.next() => match ev {
                    Some(seen) => if watched.apply(seen) {
                        self.changed(&mut due, &mut first_change);
                    },
                    None => return,
                },
                changed = connected.changed() => {
                    if changed.is_err() { return; }
                    if *connected.borrow_and_update() {
                        // A new session: re-read the version (the cluster may have been upgraded)
                        // and send even if nothing changed.
                        version = None;
                        force = true;
                        due = Some(Instant::now());
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= refresh {
                        refresh = Instant::now() + REFRESH;
                        force = true;
                        due = Some(Instant::now());
                    }
                    if due.is_some_and(|d| Instant::now() >= d) && nodes_ready && pods_ready {
                        due = None;
                        first_change = None;
                        if version.is_none() {
                            version = self.version().await;
                        }
                        let Some(v) = version.clone() else {
                            due = Some(Instant::now() + RETRY);
                            continue;
                        };
                        let report = build_report(v, &nodes.state(), pods.len(), watched.digests());
                        if force || last_sent.as_ref() != Some(&report) {
                            match self.post(&report).await {
                                Ok(()) => {
                                    info!(nodes = report.node_count, pods = report.pod_count,
                                        version = %report.version.git_version, "reported the cluster's state");
                                    last_sent = Some(report);
                                    force = false;
                                }
                                Err(e) => {
                                    warn!(error = %e, "the server did not take the report; retrying");
                                    due = Some(Instant::now() + RETRY);
                                }
                            }
                        }
                    } else if due.is_some_and(|d| Instant::now() >= d) {
                        // Not listed yet: look again shortly.
                        due = Some(Instant::now() + DEBOUNCE);
                    }
                }
            }
        }
    }

    fn changed(&self, due: &mut Option<Instant>, first_change: &mut Option<Instant>) {
        let now = Instant::now();
        let first = *first_change.get_or_insert(now);
        *due = Some((now + DEBOUNCE).min(first + DEBOUNCE_MAX));
    }
}

/// Which digest an event of [`Digests`] is for.
#[derive(Clone, Copy)]
enum Which {
    Namespaces,
    Rbac,
    AceRecords,
}

/// One watcher event behind [`Digests`], its object already made an [`Entry`].
type Seen = (Which, Result<watcher::Event<Entry>, watcher::Error>);

/// The watches behind the report's digests: namespaces, and the RBAC objects and token records the
/// server wrote (by their labels, so only those are listed).
struct Digests {
    events: futures::stream::SelectAll<futures::stream::BoxStream<'static, Seen>>,
    namespaces: Watched,
    rbac: Watched,
    ace_records: Watched,
}

/// A watch of `api`'s objects as the entries `entry` makes of them, for `which` digest.
fn watch_entries<K>(
    api: Api<K>,
    config: watcher::Config,
    which: Which,
    entry: fn(&K) -> Entry,
) -> futures::stream::BoxStream<'static, Seen>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    watcher(api, config)
        .default_backoff()
        .map(move |ev| (which, ev.map(|ev| digests::entries(ev, entry))))
        .boxed()
}

impl Digests {
    fn start(client: &Client) -> Digests {
        let ours = watcher::Config::default().labels(&format!(
            "{}={}",
            rancher_auth::rbac_render::MANAGED_BY_LABEL,
            rancher_auth::rbac_render::MANAGED_BY_VALUE
        ));
        let streams = vec![
            watch_entries(
                Api::<Namespace>::all(client.clone()),
                watcher::Config::default(),
                Which::Namespaces,
                digests::namespace_entry,
            ),
            watch_entries(
                Api::<ClusterRole>::all(client.clone()),
                ours.clone(),
                Which::Rbac,
                digests::rbac_entry,
            ),
            watch_entries(
                Api::<ClusterRoleBinding>::all(client.clone()),
                ours.clone(),
                Which::Rbac,
                digests::rbac_entry,
            ),
            watch_entries(Api::<RoleBinding>::all(client.clone()), ours, Which::Rbac, digests::rbac_entry),
            watch_entries(
                Api::<Secret>::namespaced(client.clone(), ace::NAMESPACE),
                watcher::Config::default().labels(&format!("{}=true", ace::ACE_LABEL)),
                Which::AceRecords,
                digests::rbac_entry,
            ),
        ];
        Digests {
            events: futures::stream::select_all(streams),
            namespaces: Watched::default(),
            rbac: Watched::default(),
            ace_records: Watched::default(),
        }
    }

    /// Applies one event; whether a digest may have changed.
    fn apply(&mut self, (which, ev): Seen) -> bool {
        let watched = match which {
            Which::Namespaces => &mut self.namespaces,
            Which::Rbac => &mut self.rbac,
            Which::AceRecords => &mut self.ace_records,
        };
        match ev {
            Ok(ev) => watched.apply(&ev),
            Err(e) => {
                debug!(error = %e, "watch error (retrying)");
                false
            }
        }
    }

    /// The digests listed so far.
    fn digests(&self) -> BTreeMap<String, String> {
        [
            (digests::NAMESPACES, &self.namespaces),
            (digests::RBAC, &self.rbac),
            (digests::ACE_RECORDS, &self.ace_records),
        ]
        .into_iter()
        .filter_map(|(k, w)| Some((k.to_owned(), w.digest()?)))
        .collect()
    }
}

/// The pods of the cluster, by UID: all the report needs of them is how many there are, and a
/// cluster's pods in full are hundreds of megabytes at 10,000 pods (a reflector keeps them all).
#[derive(Default)]
struct PodCount {
    live: HashSet<String>,
    /// The listing under way during a (re)list; replaces `live` when it is done.
    listing: Option<HashSet<String>>,
}

impl PodCount {
    /// Applies one watcher event; returns whether the count may have changed.
    fn apply(&mut self, ev: &watcher::Event<Pod>) -> bool {
        let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_else(|| pod_key(p));
        match ev {
            watcher::Event::Init => {
                self.listing = Some(HashSet::new());
                false
            }
            watcher::Event::InitApply(p) => {
                self.listing.get_or_insert_default().insert(uid(p));
                false
            }
            watcher::Event::InitDone => {
                self.live = self.listing.take().unwrap_or_default();
                self.live.shrink_to_fit();
                true
            }
            watcher::Event::Apply(p) => self.live.insert(uid(p)),
            watcher::Event::Delete(p) => self.live.remove(&uid(p)),
        }
    }

    fn len(&self) -> usize {
        self.live.len()
    }
}

/// A pod without a UID (only a non-conforming API server sends one) counts by its name.
fn pod_key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or_default(),
        p.metadata.name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::NodeStatus;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;

    fn node(cpu: &str, mem: &str) -> Arc<Node> {
        let q = BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.into())),
            ("memory".to_owned(), Quantity(mem.into())),
        ]);
        Arc::new(Node {
            status: Some(NodeStatus {
                capacity: Some(q.clone()),
                allocatable: Some(q),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn pod(uid: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.uid = Some(uid.into());
        p
    }

    #[test]
    fn pods_are_counted_through_relists_updates_and_deletions() {
        let mut c = PodCount::default();
        assert!(!c.apply(&watcher::Event::Init));
        for u in ["a", "b", "c"] {
            assert!(!c.apply(&watcher::Event::InitApply(pod(u))));
        }
        assert!(c.apply(&watcher::Event::InitDone));
        assert_eq!(c.len(), 3);
        assert!(!c.apply(&watcher::Event::Apply(pod("a"))), "an update is no new pod");
        assert!(c.apply(&watcher::Event::Apply(pod("d"))));
        assert!(c.apply(&watcher::Event::Delete(pod("b"))));
        assert_eq!(c.len(), 3);
        // A relist keeps the old count until it is done, then holds only what it listed.
        c.apply(&watcher::Event::Init);
        c.apply(&watcher::Event::InitApply(pod("a")));
        assert_eq!(c.len(), 3);
        c.apply(&watcher::Event::InitDone);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn report_sums_nodes_and_counts_pods() {
        let v = KubernetesVersion { git_version: "v1.33.1".into(), ..Default::default() };
        let nodes = [node("4", "8Gi"), node("2", "8Gi"), Arc::new(Node::default())];
        let r = build_report(v, &nodes, 17, BTreeMap::new());
        assert_eq!(r.node_count, 3);
        assert_eq!(r.pod_count, 17);
        assert_eq!(r.capacity["cpu"], "6");
        assert_eq!(r.allocatable["memory"], "16Gi");
    }
}
