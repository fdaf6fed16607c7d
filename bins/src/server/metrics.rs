//! Prometheus metrics: requests by route and code, request latency, and store operation latency
//! (through [`MeteredStore`], a `Store` wrapper).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rancher_core::store::{
    Deleted, ListOptions, ObjectList, Preconditions, Store, StoreResult, WatchOptions, WatchStream,
};
use serde_json::Value;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    op: &'static str,
    resource: String,
    ok: bool,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~8 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// The server's metrics and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: HistogramFamily<RouteLabels>,
    store_seconds: HistogramFamily<StoreLabels>,
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
        let mut registry = Registry::with_prefix("rancher");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds: HistogramFamily<RouteLabels> = Family::new_with_constructor(latency_histogram);
        let store_seconds: HistogramFamily<StoreLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status code",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head, by method and route",
            request_seconds.clone(),
        );
        registry.register(
            "store_operation_duration_seconds",
            "Store operation latency by operation and resource",
            store_seconds.clone(),
        );
        Metrics { registry, requests, request_seconds, store_seconds }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn observe_store(&self, op: &'static str, resource: &str, ok: bool, started: Instant) {
        self.store_seconds
            .get_or_create(&StoreLabels { op, resource: resource.to_owned(), ok })
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Middleware: counts each request by its matched route (never the raw path, which holds names).
pub(crate) async fn track_requests(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let resp = next.run(req).await;
    metrics
        .request_seconds
        .get_or_create(&RouteLabels { method: method.clone(), route: route.clone() })
        .observe(started.elapsed().as_secs_f64());
    metrics.requests.get_or_create(&RequestLabels { method, route, code: resp.status().as_u16() }).inc();
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
impl Store for MeteredStore {
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
