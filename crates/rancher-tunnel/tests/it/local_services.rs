//! In-process services on the agent side: a dial with network `local` reaches the service registered
//! under that name; an unknown name is refused; the policy still governs `tcp`.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use rancher_tunnel::{
    Agent, AgentConfig, Error, LOCAL_NETWORK, LocalService, Metrics, TOKEN_HEADER, TunnelStream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LONG: Duration = Duration::from_secs(30);

/// Answers with `<greeting>` followed by everything the server sent, upper-cased.
struct Shout(&'static str);

#[async_trait::async_trait]
impl LocalService for Shout {
    async fn serve(&self, mut stream: TunnelStream) {
        let mut got = Vec::new();
        if stream.read_to_end(&mut got).await.is_err() {
            return;
        }
        let mut out = self.0.as_bytes().to_vec();
        out.extend(got.to_ascii_uppercase());
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
    }
}

fn agent_with_services(pki: &Pki, url: &str) -> Arc<Agent> {
    let mut cfg = AgentConfig::default();
    cfg.headers.insert(TOKEN_HEADER, TOKEN_A.parse().unwrap());
    cfg.session = test_session_cfg();
    cfg.backoff_initial = Duration::from_millis(100);
    cfg.backoff_max = Duration::from_millis(800);
    let t = transport(pki, url, cfg.session.clone());
    // A policy that allows everything: local services must still be found by name, not by policy.
    let policy = Arc::new(|_: &str, _: &str| true);
    let agent = Agent::new(Arc::new(t), policy, cfg, Metrics::unregistered())
        .unwrap()
        .with_local_service("plan", Arc::new(Shout("plan:")))
        .with_local_service("other", Arc::new(Shout("other:")));
    Arc::new(agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_dial_reaches_the_named_service_and_unknown_names_are_refused() {
    let pki = pki();
    let srv = start_server(&pki, test_session_cfg()).await;
    let a = spawn_agent(agent_with_services(&pki, &srv.url));
    let server = srv.server.clone();
    wait_until("agent session", LONG, || server.has_session("c-a")).await;

    let mut s = srv.server.dial("c-a", LOCAL_NETWORK, "plan").await.unwrap();
    assert_eq!(echo_roundtrip(&mut s, b"hello").await, b"plan:HELLO");
    // Each name its own service; several streams at once.
    let mut s1 = srv.server.dial("c-a", "local", "other").await.unwrap();
    let mut s2 = srv.server.dial("c-a", "local", "plan").await.unwrap();
    assert_eq!(echo_roundtrip(&mut s1, b"x").await, b"other:X");
    assert_eq!(echo_roundtrip(&mut s2, b"y").await, b"plan:Y");

    let err = srv.server.dial("c-a", "local", "nope").await.unwrap_err();
    assert!(matches!(err, Error::DialRefused { .. }), "{err}");
    assert!(err.to_string().contains("nope") && err.to_string().contains("no such local service"), "{err}");

    // The session is intact after the refusal.
    let mut s = srv.server.dial("c-a", "local", "plan").await.unwrap();
    assert_eq!(echo_roundtrip(&mut s, b"again").await, b"plan:AGAIN");

    a.stop.cancel();
    a.task.await.unwrap().unwrap();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_local_services_refuses_local_dials() {
    let pki = pki();
    let srv = start_server(&pki, test_session_cfg()).await;
    let a = spawn_agent(agent(&pki, &srv.url, TOKEN_A, &[]));
    let server = srv.server.clone();
    wait_until("agent session", LONG, || server.has_session("c-a")).await;
    let err = srv.server.dial("c-a", "local", "plan").await.unwrap_err();
    assert!(matches!(err, Error::DialRefused { .. }), "{err}");
    a.stop.cancel();
    srv.stop().await;
}
