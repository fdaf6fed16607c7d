//! Token lifecycle against the real server and an imported sim: the same token checks on `/v3` and
//! on the proxy — expiry, revocation, disabling, deleted or disabled users, cluster scope, Basic and
//! `R_SESS` forms, `lastUsedAt` — and login throttling.

use std::time::Duration;

use crate::import_support::*;
use crate::proxy_support::*;
use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

/// GET `path` with `auth` as the whole `Authorization` header (or a cookie); the status code.
async fn code_with(env: &Env, path: &str, header: (&str, String)) -> u16 {
    env.http
        .get(format!("{}{path}", env.server.url))
        .header(header.0, header.1)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn new_token(env: &Env, bearer: &str, body: Value) -> (String, Value) {
    let (code, t) = env.call(Method::POST, "/v3/tokens", bearer, Some(&body)).await;
    assert_eq!(code, 201, "{t}");
    (t["token"].as_str().unwrap().to_owned(), t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_on_every_request_by_v3_and_the_proxy_alike() {
    let env = Env::start(&[]).await;
    let version = format!("/k8s/clusters/{}/version", env.cluster);
    let admin = env.admin_token.clone();
    let bearer = |t: &str| ("authorization", format!("Bearer {t}"));

    // Bearer, Basic and the R_SESS cookie are all accepted, on /v3 and on the proxy.
    let basic = base64::engine::general_purpose::STANDARD.encode(&admin);
    for header in
        [bearer(&admin), ("authorization", format!("Basic {basic}")), ("cookie", format!("R_SESS={admin}"))]
    {
        assert_eq!(code_with(&env, &version, header.clone()).await, 200, "{}", header.0);
        assert_eq!(code_with(&env, "/v3/clusters", header.clone()).await, 200, "{}", header.0);
    }
    assert_eq!(code_with(&env, &version, bearer(&format!("{admin}x"))).await, 401);
    assert_eq!(code_with(&env, &version, ("authorization", "Bearer nonsense".into())).await, 401);

    // A token with a 3 s TTL works, then is refused by both.
    let (short, _) = new_token(&env, &admin, json!({"ttl": 3000})).await;
    assert_eq!(code_with(&env, &version, bearer(&short)).await, 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(code_with(&env, &version, bearer(&short)).await, 401);
    assert_eq!(code_with(&env, "/v3/clusters", bearer(&short)).await, 401);

    // Revocation and disabling take effect on the next request.
    let (revoked, t) = new_token(&env, &admin, json!({})).await;
    assert_eq!(code_with(&env, &version, bearer(&revoked)).await, 200);
    let name = t["metadata"]["name"].as_str().unwrap().to_owned();
    assert_eq!(env.call(Method::DELETE, &format!("/v3/tokens/{name}"), &admin, None).await.0, 200);
    assert_eq!(code_with(&env, &version, bearer(&revoked)).await, 401);
    let (disabled, t) = new_token(&env, &admin, json!({})).await;
    let name = t["metadata"]["name"].as_str().unwrap().to_owned();
    let (code, body) = env
        .call(Method::PUT, &format!("/v3/tokens/{name}"), &admin, Some(&json!({"spec": {"enabled": false}})))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(code_with(&env, &version, bearer(&disabled)).await, 401);
    assert_eq!(code_with(&env, "/v3/clusters", bearer(&disabled)).await, 401);

    // A cluster-scoped token works for its cluster only, and on /v3 only to read itself.
    let (code, body) = env
        .call(Method::POST, "/v3/clusters", &admin, Some(&json!({"metadata": {"name": "other"}, "spec": {}})))
        .await;
    assert_eq!(code, 201, "{body}");
    let (scoped, t) = new_token(&env, &admin, json!({"clusterId": env.cluster})).await;
    let name = t["metadata"]["name"].as_str().unwrap().to_owned();
    assert_eq!(code_with(&env, &version, bearer(&scoped)).await, 200);
    assert_eq!(code_with(&env, "/k8s/clusters/other/version", bearer(&scoped)).await, 401);
    assert_eq!(code_with(&env, "/v3/clusters", bearer(&scoped)).await, 401);
    assert_eq!(code_with(&env, &format!("/v3/tokens/{name}"), bearer(&scoped)).await, 200);
    // It cannot widen itself.
    let (code, _) = env
        .call(
            Method::PUT,
            &format!("/v3/tokens/{name}"),
            &scoped,
            Some(&json!({"spec": {"clusterName": ""}})),
        )
        .await;
    assert_eq!(code, 401);
    let (code, body) = env
        .call(Method::PUT, &format!("/v3/tokens/{name}"), &admin, Some(&json!({"spec": {"clusterName": ""}})))
        .await;
    assert_eq!((code, body["spec"]["clusterName"].as_str()), (200, Some(env.cluster.as_str())), "{body}");
    // An unscoped token reaches the other cluster: known but not connected is 503; unknown is 404.
    let (code, body) = env.call(Method::GET, "/k8s/clusters/other/version", &admin, None).await;
    assert_eq!((code, body["kind"].as_str()), (503, Some("Status")), "{body}");
    let (code, body) = env.call(Method::GET, "/k8s/clusters/gone/version", &admin, None).await;
    assert_eq!((code, body["kind"].as_str()), (404, Some("Status")), "{body}");

    // A disabled user's tokens stop working; re-enabled, they work again.
    let (bob_id, bob) = env.user("bob").await;
    let crtb = json!({"spec": {"clusterName": env.cluster, "roleTemplateName": "cluster-member", "userName": bob_id}});
    assert_eq!(env.call(Method::POST, "/v3/clusterroletemplatebindings", &admin, Some(&crtb)).await.0, 201);
    assert_eq!(code_with(&env, &version, bearer(&bob)).await, 200);
    let (_, mut user) = env.call(Method::GET, &format!("/v3/users/{bob_id}"), &admin, None).await;
    user["spec"]["enabled"] = false.into();
    let (code, body) = env.call(Method::PUT, &format!("/v3/users/{bob_id}"), &admin, Some(&user)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(code_with(&env, &version, bearer(&bob)).await, 401);
    assert_eq!(code_with(&env, "/v3/tokens", bearer(&bob)).await, 401);
    // Deleted: the same.
    assert_eq!(env.call(Method::DELETE, &format!("/v3/users/{bob_id}"), &admin, None).await.0, 200);
    assert_eq!(code_with(&env, &version, bearer(&bob)).await, 401);

    // lastUsedAt is recorded (in the background, once a minute at most).
    let admin_name = admin.split(':').next().unwrap().to_owned();
    eventually(WAIT, "lastUsedAt recorded", || {
        let env = &env;
        let path = format!("/v3/tokens/{admin_name}");
        async move {
            let (_, t) = env.call(Method::GET, &path, &env.admin_token, None).await;
            t["status"]["lastUsedAt"].as_str().map(str::to_owned)
        }
    })
    .await;

    // Kubeconfig tokens: kind kubeconfig, 30 days by default.
    let (code, out) = env
        .call(Method::POST, &format!("/v3/clusters/{}?action=generateKubeconfig", env.cluster), &admin, None)
        .await;
    assert_eq!(code, 200, "{out}");
    let yaml = out["config"].as_str().unwrap();
    let kc_token = yaml.lines().find_map(|l| l.trim().strip_prefix("token: ")).unwrap().trim_matches('"');
    let kc_name = kc_token.split(':').next().unwrap();
    let (_, t) = env.call(Method::GET, &format!("/v3/tokens/{kc_name}"), &admin, None).await;
    assert_eq!(t["spec"]["kind"], "kubeconfig", "{t}");
    assert_eq!(t["spec"]["ttl"], 30 * 24 * 3600 * 1000_i64, "{t}");
    assert!(t["status"].get("hash").is_none(), "{t}");
    assert_eq!(code_with(&env, &version, bearer(kc_token)).await, 200);

    // None of these secrets reached the server's log.
    let log = env.server_log();
    for t in [&admin, &short, &revoked, &disabled, &scoped, &bob, &kc_token.to_owned()] {
        assert!(!log.contains(secret_of(t)), "a token secret is in the server log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_slowed_and_do_not_reveal_who_exists() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), 0, &dir.path().join("s.log"), &[]).await;
    let http = insecure_client();
    let login_url = format!("{}/v3-public/localProviders/local?action=login", server.url);
    let attempt = |user: &'static str, password: &'static str| {
        let (http, url) = (http.clone(), login_url.clone());
        async move {
            let resp =
                http.post(url).json(&json!({"username": user, "password": password})).send().await.unwrap();
            let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            (resp.status().as_u16(), retry, resp.json::<Value>().await.unwrap())
        }
    };
    let (unknown_code, _, unknown) = attempt("nobody", "whatever-password").await;
    let (wrong_code, _, wrong) = attempt("admin", "wrong-password-1").await;
    assert_eq!((unknown_code, wrong_code), (401, 401));
    assert_eq!(
        unknown["message"], wrong["message"],
        "the same answer for an unknown user and a wrong password"
    );
    for _ in 0..4 {
        assert_eq!(attempt("admin", "wrong-password-1").await.0, 401);
    }
    // Five failures: locked out, even with the right password, with a Retry-After.
    let (code, retry, body) = attempt("admin", ADMIN_PASSWORD).await;
    assert_eq!(code, 429, "{body}");
    assert_eq!((body["kind"].as_str(), body["reason"].as_str()), (Some("Status"), Some("TooManyRequests")));
    let secs: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&secs), "{secs}");
    // After the delay the right password works, and resets the count.
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (code, _, body) = attempt("admin", ADMIN_PASSWORD).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(attempt("admin", "wrong-password-1").await.0, 401);
    assert_eq!(attempt("admin", ADMIN_PASSWORD).await.0, 201);
    server.stop().await;
}
