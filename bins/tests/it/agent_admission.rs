//! Agents' sessions are admitted at a bounded rate: with `--agent-connect-rate 1`, four cluster
//! agents starting at once are not all let in at once — the others are answered 503 with
//! Retry-After and come back after their backoff — and all four end up connected.

use std::sync::Arc;

use crate::import_support::*;
use rancher::agent::AgentBuilder;
use rancher::server::Server;
use rancher_core::store::MemoryStore;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_over_the_connect_rate_come_back_after_their_backoff() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .data_dir(dir.path())
        .store(Arc::new(MemoryStore::new()))
        .https_listen("127.0.0.1:0".parse().unwrap())
        .bootstrap_password(ADMIN_PASSWORD)
        .agent_connect_rate(1)
        .build()
        .await
        .unwrap();
    let url = server.url();
    let reg = server.registration();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let running = tokio::spawn(server.run(async move { s.cancelled().await }));

    let bearer = login(&url).await;
    let mut sims = Vec::new();
    let mut agents = Vec::new();
    let names: Vec<String> = (0..4).map(|i| format!("herd-{i}")).collect();
    for name in &names {
        let crt = create_imported(&url, &bearer, name).await;
        let sim = rancher_sim::Sim::builder().name(name.clone()).nodes(1).start().await.unwrap();
        let kc = dir.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&kc, sim.kubeconfig_yaml()).unwrap();
        let token = crt["token"].as_str().unwrap().to_owned();
        agents.push(AgentBuilder::new(url.clone(), reg.ca_checksum(), token).kubeconfig(&kc));
        sims.push(sim);
    }
    let started = tokio::time::Instant::now();
    let tasks: Vec<_> = agents.into_iter().map(|a| tokio::spawn(a.run(stop.clone()))).collect();
    eventually(WAIT, "every agent is connected", || {
        let all = names.iter().all(|n| reg.tunnel().has_session(n));
        async move { all.then_some(()) }
    })
    .await;
    let took = started.elapsed();
    let metrics = insecure_client().get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    let deferred: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rancher_agent_connects_deferred_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rancher_agent_connects_deferred_total in\n{metrics}"));
    assert!(deferred >= 1, "four agents at once, one a second: some were sent away ({deferred})");
    assert!(took >= std::time::Duration::from_secs(2), "not all in the first second: {took:?}");
    eprintln!("4 agents at 1 session/s: all connected after {took:?}, {deferred} requests deferred");

    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    running.await.unwrap().unwrap();
    for sim in sims {
        sim.shutdown().await;
    }
}
