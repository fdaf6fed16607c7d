//! Kubeconfigs from `POST /v3/clusters/<id>?action=generateKubeconfig` against the real server and
//! an imported sim: the proxy context works with kubectl; with the authorized cluster endpoint on, a
//! `<cluster>-fqdn` context points at the cluster itself and the token is scoped to the cluster.

use crate::import_support::rancherctl;
use crate::proxy_support::*;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorized_endpoint_gives_a_direct_context_and_a_cluster_scoped_token() {
    let env = Env::start(&["--kubeconfig-token-ttl", "2h"]).await;
    let admin = env.admin_token.clone();
    let path = format!("/v3/clusters/{}", env.cluster);
    let (_, mut cluster) = env.call(Method::GET, &path, &admin, None).await;
    cluster["spec"]["localClusterAuthEndpoint"] = json!({"enabled": true});
    let (code, body) = env.call(Method::PUT, &path, &admin, Some(&cluster)).await;
    assert_eq!(code, 200, "{body}");
    let kc = env.kubeconfig_for(&admin, "ace").await;
    let yaml = std::fs::read_to_string(&kc).unwrap();
    let contexts: Value = serde_saphyr::from_str(&yaml).unwrap();
    let names: Vec<&str> =
        contexts["contexts"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, [env.cluster.clone(), format!("{}-fqdn", env.cluster)], "{yaml}");
    assert_eq!(contexts["clusters"][1]["cluster"]["server"], env.sim.url().trim_end_matches('/'), "{yaml}");
    let token = contexts["users"][0]["user"]["token"].as_str().unwrap().to_owned();
    let (_, t) = env
        .call(Method::GET, &format!("/v3/tokens/{}", token.split(':').next().unwrap()), &admin, None)
        .await;
    assert_eq!(t["spec"]["clusterName"], env.cluster.as_str(), "{t}");
    assert_eq!(t["spec"]["ttl"], 2 * 3600 * 1000, "{t}");
    // Through the server it works (the default context); elsewhere on the server it does not.
    let k = env.kubectl("1.33", &kc);
    assert_eq!(k.ok(&["get", "nodes", "--no-headers"]).await.lines().count(), 4);
    assert_eq!(env.call(Method::GET, "/v3/clusters", &token, None).await.0, 401);

    // rancherctl prints the same kind of kubeconfig, and a clear error for a cluster it cannot see.
    let (ok, yaml) = rancherctl(&env.home, &["kubeconfig", &env.cluster]);
    assert!(ok && yaml.starts_with("apiVersion: v1") && yaml.contains("-fqdn"), "{yaml}");
    let (ok, out) = rancherctl(&env.home, &["kubeconfig", "no-such-cluster"]);
    assert!(!ok && out.contains("not found"), "{out}");
}
