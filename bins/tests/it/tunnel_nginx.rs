//! The server behind nginx (Debian's `/usr/sbin/nginx`, run by the test as a plain process with its
//! own configuration): TLS at nginx with a certificate from the CA the server publishes, WebSocket
//! upgrade headers and long read timeouts. An agent imports a sim cluster through it, and reconnects
//! after nginx is killed and started again.

use std::path::Path;

use crate::import_support::*;
use crate::nginx_support::{NGINX, start_nginx, write_nginx_conf, write_pki};

async fn wait_ping(url: &str) {
    let http = insecure_client();
    eventually(WAIT, &format!("{url}/ping answers"), || {
        let (http, url) = (http.clone(), url.to_owned());
        async move { http.get(format!("{url}/ping")).send().await.ok().filter(|r| r.status().is_success()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_connect_through_nginx_and_reconnect_after_it_restarts() {
    if !Path::new(NGINX).exists() {
        panic!("{NGINX} is missing: install Debian's nginx (apt-get install nginx-light) to run this test");
    }
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("nginx");
    std::fs::create_dir_all(&prefix).unwrap();
    write_pki(&prefix);
    let (server_port, lb_port) = (free_port(), free_port());
    let lb_url = format!("https://127.0.0.1:{lb_port}");
    let server = Server::start(
        &dir.path().join("data"),
        server_port,
        &dir.path().join("server.log"),
        &[
            "--tls-cert",
            prefix.join("tls.crt").to_str().unwrap(),
            "--tls-key",
            prefix.join("tls.key").to_str().unwrap(),
            "--tls-ca",
            prefix.join("ca.crt").to_str().unwrap(),
            "--server-url",
            &lb_url,
        ],
    )
    .await;
    let conf = write_nginx_conf(&prefix, lb_port, &[server.port]);
    let nginx = start_nginx(&prefix, &conf, "nginx-1.log");
    wait_ping(&lb_url).await;

    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    login_admin(&home, &lb_url);
    let bearer = login(&lb_url).await;
    let crt = create_imported(&lb_url, &bearer, "behind-lb").await;
    let manifest_url = crt["manifestUrl"].as_str().unwrap().to_owned();
    assert!(manifest_url.starts_with(&format!("{lb_url}/v3/import/")), "{manifest_url}");

    let sim = rancher_sim::Sim::builder().name("lb").nodes(2).start().await.unwrap();
    let kc = dir.path().join("kc");
    std::fs::write(&kc, sim.kubeconfig_yaml()).unwrap();
    let env = apply_manifest(&manifest_url, &kc, dir.path()).await;
    assert_eq!(env.server, lb_url, "agents are sent to the load balancer");
    let agent = start_agent(&env, &kc, &dir.path().join("agent.log"), &[]);
    let row = wait_state(&home, "behind-lb", "active", WAIT).await;
    assert_eq!(row[4], "2", "{row:?}");
    let access = std::fs::read_to_string(prefix.join("logs/access.log")).unwrap_or_default();
    // nginx logs an upgraded request only when it ends; the agent's other requests show at once.
    assert!(access.contains("GET /v3/settings/cacerts"), "the agent went through nginx:\n{access}");
    assert!(access.contains("POST /v3/connect/report"), "{access}");

    // Kill nginx (every tunnel through it drops), start it again on the same port: the agent returns.
    nginx.kill9().await;
    let _nginx = start_nginx(&prefix, &conf, "nginx-2.log");
    wait_ping(&lb_url).await;
    eventually(WAIT, "the agent reconnects through the new nginx", || {
        let log = agent.log_text();
        async move { (log.matches("tunnel connected").count() >= 2).then_some(()) }
    })
    .await;
    wait_state(&home, "behind-lb", "active", WAIT).await;
    server.stop().await;
    sim.shutdown().await;
}
