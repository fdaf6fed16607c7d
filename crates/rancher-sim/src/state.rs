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
}

/// Everything the handlers and controllers of one sim share.
pub(crate) struct SimState {
    pub(crate) config: SimConfig,
    pub(crate) store: Store,
    pub(crate) tokens: Tokens,
    pub(crate) pki: Pki,
    pub(crate) cancel: CancellationToken,
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
            next_ip: AtomicU32::new(0),
        }
    }

    /// A fresh number for pod IPs and cluster IPs.
    pub(crate) fn next_ip(&self) -> u32 {
        self.next_ip.fetch_add(1, Ordering::Relaxed)
    }
}
