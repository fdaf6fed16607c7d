//! Garbage collection by ownerReferences: dependents of deleted owners are deleted (background),
//! owners in foreground deletion wait for their dependents, orphaning owners release theirs.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::meta;
use crate::state::SimState;

pub(super) fn reconcile(state: &SimState) {
    let all = state.store.all_objects();
    let uids: HashSet<&str> = all.iter().map(|(_, o)| meta::uid(o)).collect();
    for (res, o) in &all {
        let owners = meta::owner_uids(o);
        if !owners.is_empty() && owners.iter().all(|u| !uids.contains(u.as_str())) && !meta::is_deleting(o) {
            let _ = state.store.delete(res, meta::namespace(o), meta::name(o), None, None, None);
        }
    }
    for (res, owner) in all.iter().filter(|(_, o)| meta::is_deleting(o)) {
        let fins = meta::finalizers(owner);
        let uid = meta::uid(owner);
        let dependents: Vec<&(std::sync::Arc<str>, std::sync::Arc<Value>)> =
            all.iter().filter(|(_, d)| meta::owned_by(d, uid)).collect();
        let finalizer = if fins.iter().any(|f| f == "foregroundDeletion") {
            for (dres, d) in &dependents {
                let _ = state.store.delete(
                    dres,
                    meta::namespace(d),
                    meta::name(d),
                    Some("foregroundDeletion"),
                    None,
                    None,
                );
            }
            "foregroundDeletion"
        } else if fins.iter().any(|f| f == "orphan") {
            for (dres, d) in &dependents {
                let _ = state.store.mutate(dres, meta::namespace(d), meta::name(d), |v| {
                    if let Some(refs) = v["metadata"]["ownerReferences"].as_array_mut() {
                        refs.retain(|r| r["uid"] != uid);
                    }
                    true
                });
            }
            "orphan"
        } else {
            continue;
        };
        let orphaning = finalizer == "orphan";
        if dependents.is_empty() || orphaning {
            let _ = state.store.mutate(res, meta::namespace(owner), meta::name(owner), |v| {
                let f: Vec<String> = meta::finalizers(v).into_iter().filter(|f| f != finalizer).collect();
                meta::metadata_mut(v).insert("finalizers".into(), json!(f));
                true
            });
        }
    }
}
