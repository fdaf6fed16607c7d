//! Issue 8, row 9: a browser session (the `R_SESS` cookie) works only from the server's own origin,
//! and its state-changing requests must echo the login's `CSRF` cookie in `X-API-CSRF`. The attacks
//! are written by hand over TLS to the real `rancher-server`, as a page on another site would make a
//! browser send them: a WebSocket exec with `Origin: https://evil.example`, a text/plain POST of an
//! action. Requests with a Bearer token are not affected.

use crate::import_support::*;
use crate::proxy_support::*;
use crate::raw_http::*;
use serde_json::json;

/// Logs in the admin as a browser does; returns (the session token, the CSRF cookie's value).
async fn browser_login(env: &Env) -> (String, String) {
    let resp = env
        .http
        .post(format!("{}/v3-public/localProviders/local?action=login", env.server.url))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD, "responseType": "cookie"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let cookies: Vec<String> =
        resp.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let value = |name: &str| {
        cookies.iter().find_map(|c| {
            c.strip_prefix(&format!("{name}=")).map(|v| v.split(';').next().unwrap().to_owned())
        })
    };
    let session = value("R_SESS").unwrap_or_else(|| panic!("no session cookie in {cookies:?}"));
    let csrf = value("CSRF").unwrap_or_default();
    if !csrf.is_empty() {
        let attrs = cookies.iter().find(|c| c.starts_with("CSRF=")).unwrap().to_ascii_lowercase();
        assert!(attrs.contains("secure") && !attrs.contains("httponly"), "pages must read it: {attrs}");
    }
    (session, csrf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sessions_need_the_servers_origin_and_a_csrf_token() {
    let env = Env::start(&[]).await;
    let ca = server_ca(&env.server.url).await;
    let host = authority(&env.server.url);
    let own = format!("https://{host}");
    let (session, csrf) = browser_login(&env).await;
    env.create_pod_directly("victim", "default");
    let exec = format!(
        "/k8s/clusters/{}/api/v1/namespaces/default/pods/victim/exec?command=echo&command=hi&stdout=true",
        env.cluster
    );
    let websocket = |extra: &str| {
        format!(
            "GET {exec} HTTP/1.1\r\nHost: {host}\r\nCookie: R_SESS={session}; CSRF={csrf}\r\n\
             Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\
             {extra}\r\n"
        )
    };
    let refused = |resp: &RawResponse, what: &str, why: &str| {
        assert_eq!(resp.status, 403, "{what}: {resp:?}\n{}", resp.text());
        let status = resp.json();
        assert_eq!((status["kind"].as_str(), status["reason"].as_str()), (Some("Status"), Some("Forbidden")));
        assert!(status["message"].as_str().unwrap().contains(why), "{what}: {status}");
    };

    // A page on evil.example opens an exec WebSocket; the browser attaches the cookie (and, if the
    // page could read it, even the CSRF token).
    let (_s, resp) = open(&env.server.url, &ca, &websocket("Origin: https://evil.example\r\n")).await;
    refused(&resp, "cross-origin WebSocket exec", "cross-origin");
    let evil_with_token = format!("Origin: https://evil.example\r\nX-API-CSRF: {csrf}\r\n");
    let (_s, resp) = open(&env.server.url, &ca, &websocket(&evil_with_token)).await;
    refused(&resp, "cross-origin WebSocket exec with the token", "cross-origin");
    // With no Origin (no browser sends a WebSocket without one) the token is needed.
    let (_s, resp) = open(&env.server.url, &ca, &websocket("")).await;
    refused(&resp, "WebSocket exec without Origin or token", "CSRF");

    // A text/plain form POST of an action (no preflight): cross-origin, or without the token.
    let logout = |extra: &str| {
        format!(
            "POST /v3/tokens?action=logout HTTP/1.1\r\nHost: {host}\r\nCookie: R_SESS={session}; CSRF={csrf}\r\n\
             Content-Type: text/plain\r\nContent-Length: 2\r\n{extra}\r\n{{}}"
        )
    };
    let resp = exchange(&env.server.url, &ca, &logout("Origin: https://evil.example\r\n")).await;
    refused(&resp, "cross-origin logout", "cross-origin");
    let resp = exchange(&env.server.url, &ca, &logout(&format!("Origin: {own}\r\n"))).await;
    refused(&resp, "same-origin logout without the token", "CSRF");
    let resp = exchange(&env.server.url, &ca, &logout("")).await;
    refused(&resp, "logout without Origin or token", "CSRF");
    let resp =
        exchange(&env.server.url, &ca, &logout(&format!("Origin: {own}\r\nX-API-CSRF: guess\r\n"))).await;
    refused(&resp, "logout with a guessed token", "CSRF");
    // The same through the proxy: a cookie POST that would create an object.
    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"forged"}}"#;
    let create = |extra: &str| {
        format!(
            "POST /k8s/clusters/{}/api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: {host}\r\n\
             Cookie: R_SESS={session}; CSRF={csrf}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             {extra}\r\n{cm}",
            env.cluster,
            cm.len()
        )
    };
    let resp = exchange(&env.server.url, &ca, &create("Origin: https://evil.example\r\n")).await;
    refused(&resp, "cross-origin create through the proxy", "cross-origin");
    let resp = exchange(&env.server.url, &ca, &create("")).await;
    refused(&resp, "create through the proxy without the token", "CSRF");
    // The session survived every attempt.
    let token_name = session.split(':').next().unwrap();
    let (code, _) = env.call(reqwest::Method::GET, &format!("/v3/tokens/{token_name}"), &session, None).await;
    assert_eq!(code, 200, "the session was logged out by a forged request");

    // Bearer tokens are no browser session: Origin does not matter to them.
    let resp = env
        .http
        .post(format!("{}/v3/tokens", env.server.url))
        .bearer_auth(&env.admin_token)
        .header("Origin", "https://evil.example")
        .json(&json!({"description": "cli"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);

    // The server's own pages: WebSocket exec from its origin, writes with the token.
    assert!(!csrf.is_empty(), "the login set no CSRF cookie");
    let (_s, resp) = open(&env.server.url, &ca, &websocket(&format!("Origin: {own}\r\n"))).await;
    assert_eq!(resp.status, 101, "same-origin WebSocket exec: {resp:?}\n{}", resp.text());
    let resp =
        exchange(&env.server.url, &ca, &create(&format!("Origin: {own}\r\nX-API-CSRF: {csrf}\r\n"))).await;
    assert_eq!(resp.status, 201, "same-origin create with the token: {}", resp.text());
    let resp =
        exchange(&env.server.url, &ca, &logout(&format!("Origin: {own}\r\nX-API-CSRF: {csrf}\r\n"))).await;
    assert_eq!(resp.status, 200, "same-origin logout with the token: {}", resp.text());
    let (code, _) = env.call(reqwest::Method::GET, &format!("/v3/tokens/{token_name}"), &session, None).await;
    assert_eq!(code, 401, "logged out");
}
