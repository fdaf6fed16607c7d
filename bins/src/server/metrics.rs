//! Prometheus metrics: requests by method, route and code, request latency, store operation latency
//! (through [`MeteredStore`], a `Store` wrapper), and the listener's connections. Every label value
//! comes from a fixed set — a client that invents methods, paths or status codes cannot add series.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{Method, StatusCode};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rancher_core::store::{
    Deleted, ListOptions, ObjectList, Preconditions, Store, StoreLayer, StoreResult, WatchOptions,
    WatchStream,
};
use serde_json::Value;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    code: CodeLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    op: &'static str,
    resource: String,
    ok: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The method as a label: the standard methods by name, any other (hyper accepts any token, of any
/// length) as `other`.
pub(crate) fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    const NAMES: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"];
    KNOWN.iter().position(|m| m == method).map_or("other", |i| NAMES[i])
}

/// A status code as a label: registered codes as themselves, others (a downstream cluster behind the
/// proxy may answer anything from 100 to 999) by their class, `5xx`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum CodeLabel {
    Registered(u16),
    Class(u16),
}

impl From<StatusCode> for CodeLabel {
    fn from(code: StatusCode) -> Self {
        if code.canonical_reason().is_some() {
            CodeLabel::Registered(code.as_u16())
        } else {
            CodeLabel::Class(code.as_u16() / 100)
        }
    }
}

impl EncodeLabelValue for CodeLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        match self {
            CodeLabel::Registered(code) => write!(encoder, "{code}"),
            CodeLabel::Class(class) => write!(encoder, "{class}xx"),
        }
    }
}

/// Why the listener closed a connection at once (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `--max-connections` were open.
    MaxConnections,
    /// `--max-connections-per-client` were open from the same client address.
    MaxPerClient,
}

/// Which timeout closed a connection (the `phase` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimedOut {
    /// The request head did not arrive within `--http-header-timeout`.
    Header,
    /// No request for `--http-idle-timeout`.
    Idle,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~8 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// The server's metrics and the registry that renders them at `/metrics`: the HTTP API, the store, the
/// listener and the tunnel (`rancher_tunnel_*`). An embedder's registry can carry the same metrics
/// too ([`ServerBuilder::metrics_registry`](crate::server::ServerBuilder::metrics_registry)).
pub struct Metrics {
    registry: Registry,
    tunnel: rancher_tunnel::Metrics,
    requests: Family<RequestLabels, Counter>,
    request_seconds: HistogramFamily<RouteLabels>,
    store_seconds: HistogramFamily<StoreLabels>,
    connections_open: Gauge,
    connections_refused: Family<ReasonLabels, Counter>,
    connections_timed_out: Family<ReasonLabels, Counter>,
    controllers_leader: Gauge,
    replicas_live: Gauge,
    agent_connects_deferred: Counter,
    sync_turns: SyncTurns,
}

/// How many of the connected clusters' downstream syncs run now, and how many wait for their turn
/// ([`SYNCS_AT_ONCE`](crate::server::supervisor::SYNCS_AT_ONCE) run at once).
#[derive(Clone, Debug, Default)]
pub(crate) struct SyncTurns {
    pub(crate) running: Gauge,
    pub(crate) waiting: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the metric families and registers them.
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            tunnel: rancher_tunnel::Metrics::unregistered(),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            store_seconds: Family::new_with_constructor(latency_histogram),
            connections_open: Gauge::default(),
            connections_refused: Family::default(),
            connections_timed_out: Family::default(),
            controllers_leader: Gauge::default(),
            replicas_live: Gauge::default(),
            agent_connects_deferred: Counter::default(),
            sync_turns: SyncTurns::default(),
        };
        let mut registry = Registry::with_prefix("rancher");
        m.register_into(&mut registry);
        m.registry = registry;
        m
    }

    /// Registers every metric of the server (the same handles `/metrics` renders) into `registry`,
    /// whose prefix the caller chooses.
    pub(crate) fn register_into(&self, registry: &mut Registry) {
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status code",
            self.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head, by method and route",
            self.request_seconds.clone(),
        );
        registry.register(
            "store_operation_duration_seconds",
            "Store operation latency by operation and resource",
            self.store_seconds.clone(),
        );
        registry.register("connections_open", "Client connections open", self.connections_open.clone());
        registry.register(
            "connections_refused",
            "Client connections closed at once because a connection cap was reached",
            self.connections_refused.clone(),
        );
        registry.register(
            "connections_timed_out",
            "Client connections closed for a slow request head or idleness, by phase",
            self.connections_timed_out.clone(),
        );
        registry.register(
            "controllers_leader",
            "1 while this server runs the controllers that must run once (the elected leader)",
            self.controllers_leader.clone(),
        );
        registry.register(
            "replicas_live",
            "The servers sharing the store that this one counts as live (0: not sharing one)",
            self.replicas_live.clone(),
        );
        registry.register(
            "agent_connects_deferred",
            "Agents' session requests answered 503 because more arrived than --agent-connect-rate admits",
            self.agent_connects_deferred.clone(),
        );
        registry.register(
            "cluster_syncs_running",
            "Downstream syncs of connected clusters running now (RBAC, token records, system namespaces, node labels)",
            self.sync_turns.running.clone(),
        );
        registry.register(
            "cluster_syncs_waiting",
            "Downstream syncs waiting for their turn: at most 64 run at once over the fleet",
            self.sync_turns.waiting.clone(),
        );
        self.tunnel.register_into(registry);
    }

    /// The gauges of the cluster supervisors' sync turns.
    pub(crate) fn sync_turns(&self) -> SyncTurns {
        self.sync_turns.clone()
    }

    /// An agent's session request was deferred by the connect rate.
    pub(crate) fn agent_connect_deferred(&self) {
        self.agent_connects_deferred.inc();
    }

    /// How many replicas this server counts as live.
    pub(crate) fn set_replicas_live(&self, n: usize) {
        self.replicas_live.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// This server started (`true`) or stopped running the controllers that must run once.
    pub(crate) fn set_controllers_leader(&self, leading: bool) {
        self.controllers_leader.set(i64::from(leading));
    }

    /// The tunnel server's metrics (sessions, streams, bytes, dial errors).
    pub(crate) fn tunnel(&self) -> &rancher_tunnel::Metrics {
        &self.tunnel
    }

    /// A connection was accepted (`+1`) or ended (`-1`).
    pub(crate) fn connections_open_add(&self, delta: i64) {
        self.connections_open.inc_by(delta);
    }

    /// Client connections open now (accepted, until closed).
    #[cfg(test)]
    pub(crate) fn connections_open(&self) -> i64 {
        self.connections_open.get()
    }

    /// A connection was refused at accept.
    pub(crate) fn connection_refused(&self, why: Refusal) {
        let reason = match why {
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxPerClient => "max_connections_per_client",
        };
        self.connections_refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// A connection was closed by a timeout.
    pub(crate) fn connection_timed_out(&self, phase: TimedOut) {
        let reason = match phase {
            TimedOut::Header => "header",
            TimedOut::Idle => "idle",
        };
        self.connections_timed_out.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts a request answered with `status` on `route` (a route pattern, never a raw path: those
    /// hold names) and records its duration since `started`; `method` from [`method_label`].
    pub(crate) fn observe_request(
        &self,
        method: &'static str,
        route: String,
        status: StatusCode,
        started: Instant,
    ) {
        self.request_seconds
            .get_or_create(&RouteLabels { method, route: route.clone() })
            .observe(started.elapsed().as_secs_f64());
        self.requests.get_or_create(&RequestLabels { method, route, code: status.into() }).inc();
    }

    fn observe_store(&self, op: &'static str, resource: &str, ok: bool, started: Instant) {
        self.store_seconds
            .get_or_create(&StoreLabels { op, resource: resource.to_owned(), ok })
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Middleware: counts each request by its method, its matched route (never the raw path, which holds
/// names) and its status code, each from a fixed set.
pub(crate) async fn track_requests(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = method_label(req.method());
    let started = Instant::now();
    let resp = next.run(req).await;
    metrics.observe_request(method, route, resp.status(), started);
    resp
}

/// A [`Store`] that records the latency of every operation in [`Metrics`].
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        MeteredStore { inner, metrics }
    }
}

#[async_trait]
impl StoreLayer for MeteredStore {
    fn inner(&self) -> &dyn Store {
        &*self.inner
    }

    async fn create(&self, resource: &str, object: Value) -> StoreResult<Value> {
        let t = Instant::now();
        let r = self.inner.create(resource, object).await;
        self.metrics.observe_store("create", resource, r.is_ok(), t);
        r
    }

    async fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> StoreResult<Value> {
        let t = Instant::now();
        let r = self.inner.get(resource, namespace, name).await;
        self.metrics.observe_store("get", resource, r.is_ok(), t);
        r
    }

    async fn update(&self, resource: &str, object: Value) -> StoreResult<Value> {
        let t = Instant::now();
        let r = self.inner.update(resource, object).await;
        self.metrics.observe_store("update", resource, r.is_ok(), t);
        r
    }

    async fn delete(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
        preconditions: Preconditions,
    ) -> StoreResult<Deleted> {
        let t = Instant::now();
        let r = self.inner.delete(resource, namespace, name, preconditions).await;
        self.metrics.observe_store("delete", resource, r.is_ok(), t);
        r
    }

    async fn list(&self, resource: &str, options: &ListOptions) -> StoreResult<ObjectList> {
        let t = Instant::now();
        let r = self.inner.list(resource, options).await;
        self.metrics.observe_store("list", resource, r.is_ok(), t);
        r
    }

    async fn watch(&self, resource: &str, options: &WatchOptions) -> StoreResult<WatchStream> {
        let t = Instant::now();
        let r = self.inner.watch(resource, options).await;
        self.metrics.observe_store("watch", resource, r.is_ok(), t);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_fixed_sets() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::from_bytes(b"FOO123").unwrap()), "other");
        assert_eq!(method_label(&Method::from_bytes(&[b'X'; 4096]).unwrap()), "other");
        let code = |c: u16| CodeLabel::from(StatusCode::from_u16(c).unwrap());
        assert_eq!(code(404), CodeLabel::Registered(404));
        assert_eq!(code(599), CodeLabel::Class(5));
        assert_eq!(code(999), CodeLabel::Class(9));
    }

    #[tokio::test]
    async fn made_up_methods_share_one_series() {
        use tower::ServiceExt;
        let metrics = Arc::new(Metrics::new());
        let app = axum::Router::new()
            .route("/ping", axum::routing::get(|| async { "pong" }))
            .layer(axum::middleware::from_fn_with_state(metrics.clone(), track_requests));
        for i in 0..50 {
            let method = Method::from_bytes(format!("M{i}{}", "x".repeat(100)).as_bytes()).unwrap();
            let req = http::Request::builder().method(method).uri("/ping").body(axum::body::Body::empty());
            app.clone().oneshot(req.unwrap()).await.unwrap();
        }
        let text = metrics.render();
        let series: Vec<&str> =
            text.lines().filter(|l| l.starts_with("rancher_http_requests_total{")).collect();
        assert_eq!(series, [r#"rancher_http_requests_total{method="other",route="/ping",code="405"} 50"#]);
    }
}
