//! Row 7, the other side: the connection timeouts cut only idle and slow-header phases. A quiet watch
//! through the proxy and the agent's tunnel session outlive both timeouts.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use crate::import_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_and_the_agent_tunnel_outlive_the_timeouts() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let log = dir.path().join("server.log");
    let timeouts = ["--http-header-timeout", "1s", "--http-idle-timeout", "2s"];
    let server = Server::start(&dir.path().join("data"), 0, &log, &timeouts).await;
    login_admin(&home, &server.url);
    let sim = rancher_sim::Sim::builder().name("sim-quiet").nodes(1).start().await.unwrap();
    let (ok, out) = rancherctl(&home, &["cluster", "create", "quiet", "--import"]);
    assert!(ok, "{out}");
    let url = out.split_whitespace().find(|w| w.starts_with("https://") && w.ends_with(".yaml")).unwrap();
    let kc = dir.path().join("quiet.kubeconfig");
    std::fs::write(&kc, sim.kubeconfig_yaml()).unwrap();
    let env = apply_manifest(url, &kc, dir.path()).await;
    let _agent = start_agent(&env, &kc, &dir.path().join("agent.log"), &[]);
    wait_state(&home, "quiet", "active", WAIT).await;

    // A watch with nothing to report for 5 s: longer than both timeouts.
    let token = login(&server.url).await;
    let http = insecure_client();
    let base = format!("{}/k8s/clusters/quiet/api/v1/namespaces/default/configmaps", server.url);
    let watch = http.get(format!("{base}?watch=1")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(watch.status(), 200);
    let mut events = watch.bytes_stream();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after-the-quiet"}});
    let created = http.post(&base).bearer_auth(&token).json(&cm).send().await.unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let mut seen = String::new();
    let arrived = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = events.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.expect("the watch stream broke")));
            if seen.contains("after-the-quiet") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(arrived, Ok(true), "the quiet watch delivered the event: {seen}");

    // The agent's session was never cut: it was authorized once.
    let text = read_log(&log);
    assert_eq!(text.matches("tunnel agent authorized client_key=quiet").count(), 1, "{text}");
}
