//! The management API over HTTPS against the real `rancher-server` binary.

use crate::common::{ADMIN_PASSWORD, Api, ServerProc, assert_status};
use serde_json::{Value, json};

fn start() -> (tempfile::TempDir, ServerProc) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &[]);
    (dir, server)
}

async fn cluster_names(admin: &Api) -> Vec<String> {
    let a = admin.get("/v3/clusters").await;
    assert_eq!(a.code, 200, "{}", a.body);
    a.body["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn tls_certificate_verifies_against_the_published_cacerts() {
    let (_dir, server) = start();
    crate::common::install_crypto();
    // Fetch the setting without trusting anything, then trust only what it says.
    let insecure = reqwest::Client::builder().tls_danger_accept_invalid_certs(true).build().unwrap();
    let setting: Value = insecure
        .get(format!("{}/v3/settings/cacerts", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(setting["id"], "cacerts");
    let pem = setting["value"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let pinned = crate::common::client(pem);
    let pong = pinned.get(format!("{}/ping", server.url)).send().await.unwrap();
    assert_eq!(pong.text().await.unwrap(), "pong");
    // A client that trusts only the platform roots refuses the server.
    let strict = reqwest::Client::builder().build().unwrap();
    assert!(strict.get(format!("{}/ping", server.url)).send().await.is_err());
    // HTTP/2 is negotiated over ALPN.
    let h2 = pinned.get(format!("{}/healthz", server.url)).send().await.unwrap();
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let (_dir, server) = start();
    let api = Api::new(&server);
    assert_eq!(api.get("/healthz").await.code, 200);
    assert_eq!(api.get("/readyz").await.code, 200);
    let admin = api.logged_in("admin", ADMIN_PASSWORD).await;
    admin.get("/v3/clusters").await;
    let m = api.get("/metrics").await;
    let text = m.body.as_str().unwrap();
    assert!(text.contains("rancher_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/v3/clusters\""), "{text}");
    assert!(text.contains("rancher_store_operation_duration_seconds"), "{text}");
}

#[tokio::test]
async fn login_gives_a_token_once_and_wrong_passwords_get_401() {
    let (_dir, server) = start();
    let api = Api::new(&server);
    let ok = api.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(ok.code, 201, "{}", ok.body);
    let token = ok.body["token"].as_str().unwrap();
    assert!(token.starts_with("token-") && token.contains(':'));
    assert_eq!(ok.body["type"], "token");
    assert!(ok.body["status"].get("hash").is_none(), "the hash is never returned: {}", ok.body);

    let wrong = api.login("admin", "wrong-password-123").await;
    assert_status(&wrong, 401, "Unauthorized");
    let unknown = api.login("nobody", "wrong-password-123").await;
    assert_status(&unknown, 401, "Unauthorized");
    assert_eq!(wrong.body["message"], unknown.body["message"], "no hint whether the user exists");

    // The token works as Bearer, Basic and cookie; listing tokens never shows hashes.
    let (name, secret) = token.split_once(':').unwrap();
    let basic = api.send(api.http.get(format!("{}/v3/tokens", api.url)).basic_auth(name, Some(secret))).await;
    assert_eq!(basic.code, 200, "{}", basic.body);
    for t in basic.body["data"].as_array().unwrap() {
        assert!(t["status"].get("hash").is_none(), "{t}");
        assert!(!t.to_string().contains(secret));
    }
    let cookie = api
        .send(api.http.get(format!("{}/v3/clusters", api.url)).header("cookie", format!("R_SESS={token}")))
        .await;
    assert_eq!(cookie.code, 200);
    let none = api.get("/v3/clusters").await;
    assert_status(&none, 401, "Unauthorized");
}

#[tokio::test]
async fn bad_input_is_refused_with_a_status_and_nothing_changes() {
    let (_dir, server) = start();
    let api = Api::new(&server);
    let admin = api.logged_in("admin", ADMIN_PASSWORD).await;
    let created = admin.post("/v3/clusters", &json!({"metadata": {"name": "demo"}})).await;
    assert_eq!(created.code, 201, "{}", created.body);
    assert_eq!(created.body["id"], "demo");
    assert_eq!(created.body["type"], "cluster");
    assert_eq!(created.body["spec"]["displayName"], "demo", "displayName defaults to the name");
    let before = admin.get("/v3/clusters/demo").await.body;
    let url = |p: &str| format!("{}{p}", admin.url);

    // Malformed JSON → 400.
    let a = admin
        .send(
            admin
                .http
                .post(url("/v3/clusters"))
                .header("content-type", "application/json")
                .body("{\"metadata\":"),
        )
        .await;
    assert_status(&a, 400, "BadRequest");
    // Wrong content type → 415.
    let a = admin
        .send(admin.http.post(url("/v3/clusters")).header("content-type", "text/yaml").body("metadata: {}"))
        .await;
    assert_status(&a, 415, "UnsupportedMediaType");
    // Unknown kind → 404.
    let a = admin.get("/v3/widgets").await;
    assert_status(&a, 404, "NotFound");
    let a = admin.post("/v3/widgets", &json!({})).await;
    assert_status(&a, 404, "NotFound");
    // A name that is not a DNS-1123 label → 422 naming metadata.name.
    let a = admin.post("/v3/clusters", &json!({"metadata": {"name": "Not_A_Label"}})).await;
    assert_status(&a, 422, "Invalid");
    assert_eq!(a.body["details"]["causes"][0]["field"], "metadata.name", "{}", a.body);
    // Over the size limit → 413.
    let huge = json!({"metadata": {"name": "huge"}, "spec": {"description": "x".repeat(2 << 20)}});
    let a = admin.post("/v3/clusters", &huge).await;
    assert_status(&a, 413, "RequestEntityTooLarge");
    // A stale resourceVersion → 409. The cluster controller writes the new cluster's status in the
    // background, so the good update re-reads and retries on Conflict like any client would; the version
    // it replaced is then stale.
    let mut replaced = before.clone();
    let mut after_first = None;
    for _ in 0..20 {
        let mut first = replaced.clone();
        first["spec"]["description"] = "first".into();
        let a = admin.put("/v3/clusters/demo", &first).await;
        if a.code == 200 {
            after_first = Some(a.body.clone());
            break;
        }
        assert_status(&a, 409, "Conflict");
        replaced = admin.get("/v3/clusters/demo").await.body;
    }
    let after_first = after_first.expect("the update succeeds once it carries the current version");
    let mut stale = replaced.clone();
    stale["spec"]["description"] = "stale".into();
    let a = admin.put("/v3/clusters/demo", &stale).await;
    assert_status(&a, 409, "Conflict");
    // PUT with a body naming another object → 400.
    let mut other = after_first.clone();
    other["metadata"]["name"] = "other".into();
    assert_status(&admin.put("/v3/clusters/demo", &other).await, 400, "BadRequest");
    // Duplicate → 409 AlreadyExists.
    assert_status(
        &admin.post("/v3/clusters", &json!({"metadata": {"name": "demo"}})).await,
        409,
        "AlreadyExists",
    );

    // Nothing stored changed beyond the one good update.
    assert_eq!(cluster_names(&admin).await, vec!["demo".to_owned()]);
    let now = admin.get("/v3/clusters/demo").await.body;
    assert_eq!(now["spec"]["description"], "first");
    // Only spec writes bump the generation (the controller's status writes do not): no rejected write landed.
    assert_eq!(now["metadata"]["generation"], after_first["metadata"]["generation"]);

    // A deleted user's token → 401.
    let u =
        admin.post("/v3/users", &json!({"spec": {"username": "bob", "password": "bob-password-1234"}})).await;
    assert_eq!(u.code, 201, "{}", u.body);
    let bob = api.logged_in("bob", "bob-password-1234").await;
    assert_eq!(bob.get("/v3/tokens").await.code, 200);
    let id = u.body["id"].as_str().unwrap();
    assert_eq!(admin.delete(&format!("/v3/users/{id}")).await.code, 200);
    assert_status(&bob.get("/v3/tokens").await, 401, "Unauthorized");
}

#[tokio::test]
async fn global_roles_decide_who_may_do_what() {
    let (_dir, server) = start();
    let api = Api::new(&server);
    let admin = api.logged_in("admin", ADMIN_PASSWORD).await;
    // Passwords are checked for strength and never returned.
    let weak = admin.post("/v3/users", &json!({"spec": {"username": "carol", "password": "short"}})).await;
    assert_status(&weak, 422, "Invalid");
    assert_eq!(weak.body["details"]["causes"][0]["field"], "spec.password");
    let u = admin
        .post("/v3/users", &json!({"spec": {"username": "carol", "password": "carol-password-99"}}))
        .await;
    assert_eq!(u.code, 201, "{}", u.body);
    let carol_id = u.body["id"].as_str().unwrap().to_owned();
    assert!(carol_id.starts_with("u-"), "{carol_id}");
    assert!(u.body["spec"].get("password").is_none(), "{}", u.body);
    let dup = admin
        .post("/v3/users", &json!({"spec": {"username": "carol", "password": "carol-password-99"}}))
        .await;
    assert_status(&dup, 409, "AlreadyExists");

    let carol = api.logged_in("carol", "carol-password-99").await;
    // A standard user cannot list users, but sees herself; the admin sees everyone.
    assert_status(&carol.get("/v3/users").await, 403, "Forbidden");
    assert_eq!(carol.get(&format!("/v3/users/{carol_id}")).await.code, 200);
    let all = admin.get("/v3/users").await;
    assert_eq!(all.code, 200);
    let names: Vec<&str> = all.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["spec"]["username"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"admin") && names.contains(&"carol"), "{names:?}");
    assert!(all.body["data"].as_array().unwrap().iter().all(|u| u["spec"].get("password").is_none()));
    // The standard user may create clusters and read role templates, but not create global roles.
    assert_eq!(carol.post("/v3/clusters", &json!({"metadata": {"name": "carols"}})).await.code, 201);
    assert_eq!(carol.get("/v3/roletemplates").await.code, 200);
    assert_status(
        &carol.post("/v3/globalroles", &json!({"metadata": {"name": "x"}})).await,
        403,
        "Forbidden",
    );
    // She owns the cluster she made (issue 9), not the admin's.
    assert_eq!(admin.post("/v3/clusters", &json!({"metadata": {"name": "admins"}})).await.code, 201);
    assert_status(&carol.delete("/v3/clusters/admins").await, 403, "Forbidden");
    assert_eq!(carol.delete("/v3/clusters/carols").await.code, 200);
    // Builtin roles cannot be deleted, even by the admin.
    assert_status(&admin.delete("/v3/globalroles/admin").await, 403, "Forbidden");
    // Making carol an admin through a binding takes effect on her next request.
    let grb = admin
        .post("/v3/globalrolebindings", &json!({"spec": {"userName": carol_id, "globalRoleName": "admin"}}))
        .await;
    assert_eq!(grb.code, 201, "{}", grb.body);
    assert_eq!(carol.get("/v3/users").await.code, 200);
}

#[tokio::test]
async fn tokens_stop_working_once_revoked() {
    let (_dir, server) = start();
    let api = Api::new(&server);
    let admin = api.logged_in("admin", ADMIN_PASSWORD).await;
    admin.post("/v3/users", &json!({"spec": {"username": "dave", "password": "dave-password-77"}})).await;
    let dave = api.logged_in("dave", "dave-password-77").await;

    // Logout revokes the session token.
    assert_eq!(dave.post("/v3/tokens?action=logout", &json!({})).await.code, 200);
    assert_status(&dave.get("/v3/tokens").await, 401, "Unauthorized");

    // An API token made by dave is revoked by DELETE; dave sees only his own tokens.
    let dave = api.logged_in("dave", "dave-password-77").await;
    let made = dave.post("/v3/tokens", &json!({"description": "ci"})).await;
    assert_eq!(made.code, 201, "{}", made.body);
    let api_token = dave.with_token(made.body["token"].as_str().unwrap());
    let mine = api_token.get("/v3/tokens").await;
    assert_eq!(mine.code, 200);
    assert!(
        mine.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["spec"]["userId"] == made.body["spec"]["userId"])
    );
    let admin_token_name = admin.token.as_ref().unwrap().split(':').next().unwrap().to_owned();
    assert_status(&dave.delete(&format!("/v3/tokens/{admin_token_name}")).await, 403, "Forbidden");
    let name = made.body["id"].as_str().unwrap();
    assert_eq!(dave.delete(&format!("/v3/tokens/{name}")).await.code, 200);
    assert_status(&api_token.get("/v3/tokens").await, 401, "Unauthorized");

    // An expired token is refused.
    let short = dave.post("/v3/tokens", &json!({"ttl": 1})).await;
    assert_eq!(short.code, 201);
    let expired = dave.with_token(short.body["token"].as_str().unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_status(&expired.get("/v3/tokens").await, 401, "Unauthorized");
}

#[tokio::test]
async fn projects_and_bindings_are_namespaced_by_their_cluster() {
    let (_dir, server) = start();
    let api = Api::new(&server);
    let admin = api.logged_in("admin", ADMIN_PASSWORD).await;
    assert_eq!(admin.post("/v3/clusters", &json!({"metadata": {"name": "c1"}})).await.code, 201);
    // The name given is what people see; the project's name is the server's.
    let p = admin
        .post("/v3/projects", &json!({"metadata": {"name": "web"}, "spec": {"clusterName": "c1"}}))
        .await;
    assert_eq!(p.code, 201, "{}", p.body);
    let web = p.body["id"].as_str().unwrap().to_owned();
    let name = web.strip_prefix("c1:").unwrap_or_else(|| panic!("{web}"));
    assert!(name.starts_with("p-") && name.len() == 7, "{web}");
    assert_eq!(p.body["spec"]["displayName"], "web");
    assert_eq!((p.body["type"].as_str(), p.body["clusterId"].as_str()), (Some("project"), Some("c1")));
    assert_eq!(admin.get(&format!("/v3/projects/{web}")).await.code, 200);
    assert_status(&admin.get("/v3/projects/c1:web").await, 404, "NotFound");
    // A second project of that display name in the cluster would be ambiguous.
    let again = admin
        .post("/v3/projects", &json!({"metadata": {"name": "web"}, "spec": {"clusterName": "c1"}}))
        .await;
    assert_status(&again, 409, "AlreadyExists");
    let missing = admin
        .post("/v3/projects", &json!({"metadata": {"name": "x"}, "spec": {"clusterName": "nope"}}))
        .await;
    assert_status(&missing, 422, "Invalid");
    let admin_id = admin.get("/v3/users").await.body["data"][0]["id"].as_str().unwrap().to_owned();
    let crtb = admin
        .post(
            "/v3/clusterroletemplatebindings",
            &json!({"spec": {"clusterName": "c1", "roleTemplateName": "cluster-member", "userName": admin_id}}),
        )
        .await;
    assert_eq!(crtb.code, 201, "{}", crtb.body);
    assert!(crtb.body["id"].as_str().unwrap().starts_with("c1:"));
    let wrong_ctx = admin
        .post(
            "/v3/clusterroletemplatebindings",
            &json!({"spec": {"clusterName": "c1", "roleTemplateName": "project-member", "userName": admin_id}}),
        )
        .await;
    assert_status(&wrong_ctx, 422, "Invalid");
    let prtb = admin
        .post(
            "/v3/projectroletemplatebindings",
            &json!({"spec": {"projectName": web, "roleTemplateName": "read-only", "userName": admin_id}}),
        )
        .await;
    assert_eq!(prtb.code, 201, "{}", prtb.body);
    assert!(prtb.body["id"].as_str().unwrap().starts_with(&format!("{name}:")), "{}", prtb.body);
    // Paging and label selectors on collections.
    for n in ["p1", "p2", "p3"] {
        let body = json!({"metadata": {"name": n, "labels": {"team": "a"}}, "spec": {"clusterName": "c1"}});
        assert_eq!(admin.post("/v3/projects", &body).await.code, 201);
    }
    let page = admin.get("/v3/projects?limit=2").await;
    assert_eq!(page.body["data"].as_array().unwrap().len(), 2);
    let next = page.body["continue"].as_str().unwrap();
    let rest = admin.get(&format!("/v3/projects?limit=2&continue={next}")).await;
    assert_eq!(rest.body["data"].as_array().unwrap().len(), 2);
    let team = admin.get("/v3/projects?labelSelector=team%3Da").await;
    assert_eq!(team.body["data"].as_array().unwrap().len(), 3);
    assert_eq!(team.body["resourceType"], "project");
    assert_status(&admin.get("/v3/projects?labelSelector=a%20b%20c").await, 400, "BadRequest");
    assert_eq!(admin.delete(&format!("/v3/projects/{web}")).await.code, 200);
    assert_status(&admin.get(&format!("/v3/projects/{web}")).await, 404, "NotFound");
}
