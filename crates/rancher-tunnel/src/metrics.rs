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
        let r = registry.sub_registry_with_prefix("tunnel");
        r.register("sessions", "Tunnel sessions currently open", m.sessions.clone());
        r.register("streams_open", "Tunnel streams currently open", m.streams_open.clone());
        r.register("streams", "Tunnel streams opened", m.streams_total.clone());
        r.register("bytes_in", "Bytes read from tunnel streams", m.bytes_in.clone());
        r.register("bytes_out", "Bytes written to tunnel streams", m.bytes_out.clone());
        r.register("dial_errors", "Tunnel dials that failed, by reason", m.dial_errors.clone());
        r.register("reconnects", "Agent reconnect attempts", m.reconnects.clone());
        m
    }

    pub(crate) fn dial_error(&self, reason: &'static str) {
        self.dial_errors.get_or_create(&DialErrorLabels { reason }).inc();
    }
}
