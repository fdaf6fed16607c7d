//! What the server's downstream syncs depend on, watched here, inside the cluster, and sent with the
//! cluster report as digests ([`ClusterReport::digests`](crate::protocol::report::ClusterReport)):
//! the server syncs a cluster again when one of them changes, instead of holding watches through
//! the tunnel into every cluster (each a TLS connection, a tunnel stream and a cache per cluster on
//! the server, which at ten thousand clusters is most of its memory).
//!
//! - [`NAMESPACES`]: the namespaces in a project (`field.cattle.io/projectId`) and their project;
//! - [`RBAC`]: the RBAC objects the server rendered (labelled `management.cattle.io/managed-by`),
//!   by kind, namespace and name — one deleted by hand changes it;
//! - [`ACE_RECORDS`]: the authorized cluster endpoint's token records the server wrote, by name;
//! - [`UNLABELLED_NODES`]: the nodes without a `node-role.kubernetes.io/` label (a host that joined
//!   a cluster the server built, whose roles it labels).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::ResourceExt;
use kube::runtime::watcher;
use rancher_auth::rbac_render::PROJECT_ID_ANNOTATION;
use sha2::{Digest as _, Sha256};

pub(crate) use crate::protocol::report::{
    ACE_RECORDS, NAMESPACES, RBAC, ROLE_LABEL_PREFIX, UNLABELLED_NODES,
};

/// What [`Watched`] keeps of an object: its key, and what about it matters (`None`: it does not
/// count, e.g. a namespace in no project).
pub(crate) type Entry = (String, Option<String>);

/// `ev` with its objects made [`Entry`]s by `entry`.
pub(crate) fn entries<K>(ev: watcher::Event<K>, entry: impl Fn(&K) -> Entry) -> watcher::Event<Entry> {
    match ev {
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(o) => watcher::Event::InitApply(entry(&o)),
        watcher::Event::InitDone => watcher::Event::InitDone,
        watcher::Event::Apply(o) => watcher::Event::Apply(entry(&o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(entry(&o)),
    }
}

/// One watched set: key → what about it matters, kept through relists like the pod count.
#[derive(Default)]
pub(crate) struct Watched {
    live: BTreeMap<String, String>,
    /// The listing under way during a (re)list; replaces `live` when it is done.
    listing: Option<BTreeMap<String, String>>,
    listed: bool,
}

impl Watched {
    /// Applies one watcher event, its objects already made [`Entry`]s ([`entries`]); returns whether
    /// the digest may have changed.
    pub(crate) fn apply(&mut self, ev: &watcher::Event<Entry>) -> bool {
        match ev {
            watcher::Event::Init => {
                self.listing = Some(BTreeMap::new());
                false
            }
            watcher::Event::InitApply((key, value)) => {
                if let Some(value) = value {
                    self.listing.get_or_insert_default().insert(key.clone(), value.clone());
                }
                false
            }
            watcher::Event::InitDone => {
                self.live = self.listing.take().unwrap_or_default();
                self.listed = true;
                true
            }
            watcher::Event::Apply((key, Some(value))) => {
                self.live.insert(key.clone(), value.clone()).as_ref() != Some(value)
            }
            watcher::Event::Apply((key, None)) | watcher::Event::Delete((key, _)) => {
                self.live.remove(key).is_some()
            }
        }
    }

    /// The digest of what is watched, once it has been listed.
    pub(crate) fn digest(&self) -> Option<String> {
        self.listed.then(|| digest(self.live.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
    }
}

/// SHA-256 over the `key=value` lines, in hex, shortened to 32 digits (128 bits: a digest names a
/// state; it guards nothing).
pub(crate) fn digest<'a>(entries: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut h = Sha256::new();
    for (k, v) in entries {
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// A namespace counts while it is in a project and not being deleted.
pub(crate) fn namespace_entry(n: &Namespace) -> Entry {
    let project = n.annotations().get(PROJECT_ID_ANNOTATION).cloned();
    (n.name_any(), project.filter(|_| n.metadata.deletion_timestamp.is_none()))
}

/// One of the server's RBAC objects, by `kind/namespace/name`.
pub(crate) fn rbac_entry<K: kube::Resource<DynamicType = ()>>(o: &K) -> Entry {
    let key =
        format!("{}/{}/{}", K::kind(&()), o.meta().namespace.as_deref().unwrap_or_default(), o.name_any());
    (key, Some(String::new()))
}

/// The digest of the nodes without a role label.
pub(crate) fn unlabelled_nodes<'a>(nodes: impl Iterator<Item = &'a Node>) -> String {
    let mut names: Vec<String> = nodes
        .filter(|n| !n.labels().keys().any(|k| k.starts_with(ROLE_LABEL_PREFIX)))
        .map(ResourceExt::name_any)
        .collect();
    names.sort_unstable();
    digest(names.iter().map(|n| (n.as_str(), "")))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::RoleBinding;

    use super::*;

    fn ns(name: &str, project: Option<&str>) -> Namespace {
        let mut n = Namespace::default();
        n.metadata.name = Some(name.into());
        if let Some(p) = project {
            n.metadata.annotations = Some([(PROJECT_ID_ANNOTATION.to_owned(), p.to_owned())].into());
        }
        n
    }

    #[test]
    fn the_namespace_digest_follows_projects_and_nothing_else() {
        let mut w = Watched::default();
        assert_eq!(w.digest(), None, "no digest before the first list");
        w.apply(&entries::<Namespace>(watcher::Event::Init, namespace_entry));
        w.apply(&entries::<Namespace>(watcher::Event::InitApply(ns("a", Some("c1:p1"))), namespace_entry));
        w.apply(&entries::<Namespace>(watcher::Event::InitApply(ns("b", None)), namespace_entry));
        assert!(w.apply(&entries::<Namespace>(watcher::Event::InitDone, namespace_entry)));
        let listed = w.digest().unwrap();
        assert!(
            !w.apply(&entries::<Namespace>(watcher::Event::Apply(ns("c", None)), namespace_entry)),
            "a namespace in no project"
        );
        assert!(
            !w.apply(&entries::<Namespace>(watcher::Event::Apply(ns("a", Some("c1:p1"))), namespace_entry)),
            "an update"
        );
        assert_eq!(w.digest().unwrap(), listed);
        assert!(
            w.apply(&entries::<Namespace>(watcher::Event::Apply(ns("a", Some("c1:p2"))), namespace_entry)),
            "moved"
        );
        let moved = w.digest().unwrap();
        assert_ne!(moved, listed);
        assert!(
            w.apply(&entries::<Namespace>(watcher::Event::Apply(ns("a", None)), namespace_entry)),
            "left its project"
        );
        assert!(!w.apply(&entries::<Namespace>(watcher::Event::Delete(ns("b", None)), namespace_entry)));
        // A relist that finds the same as before gives the same digest.
        w.apply(&entries::<Namespace>(watcher::Event::Init, namespace_entry));
        w.apply(&entries::<Namespace>(watcher::Event::InitApply(ns("a", Some("c1:p2"))), namespace_entry));
        w.apply(&entries::<Namespace>(watcher::Event::InitDone, namespace_entry));
        assert_eq!(w.digest().unwrap(), moved);
    }

    #[test]
    fn deleting_one_of_the_servers_objects_changes_the_rbac_digest() {
        let rb = |name: &str| {
            let mut r = RoleBinding::default();
            r.metadata.name = Some(name.into());
            r.metadata.namespace = Some("ns".into());
            r
        };
        let mut w = Watched::default();
        w.apply(&entries::<RoleBinding>(watcher::Event::Init, rbac_entry));
        w.apply(&entries::<RoleBinding>(watcher::Event::InitApply(rb("x")), rbac_entry));
        w.apply(&entries::<RoleBinding>(watcher::Event::InitApply(rb("y")), rbac_entry));
        w.apply(&entries::<RoleBinding>(watcher::Event::InitDone, rbac_entry));
        let before = w.digest().unwrap();
        assert!(
            !w.apply(&entries::<RoleBinding>(watcher::Event::Apply(rb("x")), rbac_entry)),
            "an update of one is no change"
        );
        assert!(w.apply(&entries::<RoleBinding>(watcher::Event::Delete(rb("x")), rbac_entry)));
        assert_ne!(w.digest().unwrap(), before);
    }

    #[test]
    fn a_node_losing_its_role_labels_changes_the_node_digest() {
        let node = |name: &str, role: bool| {
            let mut n = Node::default();
            n.metadata.name = Some(name.into());
            if role {
                n.metadata.labels = Some([(format!("{ROLE_LABEL_PREFIX}worker"), "true".to_owned())].into());
            }
            n
        };
        let labelled = unlabelled_nodes([node("a", true), node("b", true)].iter());
        assert_eq!(labelled, unlabelled_nodes(std::iter::empty()), "only unlabelled nodes count");
        assert_ne!(unlabelled_nodes([node("a", false), node("b", true)].iter()), labelled);
    }
}
