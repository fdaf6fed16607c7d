//! A cluster whose agent goes away, with real processes: requests through `/k8s/clusters/<id>` answer
//! a Kubernetes `Status` 503 at once (not after a downstream timeout), whether the agent was killed
//! or stopped; an agent stopped with SIGTERM closes its session at once, so the server records the
//! cluster as disconnected within a couple of seconds; a new agent brings it back.

use std::time::Duration;

use crate::import_support::*;
use serde_json::Value;

/// Proxied `GET /api/v1/namespaces` of `cluster`: (code, body, how long it took).
async fn list_namespaces(url: &str, bearer: &str, cluster: &str) -> (u16, Value, Duration) {
    let started = tokio::time::Instant::now();
    let resp = insecure_client()
        .get(format!("{url}/k8s/clusters/{cluster}/api/v1/namespaces"))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (code, body, started.elapsed())
}

/// The status of the cluster's `Connected` condition.
async fn connected(url: &str, bearer: &str, cluster: &str) -> Option<String> {
    let c: Value = insecure_client()
        .get(format!("{url}/v3/clusters/{cluster}"))
        .bearer_auth(bearer)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    c["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Connected")
        .and_then(|c| c["status"].as_str().map(str::to_owned))
}

fn assert_unavailable_at_once(what: &str, (code, body, took): (u16, Value, Duration)) {
    assert_eq!(code, 503, "{what}: {body}");
    assert_eq!((body["kind"].as_str(), body["code"].as_u64()), (Some("Status"), Some(503)), "{what}: {body}");
    assert!(took < Duration::from_secs(1), "{what}: the 503 took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_whose_agent_left_answers_503_at_once() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), 0, &dir.path().join("server.log"), &[]).await;
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    login_admin(&home, &server.url);
    let bearer = login(&server.url).await;
    let sim = rancher_sim::Sim::builder().name("gone").nodes(1).start().await.unwrap();
    let status = create_imported(&server.url, &bearer, "gone").await;
    let kc = dir.path().join("gone.kubeconfig");
    std::fs::write(&kc, sim.kubeconfig_yaml()).unwrap();
    let env = apply_manifest(status["manifestUrl"].as_str().unwrap(), &kc, dir.path()).await;

    // Connected, and used through the proxy (so a client to it is cached, with pooled connections).
    let agent = start_agent(&env, &kc, &dir.path().join("agent-1.log"), &[]);
    wait_state(&home, "gone", "active", WAIT).await;
    let (code, body, _) = list_namespaces(&server.url, &bearer, "gone").await;
    assert_eq!(code, 200, "{body}");

    // Killed: the next request answers at once.
    agent.kill9().await;
    assert_unavailable_at_once("after kill -9", list_namespaces(&server.url, &bearer, "gone").await);
    assert_unavailable_at_once("asked again", list_namespaces(&server.url, &bearer, "gone").await);

    // A new agent brings it back; SIGTERM then closes its session at once.
    let mut agent = start_agent(&env, &kc, &dir.path().join("agent-2.log"), &[]);
    eventually(WAIT, "the proxy reaches the cluster again", || {
        let (url, bearer) = (server.url.clone(), bearer.clone());
        async move { (list_namespaces(&url, &bearer, "gone").await.0 == 200).then_some(()) }
    })
    .await;
    assert_eq!(connected(&server.url, &bearer, "gone").await.as_deref(), Some("True"));
    let stopped = tokio::time::Instant::now();
    agent.signal("TERM");
    let st = agent.exit_within(Duration::from_secs(5)).await.expect("the agent exits promptly on SIGTERM");
    assert!(st.success(), "{st}: {}", agent.log_text());
    eventually(Duration::from_secs(2), "the server records the cluster as disconnected", || {
        let (url, bearer) = (server.url.clone(), bearer.clone());
        async move { (connected(&url, &bearer, "gone").await.as_deref() == Some("False")).then_some(()) }
    })
    .await;
    eprintln!("disconnected {:?} after SIGTERM", stopped.elapsed());
    assert_unavailable_at_once("after SIGTERM", list_namespaces(&server.url, &bearer, "gone").await);
    server.stop().await;
    sim.shutdown().await;
}
