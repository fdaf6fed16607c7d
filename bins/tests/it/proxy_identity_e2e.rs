//! Issue 8, row 1: the identity a proxied request runs as downstream is the proxy's alone. A user with
//! read-only access sends, by hand over TLS to the real `rancher-server`, requests whose `Connection`
//! header names the identity headers (`Impersonate-*`, `Authorization`), plus forged identity headers
//! over HTTP/2 and on exec upgrades; the imported `rancher-sim` cluster must still see that user.

use crate::import_support::*;
use crate::proxy_support::*;
use crate::raw_http::*;
use serde_json::{Value, json};

/// A user whose only membership is `read-only` in a project of the cluster: through the proxy, but
/// allowed nothing beyond viewing that project's namespaces. Returns (user id, token).
async fn read_only_user(env: &Env) -> (String, String) {
    let (id, token) = env.user("reader").await;
    let project = json!({"metadata": {"name": "ro"}, "spec": {"clusterName": env.cluster}});
    let (code, body) =
        env.call(reqwest::Method::POST, "/v3/projects", &env.admin_token, Some(&project)).await;
    assert_eq!(code, 201, "{body}");
    let prtb = json!({"spec": {
        "projectName": body["id"], "roleTemplateName": "read-only", "userName": id,
    }});
    let (code, body) = env
        .call(reqwest::Method::POST, "/v3/projectroletemplatebindings", &env.admin_token, Some(&prtb))
        .await;
    assert_eq!(code, 201, "{body}");
    (id, token)
}

const REVIEW: &str = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;

/// Who the cluster says the caller is, from a SelfSubjectReview answer.
fn who(resp: &RawResponse) -> Value {
    assert!(matches!(resp.status, 200 | 201), "{resp:?}\n{}", resp.text());
    resp.json()["status"]["userInfo"].clone()
}

fn assert_is(user: &Value, id: &str, context: &str) {
    assert_eq!(user["username"], id, "{context}: the cluster saw {user}");
    let groups = user["groups"].to_string();
    assert!(!groups.contains("system:masters"), "{context}: {user}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_named_in_connection_still_reach_the_cluster_over_http1() {
    let env = Env::start(&[]).await;
    let (id, token) = read_only_user(&env).await;
    let ca = server_ca(&env.server.url).await;
    let host = authority(&env.server.url);
    let base = format!("/k8s/clusters/{}", env.cluster);

    // The Connection header naming the identity headers, in the spellings a client might send.
    let tricks = [
        "Connection: impersonate-user\r\nConnection: IMPERSONATE-GROUP, impersonate-extra-principalid, \
         impersonate-extra-username, impersonate-extra-requesttokenid, impersonate-uid, Authorization\r\n",
        "Connection: Impersonate-User, Impersonate-Group, Impersonate-Extra-x, Authorization\r\n",
        "Connection: keep-alive,Impersonate-User ,\tImpersonate-Group\r\n",
        // An upgrade in the Connection header with no Upgrade header: not an upgrade at all.
        "Connection: Upgrade, Impersonate-User, Impersonate-Group\r\n",
    ];
    for trick in tricks {
        let request = format!(
            "POST {base}/apis/authentication.k8s.io/v1/selfsubjectreviews HTTP/1.1\r\nHost: {host}\r\n\
             Authorization: Bearer {token}\r\n{trick}Content-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{REVIEW}",
            REVIEW.len()
        );
        let resp = exchange(&env.server.url, &ca, &request).await;
        assert_is(&who(&resp), &id, trick);
    }

    // What that identity is worth: deleting a pod the reader may only look at, or not even that.
    env.create_pod_directly("victim", "default");
    let request = format!(
        "DELETE {base}/api/v1/namespaces/default/pods/victim HTTP/1.1\r\nHost: {host}\r\n\
         Authorization: Bearer {token}\r\n{}Content-Length: 0\r\n\r\n",
        tricks[0]
    );
    let resp = exchange(&env.server.url, &ca, &request).await;
    assert_eq!(resp.status, 403, "the reader deleted a pod: {resp:?}\n{}", resp.text());
    assert!(resp.text().contains(&id), "the cluster refuses the reader by name: {}", resp.text());
    let kc = env.dir.path().join("sim.kubeconfig");
    let still = std::process::Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(&kc)
        .args(["-n", "default", "get", "pod", "victim", "-o", "name"])
        .output()
        .unwrap();
    assert!(still.status.success(), "the pod is gone: {}", String::from_utf8_lossy(&still.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_identity_headers_never_reach_the_cluster_over_http2_or_on_upgrades() {
    let env = Env::start(&[]).await;
    let (id, token) = read_only_user(&env).await;
    let ca = server_ca(&env.server.url).await;
    let host = authority(&env.server.url);
    let base = format!("/k8s/clusters/{}", env.cluster);

    // HTTP/2: forged identity headers in any case, next to the real credential.
    let h2 = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .post(format!("{}{base}/apis/authentication.k8s.io/v1/selfsubjectreviews", env.server.url))
        .bearer_auth(&token)
        .header("Impersonate-User", "admin")
        .header("impersonate-group", "system:masters")
        .header("IMPERSONATE-UID", "0")
        .header("Impersonate-Extra-Scopes", "everything")
        .header("X-Remote-User", "admin")
        .header("Content-Type", "application/json")
        .body(REVIEW)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert!(resp.status().is_success(), "{}", resp.status());
    let seen: Value = resp.json().await.unwrap();
    let user = &seen["status"]["userInfo"];
    assert_is(user, &id, "HTTP/2");
    assert!(user["extra"].get("scopes").is_none(), "{user}");

    // Upgrades (SPDY and WebSocket exec): the Connection trick, forged headers, and a second
    // Connection header; the cluster must refuse the reader, by name.
    env.create_pod_directly("victim", "default");
    let exec = format!("{base}/api/v1/namespaces/default/pods/victim/exec?command=id&stdout=true");
    let upgrades = [
        "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n",
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n",
    ];
    for upgrade in upgrades {
        let request = format!(
            "GET {exec} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
             Connection: Upgrade, Impersonate-User, Impersonate-Group\r\nConnection: Impersonate-Uid\r\n\
             Impersonate-User: admin\r\nImpersonate-Group: system:masters\r\n{upgrade}\r\n"
        );
        let (_stream, resp) = open(&env.server.url, &ca, &request).await;
        assert_eq!(resp.status, 403, "{upgrade}: the reader got an exec stream: {resp:?}");
        let text = resp.text();
        assert!(text.contains(&id) && !text.contains("\"admin\""), "{upgrade}: {text}");
    }
}
