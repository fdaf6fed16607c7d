//! Issue 8, row 12: at `--audit-level request` the audit log never holds a token or a Secret's data,
//! however the path is spelled, and `RUST_LOG=debug` logs never hold registration tokens (import
//! URLs, agent connect headers) or API tokens. Requests are written by hand over TLS so that no client
//! library cleans the paths first.

use crate::import_support::*;
use crate::proxy_support::*;
use crate::raw_http::*;
use base64::Engine as _;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_and_debug_log_hold_no_secrets() {
    let audit_dir = tempfile::tempdir().unwrap();
    let audit = audit_dir.path().join("audit.log");
    let env =
        Env::start_logging(&["--audit-log", audit.to_str().unwrap(), "--audit-level", "request"], "debug")
            .await;
    let ca = server_ca(&env.server.url).await;
    let host = authority(&env.server.url);
    let base = format!("/k8s/clusters/{}", env.cluster);
    let send = |method: &str, path: &str, body: &str| {
        format!(
            "{method} {base}{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            env.admin_token,
            body.len()
        )
    };
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);

    // A Secret's data sent to every spelling of the secrets collection (and of one Secret).
    let secret_paths = [
        ("POST", "/api/v1/namespaces/default/secrets"),
        ("POST", "/api/v1/namespaces/default/./secrets"),
        ("POST", "/api/v1/namespaces/default//secrets"),
        ("POST", "/api/v1/namespaces/default/%2e/secrets"),
        ("POST", "/api/v1/namespaces/default/%2E%2E/default/secrets"),
        ("POST", "/api/v1/namespaces/default/configmaps/../secrets"),
        ("POST", "/api/v1/namespaces/default/%73ecrets"),
        ("POST", "/api/v1/namespaces%2Fdefault%2Fsecrets"),
        ("POST", "/api/v1/namespaces/default/secrets/"),
        ("POST", "/api/v1/namespaces/default/SECRETS"),
        ("POST", "/API/V1/namespaces/default/secrets"),
        ("POST", "//api/v1/namespaces/default/secrets"),
        ("PUT", "/api/v1/namespaces/default/secrets/s0"),
        ("PATCH", "/api/v1/namespaces/default/secrets/s0"),
        // The path says configmaps; the body says Secret.
        ("POST", "/api/v1/namespaces/default/configmaps"),
    ];
    let mut secrets = Vec::new();
    for (i, (method, path)) in secret_paths.iter().enumerate() {
        let value = format!("secret-value-{i}-zq8");
        let body = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("s{i}"), "namespace": "default"},
            "stringData": {"password": value}, "data": {"key": b64(&value)},
        });
        exchange(&env.server.url, &ca, &send(method, path, &body.to_string())).await;
        secrets.push((format!("{method} {path}"), value.clone()));
        secrets.push((format!("{method} {path} (base64)"), b64(&value)));
    }
    // TokenReview bodies carry a bearer token.
    for (i, path) in [
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "/apis/Authentication.K8s.io/v1/tokenreviews",
        "/apis/authentication.k8s.io/v1/./tokenreviews",
        "/apis/authentication.k8s.io%2Fv1%2Ftokenreviews",
    ]
    .iter()
    .enumerate()
    {
        let token = format!("token-review-{i}-zq8");
        let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}});
        exchange(&env.server.url, &ca, &send("POST", path, &body.to_string())).await;
        secrets.push((format!("POST {path}"), token));
    }
    // A control: an ordinary body is recorded at this level.
    let visible = "configmap-value-zq8";
    let cm =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": visible}});
    let resp = exchange(
        &env.server.url,
        &ca,
        &send("POST", "/api/v1/namespaces/default/configmaps", &cm.to_string()),
    )
    .await;
    assert_eq!(resp.status, 201, "{}", resp.text());

    let text = eventually(WAIT, "the audit log records the control", || {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        async move { text.contains(visible).then_some(text) }
    })
    .await;
    let leaked: Vec<&str> =
        secrets.iter().filter(|(_, s)| text.contains(s.as_str())).map(|(what, _)| what.as_str()).collect();
    assert!(leaked.is_empty(), "the audit log holds the secrets of {leaked:#?}");
    assert!(!text.contains(&env.admin_token), "the audit log holds the admin's token");

    // The debug log: no registration token (the import URL was fetched and the agent connected with
    // it), no API token, no Secret data.
    let log = env.server_log();
    assert!(log.contains("DEBUG"), "the server logs at debug level");
    let registration = &env.agent_env.token;
    let lines =
        |needle: &str| log.lines().filter(|l| l.contains(needle)).take(3).collect::<Vec<_>>().join("\n");
    assert!(
        !log.contains(registration.as_str()),
        "the server log holds the registration token:\n{}",
        lines(registration)
    );
    assert!(!log.contains(secret_of(&env.admin_token)), "the server log holds the admin's token");
    // The agents' connect headers (the registration token, and the params with the cluster's own
    // credential) are never printed.
    assert!(!log.to_ascii_lowercase().contains("x-api-tunnel-"), "{}", lines("unnel-"));
    let leaked: Vec<&str> =
        secrets.iter().filter(|(_, s)| log.contains(s.as_str())).map(|(what, _)| what.as_str()).collect();
    assert!(leaked.is_empty(), "the server log holds the secrets of {leaked:#?}");
}
