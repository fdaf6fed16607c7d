//! The server's external URL with the real binary: listening on all addresses without
//! `--server-url`, it picks an address agents can dial, says so in its log, puts it in the import
//! manifest and serves a certificate valid for it; a malformed `--server-url` or `--agent-image`
//! stops it at start; plain HTTP to its TLS port gets a readable 400.

use std::process::Command;

use crate::import_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_all_addresses_the_server_names_one_agents_can_dial_and_its_certificate_covers_it() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let (data, log, port) = (dir.path().join("data"), dir.path().join("server.log"), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rancher-server"));
    cmd.arg("--data-dir")
        .arg(&data)
        .args(["--https-listen", &format!("0.0.0.0:{port}")])
        .env("RUST_LOG", "info")
        .env("CATTLE_BOOTSTRAP_PASSWORD", ADMIN_PASSWORD);
    let _server = Proc::spawn(cmd, &log);
    let url = eventually(WAIT, "the server logs the URL it chose", || {
        let text = read_log(&log);
        async move {
            let line = text.lines().find(|l| l.contains("no --server-url"))?;
            let url = line.split("server_url=").nth(1)?.split_whitespace().next()?.to_owned();
            Some(url)
        }
    })
    .await;
    assert!(url.starts_with("https://") && url.ends_with(&format!(":{port}")), "{url}");
    assert!(!url.contains("0.0.0.0"), "{url}");

    // Reached under that name with the server's CA — verified, not --insecure — from this host.
    let ca = eventually(WAIT, "the CA is written", || {
        let ca = std::fs::read_to_string(data.join("tls/ca.crt")).ok();
        async move { ca }
    })
    .await;
    let http = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let ping = eventually(WAIT, "/ping through the chosen URL", || {
        let (http, url) = (http.clone(), url.clone());
        async move { http.get(format!("{url}/ping")).send().await.ok() }
    })
    .await;
    assert_eq!(ping.status().as_u16(), 200);

    // The import manifest points agents at it.
    let bearer = login(&format!("https://127.0.0.1:{port}")).await;
    let status = create_imported(&format!("https://127.0.0.1:{port}"), &bearer, "far").await;
    let manifest_url = status["manifestUrl"].as_str().unwrap();
    assert!(manifest_url.starts_with(&format!("{url}/v3/import/")), "{manifest_url}");
    let manifest = http.get(manifest_url).send().await.unwrap();
    assert_eq!(manifest.status().as_u16(), 200);
    let manifest = manifest.text().await.unwrap();
    assert!(manifest.contains(&format!("value: \"{url}\"")), "{manifest}");

    // Plain HTTP on the TLS port: a short 400 saying what happened.
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/ping")).send().await.unwrap();
    assert_eq!(plain.status().as_u16(), 400);
    assert_eq!(plain.text().await.unwrap(), "Client sent an HTTP request to an HTTPS server.\n");
    // …and TLS still works on the same port afterwards.
    assert_eq!(insecure_client().get(format!("{url}/ping")).send().await.unwrap().status().as_u16(), 200);
}

#[test]
fn a_malformed_server_url_or_agent_image_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value) in [
        ("--server-url", "https://rancher.example.com/rancher"),
        ("--server-url", "rancher.example.com:8443"),
        ("--agent-image", "Rancher Agent"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_rancher-server"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--https-listen", "127.0.0.1:0", flag, value])
            .env("CATTLE_BOOTSTRAP_PASSWORD", ADMIN_PASSWORD)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {value} was accepted");
        assert!(stderr.contains(flag) && stderr.contains(value), "{flag} {value}: {stderr}");
    }
}
