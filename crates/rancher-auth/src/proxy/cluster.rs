//! Which cluster: [`ClusterRouteLayer`] reads `/k8s/clusters/<id>/<rest>`, asks a [`ClusterAccess`]
//! whether the user may reach that cluster, and rewrites the path to `<rest>` for the downstream API server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::future::BoxFuture;
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use tower::{Layer, Service};

use super::authenticate::UserInfo;
use super::error::ProxyError;

/// The path prefix of proxied requests.
pub const CLUSTER_PATH_PREFIX: &str = "/k8s/clusters/";

/// The cluster a request is for, inserted into the request's extensions by [`ClusterRouteLayer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterTarget {
    /// The cluster id, e.g. `c-m-abcde` or `local`.
    pub id: String,
}

/// Why a user may not reach a cluster.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    /// No such cluster (answered 404, so cluster ids are not probed).
    #[error("not found")]
    NotFound,
    /// The cluster exists but the user has no role in it (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
}

/// Decides whether a user may reach a cluster at all. What they may do inside it is decided by the
/// downstream API server's RBAC, evaluated for the impersonated identity.
#[async_trait]
pub trait ClusterAccess: Send + Sync {
    /// `Ok(())` if `user` may send requests to `cluster_id`.
    async fn may_access(&self, user: &UserInfo, cluster_id: &str) -> Result<(), Denied>;
}

#[async_trait]
impl<T: ClusterAccess + ?Sized> ClusterAccess for Arc<T> {
    async fn may_access(&self, user: &UserInfo, cluster_id: &str) -> Result<(), Denied> {
        (**self).may_access(user, cluster_id).await
    }
}

/// Splits `/k8s/clusters/<id>/<rest>` into `(id, "/<rest>")`; `None` if the path has another shape or
/// the id is not a DNS-1123 label (lower-case letters, digits and `-`, at most 63 characters).
pub fn split_cluster_path(path: &str) -> Option<(&str, &str)> {
    let after = path.strip_prefix(CLUSTER_PATH_PREFIX)?;
    let (id, rest) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    valid_cluster_id(id).then_some((id, rest))
}

fn valid_cluster_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

// === impl StaticClusterAccess ===

/// A fixed table of which users and groups may reach which clusters, for tests and examples.
#[derive(Clone, Debug, Default)]
pub struct StaticClusterAccess {
    /// cluster id → user ids and group names allowed.
    members: BTreeMap<String, BTreeSet<String>>,
}

impl StaticClusterAccess {
    /// No clusters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `cluster` exist and lets the user id or group `member` reach it.
    pub fn allow(mut self, cluster: impl Into<String>, member: impl Into<String>) -> Self {
        self.members.entry(cluster.into()).or_default().insert(member.into());
        self
    }

    /// Makes `cluster` exist with no members yet.
    pub fn cluster(mut self, cluster: impl Into<String>) -> Self {
        self.members.entry(cluster.into()).or_default();
        self
    }
}

#[async_trait]
impl ClusterAccess for StaticClusterAccess {
    async fn may_access(&self, user: &UserInfo, cluster_id: &str) -> Result<(), Denied> {
        let members = self.members.get(cluster_id).ok_or(Denied::NotFound)?;
        if members.contains(&user.username) || user.groups.iter().any(|g| members.contains(g)) {
            Ok(())
        } else {
            Err(Denied::Forbidden(format!("user {} has no access to this cluster", user.username)))
        }
    }
}

// === impl ClusterRouteLayer ===

/// Routes `/k8s/clusters/<id>/…`: checks access, strips the prefix, inserts [`ClusterTarget`].
/// Needs the caller's `Arc<UserInfo>` in the extensions (put there by the authenticate layer).
#[derive(Debug)]
pub struct ClusterRouteLayer<P> {
    access: Arc<P>,
}

impl<P> ClusterRouteLayer<P> {
    /// Uses `access` to decide who reaches which cluster.
    pub fn new(access: P) -> Self {
        ClusterRouteLayer { access: Arc::new(access) }
    }
}

impl<P> Clone for ClusterRouteLayer<P> {
    fn clone(&self) -> Self {
        ClusterRouteLayer { access: self.access.clone() }
    }
}

impl<P, S> Layer<S> for ClusterRouteLayer<P> {
    type Service = ClusterRoute<P, S>;
    fn layer(&self, inner: S) -> Self::Service {
        ClusterRoute { access: self.access.clone(), inner }
    }
}

/// The service made by [`ClusterRouteLayer`].
#[derive(Debug)]
pub struct ClusterRoute<P, S> {
    access: Arc<P>,
    inner: S,
}

impl<P, S: Clone> Clone for ClusterRoute<P, S> {
    fn clone(&self) -> Self {
        ClusterRoute { access: self.access.clone(), inner: self.inner.clone() }
    }
}

impl<P, S, B, RB> Service<Request<B>> for ClusterRoute<P, S>
where
    P: ClusterAccess + 'static,
    S: Service<Request<B>, Response = Response<RB>, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<RB>;
    type Error = ProxyError;
    type Future = BoxFuture<'static, Result<Response<RB>, ProxyError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let access = self.access.clone();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let Some((id, rest)) = split_cluster_path(req.uri().path()) else {
                return Err(ProxyError::NotRouted(format!(
                    "{} is not a cluster path (expected {CLUSTER_PATH_PREFIX}<cluster id>/...)",
                    req.uri().path()
                )));
            };
            let (id, rest) = (id.to_owned(), rest.to_owned());
            let user = req.extensions().get::<Arc<UserInfo>>().ok_or(ProxyError::Internal("no UserInfo"))?;
            access
                .may_access(user, &id)
                .await
                .map_err(|source| ProxyError::AccessDenied { cluster: id.clone(), source })?;
            *req.uri_mut() = strip_prefix(req.uri(), &rest)?;
            req.extensions_mut().insert(ClusterTarget { id });
            inner.call(req).await
        })
    }
}

/// The request URI with its path replaced by `rest`, keeping the query.
fn strip_prefix(uri: &Uri, rest: &str) -> Result<Uri, ProxyError> {
    let pq = match uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query =
        Some(PathAndQuery::try_from(pq).map_err(|_| ProxyError::NotRouted("malformed path".into()))?);
    Uri::from_parts(parts).map_err(|_| ProxyError::NotRouted("malformed path".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::test_support::{recorder, status_of};
    use tower::ServiceExt as _;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    fn access() -> StaticClusterAccess {
        StaticClusterAccess::new().allow("c1", "u-alice").allow("c1", "local://g-ops").cluster("c2")
    }

    fn request(path: &str, who: UserInfo) -> Request<()> {
        let mut req = Request::get(path).body(()).unwrap();
        req.extensions_mut().insert(Arc::new(who));
        req
    }

    #[tokio::test]
    async fn strips_the_prefix_keeps_the_query_and_names_the_target() {
        let (svc, seen) = recorder();
        let svc = ClusterRouteLayer::new(access()).layer(svc);
        let req = request("/k8s/clusters/c1/api/v1/pods?watch=true&timeoutSeconds=300", user("u-alice", &[]));
        svc.oneshot(req).await.unwrap();
        let seen = seen.take();
        assert_eq!(seen.uri.unwrap(), "/api/v1/pods?watch=true&timeoutSeconds=300");
        assert_eq!(seen.target, Some(ClusterTarget { id: "c1".into() }));
    }

    #[tokio::test]
    async fn group_membership_grants_access_and_bare_cluster_path_is_root() {
        let (svc, seen) = recorder();
        let svc = ClusterRouteLayer::new(access()).layer(svc);
        svc.oneshot(request("/k8s/clusters/c1", user("u-bob", &["local://g-ops"]))).await.unwrap();
        assert_eq!(seen.take().uri.unwrap(), "/");
    }

    #[tokio::test]
    async fn unknown_or_invalid_clusters_are_404_and_strangers_403() {
        let cases = [
            ("/k8s/clusters/nope/api", "u-alice", 404),
            ("/k8s/clusters/C1/api", "u-alice", 404),
            ("/k8s/clusters/../api", "u-alice", 404),
            ("/k8s/clusters//api", "u-alice", 404),
            ("/api/v1/pods", "u-alice", 404),
            ("/k8s/clusters/c2/api", "u-alice", 403),
            ("/k8s/clusters/c1/api", "u-mallory", 403),
        ];
        for (path, who, code) in cases {
            let (svc, seen) = recorder();
            let svc = ClusterRouteLayer::new(access()).layer(svc);
            let err = svc.oneshot(request(path, user(who, &[]))).await.unwrap_err();
            let status = status_of(err.into_response()).await;
            assert_eq!(status.code, code, "{path} as {who}: {status:?}");
            assert_eq!(seen.take().calls, 0, "{path} reached the inner service");
        }
    }

    #[test]
    fn cluster_ids_are_dns_labels() {
        assert_eq!(split_cluster_path("/k8s/clusters/c-m-x1/api/v1"), Some(("c-m-x1", "/api/v1")));
        assert_eq!(split_cluster_path("/k8s/clusters/local"), Some(("local", "/")));
        assert_eq!(split_cluster_path("/k8s/clusters/-a/x"), None);
        assert_eq!(split_cluster_path(&format!("/k8s/clusters/{}/x", "a".repeat(64))), None);
        assert_eq!(split_cluster_path("/k8s/clusters/a%2Fb/x"), None);
    }
}
