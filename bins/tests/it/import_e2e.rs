//! End to end with real processes: `rancher-server`, two `rancher-sim` clusters, `kubectl apply` of
//! the import manifests, `rancher-agent` processes → both clusters `active` in `rancherctl cluster
//! ls` with the sim's version and node count; the server is killed and restarted and the agents
//! return; one agent is killed and only its cluster turns `unavailable`; a wrong token and a wrong CA
//! checksum are refused with a logged reason.

use std::time::Duration;

use crate::import_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_connect_restart_and_lose_an_agent() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, 0, &dir.path().join("server.log"), &[]).await;
    login_admin(&home, &server.url);

    // Two downstream clusters, each imported through its manifest, each with its agent.
    let sim_a = rancher_sim::Sim::builder().name("sim-a").nodes(4).start().await.unwrap();
    let sim_b = rancher_sim::Sim::builder().name("sim-b").nodes(2).start().await.unwrap();
    let mut agents = Vec::new();
    for (name, sim) in [("imp-a", &sim_a), ("imp-b", &sim_b)] {
        let (ok, out) = rancherctl(&home, &["cluster", "create", name, "--import"]);
        assert!(ok, "{out}");
        let url = out
            .split_whitespace()
            .find(|w| w.starts_with("https://") && w.ends_with(".yaml"))
            .unwrap_or_else(|| panic!("no import URL in {out}"))
            .to_owned();
        assert!(out.contains(&format!("kubectl apply -f {url}")), "{out}");
        assert!(out.contains(&format!("curl --insecure -sfL {url} | kubectl apply -f -")), "{out}");
        let kc = dir.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&kc, sim.kubeconfig_yaml()).unwrap();
        let env = apply_manifest(&url, &kc, dir.path()).await;
        assert_eq!(env.server, server.url);
        let started = tokio::time::Instant::now();
        agents.push((
            name,
            env.clone(),
            kc.clone(),
            start_agent(&env, &kc, &dir.path().join(format!("{name}.log")), &[]),
        ));
        let row = wait_state(&home, name, "active", WAIT).await;
        eprintln!("{name} active after {:?}", started.elapsed());
        assert_eq!(row[2], "imported", "{row:?}");
        assert_eq!(row[3], rancher_sim::DEFAULT_VERSION, "{row:?}");
    }
    // Node counts come from the agents' reports.
    let row_a = wait_state(&home, "imp-a", "active", WAIT).await;
    assert_eq!(row_a[4], "4", "{row_a:?}");
    let row_b = wait_state(&home, "imp-b", "active", WAIT).await;
    assert_eq!(row_b[4], "2", "{row_b:?}");
    let (ok, yaml) = rancherctl(&home, &["cluster", "get", "imp-a", "-o", "yaml"]);
    assert!(
        ok && yaml.contains("gitVersion: v1.") && yaml.contains("apiEndpoint: https://127.0.0.1:"),
        "{yaml}"
    );
    assert!(yaml.contains("type: Connected") && yaml.contains("type: AgentDeployed"), "{yaml}");

    // Kill the server hard and start it again on the same port and data: both agents come back.
    let log2 = dir.path().join("server2.log");
    let port = server.port;
    server.proc.kill9().await;
    let server = Server::start(&data, port, &log2, &[]).await;
    for name in ["imp-a", "imp-b"] {
        eventually(WAIT, &format!("{name}'s agent reconnects"), || {
            let log = read_log(&log2);
            async move { log.contains(&format!("tunnel agent authorized client_key={name}")).then_some(()) }
        })
        .await;
        wait_state(&home, name, "active", WAIT).await;
    }

    // Kill agent a: its cluster becomes unavailable within 30 s; b stays active.
    let (_, _, _, agent_a) = agents.remove(0);
    let killed = tokio::time::Instant::now();
    agent_a.kill9().await;
    wait_state(&home, "imp-a", "unavailable", Duration::from_secs(30)).await;
    eprintln!("imp-a unavailable {:?} after its agent was killed", killed.elapsed());
    assert_eq!(cluster_row(&home, "imp-b").unwrap()[1], "active");

    // A new agent with the same settings brings it back.
    let (name, env, kc, _agent_b) = &agents[0];
    assert_eq!(*name, "imp-b");
    let env_a = {
        let crt = insecure_client()
            .get(format!("{}/v3/clusterregistrationtokens/imp-a:default-token", server.url))
            .bearer_auth(login(&server.url).await)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap();
        AgentEnv { token: crt["status"]["token"].as_str().unwrap().to_owned(), ..env.clone() }
    };
    let kc_a = kc.with_file_name("imp-a.kubeconfig");
    let _agent_a2 = start_agent(&env_a, &kc_a, &dir.path().join("imp-a-2.log"), &[]);
    wait_state(&home, "imp-a", "active", WAIT).await;

    // Wrong token: refused by the server with the reason logged; the agent keeps retrying.
    let wrong = AgentEnv { token: "0".repeat(48), ..env.clone() };
    let mut bad = start_agent(&wrong, kc, &dir.path().join("bad-token.log"), &[]);
    eventually(WAIT, "the server logs the refused token", || {
        let log = read_log(&log2);
        async move { log.contains("unknown or revoked registration token").then_some(()) }
    })
    .await;
    eventually(WAIT, "the agent logs the refusal", || {
        let log = bad.log_text();
        async move { log.contains("server refused the tunnel credentials (HTTP 401)").then_some(()) }
    })
    .await;
    assert!(bad.exit_within(Duration::from_millis(100)).await.is_none(), "it retries, it does not exit");

    // Wrong CA checksum: the agent refuses to connect and exits naming both checksums.
    let wrong_ca = AgentEnv { checksum: "ab".repeat(32), ..env.clone() };
    let mut bad_ca = start_agent(&wrong_ca, kc, &dir.path().join("bad-ca.log"), &[]);
    let st = bad_ca.exit_within(WAIT).await.expect("the agent exits on a CA mismatch");
    assert!(!st.success());
    let log = bad_ca.log_text();
    assert!(log.contains(&"ab".repeat(32)) && log.contains(&env.checksum), "{log}");
    assert!(log.contains("does not match"), "{log}");
    server.stop().await;
    sim_a.shutdown().await;
    sim_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_url_with_a_wrong_token_or_cluster_is_a_404_status() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), 0, &dir.path().join("s.log"), &[]).await;
    let bearer = login(&server.url).await;
    let status = create_imported(&server.url, &bearer, "imp-x").await;
    let url = status["manifestUrl"].as_str().unwrap().to_owned();
    let token = status["token"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("{}/v3/import/{token}_imp-x.yaml", server.url));
    assert_eq!(status["command"], format!("kubectl apply -f {url}"));
    let http = insecure_client();
    assert_eq!(http.get(&url).send().await.unwrap().status().as_u16(), 200);
    // Asked again, the same URL (derived, not stored); another cluster has another token.
    let crt: serde_json::Value = http
        .get(format!("{}/v3/clusterregistrationtokens/imp-x:default-token", server.url))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(crt["status"]["manifestUrl"], url.as_str());
    let again = create_imported(&server.url, &bearer, "imp-y").await;
    assert_ne!(again["token"], status["token"]);
    let mut flipped = token.clone().into_bytes();
    flipped[0] = if flipped[0] == b'a' { b'b' } else { b'a' };
    let flipped = String::from_utf8(flipped).unwrap();
    for bad in [
        format!("{}/v3/import/{flipped}_imp-x.yaml", server.url),
        format!("{}/v3/import/{token}_imp-y.yaml", server.url),
        format!("{}/v3/import/{token}_nope.yaml", server.url),
        format!("{}/v3/import/{token}.yaml", server.url),
    ] {
        let resp = http.get(&bad).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 404, "{bad}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["kind"], "Status", "{body}");
    }
    // The store holds no token.
    server.stop().await;
    let db = std::fs::read(dir.path().join("data/rancher.redb")).unwrap();
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()), "the token is stored in plaintext");
}
