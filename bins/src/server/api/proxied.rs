//! The route of the authentication proxy, `/k8s/clusters/{*rest}`, as one service: the request
//! metrics, the replica that holds the cluster ([`peers::route_proxied`]) and the proxy, under the
//! same panic, header-redaction and tracing layers as every other route.
//!
//! It is built as one concrete stack rather than with the router's per-route layers because every
//! `kubectl` call of every user passes here: axum boxes each layer around each route and clones the
//! boxes for every request (a dozen allocations per request before the proxy started), while this
//! stack is cloned as a few reference counts and allocates one future.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use futures::future::BoxFuture;

use crate::server::metrics;
use crate::server::peers;
use crate::server::state::AppState;

/// The pattern the proxy is routed by, and its metrics' route label where no router matched one.
pub(crate) const ROUTE: &str = "/k8s/clusters/{*rest}";

/// Metrics, then the replica that holds the cluster, then the proxy.
#[derive(Clone)]
pub(crate) struct Proxied {
    state: AppState,
}

impl Proxied {
    pub(crate) fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl tower::Service<Request> for Proxied {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move {
            let method = metrics::method_label(req.method());
            // The pattern the router matched (an embedder may mount the routes under a prefix).
            let route = req.extensions().get::<MatchedPath>().map_or(ROUTE, |p| p.as_str()).to_owned();
            let started = Instant::now();
            let resp = peers::route_proxied(&state, req).await;
            state.metrics.observe_request(method, route, resp.status(), started);
            Ok(resp)
        })
    }
}
