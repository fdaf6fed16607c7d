//! The audit log: [`AuditLayer`] writes one JSON line per proxied request — who, which cluster, what
//! (verb, resource, namespace, name), the status and the latency to the response headers — to an
//! [`AuditSink`]. No header or query is ever recorded, so tokens and cookies cannot leak into it, and
//! request bodies only where [`redact`](super::redact) finds no secret in them.

use std::io::Write;
use std::path::Path;
use std::pin::Pin;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use serde::Serialize;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::authenticate::UserInfo;
use super::cluster::ClusterTarget;
use super::error::{BoxError, ProxyBody, ProxyError};
use super::redact::{BodyOmitted, check_body, may_record_body};
use super::request_info::RequestInfo;

/// How much of a request is recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuditLevel {
    /// Who, what and the outcome; no bodies (the default).
    #[default]
    Metadata,
    /// Also the request body, when it is one JSON document of at most [`MAX_AUDITED_BODY`] bytes
    /// that [`may_record_body`](crate::proxy::may_record_body) lets through: never a Secret's, a
    /// TokenReview's, or one whose path is spelled oddly.
    RequestBody,
}

/// The longest request body recorded; longer ones are left out (a prefix could hold anything).
pub const MAX_AUDITED_BODY: usize = 64 * 1024;

/// One audit record.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// When the request arrived.
    pub time: jiff::Timestamp,
    /// The user id.
    pub user: String,
    /// The user's groups.
    pub groups: Vec<String>,
    /// The cluster id.
    pub cluster: String,
    /// The Kubernetes verb (see [`RequestInfo::verb`]).
    pub verb: String,
    /// The API group (empty for core).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    /// The resource.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource: String,
    /// The subresource.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
    /// The namespace.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The object name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The request path (without the query).
    pub path: String,
    /// The HTTP status code returned (the API server's, or the proxy's own on failure).
    pub status: u16,
    /// Milliseconds until the response headers (for watches and streams: until they started).
    pub latency_ms: f64,
    /// The request body, at [`AuditLevel::RequestBody`], when it may be recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    /// At [`AuditLevel::RequestBody`], why the body is not recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body_omitted: Option<BodyOmitted>,
}

/// Where audit events go. `record` must not block: sinks queue and write elsewhere.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait AuditSink: Send + Sync {
    /// Records one event.
    fn record(&self, event: &AuditEvent);
    /// Waits until every event recorded so far is written.
    fn flush(&self) {}
}

// === impl LineSink (file and stdout) ===

enum Msg {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

/// Writes JSON lines on a dedicated thread, so a slow disk never stalls a request. If the queue
/// (`QUEUE` events) is full, events are dropped and counted rather than blocking the proxy.
struct LineSink {
    tx: SyncSender<Msg>,
    dropped: std::sync::atomic::AtomicU64,
}

const QUEUE: usize = 8192;

impl LineSink {
    fn spawn(name: &str, mut out: Box<dyn Write + Send>) -> std::io::Result<LineSink> {
        let (tx, rx): (SyncSender<Msg>, Receiver<Msg>) = sync_channel(QUEUE);
        std::thread::Builder::new().name(name.into()).spawn(move || {
            // Ends when the sink (the only sender) is dropped.
            while let Ok(msg) = rx.recv() {
                let mut next = Some(msg);
                while let Some(msg) = next.take() {
                    match msg {
                        Msg::Line(line) => {
                            if let Err(e) = out.write_all(&line) {
                                tracing::error!(error = %e, "audit log write failed");
                            }
                        }
                        Msg::Flush(done) => {
                            let _ = out.flush();
                            let _ = done.send(());
                        }
                    }
                    next = rx.try_recv().ok();
                }
                let _ = out.flush();
            }
        })?;
        Ok(LineSink { tx, dropped: Default::default() })
    }

    fn record(&self, event: &AuditEvent) {
        let Ok(mut line) = serde_json::to_vec(event) else { return };
        line.push(b'\n');
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                tracing::warn!(dropped = n, "audit queue full; event dropped");
            }
            Err(TrySendError::Disconnected(_)) => tracing::error!("audit writer stopped; event dropped"),
        }
    }

    fn flush(&self) {
        let (done_tx, done_rx) = sync_channel(1);
        if self.tx.send(Msg::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }
}

/// Appends audit lines to a file (created with mode 0600 if missing, never truncated).
pub struct FileSink(LineSink);

impl FileSink {
    /// Opens `path` for appending.
    ///
    /// # Errors
    /// If the file cannot be opened or the writer thread not started.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<FileSink> {
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path)?;
        Ok(FileSink(LineSink::spawn("audit-file", Box::new(std::io::BufWriter::new(file)))?))
    }
}

impl AuditSink for FileSink {
    fn record(&self, event: &AuditEvent) {
        self.0.record(event)
    }
    fn flush(&self) {
        self.0.flush()
    }
}

/// Writes audit lines to standard output.
pub struct StdoutSink(LineSink);

impl StdoutSink {
    /// Starts the writer.
    ///
    /// # Errors
    /// If the writer thread cannot be started.
    pub fn new() -> std::io::Result<StdoutSink> {
        Ok(StdoutSink(LineSink::spawn("audit-stdout", Box::new(std::io::stdout()))?))
    }
}

impl AuditSink for StdoutSink {
    fn record(&self, event: &AuditEvent) {
        self.0.record(event)
    }
    fn flush(&self) {
        self.0.flush()
    }
}

// === impl AuditLayer ===

/// Records every request that passed authentication and cluster routing. Needs [`UserInfo`] and
/// [`ClusterTarget`] in the extensions. A layer without a sink passes requests through untouched.
#[derive(Clone, Default)]
pub struct AuditLayer {
    sink: Option<Arc<dyn AuditSink>>,
    level: AuditLevel,
}

impl AuditLayer {
    /// Records to `sink` at `level`.
    pub fn new(sink: Arc<dyn AuditSink>, level: AuditLevel) -> Self {
        AuditLayer { sink: Some(sink), level }
    }

    /// Records nothing.
    pub fn disabled() -> Self {
        AuditLayer::default()
    }

    /// Records `event` directly, for what the server serves besides the proxy that must be audited
    /// all the same (a download of a cluster's keys); nothing when the layer has no sink.
    pub fn record(&self, event: &AuditEvent) {
        if let Some(sink) = &self.sink {
            sink.record(event);
        }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Audit { layer: self.clone(), inner }
    }
}

/// The service made by [`AuditLayer`].
#[derive(Clone)]
pub struct Audit<S> {
    layer: AuditLayer,
    inner: S,
}

impl<S> Service<Request<ProxyBody>> for Audit<S>
where
    S: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = ProxyError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = BoxFuture<'static, Result<Response<ProxyBody>, ProxyError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ProxyBody>) -> Self::Future {
        let Some(sink) = self.layer.sink.clone() else {
            return Box::pin(self.inner.call(req));
        };
        let level = self.layer.level;
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let start = Instant::now();
            let time = jiff::Timestamp::now();
            let info = RequestInfo::parse(req.method(), req.uri().path(), req.uri().query());
            let user =
                req.extensions().get::<Arc<UserInfo>>().map(|u| UserInfo::clone(u)).unwrap_or_default();
            let cluster = req.extensions().get::<ClusterTarget>().map(|t| t.id.clone()).unwrap_or_default();

            // Decided from the parsed request before a byte of the body is read.
            let (captured, mut omitted) = match (level, may_record_body(&info)) {
                (AuditLevel::Metadata, _) => (None, None),
                (AuditLevel::RequestBody, Ok(())) => (Some(Arc::new(Mutex::new(Captured::default()))), None),
                (AuditLevel::RequestBody, Err(why)) => (None, Some(why)),
            };
            let req = match &captured {
                Some(c) => req.map(|body| super::error::boxed(TeeBody { inner: body, captured: c.clone() })),
                None => req,
            };
            let result = inner.call(req).await;

            let status = match &result {
                Ok(resp) => resp.status().as_u16(),
                Err(e) => e.status().code,
            };
            let request_body = captured.and_then(|c| {
                let c = c.lock().unwrap_or_else(|p| p.into_inner());
                match check_body(&c.bytes, !c.truncated) {
                    Ok(()) => Some(String::from_utf8_lossy(&c.bytes).into_owned()),
                    Err(why) => {
                        omitted = Some(why);
                        None
                    }
                }
            });
            sink.record(&AuditEvent {
                time,
                user: user.username,
                groups: user.groups,
                cluster,
                verb: info.verb,
                api_group: info.api_group,
                resource: info.resource,
                subresource: info.subresource,
                namespace: info.namespace,
                name: info.name,
                path: info.path,
                status,
                latency_ms: start.elapsed().as_secs_f64() * 1000.0,
                request_body,
                request_body_omitted: omitted,
            });
            result
        })
    }
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    truncated: bool,
}

/// Passes a request body through unchanged while keeping a bounded copy for the audit record.
struct TeeBody {
    inner: ProxyBody,
    captured: Arc<Mutex<Captured>>,
}

impl Body for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let mut c = self.captured.lock().unwrap_or_else(|p| p.into_inner());
            let room = MAX_AUDITED_BODY.saturating_sub(c.bytes.len());
            if data.len() > room {
                // Too long to record at all: keep nothing rather than a prefix.
                c.truncated = true;
                c.bytes = Vec::new();
            } else if !c.truncated {
                c.bytes.extend_from_slice(data);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::error::{ProxyError, boxed, status_response};
    use crate::proxy::upstream::ResolveError;
    use http_body_util::{BodyExt as _, Full};
    use rancher_core::Status;
    use tower::ServiceExt as _;

    #[derive(Default)]
    struct MemorySink(Mutex<Vec<AuditEvent>>);
    impl AuditSink for MemorySink {
        fn record(&self, event: &AuditEvent) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    /// Reads the whole request body (as the API server would) and answers `code`.
    fn downstream(
        code: u16,
    ) -> impl Service<
        Request<ProxyBody>,
        Response = Response<ProxyBody>,
        Error = ProxyError,
        Future = BoxFuture<'static, Result<Response<ProxyBody>, ProxyError>>,
    > + Clone {
        tower::service_fn(move |req: Request<ProxyBody>| -> BoxFuture<'static, _> {
            Box::pin(async move {
                req.into_body().collect().await.unwrap();
                if code == 503 {
                    return Err(ProxyError::Resolve {
                        cluster: "c1".into(),
                        source: ResolveError::NoSession,
                    });
                }
                Ok(status_response(&Status::failure(code, "X", "downstream")))
            })
        })
    }

    fn request(method: &str, path: &str, body: &str) -> Request<ProxyBody> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", "Bearer token-a:secret")
            .body(boxed(Full::new(Bytes::from(body.to_owned()))))
            .unwrap();
        req.extensions_mut().insert(Arc::new(UserInfo {
            username: "u-alice".into(),
            groups: vec!["local://g-dev".into()],
            ..Default::default()
        }));
        req.extensions_mut().insert(ClusterTarget { id: "c1".into() });
        req
    }

    async fn run(level: AuditLevel, code: u16, req: Request<ProxyBody>) -> AuditEvent {
        let sink = Arc::new(MemorySink::default());
        let svc = AuditLayer::new(sink.clone(), level).layer(downstream(code));
        let _ = svc.oneshot(req).await;
        let events = sink.0.lock().unwrap();
        assert_eq!(events.len(), 1);
        events[0].clone()
    }

    #[tokio::test]
    async fn events_recorded_directly_reach_the_sink_unless_disabled() {
        let event = run(AuditLevel::Metadata, 200, request("GET", "/api/v1/pods", "")).await;
        let sink = Arc::new(MemorySink::default());
        AuditLayer::new(sink.clone(), AuditLevel::Metadata).record(&event);
        AuditLayer::disabled().record(&event);
        assert_eq!(sink.0.lock().unwrap().len(), 1);
        assert_eq!(sink.0.lock().unwrap()[0].path, "/api/v1/pods");
    }

    #[tokio::test]
    async fn one_event_says_who_did_what_where_and_the_outcome() {
        let event =
            run(AuditLevel::Metadata, 404, request("DELETE", "/api/v1/namespaces/prod/pods/web-0", "")).await;
        assert_eq!((event.user.as_str(), event.cluster.as_str()), ("u-alice", "c1"));
        assert_eq!(event.groups, ["local://g-dev"]);
        assert_eq!((event.verb.as_str(), event.resource.as_str()), ("delete", "pods"));
        assert_eq!((event.namespace.as_str(), event.name.as_str()), ("prod", "web-0"));
        assert_eq!(event.status, 404);
        assert!(event.latency_ms >= 0.0);
        assert!(event.request_body.is_none());
        let line = serde_json::to_string(&event).unwrap();
        assert!(!line.contains("secret") && !line.contains("Bearer"), "{line}");
    }

    #[tokio::test]
    async fn the_proxys_own_failures_are_recorded_with_their_code() {
        let event = run(AuditLevel::Metadata, 503, request("GET", "/api/v1/pods", "")).await;
        assert_eq!((event.status, event.verb.as_str()), (503, "list"));
    }

    #[tokio::test]
    async fn request_bodies_only_at_that_level_and_never_for_secrets() {
        let body = r#"{"kind":"ConfigMap"}"#;
        let on =
            run(AuditLevel::RequestBody, 201, request("POST", "/api/v1/namespaces/a/configmaps", body)).await;
        assert_eq!((on.request_body.as_deref(), on.request_body_omitted), (Some(body), None));
        let off =
            run(AuditLevel::Metadata, 201, request("POST", "/api/v1/namespaces/a/configmaps", body)).await;
        assert_eq!((off.request_body, off.request_body_omitted), (None, None));
        let secret = r#"{"kind":"Secret","stringData":{"pw":"hunter2"}}"#;
        let cases = [
            ("/api/v1/namespaces/a/secrets", secret, BodyOmitted::Sensitive),
            ("/api/v1/namespaces/a/./secrets", secret, BodyOmitted::Sensitive),
            ("/api/v1/namespaces/a/configmaps", secret, BodyOmitted::Sensitive),
            (
                "/apis/authentication.k8s.io/v1/tokenreviews",
                r#"{"spec":{"token":"hunter2"}}"#,
                BodyOmitted::Sensitive,
            ),
            ("/api/v1/namespaces/a//configmaps", body, BodyOmitted::NonCanonicalPath),
            ("/api/v1/namespaces/a/configmaps", "hunter2: yaml", BodyOmitted::NotJson),
        ];
        for (path, body, why) in cases {
            let event = run(AuditLevel::RequestBody, 201, request("POST", path, body)).await;
            assert_eq!(
                (event.request_body.as_deref(), event.request_body_omitted),
                (None, Some(why)),
                "{path}"
            );
            assert!(!serde_json::to_string(&event).unwrap().contains("hunter2"), "{path}");
        }
        let big = format!(r#"{{"kind":"ConfigMap","data":{{"a":"{}"}}}}"#, "x".repeat(MAX_AUDITED_BODY));
        let cut =
            run(AuditLevel::RequestBody, 201, request("POST", "/api/v1/namespaces/a/configmaps", &big)).await;
        assert_eq!((cut.request_body, cut.request_body_omitted), (None, Some(BodyOmitted::TooLarge)));
    }

    #[tokio::test]
    async fn file_sink_appends_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "earlier\n").unwrap();
        let sink = Arc::new(FileSink::open(&path).unwrap());
        let svc = AuditLayer::new(sink.clone(), AuditLevel::Metadata).layer(downstream(200));
        svc.clone().oneshot(request("GET", "/api/v1/nodes", "")).await.unwrap();
        svc.oneshot(request("GET", "/api/v1/nodes/n1", "")).await.unwrap();
        sink.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "earlier");
        let second: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!((second["verb"].as_str(), second["name"].as_str()), (Some("get"), Some("n1")));
        assert!(!text.contains("secret"));
    }
}
