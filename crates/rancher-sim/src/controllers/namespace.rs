//! Namespace lifecycle: a deleted namespace is Terminating until everything in it is gone; then the
//! controller takes `kubernetes` out of `spec.finalizers` and the namespace is removed (once its
//! `metadata.finalizers` are empty too).

use serde_json::json;

use crate::meta;
use crate::state::SimState;

/// The `spec.finalizers` entry that holds a namespace while its contents are deleted.
pub(crate) const FINALIZER: &str = "kubernetes";

pub(super) fn reconcile(state: &SimState) {
    let (namespaces, _) = state.store.list("namespaces", None);
    for ns in namespaces.iter().filter(|n| meta::is_deleting(n)) {
        let name = meta::name(ns).to_string();
        let contents = state.store.resources_in_namespace(&name);
        if contents.is_empty() {
            let _ = state.store.mutate("namespaces", "", &name, |o| {
                let f: Vec<String> =
                    meta::str_list(&o["spec"]["finalizers"]).into_iter().filter(|f| f != FINALIZER).collect();
                o["spec"]["finalizers"] = json!(f);
                true
            });
            continue;
        }
        for (resource, names) in contents {
            for n in names {
                let _ = state.store.delete(&resource, &name, &n, None, None, None);
            }
        }
    }
}
