//! The OpenAPI document of the management API (`GET /v3/openapi.json`): served without a token,
//! OpenAPI 3.0 in structure (every `$ref` resolves, every path parameter declared), every route the
//! router registers is documented, and every documented operation is routed on a running server.

use std::collections::{BTreeSet, HashSet};

use crate::common::{ADMIN_PASSWORD, Api, ServerProc};
use serde_json::{Value, json};

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];

fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// Route paths the router registers, read from the server's sources (`.route("…")`, the constants
/// it routes by, and `kind_routes::<Kind>`), in OpenAPI's spelling.
fn routed_paths() -> BTreeSet<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
    let mut files = vec![root];
    let mut out = BTreeSet::new();
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if p.extension().is_none_or(|e| e != "rs") || p.ends_with("metrics.rs") {
            continue; // metrics.rs routes only inside its own unit tests
        }
        let src = std::fs::read_to_string(&p).unwrap();
        for (i, _) in src.match_indices(".route(") {
            let arg = src[i + 7..].trim_start();
            if arg.starts_with("&format!") {
                continue; // `kind_routes` itself: its paths come from the `kind_routes::<K>` calls below.
            }
            let path = if let Some(lit) = arg.strip_prefix('"') {
                lit[..lit.find('"').unwrap()].to_string()
            } else {
                let name: String =
                    arg.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
                match name.as_str() {
                    "rancher_tunnel::CONNECT_PATH" => "/v3/connect".into(),
                    "REPORT_PATH" => "/v3/connect/report".into(),
                    "openapi::PATH" => "/v3/openapi.json".into(),
                    other => panic!("{}: a route by {other:?}: teach this test its path", p.display()),
                }
            };
            out.insert(path);
        }
        for (i, _) in src.match_indices("kind_routes::<") {
            let kind: String = src[i + 14..].chars().take_while(|c| c.is_alphanumeric()).collect();
            let plural = format!("{}s", kind.to_lowercase());
            out.insert(format!("/v3/{plural}"));
            out.insert(format!("/v3/{plural}/{{id}}"));
        }
        if src.contains("route_service(\"/k8s/clusters/{*rest}\"") {
            out.insert("/k8s/clusters/{cluster}/{path}".into());
        }
    }
    out
}

#[tokio::test]
async fn the_document_is_valid_complete_and_routed() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &[]);
    let anonymous = Api::new(&server);
    let a = anonymous.get("/v3/openapi.json").await;
    assert_eq!(a.code, 200, "served without a token: {}", a.body);
    let doc = a.body;
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    // Every $ref resolves inside the document.
    let mut all = vec![];
    refs(&doc, &mut all);
    assert!(all.len() > 50, "only {} references", all.len());
    for r in &all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("foreign $ref {r}"));
        assert!(doc["components"]["schemas"][name].is_object(), "$ref {r} does not resolve");
    }
    // The kinds' schemas come from the model: fields of the Rust types are there.
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["ClusterSpec"]["properties"]["displayName"].is_object(), "{}", schemas["ClusterSpec"]);
    assert!(schemas["ObjectMeta"]["properties"]["resourceVersion"].is_object());
    assert!(schemas["Status"]["properties"]["reason"].is_object());

    // A validator of the OpenAPI 3.0 specification agrees (python3-openapi-spec-validator).
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let check = std::process::Command::new("python3")
        .args(["-c", "import json, sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))"])
        .arg(&file)
        .output()
        .expect("python3 runs (with openapi-spec-validator: pip install openapi-spec-validator)");
    assert!(check.status.success(), "openapi-spec-validator: {}", String::from_utf8_lossy(&check.stderr));

    // Structure: operations have responses (errors as Status), unique ids, declared path parameters.
    let paths = doc["paths"].as_object().unwrap();
    let mut ids = HashSet::new();
    for (path, item) in paths {
        assert!(path.starts_with('/'), "{path}");
        let params: Vec<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        for (method, op) in item.as_object().unwrap() {
            assert!(METHODS.contains(&method.as_str()), "{method} {path}");
            assert!(
                ids.insert(op["operationId"].as_str().unwrap().to_string()),
                "duplicate operationId {op}"
            );
            assert_eq!(
                op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/Status",
                "{method} {path}"
            );
            for p in &params {
                let declared = op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["name"] == *p && x["in"] == "path" && x["required"] == true);
                assert!(declared, "{method} {path}: path parameter {p} not declared");
            }
        }
    }
    // Both body shapes of contracts §2, and the actions.
    let one_of = |path: &str, method: &str| {
        paths[path][method]["requestBody"]["content"]["application/json"]["schema"]["oneOf"].to_string()
    };
    assert!(one_of("/v3/projects", "post").contains("RancherProjectInput"));
    assert!(
        one_of("/v3/projectroletemplatebindings", "post").contains("RancherProjectRoleTemplateBindingInput")
    );
    assert!(
        one_of("/v3/clusterroletemplatebindings", "post").contains("RancherClusterRoleTemplateBindingInput")
    );
    let actions = |path: &str, method: &str| {
        paths[path][method]["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "action").cloned()
    };
    assert_eq!(actions("/v3/users", "post").unwrap()["schema"]["enum"], json!(["changepassword"]));
    assert_eq!(actions("/v3/clusters/{id}", "post").unwrap()["required"], true);
    assert!(
        actions("/v3/principals", "post").is_some()
            && actions("/v3/clusters/{id}/namespaces/{ns}", "post").is_some()
    );

    // Every route the router registers is documented.
    let documented: BTreeSet<String> = paths.keys().cloned().collect();
    let routed = routed_paths();
    assert!(routed.len() > 20, "{routed:?}");
    let missing: Vec<&String> = routed.difference(&documented).collect();
    assert!(missing.is_empty(), "routed but not in the OpenAPI document: {missing:?}");

    // Every documented operation is routed: its method is not refused (405) and its path is not the
    // router's 404; another method on a routed path gets 405.
    let admin = anonymous.logged_in("admin", ADMIN_PASSWORD).await;
    for (path, item) in paths {
        let url_path = path
            .replace("{id}", "nothing-here")
            .replace("{cluster}", "local")
            .replace("{namespace}", "default")
            .replace("{ns}", "default")
            .replace("{file}", "x_y.yaml")
            .replace("{path}", "version");
        for (method, op) in item.as_object().unwrap() {
            let action = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "action")
                .map(|p| format!("?action={}", p["schema"]["enum"][0].as_str().unwrap()))
                .unwrap_or_default();
            let url = format!("{}{url_path}{action}", admin.url);
            let req = admin.http.request(method.to_uppercase().parse().unwrap(), &url);
            let req = if op.get("requestBody").is_some() { req.json(&json!({})) } else { req };
            let ans = admin.send(req).await;
            let router_404 = ans.code == 404
                && ans.body["message"].as_str().is_some_and(|m| m.ends_with(&format!("resource {url_path}")));
            assert!(
                !router_404 && ans.code != 405,
                "{method} {path} is documented but not routed: {} {}",
                ans.code,
                ans.body
            );
        }
        if path.starts_with("/k8s/") || path == "/v3/connect" {
            continue; // the proxy and the agents' tunnel take every method
        }
        let unused = METHODS.iter().find(|m| item.get(**m).is_none()).unwrap();
        let ans = admin
            .send(
                admin
                    .http
                    .request(unused.to_uppercase().parse().unwrap(), format!("{}{url_path}", admin.url)),
            )
            .await;
        assert_eq!(ans.code, 405, "{unused} {path}: {}", ans.body);
    }
    server.stop_async().await;
}
