//! Test helpers shared by the layers' unit tests: an inner service that records what reached it.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response, Uri};
use http_body_util::BodyExt;
use rancher_core::Status;
use tower::Service;

use super::authenticate::UserInfo;
use super::cluster::ClusterTarget;
use super::error::{ProxyBody, ProxyError};
use super::impersonate::HeadersRebuilt;

/// What the innermost service received.
#[derive(Clone, Debug, Default)]
pub(crate) struct Seen {
    pub(crate) calls: usize,
    pub(crate) user: Option<UserInfo>,
    pub(crate) target: Option<ClusterTarget>,
    pub(crate) headers: HeaderMap,
    pub(crate) uri: Option<Uri>,
    pub(crate) rebuilt: Option<HeadersRebuilt>,
}

#[derive(Clone, Default)]
pub(crate) struct SeenHandle(Arc<Mutex<Seen>>);

impl SeenHandle {
    pub(crate) fn take(&self) -> Seen {
        self.0.lock().unwrap().clone()
    }
}

/// An inner service answering 200 and recording the request.
#[derive(Clone)]
pub(crate) struct Recorder(SeenHandle);

pub(crate) fn recorder() -> (Recorder, SeenHandle) {
    let handle = SeenHandle::default();
    (Recorder(handle.clone()), handle)
}

impl<B> Service<Request<B>> for Recorder {
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = std::future::Ready<Result<Response<ProxyBody>, ProxyError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut seen = self.0.0.lock().unwrap();
        seen.calls += 1;
        seen.user = req.extensions().get::<std::sync::Arc<UserInfo>>().map(|u| UserInfo::clone(u));
        seen.target = req.extensions().get::<ClusterTarget>().cloned();
        seen.headers = req.headers().clone();
        seen.uri = Some(req.uri().clone());
        seen.rebuilt = req.extensions().get::<HeadersRebuilt>().copied();
        std::future::ready(Ok(Response::new(ProxyBody::empty())))
    }
}

/// The `Status` a response carries.
pub(crate) async fn status_of(resp: Response<ProxyBody>) -> Status {
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}
