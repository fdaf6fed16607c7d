//! Identities and authorisation through kubectl: client certificates, the authentication webhook,
//! aggregated default roles, `auth can-i --list`, impersonating groups.

use std::convert::Infallible;

use crate::common::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_carry_user_and_groups() {
    let sim = start_sim(1).await;
    for v in VERSIONS {
        let admin =
            Kubectl::new(v, &sim.kubeconfig_for_client_cert("root", &["system:masters"]).expect("cert"));
        assert!(admin.ok(&["get", "nodes"]).await.contains("control-plane"));
        let dave = Kubectl::new(v, &sim.kubeconfig_for_client_cert("dave", &["devs"]).expect("cert"));
        let err = dave.fails(&["get", "nodes"]).await.stderr;
        assert!(err.contains(r#"User "dave" cannot list resource "nodes""#), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_roles_and_can_i_list() {
    let sim = start_sim(1).await;
    sim.add_token("erin-token", "erin", &[]);
    for v in VERSIONS {
        let k = Kubectl::new(v, &sim.kubeconfig_yaml());
        let ns = format!("team{}", v.replace('.', ""));
        k.ok(&["create", "ns", &ns]).await;
        // `edit` has no rules of its own: they come from the aggregated system:aggregate-to-edit/view.
        let rules = k.ok(&["get", "clusterrole", "edit", "-o", "jsonpath={.rules[*].resources}"]).await;
        assert!(rules.contains("deployments") && rules.contains("pods/exec"), "{rules}");
        k.ok(&["create", "rolebinding", "erin-edit", "--clusterrole=edit", "--user=erin", "-n", &ns]).await;
        let erin = Kubectl::new(v, &sim.kubeconfig_for_token("erin-token"));
        erin.ok(&["create", "deployment", "app", "--image=nginx:1.25", "-n", &ns]).await;
        assert_eq!(erin.ok(&["auth", "can-i", "create", "pods/exec", "-n", &ns]).await.trim(), "yes");
        assert_eq!(erin.run(&["auth", "can-i", "create", "roles", "-n", &ns]).await.stdout.trim(), "no");
        assert_eq!(erin.run(&["auth", "can-i", "get", "pods", "-n", "default"]).await.stdout.trim(), "no");
        let list = erin.ok(&["auth", "can-i", "--list", "-n", &ns]).await;
        assert!(list.contains("deployments.apps") && list.contains("selfsubjectaccessreviews"), "{list}");
        // Admin can impersonate a group; the group's rights apply.
        k.ok(&["create", "rolebinding", "ops-view", "--clusterrole=view", "--group=ops", "-n", &ns]).await;
        let can =
            k.run(&["auth", "can-i", "list", "pods", "-n", &ns, "--as", "frank", "--as-group", "ops"]).await;
        assert_eq!(can.stdout.trim(), "yes", "{can:?}");
        let cannot = k.run(&["auth", "can-i", "list", "pods", "-n", &ns, "--as", "frank"]).await;
        assert_eq!(cannot.stdout.trim(), "no");
    }
}

/// A TokenReview webhook on plain HTTP that knows one token.
async fn webhook() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let review: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let status = if review["spec"]["token"] == "from-webhook" {
                        serde_json::json!({"authenticated": true, "user": {"username": "carol", "uid": "42", "groups": ["system:masters"]}})
                    } else {
                        serde_json::json!({"authenticated": false})
                    };
                    let answer = serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status});
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(answer.to_string()))))
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
            });
        }
    });
    format!("http://{addr}/authenticate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_webhook_decides_unknown_tokens() {
    let url = webhook().await;
    let sim = rancher_sim::Sim::builder().auth_webhook(url, None).start().await.expect("sim");
    for v in VERSIONS {
        let carol = Kubectl::new(v, &sim.kubeconfig_for_token("from-webhook"));
        assert!(carol.ok(&["get", "ns"]).await.contains("default"));
        let stranger = Kubectl::new(v, &sim.kubeconfig_for_token("unknown"));
        let err = stranger.fails(&["get", "ns"]).await.stderr;
        assert!(err.contains("Unauthorized") || err.contains("provide credentials"), "{err}");
    }
}
