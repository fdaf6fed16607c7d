//! The authorized cluster endpoint end to end with real processes: the sim's authentication webhook
//! points at the `rancher-agent`'s `--ace-listen` endpoint (TLS with a given certificate); a
//! cluster-scoped Rancher token then works with kubectl pointed straight at the sim, because the sim
//! asks the agent, which checks the token against the hash the server synced into the cluster. It
//! keeps working after the server process is stopped; a revoked token stops working once the sync
//! removes its record; a wrong secret with a real token name is refused.

use crate::tenancy_support::*;
use serde_json::json;

const CLUSTER: &str = "acec";

/// kubectl with a kubeconfig holding `token`, straight at the sim.
fn kubectl_with(w: &World, token: &str, args: &[&str]) -> (bool, String) {
    let kc = w.dir.path().join(format!("kc-{}", token.split(':').next().unwrap_or("x")));
    std::fs::write(&kc, w.sim.kubeconfig_for_token(token)).unwrap();
    kubectl_at(&kc, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_scoped_tokens_work_directly_against_the_cluster_even_without_the_server() {
    let (w, _certs) = World::start_with_ace_webhook(CLUSTER).await;

    // Carol, a cluster member, makes two tokens scoped to this cluster.
    let carol = w.user("carol", "carol-password-33").await;
    let (code, b) = w
        .call(
            "POST",
            "/v3/clusterroletemplatebindings",
            Some(json!({"spec": {"clusterName": CLUSTER, "roleTemplateName": "cluster-member", "userName": carol}})),
        )
        .await;
    assert_eq!(code, 201, "{b}");
    let session = {
        let (code, b) = api(
            &w.server.url,
            "POST",
            "/v3-public/localProviders/local?action=login",
            "",
            Some(json!({"username": "carol", "password": "carol-password-33"})),
        )
        .await;
        assert_eq!(code, 201, "{b}");
        b["token"].as_str().unwrap().to_owned()
    };
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (code, t) =
            api(&w.server.url, "POST", "/v3/tokens", &session, Some(json!({"clusterId": CLUSTER}))).await;
        assert_eq!(code, 201, "{t}");
        tokens.push(t["token"].as_str().unwrap().to_owned());
    }
    let (keep, revoke) = (tokens[0].clone(), tokens[1].clone());

    // The authorized cluster endpoint is switched on for the cluster: carol's generated kubeconfig
    // gets a `<cluster>-fqdn` context straight to the cluster, with a cluster-scoped token.
    let (code, mut cluster) = w.call("GET", &format!("/v3/clusters/{CLUSTER}"), None).await;
    assert_eq!(code, 200, "{cluster}");
    cluster["spec"]["localClusterAuthEndpoint"] = json!({"enabled": true});
    let (code, b) = w.call("PUT", &format!("/v3/clusters/{CLUSTER}"), Some(cluster)).await;
    assert_eq!(code, 200, "{b}");
    let (code, b) = api(
        &w.server.url,
        "POST",
        &format!("/v3/clusters/{CLUSTER}?action=generateKubeconfig"),
        &session,
        None,
    )
    .await;
    assert_eq!(code, 200, "{b}");
    let generated = w.dir.path().join("carol.kubeconfig");
    std::fs::write(&generated, b["config"].as_str().unwrap()).unwrap();
    let fqdn = format!("{CLUSTER}-fqdn");
    for context in [None, Some(fqdn.as_str())] {
        eventually(WAIT, &format!("the generated kubeconfig works ({context:?})"), || {
            let mut args = vec!["get", "nodes"];
            if let Some(c) = context {
                args.extend(["--context", c]);
            }
            let (ok, _) = kubectl_at(&generated, &args);
            async move { ok.then_some(()) }
        })
        .await;
    }

    // Straight at the sim: the sim asks the agent's webhook, which knows carol by the synced hash.
    for t in [&keep, &revoke] {
        eventually(WAIT, "the token works directly against the cluster", || {
            let (ok, out) =
                kubectl_with(&w, t, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
            let carol = carol.clone();
            async move { (ok && out.trim() == carol).then_some(()) }
        })
        .await;
    }
    // Carol's downstream RBAC (cluster-member, rendered by the tenancy controller) applies.
    eventually(WAIT, "carol lists nodes directly", || {
        let (ok, _) = kubectl_with(&w, &keep, &["get", "nodes"]);
        async move { ok.then_some(()) }
    })
    .await;
    let (ok, out) = kubectl_with(&w, &keep, &["get", "secrets", "-A"]);
    assert!(!ok && out.contains("Forbidden"), "a cluster member cannot read secrets: {out}");

    // A real token name with a wrong secret, and an unknown name, are refused.
    let name = keep.split(':').next().unwrap();
    for bad in [format!("{name}:wrong-secret-0000000000"), "token-zzzzz:whatever".to_owned()] {
        let (ok, out) = kubectl_with(&w, &bad, &["get", "nodes"]);
        assert!(!ok && (out.contains("Unauthorized") || out.contains("logged in")), "{bad}: {out}");
    }
    // The record downstream holds a hash, never the secret.
    let (ok, out) = w.kubectl(&["-n", "cattle-system", "get", "secret", name, "-o", "json"]);
    assert!(ok, "{out}");
    let secret = keep.split(':').nth(1).unwrap();
    assert!(!out.contains(secret), "the plaintext secret reached the cluster");
    use base64::Engine;
    let record: serde_json::Value = serde_json::from_str(&out).unwrap();
    let hash =
        base64::engine::general_purpose::STANDARD.decode(record["data"]["hash"].as_str().unwrap()).unwrap();
    assert!(String::from_utf8(hash).unwrap().starts_with("sha256$"));

    // Revoking a token removes its record, and the cluster refuses it.
    let revoked_name = revoke.split(':').next().unwrap();
    let (code, b) = api(&w.server.url, "DELETE", &format!("/v3/tokens/{revoked_name}"), &session, None).await;
    assert_eq!(code, 200, "{b}");
    let revoked_at = tokio::time::Instant::now();
    eventually(WAIT, "the revoked token is refused by the cluster", || {
        let (ok, out) = kubectl_with(&w, &revoke, &["get", "nodes"]);
        async move { (!ok && (out.contains("Unauthorized") || out.contains("logged in"))).then_some(()) }
    })
    .await;
    eprintln!("revocation reached the cluster's webhook within {:?}", revoked_at.elapsed());
    let (ok, _) = w.kubectl(&["-n", "cattle-system", "get", "secret", revoked_name]);
    assert!(!ok, "the revoked token's record is gone");

    // The server goes away; the direct path does not need it.
    let World { server, agent, sim, dir, .. } = w;
    let (server_log, agent_log) = (server.proc.log.clone(), agent.log.clone());
    server.stop().await;
    let w_dir = dir;
    let kc = w_dir.path().join("kc-after");
    std::fs::write(&kc, sim.kubeconfig_for_token(&keep)).unwrap();
    for _ in 0..3 {
        let (ok, out) = kubectl_at(&kc, &["get", "nodes"]);
        assert!(ok, "with the server stopped: {out}");
    }
    let (ok, out) = kubectl_at(&kc, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert!(ok && out.trim() == carol, "{out}");
    let (ok, out) = kubectl_at(&generated, &["--context", &fqdn, "get", "nodes"]);
    assert!(ok, "the generated kubeconfig's direct context with the server stopped: {out}");
    let (ok, _) = kubectl_at(&generated, &["--request-timeout", "10s", "get", "nodes"]);
    assert!(!ok, "the context through the stopped server cannot work");
    // No secret in any log.
    for log in [&server_log, &agent_log] {
        let text = read_log(log);
        for t in [&keep, &revoke] {
            assert!(!text.contains(t.split(':').nth(1).unwrap()), "a token secret in {}", log.display());
        }
    }
    drop(agent);
}
