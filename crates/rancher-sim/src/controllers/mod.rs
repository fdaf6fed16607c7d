//! The controllers that make a sim look alive. One task per sim wakes on every store change and
//! runs each reconciler once over the current state; a second one ticks like a kubelet's heartbeat
//! (node Leases renewed, expired Events dropped). An idle sim costs two parked tasks, and a renewal
//! wakes no reconciler.

mod cluster;
mod gc;
pub(crate) mod namespace;
pub(crate) mod node_lease;
mod pods;
mod workloads;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::meta;
use crate::state::SimState;

/// Starts the controller task of a sim; it stops when the sim is cancelled.
pub(crate) fn spawn(state: Arc<SimState>) {
    node_lease::renew(&state);
    node_lease::nodes_started(&state);
    let heartbeat = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(heartbeat.config.lease_renew_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    node_lease::renew(&heartbeat);
                    crate::events::expire(&heartbeat);
                }
                _ = heartbeat.cancel.cancelled() => return,
            }
        }
    });
    tokio::spawn(async move {
        let mut rx = state.store.subscribe();
        let (mut seen, mut terminating) = (0, true);
        loop {
            rx.borrow_and_update();
            // A Lease renewal (a kubelet's heartbeat, every 10 s per node) is no work for any
            // reconciler: a fleet of idle sims would otherwise run every reconciler on every beat.
            let (woken, now) = state.store.changed_since(seen, |e| !node_lease::only_renewed(e));
            seen = now;
            if woken || terminating {
                terminating = reconcile(&state);
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                // Terminating pods finish on time even when nothing else changes.
                _ = tokio::time::sleep(Duration::from_millis(200)), if terminating => {}
                _ = state.cancel.cancelled() => return,
            }
            // Let a burst of writes (an `apply -f` of many objects) land before the next pass.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
}

/// One pass of every reconciler; returns whether a pod is still terminating.
pub(crate) fn reconcile(state: &SimState) -> bool {
    namespace::reconcile(state);
    gc::reconcile(state);
    cluster::reconcile(state);
    workloads::reconcile(state);
    let terminating = pods::reconcile(state);
    crate::events::mirror(state);
    terminating
}

/// Whether `ns` exists and is not terminating: controllers create nothing in other namespaces.
pub(crate) fn namespace_active(state: &SimState, ns: &str) -> bool {
    state.store.get("namespaces", "", ns).is_some_and(|n| !meta::is_deleting(&n))
}

/// Objects of `key` in `ns` owned by `owner_uid`, not being deleted.
pub(crate) fn owned(state: &SimState, key: &str, ns: &str, owner_uid: &str) -> Vec<Arc<Value>> {
    let (items, _) = state.store.list(key, Some(ns));
    items.into_iter().filter(|o| meta::owned_by(o, owner_uid) && !meta::is_deleting(o)).collect()
}
