//! `rancherctl cluster create NAME` without `--import` (Rancher's "generic" cluster): it returns at
//! once with the import command and the agent's command line, the registration token decoded; the
//! agent started from that printed line joins a `rancher-sim` cluster, which turns active.

use std::time::{Duration, Instant};

use crate::import_support::*;

/// The printed `CATTLE_…=… rancher-agent` line, as the agent's settings.
fn agent_env(out: &str) -> AgentEnv {
    let line = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("CATTLE_SERVER=") && l.contains(" rancher-agent --kubeconfig "))
        .unwrap_or_else(|| panic!("no agent command line in {out}"));
    let var = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} missing in {line}"))
            .to_owned()
    };
    AgentEnv { server: var("CATTLE_SERVER"), checksum: var("CATTLE_CA_CHECKSUM"), token: var("CATTLE_TOKEN") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_create_prints_how_to_join_and_the_printed_agent_line_joins() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let server = Server::start(&dir.path().join("data"), 0, &dir.path().join("server.log"), &[]).await;
    login_admin(&home, &server.url);

    let started = Instant::now();
    let (ok, out) = rancherctl(&home, &["cluster", "create", "plain"]);
    assert!(ok, "{out}");
    assert!(started.elapsed() < Duration::from_secs(30), "create waited {:?}", started.elapsed());
    let url = out
        .split_whitespace()
        .find(|w| w.starts_with("https://") && w.ends_with("_plain.yaml"))
        .unwrap_or_else(|| panic!("no import URL in {out}"))
        .to_owned();
    assert!(out.contains(&format!("kubectl apply -f {url}")), "{out}");
    assert!(out.contains(&format!("curl --insecure -sfL {url} | kubectl apply -f -")), "{out}");
    let env = agent_env(&out);
    // The decoded token and checksum are the ones the manifest hands the in-cluster agent.
    let manifest = insecure_client().get(&url).send().await.unwrap();
    assert_eq!(manifest.status().as_u16(), 200);
    let manifest = manifest.text().await.unwrap();
    assert!(manifest.contains(&format!("\"{}\"", env.checksum)), "checksum not in the manifest");
    use base64::Engine;
    let token_b64 = base64::engine::general_purpose::STANDARD.encode(&env.token);
    assert!(manifest.contains(&format!("token: \"{token_b64}\"")), "token not in the manifest");
    assert_eq!(env.server, server.url);

    // The same again, later.
    let (ok, again) = rancherctl(&home, &["cluster", "import-command", "plain"]);
    assert!(ok, "{again}");
    assert!(again.contains(&format!("kubectl apply -f {url}")), "{again}");
    assert_eq!(agent_env(&again).token, env.token);
    let (ok, e) = rancherctl(&home, &["cluster", "import-command", "missing"]);
    assert!(!ok && e.contains("cluster \"missing\" has no registration token"), "{e}");

    // The printed line, run against a simulated cluster, joins it.
    let sim = rancher_sim::Sim::builder().name("plain-sim").nodes(2).start().await.unwrap();
    let kc = dir.path().join("plain.kubeconfig");
    std::fs::write(&kc, sim.kubeconfig_yaml()).unwrap();
    let agent = start_agent(&env, &kc, &dir.path().join("agent.log"), &[]);
    let row = wait_state(&home, "plain", "active", WAIT).await;
    assert_eq!(row[4], "2", "{row:?}");
    drop(agent);
    sim.shutdown().await;
    server.stop().await;
}
