//! Token lifetimes have a server-wide maximum (`--auth-token-max-ttl`, default 90 days): tokens that
//! asked to live forever (`ttl: 0`, or no TTL at all) or longer get the maximum, whatever issued them.

use crate::common::{ADMIN_PASSWORD, Api, ServerProc};
use serde_json::{Value, json};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

fn start(extra: &[&str]) -> (tempfile::TempDir, ServerProc) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), extra);
    (dir, server)
}

/// Logs in as the admin with this login body's extra fields; the created token object.
async fn login(api: &Api, extra: Value) -> Value {
    let mut body = json!({"username": "admin", "password": ADMIN_PASSWORD});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let a = api.post("/v3-public/localProviders/local?action=login", &body).await;
    assert_eq!(a.code, 201, "{}", a.body);
    a.body
}

async fn api_token(admin: &Api, body: Value) -> Value {
    let a = admin.post("/v3/tokens", &body).await;
    assert_eq!(a.code, 201, "{}", a.body);
    a.body
}

/// The token's TTL, after checking that the expiry a created token reports is consistent with it.
fn ttl_of(token: &Value) -> i64 {
    let ttl = token["spec"]["ttl"].as_i64().unwrap_or(0);
    match token["status"]["expiresAt"].as_str() {
        Some(expires) => {
            let created: jiff::Timestamp =
                token["metadata"]["creationTimestamp"].as_str().unwrap().parse().unwrap();
            let expires: jiff::Timestamp = expires.parse().unwrap();
            assert_eq!(expires.duration_since(created).as_millis(), i128::from(ttl), "{token}");
        }
        // Only the response that creates a token reports its expiry; one that never expires has none.
        None => assert!(ttl == 0 || token.get("token").is_none(), "{token}"),
    }
    ttl
}

#[tokio::test]
async fn tokens_that_ask_to_live_forever_get_the_default_maximum_of_90_days() {
    let (_dir, server) = start(&[]);
    let api = Api::new(&server);
    // The attacks of the issue: a login with `ttl: 0` and `POST /v3/tokens {}`.
    assert_eq!(ttl_of(&login(&api, json!({"ttl": 0})).await), 90 * DAY_MS);
    let admin = api.logged_in("admin", ADMIN_PASSWORD).await;
    assert_eq!(ttl_of(&api_token(&admin, json!({})).await), 90 * DAY_MS);
    assert_eq!(ttl_of(&api_token(&admin, json!({"ttl": 0})).await), 90 * DAY_MS);
    assert_eq!(ttl_of(&api_token(&admin, json!({"ttl": 3650 * DAY_MS})).await), 90 * DAY_MS);
    assert_eq!(ttl_of(&login(&api, json!({"ttl": i64::MAX})).await), 90 * DAY_MS);
    // Shorter lifetimes are kept, and the session default stays 16 hours.
    assert_eq!(ttl_of(&api_token(&admin, json!({"ttl": HOUR_MS})).await), HOUR_MS);
    assert_eq!(ttl_of(&login(&api, json!({})).await), 16 * HOUR_MS);
    let negative = admin.post("/v3/tokens", &json!({"ttl": -1})).await;
    crate::common::assert_status(&negative, 422, "Invalid");
}

#[tokio::test]
async fn a_maximum_of_one_hour_caps_logins_api_and_kubeconfig_tokens() {
    let (_dir, server) = start(&["--auth-token-max-ttl", "1h"]);
    let api = Api::new(&server);
    assert_eq!(ttl_of(&login(&api, json!({})).await), HOUR_MS, "the 16 h session default is capped");
    assert_eq!(ttl_of(&login(&api, json!({"ttl": 0})).await), HOUR_MS);
    assert_eq!(ttl_of(&login(&api, json!({"ttl": 60_000})).await), 60_000);
    let admin = api.logged_in("admin", ADMIN_PASSWORD).await;
    assert_eq!(ttl_of(&api_token(&admin, json!({})).await), HOUR_MS);
    assert_eq!(ttl_of(&api_token(&admin, json!({"ttl": 2 * HOUR_MS})).await), HOUR_MS);

    // Kubeconfig tokens (30 days by default) are capped too.
    assert_eq!(admin.post("/v3/clusters", &json!({"metadata": {"name": "c1"}})).await.code, 201);
    let k = admin.post("/v3/clusters/c1?action=generateKubeconfig", &json!({})).await;
    assert_eq!(k.code, 200, "{}", k.body);
    let tokens = admin.get("/v3/tokens").await.body;
    let kubeconfig: Vec<&Value> =
        tokens["data"].as_array().unwrap().iter().filter(|t| t["spec"]["kind"] == "kubeconfig").collect();
    assert_eq!(kubeconfig.len(), 1, "{tokens}");
    assert_eq!(ttl_of(kubeconfig[0]), HOUR_MS);
}

#[tokio::test]
async fn an_explicit_zero_maximum_allows_tokens_that_never_expire() {
    let (_dir, server) = start(&["--auth-token-max-ttl", "0"]);
    let api = Api::new(&server);
    assert_eq!(ttl_of(&login(&api, json!({"ttl": 0})).await), 0);
    let admin = api.logged_in("admin", ADMIN_PASSWORD).await;
    assert_eq!(ttl_of(&api_token(&admin, json!({})).await), 0);
    assert_eq!(ttl_of(&api_token(&admin, json!({"ttl": 3650 * DAY_MS})).await), 3650 * DAY_MS);
}
