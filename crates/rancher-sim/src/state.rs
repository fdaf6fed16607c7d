//! The shared state of one running sim.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio_util::sync::CancellationToken;

use crate::authn::Tokens;
use crate::pki::Pki;
use crate::store::Store;

/// Settings fixed when the sim starts.
#[derive(Debug, Clone)]
pub(crate) struct SimConfig {
    pub(crate) name: String,
    pub(crate) nodes: usize,
    pub(crate) git_version: String,
    pub(crate) auth_webhook: Option<String>,
    pub(crate) auth_webhook_ca: Option<String>,
    pub(crate) watch_history: usize,
    /// How often the simulated kubelets renew their node Leases (10 s, as a kubelet).
    pub(crate) lease_renew_interval: std::time::Duration,
    /// How long an event is kept after it was last seen (one hour, as `--event-ttl`).
    pub(crate) event_ttl: std::time::Duration,
    /// At most this many events per namespace; the least recently seen go first.
    pub(crate) events_per_namespace: usize,
}

/// Everything the handlers and controllers of one sim share.
pub(crate) struct SimState {
    pub(crate) config: SimConfig,
    pub(crate) store: Store,
    pub(crate) tokens: Tokens,
    pub(crate) pki: Pki,
    pub(crate) cancel: CancellationToken,
    /// The exec shell's files, per pod.
    pub(crate) pod_files: crate::exec::fs::PodFiles,
    next_ip: AtomicU32,
}

impl SimState {
    pub(crate) fn new(config: SimConfig, pki: Pki) -> Self {
        SimState {
            store: Store::new(config.watch_history),
            config,
            tokens: Tokens::default(),
            pki,
            cancel: CancellationToken::new(),
            pod_files: Default::default(),
            next_ip: AtomicU32::new(0),
        }
    }

    /// A fresh number for pod IPs and cluster IPs.
    pub(crate) fn next_ip(&self) -> u32 {
        self.next_ip.fetch_add(1, Ordering::Relaxed)
    }
}
