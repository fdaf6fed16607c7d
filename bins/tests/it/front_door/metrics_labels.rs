//! Row 5: request metrics are labelled from a fixed set, so made-up methods cannot grow `/metrics`.

use rand::Rng;
use rand::distr::Alphanumeric;

use super::raw::{Raw, loopback};
use crate::common::{ADMIN_PASSWORD, ServerProc};

/// A made-up method of `len` letters and digits (an HTTP token, so the parser accepts it).
fn random_method(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_do_not_become_metric_series() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &[]);
    let raw = Raw::new(&server);
    // 4 connections × 500 pipelined requests, each with its own 1 KiB method, to a matched route, an
    // unmatched path and the proxy.
    let per_conn = 500;
    let mut tasks = tokio::task::JoinSet::new();
    for conn in 0..4u8 {
        let raw = raw.clone();
        tasks.spawn(async move {
            let mut request = Vec::new();
            for i in 0..per_conn {
                let path = ["/ping", "/no/such/path", "/k8s/clusters/c-x/api"][i % 3];
                let last = if i + 1 == per_conn { "Connection: close\r\n" } else { "" };
                request.extend_from_slice(
                    format!("{} {path} HTTP/1.1\r\nHost: x\r\n{last}\r\n", random_method(1024)).as_bytes(),
                );
            }
            let answers = raw.exchange(loopback(5, conn + 1), &request).await;
            answers.matches("HTTP/1.1 ").count()
        });
    }
    let answered: usize = tasks.join_all().await.into_iter().sum();
    assert_eq!(answered, 4 * per_conn, "every request was answered");

    let metrics = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(server.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap()
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = metrics.lines().filter(|l| l.starts_with("rancher_http_requests_total{")).count();
    eprintln!("/metrics after {answered} made-up methods: {} bytes, {series} request series", metrics.len());
    assert!(metrics.len() < 64 * 1024, "/metrics grew to {} bytes", metrics.len());
    assert!(series < 30, "{series} request series:\n{metrics}");
    assert!(metrics.contains("method=\"other\""), "made-up methods are counted as `other`:\n{metrics}");
    assert!(
        metrics.lines().all(|l| l.len() < 400),
        "no label carries what the client sent:\n{}",
        metrics.lines().find(|l| l.len() >= 400).unwrap_or_default()
    );
}
