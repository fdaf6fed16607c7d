use super::*;

#[test]
fn upgrades_are_told_by_both_headers() {
    let mut h = HeaderMap::new();
    assert!(!is_upgrade(&h));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    assert!(!is_upgrade(&h), "Upgrade without Connection: upgrade is not one");
    h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
    assert!(is_upgrade(&h));
}

/// Server `a`'s peers with `b` beside it, and `b`.
fn a_beside_b() -> (Peers, Replica) {
    let peer = Replica { name: "b".into(), url: "https://b:8443".into() };
    let both = vec![Replica { name: "a".into(), url: "https://a:8443".into() }, peer.clone()];
    (Peers::new(Replicas::fixed("a", both), None, None), peer)
}

#[test]
fn a_request_goes_to_the_owner_at_most_twice_unless_served_here() {
    let (peers, peer) = a_beside_b();
    let theirs = (0..100).map(|i| format!("c-{i}")).find(|c| peers.replicas.owner(c) != Owner::Me).unwrap();
    let mut headers = HeaderMap::new();
    assert_eq!(peers.destination(&theirs, &headers, false), Route::Forward(peer.clone()));
    assert_eq!(peers.destination(&theirs, &headers, true), Route::Here, "the agent is connected here");
    headers.insert(FORWARDED_HEADER, HeaderValue::from_static("b"));
    assert_eq!(
        peers.destination(&theirs, &headers, false),
        Route::Forward(peer.clone()),
        "b's view of the owner was not a's (b had not seen itself join): back to b, once"
    );
    headers.insert(FORWARDED_HEADER, HeaderValue::from_static("b, a"));
    assert_eq!(peers.destination(&theirs, &headers, false), Route::Nowhere, "not past {MAX_HOPS} hops");
    assert_eq!(peers.destination(&theirs, &headers, true), Route::Here);
    headers.insert(FORWARDED_HEADER, HeaderValue::from_bytes(b"\xff").unwrap());
    assert_eq!(peers.destination(&theirs, &headers, false), Route::Nowhere, "not text: not forwarded");
}

#[test]
fn a_server_that_has_left_sends_a_request_that_came_back_on_once_more() {
    let (peers, peer) = a_beside_b();
    let mine = (0..100).map(|i| format!("c-{i}")).find(|c| peers.replicas.owner(c) == Owner::Me).unwrap();
    peers.replicas.leave();
    let mut headers = HeaderMap::new();
    assert_eq!(peers.destination(&mine, &headers, false), Route::Forward(peer.clone()), "b owns it now");
    // a sent it to b, which still saw a as the owner and sent it back.
    headers.insert(FORWARDED_HEADER, HeaderValue::from_static("a, b"));
    assert_eq!(
        peers.destination(&mine, &headers, false),
        Route::Later(peer.clone()),
        "a's view will not change: to b again once b has seen a leave"
    );
    headers.insert(FORWARDED_HEADER, HeaderValue::from_static("a, b, a"));
    assert_eq!(peers.destination(&mine, &headers, false), Route::Nowhere, "one hop more, not two");
    headers.insert(FORWARDED_HEADER, HeaderValue::from_static("a, b, a, b, a, b"));
    assert_eq!(forwarders(&headers).unwrap().len(), MAX_HOPS + 1, "the rest is not read");
}

fn get(path: &str) -> Request {
    Request::builder().uri(path).body(Body::empty()).unwrap()
}

/// A peer that refuses the connection is gone: it owns nothing from then on. One that takes the
/// connection and never answers is only slow: it keeps its clusters, and the request comes back
/// to be routed again once the connection has timed out.
#[tokio::test]
async fn a_peer_that_refuses_is_suspected_and_one_that_is_slow_is_not() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let a = Replica { name: "a".into(), url: "https://a:8443".into() };
    // The kernel takes the connection; the TLS handshake gets no answer.
    let slow = Replica { name: "slow".into(), url: format!("https://{}", silent.local_addr().unwrap()) };
    let gone = Replica { name: "gone".into(), url: format!("https://{closed}") };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let replicas = Replicas::fixed("a", vec![a, slow.clone(), gone.clone()]);
    let peers = Peers::new(replicas, None, Some(Arc::new(tls)));
    let owned_by = |name: &str| {
        (0..300)
            .map(|i| format!("c-{i}"))
            .find(|c| matches!(peers.replicas.owner(c), Owner::Peer(p) if p.name == name))
    };
    let (of_slow, of_gone) = (owned_by("slow").unwrap(), owned_by("gone").unwrap());

    let began = tokio::time::Instant::now();
    let sent = peers.forward(&slow, get(&format!("/k8s/clusters/{of_slow}/api"))).await;
    assert!(matches!(sent, Forwarded::Unreachable(_)), "{sent:?}");
    assert!(began.elapsed() >= connector::CONNECT_TIMEOUT, "{:?}", began.elapsed());
    assert_eq!(peers.replicas.owner(&of_slow), Owner::Peer(slow), "a slow peer keeps its clusters");

    let sent = peers.forward(&gone, get(&format!("/k8s/clusters/{of_gone}/api"))).await;
    assert!(matches!(sent, Forwarded::Unreachable(_)), "{sent:?}");
    assert!(owned_by("gone").is_none(), "a peer that refused owns nothing");
    drop(silent);
}

/// A peer over plain HTTP/2 (as between servers started with `--insecure-http`): a watch is
/// answered at once with one event and stays open; any other request after `delay`, with 4 KiB.
async fn peer_answering_after(delay: std::time::Duration) -> Replica {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| async move {
                    if req.uri().query().is_some_and(|q| q.contains("watch=true")) {
                        let event = Ok::<_, std::io::Error>(Bytes::from_static(b"{\"type\":\"ADDED\"}\n"));
                        let events = futures::stream::once(async { event }).chain(futures::stream::pending());
                        return Ok::<_, std::convert::Infallible>(http::Response::new(Body::from_stream(
                            events,
                        )));
                    }
                    tokio::time::sleep(delay).await;
                    Ok(http::Response::new(Body::from(vec![b'x'; 4096])))
                });
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service);
            tokio::spawn(conn);
        }
    });
    Replica { name: "b".into(), url }
}

/// A server that drains ends the watches it relays from their owner (their clients watch again
/// through a server that stays), and passes every other answer on whole, however late it comes: a
/// request it forwarded in its last second waits at the owner for the agent it is sending there.
/// Cut short, that answer was a broken connection, and a balancer in front took the server for a
/// broken one.
#[tokio::test]
async fn a_draining_server_passes_late_answers_on_whole_and_ends_the_watches() {
    use http_body_util::BodyExt as _;
    let peer = peer_answering_after(std::time::Duration::from_millis(300)).await;
    let a = Replica { name: "a".into(), url: "http://a:8443".into() };
    let peers = Arc::new(Peers::new(Replicas::fixed("a", vec![a, peer.clone()]), None, None));

    let Forwarded::Answered(watch) =
        peers.forward(&peer, get("/k8s/clusters/c-1/api/v1/namespaces/default/configmaps?watch=true")).await
    else {
        panic!("the watch was not answered")
    };
    let mut watch = watch.into_body();
    let event = watch.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(event.starts_with(b"{\"type\":\"ADDED\""), "{event:?}");

    let late = tokio::spawn({
        let (peers, peer) = (peers.clone(), peer.clone());
        async move { peers.forward(&peer, get("/k8s/clusters/c-1/api/v1/namespaces/default")).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    peers.handed_over.cancel();

    let rest = tokio::time::timeout(std::time::Duration::from_secs(5), watch.collect()).await;
    assert!(rest.expect("the watch ends when the server drains").is_ok(), "cleanly");
    let Forwarded::Answered(resp) = late.await.unwrap() else { panic!("the late request was not answered") };
    let body = resp.into_body().collect().await.expect("the late answer is not cut").to_bytes();
    assert_eq!(body.len(), 4096, "the late answer arrives whole");
}

#[test]
fn watches_and_followed_logs_through_the_proxy_are_long_running() {
    let long = |m: http::Method, u: &str| is_long_running(&m, &u.parse().unwrap());
    assert!(long(http::Method::GET, "/k8s/clusters/c-1/api/v1/pods?watch=true"));
    assert!(long(http::Method::GET, "/k8s/clusters/c-1/api/v1/namespaces/n/pods/p/log?follow=true"));
    assert!(!long(http::Method::GET, "/k8s/clusters/c-1/api/v1/namespaces/default"));
    assert!(!long(http::Method::POST, "/k8s/clusters/c-1/api/v1/namespaces/default/configmaps"));
    assert!(!long(http::Method::GET, "/v3/clusters?watch=true"), "not a proxied request");
}
