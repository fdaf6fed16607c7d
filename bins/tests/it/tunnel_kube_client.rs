//! The server's `kube::Client` through the tunnel: list a sim cluster's nodes via the cluster
//! agent's session, and via a node agent's session (the fallback) once the cluster agent is gone.

use std::sync::Arc;
use std::time::Duration;

use crate::import_support::*;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use rancher::agent::AgentBuilder;
use rancher::server::Server;
use rancher_core::store::MemoryStore;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_nodes_through_the_cluster_agent_then_the_node_agent() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .data_dir(dir.path())
        .store(Arc::new(MemoryStore::new()))
        .https_listen("127.0.0.1:0".parse().unwrap())
        .bootstrap_password(ADMIN_PASSWORD)
        .build()
        .await
        .unwrap();
    let url = server.url();
    let reg = server.registration();
    let stop_server = CancellationToken::new();
    let s = stop_server.clone();
    let running = tokio::spawn(server.run(async move { s.cancelled().await }));

    let sim = rancher_sim::Sim::builder().name("tk").nodes(3).start().await.unwrap();
    let kc = dir.path().join("kc");
    std::fs::write(&kc, sim.kubeconfig_yaml()).unwrap();
    let bearer = login(&url).await;
    let crt = create_imported(&url, &bearer, "tk").await;
    let token = crt["token"].as_str().unwrap().to_owned();

    // No agent yet: a clear error, not a hang.
    let err = reg.cluster_client("tk").err().expect("no client without an agent").to_string();
    assert!(err.contains("no agent has connected"), "{err}");

    let agent = AgentBuilder::new(url.clone(), reg.ca_checksum(), token.clone()).kubeconfig(&kc);
    let stop_cluster_agent = CancellationToken::new();
    let cluster_agent = tokio::spawn(agent.clone().run(stop_cluster_agent.clone()));
    eventually(WAIT, "the cluster agent connects", || {
        let up = reg.tunnel().has_session("tk");
        async move { up.then_some(()) }
    })
    .await;

    let client = reg.cluster_client("tk").unwrap();
    let nodes = Api::<Node>::all(client.clone()).list(&Default::default()).await.unwrap();
    assert_eq!(nodes.items.len(), 3);
    assert_eq!(client.apiserver_version().await.unwrap().git_version, rancher_sim::DEFAULT_VERSION);

    // A node agent joins; then the cluster agent leaves: the client still works through the node.
    let stop_node_agent = CancellationToken::new();
    let node_agent = tokio::spawn(agent.node("tk-worker-1").run(stop_node_agent.clone()));
    eventually(WAIT, "the node agent connects", || {
        let up = reg.tunnel().has_session("tk:tk-worker-1");
        async move { up.then_some(()) }
    })
    .await;
    stop_cluster_agent.cancel();
    cluster_agent.await.unwrap().unwrap();
    eventually(WAIT, "the server notices the cluster agent left", || {
        let gone = !reg.tunnel().has_session("tk");
        async move { gone.then_some(()) }
    })
    .await;
    assert!(reg.is_connected("tk"), "the node agent's session counts as connected");
    let nodes = Api::<Node>::all(reg.cluster_client("tk").unwrap()).list(&Default::default()).await.unwrap();
    assert_eq!(nodes.items.len(), 3, "listed through the node agent's session");

    // With no agent at all the dial waits a bounded time, then fails with a clear error.
    stop_node_agent.cancel();
    node_agent.await.unwrap().unwrap();
    let started = tokio::time::Instant::now();
    let err =
        Api::<Node>::all(reg.cluster_client("tk").unwrap()).list(&Default::default()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(80), "bounded wait");
    let text = format!("{err:?}");
    assert!(text.contains("NoSessionWithin") || text.contains("no tunnel session"), "{text}");

    stop_server.cancel();
    running.await.unwrap().unwrap();
    sim.shutdown().await;
}
