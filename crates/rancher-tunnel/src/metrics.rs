//! Prometheus metrics of the tunnel, registered into a caller-provided registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label of [`Metrics::dial_errors`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DialErrorLabels {
    /// `no_session`, `refused`, `failed`, `open`, `timeout` or `protocol`.
    pub reason: &'static str,
}

/// Counters and gauges of one tunnel server or agent. Cheap to clone (shared handles).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Sessions currently open.
    pub sessions: Gauge,
    /// Streams currently open.
    pub streams_open: Gauge,
    /// Streams opened since start.
    pub streams_total: Counter,
    /// Bytes received from streams (read by the local side).
    pub bytes_in: Counter,
    /// Bytes sent into streams.
    pub bytes_out: Counter,
    /// Dials that failed, by reason.
    pub dial_errors: Family<DialErrorLabels, Counter>,
    /// Agent reconnect attempts (agent side only).
    pub reconnects: Counter,
}

impl Metrics {
    /// Metrics not registered anywhere (they still count).
    pub fn unregistered() -> Self {
        Self::default()
    }

    /// Creates the metrics and registers them under the `tunnel_` prefix of `registry`.
    ///
    /// ```
    /// let mut registry = prometheus_client::registry::Registry::default();
    /// let metrics = rancher_tunnel::Metrics::register(&mut registry);
    /// metrics.reconnects.inc();
    /// let mut out = String::new();
    /// prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    /// assert!(out.contains("tunnel_reconnects_total 1"));
    /// ```
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        m.register_into(registry);
        m
    }

    /// Registers these metrics (the same counters, not copies) under the `tunnel_` prefix of
    /// `registry` too: for a program that renders several registries, or an embedder's registry
    /// beside the server's own.
    pub fn register_into(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tunnel");
        r.register("sessions", "Tunnel sessions currently open", self.sessions.clone());
        r.register("streams_open", "Tunnel streams currently open", self.streams_open.clone());
        r.register("streams", "Tunnel streams opened", self.streams_total.clone());
        r.register("bytes_in", "Bytes read from tunnel streams", self.bytes_in.clone());
        r.register("bytes_out", "Bytes written to tunnel streams", self.bytes_out.clone());
        r.register("dial_errors", "Tunnel dials that failed, by reason", self.dial_errors.clone());
        r.register("reconnects", "Agent reconnect attempts", self.reconnects.clone());
    }

    pub(crate) fn dial_error(&self, reason: &'static str) {
        self.dial_errors.get_or_create(&DialErrorLabels { reason }).inc();
    }
}
