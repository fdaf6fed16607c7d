//! The authentication proxy end to end with real processes: `rancher-server` (with an audit log), a
//! `rancher-sim` cluster imported through its manifest, a `rancher-agent`, and kubectl 1.27 (SPDY)
//! and 1.33 (WebSocket) using the kubeconfig `rancherctl kubeconfig` prints.

use crate::import_support::*;
use crate::proxy_support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_drives_kubectl_through_the_proxy_and_the_audit_log_records_it() {
    let audit_dir = tempfile::tempdir().unwrap();
    let audit = audit_dir.path().join("audit.log");
    let env = Env::start(&["--audit-log", audit.to_str().unwrap()]).await;
    let kc = env.admin_kubeconfig();
    let yaml = std::fs::read_to_string(&kc).unwrap();
    assert!(yaml.contains(&format!("{}/k8s/clusters/{}", env.server.url, env.cluster)), "{yaml}");
    assert!(yaml.contains("certificate-authority-data"), "{yaml}");
    let manifest = env.dir.path().join("cm.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: greeting}\ndata: {hello: world}\n",
    )
    .unwrap();

    for version in VERSIONS {
        // The kubeconfig carries the server's CA: no --insecure-skip-tls-verify.
        let k = env.kubectl(version, &kc);
        let nodes = k.ok(&["get", "nodes", "--no-headers"]).await;
        assert_eq!(nodes.lines().count(), 4, "{version}: {nodes}");
        assert_eq!(k.ok(&["auth", "can-i", "delete", "nodes"]).await.trim(), "yes");

        // A watch sees a pod created directly on the cluster after it started.
        let mut watch = k.spawn(&["get", "pods", "-n", "default", "-w", "--no-headers"]);
        k.ok(&["get", "namespace", "default", "-o", "name"]).await;
        let pod = format!("direct{}", version.replace('.', ""));
        env.create_pod_directly(&pod, "default");
        read_until(&mut watch, PATIENCE, |l| l.starts_with(&pod)).await;
        let _ = watch.kill().await;

        // exec (SPDY for 1.27, WebSocket for 1.33) and logs -f, spliced and streamed by the proxy.
        k.wait_running(&pod).await;
        assert_eq!(k.ok(&["exec", &pod, "--", "echo", "hi"]).await, "hi\n", "{version}");
        let mut follow = k.spawn(&["logs", "-f", &pod]);
        read_until(&mut follow, PATIENCE, |l| !l.is_empty()).await;
        let _ = follow.kill().await;

        // apply (OpenAPI download, server-side validation) and read back.
        k.ok(&["apply", "-f", manifest.to_str().unwrap()]).await;
        assert_eq!(k.ok(&["get", "configmap", "greeting", "-o", "jsonpath={.data.hello}"]).await, "world");

        // port-forward: the sim's pods echo what they receive.
        let pf_pod = format!("pf{}", version.replace('.', ""));
        k.ok(&["run", &pf_pod, "--image=nginx:1.25", "--port=80", "--restart=Never"]).await;
        k.wait_running(&pf_pod).await;
        let mut pf = k.spawn(&["port-forward", &format!("pod/{pf_pod}"), ":80"]);
        let lines = read_until(&mut pf, PATIENCE, |l| l.contains("Forwarding from 127.0.0.1:")).await;
        let port: u16 = lines
            .last()
            .and_then(|l| l.split("127.0.0.1:").nth(1))
            .and_then(|r| r.split(' ').next())
            .and_then(|p| p.parse().ok())
            .expect("forwarded port");
        {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let msg = format!("ping via kubectl {version}");
            conn.write_all(msg.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; msg.len()];
            tokio::time::timeout(PATIENCE, conn.read_exact(&mut buf)).await.expect("echo in time").unwrap();
            assert_eq!(String::from_utf8_lossy(&buf), msg);
        }
        let _ = pf.kill().await;
    }

    // The audit log has one JSON line per proxied request, naming the admin's user id.
    let token_name = env.admin_token.split(':').next().unwrap();
    let (_, me) =
        env.call(reqwest::Method::GET, &format!("/v3/tokens/{token_name}"), &env.admin_token, None).await;
    let admin_id = me["spec"]["userId"].as_str().expect("the token names its user").to_owned();
    let lines = std::fs::read_to_string(&audit).unwrap();
    let events: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events.iter().any(|e| e["verb"] == "list" && e["resource"] == "nodes" && e["status"] == 200));
    assert!(
        events.iter().any(|e| e["verb"] == "connect" && e["subresource"] == "exec" && e["status"] == 101),
        "{lines}"
    );
    assert!(events.iter().all(|e| e["cluster"] == env.cluster.as_str()));
    assert!(events.iter().any(|e| e["user"] == admin_id.as_str()), "{lines}");

    // No token secret in the server's log or the audit file.
    let kc_token = yaml.lines().find_map(|l| l.trim().strip_prefix("token: ")).unwrap().trim_matches('"');
    for secret in [secret_of(kc_token), secret_of(&env.admin_token)] {
        assert!(!env.server_log().contains(secret), "a token secret is in the server log");
        assert!(!lines.contains(secret), "a token secret is in the audit log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_need_a_binding_and_the_sim_decides_what_they_may_do() {
    let env = Env::start(&[]).await;
    let (bob_id, bob) = env.user("bob").await;
    let secrets = format!("/k8s/clusters/{}/api/v1/secrets", env.cluster);

    // No binding: the proxy refuses with its own Status, forged impersonation headers or not.
    let forged = env
        .http
        .get(format!("{}{secrets}", env.server.url))
        .bearer_auth(&bob)
        .header("Impersonate-User", "admin")
        .header("Impersonate-Group", "system:masters")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let status: serde_json::Value = forged.json().await.unwrap();
    assert_eq!((status["kind"].as_str(), status["reason"].as_str()), (Some("Status"), Some("Forbidden")));
    let (code, body) = env
        .call(
            reqwest::Method::POST,
            &format!("/v3/clusters/{}?action=generateKubeconfig", env.cluster),
            &bob,
            None,
        )
        .await;
    assert_eq!(code, 404, "no kubeconfig for a cluster bob cannot reach: {body}");
    let (code, body) = env.call(reqwest::Method::GET, "/k8s/clusters/nope/api/v1/pods", &bob, None).await;
    assert_eq!((code, body["kind"].as_str()), (404, Some("Status")), "{body}");

    // A project membership lets bob through the proxy; the sim's RBAC decides what he may do.
    let (code, body) = env
        .call(
            reqwest::Method::POST,
            "/v3/projects",
            &env.admin_token,
            Some(&json!({"metadata": {"name": "web"}, "spec": {"clusterName": env.cluster}})),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let prtb = json!({"spec": {
        "projectName": body["id"], "roleTemplateName": "project-member", "userName": bob_id,
    }});
    let (code, body) = env
        .call(reqwest::Method::POST, "/v3/projectroletemplatebindings", &env.admin_token, Some(&prtb))
        .await;
    assert_eq!(code, 201, "{body}");
    let kc = env.kubeconfig_for(&bob, "bob").await;
    for version in VERSIONS {
        let k = env.kubectl(version, &kc);
        let refused = k.fails(&["get", "secrets", "-A"]).await;
        assert!(
            refused.stderr.contains("Forbidden") && refused.stderr.contains(&bob_id),
            "{version}: the sim should refuse {bob_id}: {}",
            refused.stderr
        );
        // kubectl --as sends Impersonate-* headers; the proxy replaces them with bob's identity.
        let forged =
            k.fails(&["--as", "admin", "--as-group", "system:masters", "get", "secrets", "-A"]).await;
        assert!(
            forged.stderr.contains(&bob_id) && !forged.stderr.contains("\"admin\""),
            "{version}: {}",
            forged.stderr
        );
        let can_i = k.fails(&["auth", "can-i", "list", "secrets", "-A"]).await;
        assert_eq!(can_i.stdout.trim(), "no", "{version}: {can_i:?}");
    }
    // The raw request with forged headers: refused by the sim, for bob.
    let resp = env
        .http
        .get(format!("{}{secrets}", env.server.url))
        .bearer_auth(&bob)
        .header("Impersonate-User", "admin")
        .header("Impersonate-Group", "system:masters")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let text = resp.text().await.unwrap();
    assert!(text.contains(&bob_id) && text.contains("secrets"), "{text}");

    // An admin gets cluster-admin downstream (the tenancy controller binds them), and loses it once
    // demoted — without any request of theirs (see lifecycle_e2e.rs).
    let (carol_id, carol) = env.user("carol").await;
    let grb = json!({"metadata": {"name": "carol-admin"}, "spec": {"userName": carol_id, "globalRoleName": "admin"}});
    let (code, body) =
        env.call(reqwest::Method::POST, "/v3/globalrolebindings", &env.admin_token, Some(&grb)).await;
    assert_eq!(code, 201, "{body}");
    let crtb = json!({"spec": {"clusterName": env.cluster, "roleTemplateName": "cluster-member", "userName": carol_id}});
    let (code, body) = env
        .call(reqwest::Method::POST, "/v3/clusterroletemplatebindings", &env.admin_token, Some(&crtb))
        .await;
    assert_eq!(code, 201, "{body}");
    let carol_secrets = format!("/k8s/clusters/{}/api/v1/secrets", env.cluster);
    eventually(WAIT, "the new admin reads every Secret", || {
        let (env, path, carol) = (&env, &carol_secrets, &carol);
        async move {
            let (code, body) = env.call(reqwest::Method::GET, path, carol, None).await;
            (code == 200 && body["kind"] == "SecretList").then_some(())
        }
    })
    .await;
    let sim_kc = env.dir.path().join("sim.kubeconfig");
    let crb = format!("clusterrolebinding/globaladmin-{carol_id}");
    let sim_get = |what: &str| {
        std::process::Command::new(kubectl())
            .arg("--kubeconfig")
            .arg(&sim_kc)
            .args(["get", what, "-o", "name"])
            .output()
            .unwrap()
    };
    assert!(sim_get(&crb).status.success(), "the admin binding exists downstream");
    let (code, body) =
        env.call(reqwest::Method::DELETE, "/v3/globalrolebindings/carol-admin", &env.admin_token, None).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = eventually(WAIT, "a demoted admin keeps no cluster-admin", || {
        let (env, path, carol) = (&env, &carol_secrets, &carol);
        async move {
            let (code, body) = env.call(reqwest::Method::GET, path, carol, None).await;
            (code == 403).then_some((code, body))
        }
    })
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains(&carol_id), "the sim refuses: {body}");
    assert!(!sim_get(&crb).status.success(), "the admin binding is gone downstream");

    // The cluster's agent goes away: the proxy answers 503 Status.
    env.agent.signal("KILL");
    let (code, body) = eventually(WAIT, "503 once the agent is gone", || {
        let env = &env;
        async move {
            let (code, body) = env
                .call(
                    reqwest::Method::GET,
                    &format!("/k8s/clusters/{}/version", env.cluster),
                    &env.admin_token,
                    None,
                )
                .await;
            (code == 503).then_some((code, body))
        }
    })
    .await;
    assert_eq!((code, body["kind"].as_str()), (503, Some("Status")), "{body}");

    // A new agent session: the proxy drops its cached client and works again.
    let kc = env.dir.path().join("sim.kubeconfig");
    let _agent = start_agent(&env.agent_env, &kc, &env.dir.path().join("agent-2.log"), &[]);
    eventually(WAIT, "the proxy works again after the agent reconnected", || {
        let env = &env;
        async move {
            let path = format!("/k8s/clusters/{}/version", env.cluster);
            let (code, body) = env.call(reqwest::Method::GET, &path, &env.admin_token, None).await;
            (code == 200 && body["gitVersion"].is_string()).then_some(())
        }
    })
    .await;
}

/// The tunnel streams the server has opened so far (`/metrics`).
async fn tunnel_streams_opened(env: &Env) -> u64 {
    let text =
        env.http.get(format!("{}/metrics", env.server.url)).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with("rancher_tunnel_streams_total") || l.starts_with("tunnel_streams_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no tunnel stream counter in /metrics:\n{text}")) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reading_again_and_again_reuses_the_proxys_connection_to_the_api_server() {
    let env = Env::start(&[]).await;
    let url = format!("{}/k8s/clusters/{}/api/v1/namespaces/default", env.server.url, env.cluster);
    let get = || env.http.get(&url).bearer_auth(&env.admin_token).send();
    assert_eq!(get().await.unwrap().status(), 200);
    let before = tunnel_streams_opened(&env).await;
    for _ in 0..50 {
        let resp = get().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    let opened = tunnel_streams_opened(&env).await - before;
    // Each new stream is a new TLS handshake with the API server; one client's reads in a row need
    // none (the agent's own reports may open a few).
    assert!(opened <= 3, "50 reads in a row opened {opened} tunnel streams");
}

/// Each watch through the proxy holds a tunnel stream for as long as it runs: three hundred of them
/// (more than a session once allowed at all) all deliver the event, and reads still answer beside
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_watches_through_the_proxy_all_deliver_and_reads_still_answer() {
    const WATCHES: usize = 300;
    let env = Env::start(&[]).await;
    let base = format!("{}/k8s/clusters/{}", env.server.url, env.cluster);
    // A connection per watch, as from many clients (one HTTP/2 connection carries at most 250
    // streams, like kube-apiserver's); no overall timeout: a watch's body lasts as long as it runs.
    let client =
        reqwest::Client::builder().tls_danger_accept_invalid_certs(true).http1_only().build().unwrap();
    let mut watches = Vec::new();
    for i in 0..WATCHES {
        let open = client.get(format!("{base}/api/v1/namespaces?watch=true")).bearer_auth(&env.admin_token);
        let resp = tokio::time::timeout(PATIENCE, open.send())
            .await
            .unwrap_or_else(|_| panic!("watch {i} did not start"))
            .unwrap();
        let status = resp.status();
        assert_eq!(status, 200, "watch {i}: {}", resp.text().await.unwrap_or_default());
        watches.push(resp);
    }
    let read = env.http.get(format!("{base}/api/v1/namespaces/default")).bearer_auth(&env.admin_token);
    assert_eq!(read.send().await.unwrap().status(), 200, "a read beside {WATCHES} watches");

    let (code, body) = env
        .call(
            reqwest::Method::POST,
            &format!("/k8s/clusters/{}/api/v1/namespaces", env.cluster),
            &env.admin_token,
            Some(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "watched-ns"}})),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let seen = futures::future::join_all(watches.into_iter().map(|mut resp| async move {
        let mut got = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            got.extend_from_slice(&chunk);
            if got.windows(12).any(|w| w == b"\"watched-ns\"") {
                return true;
            }
        }
        false
    }));
    let seen = tokio::time::timeout(PATIENCE, seen).await.expect("every watch delivers the event in time");
    let missed = seen.iter().filter(|s| !**s).count();
    assert_eq!(missed, 0, "{missed} of {WATCHES} watches ended without the event");
}
