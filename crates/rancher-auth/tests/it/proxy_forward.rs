//! The composed proxy over real sockets and TLS, against an in-process stand-in API server that reports
//! what reached it, streams a watch on cue and accepts an upgrade. (`proxy_sim.rs` runs kubectl against
//! the simulated cluster.)

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::proxy_support::{PATIENCE, Pki, raw_tls, send_head, start_proxy};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rancher_auth::proxy::{
    self, AuditLayer, AuditLevel, AuditSink as _, ForwardConfig, StaticUpstreams, Upstream, UserInfo,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

const UPSTREAM_TOKEN: &str = "impersonator-sa-token";
const ALICE_TOKEN: &str = "token-alice:s3cr3t";

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// The stand-in API server. `release_watch` lets the second watch event go; `?slow` answers after
/// [`SLOW`], so that requests sent together hold a connection each.
async fn api_server(
    req: Request<Incoming>,
    release_watch: Arc<Notify>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    if query.split('&').any(|p| p == "slow") {
        tokio::time::sleep(SLOW).await;
    }
    if path.ends_with("/exec") {
        let upgraded = hyper::upgrade::on(req);
        tokio::spawn(async move {
            let mut io = TokioIo::new(upgraded.await.unwrap());
            let mut buf = [0u8; 64];
            loop {
                let n = io.read(&mut buf).await.unwrap_or(0);
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "Upgrade")
            .header("upgrade", "SPDY/3.1")
            .header("x-stream-protocol-version", "v4.channel.k8s.io")
            .body(full(""))
            .unwrap());
    }
    if query.contains("watch=true") {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        tokio::spawn(async move {
            let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"{\"type\":\"ADDED\",\"n\":1}\n")))).await;
            release_watch.notified().await;
            let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"{\"type\":\"ADDED\",\"n\":2}\n")))).await;
        });
        let body = StreamBody::new(tokio_stream_from(rx)).boxed();
        return Ok(Response::builder().header("content-type", "application/json").body(body).unwrap());
    }
    if path == "/api/v1/namespaces/kube-system/secrets" {
        let status = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,"message":"downstream says no"}"#;
        return Ok(Response::builder()
            .status(403)
            .header("content-type", "application/json")
            .header("x-downstream", "yes")
            .body(full(status))
            .unwrap());
    }
    // Everything else: report what arrived.
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in req.headers() {
        headers.entry(name.to_string()).or_default().push(value.to_str().unwrap_or("?").to_owned());
    }
    let method = req.method().to_string();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let echo = serde_json::json!({
        "method": method, "path": path, "query": query, "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    Ok(Response::new(full(echo.to_string())))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

const SLOW: std::time::Duration = std::time::Duration::from_millis(300);

/// Starts the stand-in API server on TLS. Bumping `restarts` stands for the API server process
/// restarting: every connection opened before drops the next request it reads, unanswered and
/// without a TLS close, as the dead process's would.
async fn start_api_server(pki: &Pki, release_watch: Arc<Notify>, restarts: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            let release = release_watch.clone();
            let restarts = restarts.clone();
            let born = restarts.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(move |req| {
                    let (release, restarts) = (release.clone(), restarts.clone());
                    async move {
                        if restarts.load(Ordering::SeqCst) != born {
                            return Err("this process is gone");
                        }
                        Ok(api_server(req, release).await.unwrap_or_else(|e| match e {}))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

struct Setup {
    pki: Pki,
    proxy: SocketAddr,
    release_watch: Arc<Notify>,
    /// Restarts c1's API server (see [`start_api_server`]).
    restarts: Arc<AtomicU64>,
    audit_path: std::path::PathBuf,
    audit: Arc<proxy::FileSink>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let pki = Pki::new();
    let release_watch = Arc::new(Notify::new());
    let restarts = Arc::new(AtomicU64::new(0));
    let api = start_api_server(&pki, release_watch.clone(), restarts.clone()).await;
    // Reserved for this test and never bound: nothing listens there.
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], rancher_test_support::free_port()));

    let alice = UserInfo {
        username: "u-alice".into(),
        uid: "u-alice".into(),
        groups: vec!["local://g-dev".into()],
        extra: BTreeMap::from([("principalid".into(), vec!["local://u-alice".into()])]),
    };
    let users = proxy::StaticAuthenticator::new().with_token(ALICE_TOKEN, alice);
    let access = proxy::StaticClusterAccess::new().allow("c1", "u-alice").allow("c-down", "u-alice");
    let upstream = |addr: SocketAddr| Upstream {
        base_url: format!("https://{addr}").parse().unwrap(),
        connector: proxy::tcp_connector(),
        long_running_connector: None,
        tls: Some(pki.client_config(&[])),
        bearer_token: Some(UPSTREAM_TOKEN.into()),
    };
    let upstreams = StaticUpstreams::new().with("c1", upstream(api)).with("c-down", upstream(closed));
    let dir = tempfile::tempdir().unwrap();
    let audit_path = dir.path().join("audit.log");
    let audit = Arc::new(proxy::FileSink::open(&audit_path).unwrap());
    let service = proxy::proxy_service(
        users,
        access,
        upstreams,
        AuditLayer::new(audit.clone(), AuditLevel::Metadata),
        ForwardConfig::default(),
    );
    let proxy = start_proxy(&pki, service).await;
    Setup { pki, proxy, release_watch, restarts, audit_path, audit, _dir: dir }
}

async fn echo(req: reqwest::RequestBuilder) -> serde_json::Value {
    let resp = req.timeout(PATIENCE).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_arrive_impersonated_with_the_proxys_credentials_over_http1_and_http2() {
    let s = setup().await;
    for http1 in [true, false] {
        let client = s.pki.reqwest(http1);
        let url = format!("https://{}/k8s/clusters/c1/api/v1/namespaces/default/pods?limit=5", s.proxy);
        let req = client
            .get(url)
            .bearer_auth(ALICE_TOKEN)
            .header("Impersonate-User", "admin")
            .header("Impersonate-Group", "system:masters")
            .header("Cookie", "R_SESS=token-alice:s3cr3t");
        let seen = echo(req).await;
        assert_eq!(seen["path"], "/api/v1/namespaces/default/pods", "http1={http1}");
        assert_eq!(seen["query"], "limit=5");
        let headers = &seen["headers"];
        assert_eq!(headers["authorization"], serde_json::json!([format!("Bearer {UPSTREAM_TOKEN}")]));
        assert_eq!(headers["impersonate-user"], serde_json::json!(["u-alice"]));
        assert_eq!(
            headers["impersonate-group"],
            serde_json::json!(["local://g-dev", "system:authenticated"])
        );
        assert_eq!(headers["impersonate-uid"], serde_json::json!(["u-alice"]));
        assert_eq!(headers["impersonate-extra-principalid"], serde_json::json!(["local://u-alice"]));
        assert!(headers.get("cookie").is_none());
        let all = headers.to_string();
        assert!(
            !all.contains("admin") && !all.contains("system:masters") && !all.contains("s3cr3t"),
            "{all}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_an_api_server_restart_that_broke_every_pooled_connection() {
    let s = setup().await;
    let client = s.pki.reqwest(false);
    let url = |q: &str| format!("https://{}/k8s/clusters/c1/api/v1/namespaces/default/pods?{q}", s.proxy);
    let get = |q: &str| client.get(url(q)).bearer_auth(ALICE_TOKEN).timeout(PATIENCE).send();
    // Four reads at once leave four idle connections to the API server in the proxy's pool.
    let (a, b, c, d) = tokio::join!(get("slow"), get("slow"), get("slow"), get("slow"));
    for resp in [a, b, c, d] {
        assert_eq!(resp.unwrap().status(), 200);
    }
    s.restarts.fetch_add(1, Ordering::SeqCst);
    // A write on a broken connection is not sent twice: the caller hears that it broke (502: it may
    // or may not have been carried out).
    let post = client.post(url("")).bearer_auth(ALICE_TOKEN).body("{}").timeout(PATIENCE).send();
    let post = post.await.unwrap();
    assert_eq!(post.status(), 502);
    assert!(post.text().await.unwrap().contains("may or may not have been carried out"));
    // A read is sent once more, on a new connection: no other idle one is any better.
    for n in 0..3 {
        let resp = get(&format!("n={n}")).await.unwrap();
        assert_eq!(resp.status(), 200, "read {n}: {}", resp.text().await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_pass_through_and_hop_by_hop_headers_do_not() {
    let s = setup().await;
    let mut tls = raw_tls(&s.pki, s.proxy).await;
    let body = r#"{"kind":"ConfigMap"}"#;
    let head = send_head(
        &mut tls,
        &format!(
            "POST /k8s/clusters/c1/api/v1/namespaces/a/configmaps HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {ALICE_TOKEN}\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\n\
             Keep-Alive: timeout=5\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut buf = vec![0u8; len];
    tls.read_exact(&mut buf).await.unwrap();
    let seen: serde_json::Value = serde_json::from_slice(&buf).unwrap();
    assert_eq!((seen["method"].as_str(), seen["body"].as_str()), (Some("POST"), Some(body)));
    for hop in ["x-hop", "keep-alive"] {
        assert!(seen["headers"].get(hop).is_none(), "{hop} was forwarded: {}", seen["headers"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_errors_come_back_unchanged() {
    let s = setup().await;
    let resp = s
        .pki
        .reqwest(false)
        .get(format!("https://{}/k8s/clusters/c1/api/v1/namespaces/kube-system/secrets", s.proxy))
        .bearer_auth(ALICE_TOKEN)
        .timeout(PATIENCE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-downstream"], "yes");
    assert!(resp.text().await.unwrap().contains("downstream says no"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_own_refusals_are_status_json() {
    let s = setup().await;
    let client = s.pki.reqwest(false);
    let cases = [
        ("/k8s/clusters/c1/api/v1/pods", None, 401, "Unauthorized"),
        ("/k8s/clusters/c1/api/v1/pods", Some("token-alice:wrong"), 401, "Unauthorized"),
        ("/k8s/clusters/nope/api/v1/pods", Some(ALICE_TOKEN), 404, "NotFound"),
        ("/k8s/clusters/c-down/api/v1/pods", Some(ALICE_TOKEN), 503, "ServiceUnavailable"),
    ];
    for (path, token, code, reason) in cases {
        let mut req = client.get(format!("https://{}{path}", s.proxy)).timeout(PATIENCE);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), code, "{path}");
        let status: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(
            (status["kind"].as_str(), status["reason"].as_str()),
            (Some("Status"), Some(reason)),
            "{path}"
        );
        assert_eq!(status["code"], code);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_arrive_as_they_happen() {
    let s = setup().await;
    let mut resp = s
        .pki
        .reqwest(false)
        .get(format!("https://{}/k8s/clusters/c1/api/v1/namespaces/default/pods?watch=true", s.proxy))
        .bearer_auth(ALICE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The second event is held back upstream until we have seen the first: a buffering proxy hangs here.
    let first = tokio::time::timeout(PATIENCE, resp.chunk()).await.expect("first event not flushed").unwrap();
    assert!(String::from_utf8_lossy(&first.unwrap()).contains("\"n\":1"));
    s.release_watch.notify_one();
    let rest = tokio::time::timeout(PATIENCE, resp.bytes()).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&rest).contains("\"n\":2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_are_spliced_after_101() {
    let s = setup().await;
    let mut tls = raw_tls(&s.pki, s.proxy).await;
    let head = send_head(
        &mut tls,
        &format!(
            "POST /k8s/clusters/c1/api/v1/namespaces/a/pods/p/exec?command=sh HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {ALICE_TOKEN}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
             X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("upgrade: spdy/3.1") && lower.contains("x-stream-protocol-version: v4.channel.k8s.io")
    );
    for msg in [&b"ping"[..], b"second message"] {
        tls.write_all(msg).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(PATIENCE, tls.read_exact(&mut buf)).await.unwrap().unwrap();
        assert_eq!(buf, msg);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_file_records_requests_and_never_the_token() {
    let s = setup().await;
    let client = s.pki.reqwest(false);
    for path in ["/api/v1/namespaces/default/pods/web-0", "/api/v1/namespaces/kube-system/secrets"] {
        client
            .get(format!("https://{}/k8s/clusters/c1{path}", s.proxy))
            .bearer_auth(ALICE_TOKEN)
            .timeout(PATIENCE)
            .send()
            .await
            .unwrap();
    }
    s.audit.flush();
    let text = std::fs::read_to_string(&s.audit_path).unwrap();
    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 2, "{text}");
    assert_eq!(events[0]["user"], "u-alice");
    assert_eq!(events[0]["cluster"], "c1");
    assert_eq!((events[0]["verb"].as_str(), events[0]["name"].as_str()), (Some("get"), Some("web-0")));
    assert_eq!((events[1]["verb"].as_str(), events[1]["status"].as_u64()), (Some("list"), Some(403)));
    assert!(!text.contains("s3cr3t") && !text.contains(UPSTREAM_TOKEN), "{text}");
}
