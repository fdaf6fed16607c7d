//! `GET /v3/openapi.json`: an OpenAPI 3.0 document of the management API. The schemas of the kinds
//! come from the model types (`schemars`, rancher-core's `schema` feature); every route the server
//! answers is in [`ROUTES`] or is the CRUD of a kind in [`kinds`]. Built once, served as bytes,
//! without authentication (it is the same for everyone).

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use rancher_core::Resource;
use rancher_core::model::{
    CloudCredential, Cluster, ClusterRegistrationToken, ClusterRoleTemplateBinding, GlobalRole,
    GlobalRoleBinding, Project, ProjectRoleTemplateBinding, RoleTemplate, Token, User,
};
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

/// Where the document is served.
pub(crate) const PATH: &str = "/v3/openapi.json";

/// What a request or response carries.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Payload {
    /// Nothing.
    None,
    /// A schema of `components.schemas`.
    Schema(&'static str),
    /// One of several schemas (Rancher's body shape beside ours).
    OneOf(&'static [&'static str]),
    /// A kind as the API returns it (with `id` and `type`).
    Object(&'static str),
    /// A collection of a kind (`type: collection`, `data`).
    Collection(&'static str),
    /// A body of another media type (`text/plain`, `application/yaml`).
    Text(&'static str),
}

/// One documented operation. `{id}`-style segments are path parameters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Route {
    pub(crate) method: &'static str,
    pub(crate) path: &'static str,
    /// `?action=<name>` when the operation is an action.
    pub(crate) action: Option<&'static str>,
    /// Answered without a token.
    pub(crate) public: bool,
    pub(crate) summary: &'static str,
    pub(crate) request: Payload,
    pub(crate) status: u16,
    pub(crate) response: Payload,
}

const fn route(method: &'static str, path: &'static str, summary: &'static str) -> Route {
    Route {
        method,
        path,
        action: None,
        public: false,
        summary,
        request: Payload::None,
        status: 200,
        response: Payload::Schema("Any"),
    }
}

const fn public(r: Route) -> Route {
    Route { public: true, ..r }
}

const fn action(r: Route, name: &'static str) -> Route {
    Route { action: Some(name), ..r }
}

const fn io(r: Route, request: Payload, status: u16, response: Payload) -> Route {
    Route { request, status, response, ..r }
}

/// Every route besides the kinds' CRUD (see [`kinds`]): THE list the document is built from.
/// A route added to the router is added here (the `openapi` test fails until it is).
pub(crate) const ROUTES: &[Route] = &[
    public(io(route("get", "/ping", "Liveness: `pong`"), Payload::None, 200, Payload::Text("text/plain"))),
    public(io(route("get", "/healthz", "Health"), Payload::None, 200, Payload::Text("text/plain"))),
    public(io(
        route("get", "/readyz", "Readiness (503 while not ready)"),
        Payload::None,
        200,
        Payload::Text("text/plain"),
    )),
    public(io(
        route("get", "/metrics", "Prometheus metrics"),
        Payload::None,
        200,
        Payload::Text("text/plain"),
    )),
    public(io(
        route("get", "/cacerts", "The server's CA (PEM)"),
        Payload::None,
        200,
        Payload::Text("text/plain"),
    )),
    public(io(
        route("get", "/v3/settings/cacerts", "The server's CA as a setting"),
        Payload::None,
        200,
        Payload::Schema("Setting"),
    )),
    public(io(route("get", PATH, "This document"), Payload::None, 200, Payload::Schema("Any"))),
    public(io(
        route("get", "/", "The web console (a redirect to /dashboard/)"),
        Payload::None,
        303,
        Payload::None,
    )),
    public(io(
        route("get", "/dashboard/", "The web console's page"),
        Payload::None,
        200,
        Payload::Text("text/html"),
    )),
    public(io(
        route("get", "/assets/{file}", "The web console's script and style"),
        Payload::None,
        200,
        Payload::Text("text/javascript"),
    )),
    public(io(
        route("get", "/v3-public/authProviders", "The identity providers a login page offers"),
        Payload::None,
        200,
        Payload::Schema("Any"),
    )),
    public(action(
        io(
            route("post", "/v3-public/localProviders/local", "Log in with a local user's password"),
            Payload::Schema("LoginInput"),
            201,
            Payload::Schema("LoginOutput"),
        ),
        "login",
    )),
    public(action(
        io(
            route(
                "get",
                "/v3-public/{kind}/{name}",
                "Any registered identity provider (`<kind>` is `<name>Providers`, `openLdapProviders` for \
                 `openldap`): start an authorization-code login; answers `redirectUrl` and `state`",
            ),
            Payload::None,
            200,
            Payload::Schema("AuthorizeOutput"),
        ),
        "authorize",
    )),
    public(action(
        io(
            route(
                "post",
                "/v3-public/{kind}/{name}",
                "Any registered identity provider (`openLdapProviders/openldap`, `oidcProviders/oidc`, \
                 `githubProviders/github`, plugged-in ones): log in with a password, or with the code \
                 and state of an authorization-code login",
            ),
            Payload::OneOf(&["LoginInput", "CodeLoginInput"]),
            201,
            Payload::Schema("LoginOutput"),
        ),
        "login",
    )),
    public(io(
        route("get", "/v3/import/{file}", "The agent manifest of a cluster (`<token>_<cluster>.yaml`)"),
        Payload::None,
        200,
        Payload::Text("application/yaml"),
    )),
    public(route("get", "/v3/connect", "The agents' tunnel (WebSocket upgrade; registration token headers)")),
    public(io(
        route("post", "/v3/connect/report", "An agent's report of its cluster (registration token headers)"),
        Payload::Schema("Any"),
        200,
        Payload::Schema("Any"),
    )),
    action(
        io(
            route("post", "/v3/users", "Change one's own password"),
            Payload::Schema("ChangePasswordInput"),
            200,
            Payload::Schema("Any"),
        ),
        "changepassword",
    ),
    action(
        io(
            route("post", "/v3/tokens", "Log out: revoke the calling token"),
            Payload::None,
            200,
            Payload::Schema("Any"),
        ),
        "logout",
    ),
    action(
        io(
            route("post", "/v3/clusters/{id}", "A kubeconfig for the cluster, through the server's proxy"),
            Payload::None,
            200,
            Payload::Schema("GenerateKubeconfigOutput"),
        ),
        "generateKubeconfig",
    ),
    action(
        io(
            route(
                "post",
                "/v3/clusters/{id}",
                "The state of a cluster built on hosts (`cluster.rkestate`, with its CA keys): global admins and the cluster's owners",
            ),
            Payload::None,
            200,
            Payload::Schema("ExportStateOutput"),
        ),
        "exportState",
    ),
    action(
        io(
            route(
                "post",
                "/v3/clusters/{id}",
                "The admin kubeconfig of a cluster built on hosts (`kube_config_<id>.yml`): global admins and the cluster's owners",
            ),
            Payload::None,
            200,
            Payload::Schema("ExportAdminKubeconfigOutput"),
        ),
        "exportAdminKubeconfig",
    ),
    action(
        io(
            route(
                "post",
                "/v3/clusters/{id}",
                "Rotate the certificates of a cluster built on hosts (all, some services', or with new CAs): whoever may update the cluster",
            ),
            Payload::Schema("RotateCertificateInput"),
            200,
            Payload::Schema("RotateCertificateOutput"),
        ),
        "rotateCertificates",
    ),
    action(
        io(
            route(
                "post",
                "/v3/clusters/{id}",
                "Take an etcd snapshot of a cluster built on hosts now (stored on its etcd hosts, uploaded to its S3 target if it has one): whoever may update the cluster",
            ),
            Payload::None,
            200,
            Payload::Schema("EtcdBackupOutput"),
        ),
        "backupEtcd",
    ),
    action(
        io(
            route(
                "post",
                "/v3/clusters/{id}",
                "Restore the etcd of a cluster built on hosts from one of its snapshots (the API is down meanwhile): whoever may update the cluster",
            ),
            Payload::Schema("RestoreFromEtcdBackupInput"),
            200,
            Payload::Schema("RestoreFromEtcdBackupOutput"),
        ),
        "restoreFromEtcdBackup",
    ),
    io(
        route("get", "/v3/clusters/{id}/namespaces", "The cluster's namespaces the caller may see"),
        Payload::None,
        200,
        Payload::Schema("NamespaceCollection"),
    ),
    action(
        io(
            route(
                "post",
                "/v3/clusters/{id}/namespaces/{ns}",
                "Move a namespace into a project, or out (`projectId: null`)",
            ),
            Payload::Schema("NamespaceMoveInput"),
            200,
            Payload::Schema("Namespace"),
        ),
        "move",
    ),
    io(
        route("get", "/v3/auditlog", "The newest records of the proxy's audit log (admins)"),
        Payload::None,
        200,
        Payload::Schema("Any"),
    ),
    io(
        route(
            "get",
            "/v3/provisioners",
            "The drivers clusters are built with, and their settings' JSON Schema",
        ),
        Payload::None,
        200,
        Payload::Schema("Any"),
    ),
    io(
        route(
            "get",
            "/v3/schemas",
            "What the caller may do with each kind (collection and resource methods)",
        ),
        Payload::None,
        200,
        Payload::Schema("Any"),
    ),
    io(
        route("get", "/v3/settings", "The server's settings (read-only: set by its flags)"),
        Payload::None,
        200,
        Payload::Schema("SettingCollection"),
    ),
    io(route("get", "/v3/settings/{name}", "One setting"), Payload::None, 200, Payload::Schema("Setting")),
    io(
        route("put", "/v3/settings/{name}", "Refused (405): settings are the server's flags"),
        Payload::Schema("Any"),
        405,
        Payload::Schema("Status"),
    ),
    io(
        route("delete", "/v3/settings/{name}", "Refused (405): settings are the server's flags"),
        Payload::None,
        405,
        Payload::Schema("Status"),
    ),
    action(
        io(
            route("post", "/v3/principals", "Find a user by login name (non-admins: exact matches only)"),
            Payload::Schema("PrincipalSearchInput"),
            200,
            Payload::Schema("PrincipalCollection"),
        ),
        "search",
    ),
    io(
        route(
            "get",
            "/k8s/clusters/{cluster}/{path}",
            "The Kubernetes API of a cluster (any method under this prefix)",
        ),
        Payload::None,
        200,
        Payload::Schema("Any"),
    ),
];

/// A kind served as `/v3/<plural>` and `/v3/<plural>/{id}`.
pub(crate) struct KindDoc {
    pub(crate) plural: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) namespaced: bool,
    /// The create body: the kind, or one of several shapes.
    pub(crate) create: Payload,
    /// Which verbs are served (`get`, `post`, `put`, `delete`).
    pub(crate) methods: &'static [&'static str],
}

fn kind<K: Resource + JsonSchema>(
    g: &mut SchemaGenerator,
    create: Option<&'static [&'static str]>,
) -> KindDoc {
    g.subschema_for::<K>();
    KindDoc {
        plural: K::PLURAL,
        kind: K::KIND,
        namespaced: K::NAMESPACED,
        create: create.map_or(Payload::Schema(K::KIND), Payload::OneOf),
        methods: &["get", "post", "put", "delete"],
    }
}

/// The kinds `/v3` serves, their schemas put into `g`.
pub(crate) fn kinds(g: &mut SchemaGenerator) -> Vec<KindDoc> {
    let mut crt = kind::<ClusterRegistrationToken>(g, None);
    crt.methods = &["get"];
    vec![
        kind::<Cluster>(g, None),
        kind::<Project>(g, Some(&["Project", "RancherProjectInput"])),
        kind::<User>(g, None),
        kind::<Token>(g, Some(&["TokenInput"])),
        kind::<GlobalRole>(g, None),
        kind::<GlobalRoleBinding>(g, None),
        kind::<RoleTemplate>(g, None),
        kind::<ClusterRoleTemplateBinding>(
            g,
            Some(&["ClusterRoleTemplateBinding", "RancherClusterRoleTemplateBindingInput"]),
        ),
        kind::<ProjectRoleTemplateBinding>(
            g,
            Some(&["ProjectRoleTemplateBinding", "RancherProjectRoleTemplateBindingInput"]),
        ),
        kind::<CloudCredential>(g, None),
        crt,
    ]
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn content(p: Payload) -> Option<Value> {
    let (media, schema) = match p {
        Payload::None => return None,
        Payload::Schema(s) => ("application/json", schema_ref(s)),
        Payload::OneOf(all) => {
            ("application/json", json!({"oneOf": all.iter().map(|s| schema_ref(s)).collect::<Vec<_>>()}))
        }
        Payload::Object(kind) => {
            ("application/json", json!({"allOf": [schema_ref(kind), schema_ref("ApiFields")]}))
        }
        Payload::Collection(kind) => (
            "application/json",
            json!({"allOf": [schema_ref("Collection"), {"type": "object", "properties": {"data": {"type": "array", "items": {"allOf": [schema_ref(kind), schema_ref("ApiFields")]}}}}]}),
        ),
        Payload::Text(media) => (media, json!({"type": "string"})),
    };
    Some(json!({ media: {"schema": schema} }))
}

/// Error answers: always a Kubernetes `Status`.
fn errors(public: bool) -> Map<String, Value> {
    let status = json!({"application/json": {"schema": schema_ref("Status")}});
    let mut m = Map::new();
    let mut add = |code: &str, what: &str| {
        m.insert(code.into(), json!({"description": what, "content": status.clone()}));
    };
    add("400", "Bad request (a Status)");
    if !public {
        add("401", "No valid token (a Status)");
        add("403", "Forbidden (a Status)");
    }
    add("404", "Not found (a Status)");
    add("409", "Conflict (a Status)");
    add("422", "Invalid fields (a Status with causes)");
    add("default", "Any other error (a Status)");
    m
}

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let desc = match name {
                "id" => "The object's id: its name, or `<namespace>:<name>` for namespaced kinds",
                "ns" => "The namespace's name",
                "cluster" => "The cluster's id",
                "kind" => "The provider's kind and `Providers`: `localProviders`, `openLdapProviders`, …",
                "name" => "The provider's name: `local`, `openldap`, `oidc`, `github`, or a plugged-in one",
                _ => "",
            };
            json!({"name": name, "in": "path", "required": true, "description": desc, "schema": {"type": "string"}})
        })
        .collect()
}

fn operation(path: &str, routes: &[Route]) -> Value {
    let first = routes[0];
    let summary: Vec<String> = routes
        .iter()
        .map(|r| match r.action {
            Some(a) => format!("`?action={a}`: {}", r.summary),
            None => r.summary.to_string(),
        })
        .collect();
    let mut params = path_params(path);
    let actions: Vec<&str> = routes.iter().filter_map(|r| r.action).collect();
    if !actions.is_empty() {
        let required = routes.iter().all(|r| r.action.is_some());
        params.push(json!({"name": "action", "in": "query", "required": required, "schema": {"type": "string", "enum": actions}}));
    }
    if first.method == "get" && matches!(first.response, Payload::Collection(_)) {
        for (name, desc) in [
            ("limit", "Page size"),
            ("continue", "Token of the next page"),
            ("labelSelector", "Label selector"),
        ] {
            params.push(json!({"name": name, "in": "query", "required": false, "description": desc, "schema": {"type": "string"}}));
        }
    }
    let mut responses = errors(first.public);
    let mut codes: Vec<u16> = routes.iter().map(|r| r.status).collect();
    codes.sort_unstable();
    codes.dedup();
    for code in codes {
        let same: Vec<&Route> = routes.iter().filter(|r| r.status == code).collect();
        let description: Vec<&str> = same.iter().map(|r| r.summary).collect();
        let mut resp = json!({"description": description.join("; ")});
        let bodies: Vec<Value> = same.iter().filter_map(|r| content(r.response)).collect();
        match bodies.as_slice() {
            [] => {}
            [one] => resp["content"] = one.clone(),
            many => {
                let schemas: Vec<Value> =
                    many.iter().map(|b| b["application/json"]["schema"].clone()).collect();
                resp["content"] = json!({"application/json": {"schema": {"oneOf": schemas}}});
            }
        }
        responses.insert(code.to_string(), resp);
    }
    let mut op = json!({
        "summary": summary.join("; "),
        "operationId": operation_id(first.method, path, &actions),
        "parameters": params,
        "responses": responses,
    });
    if first.public {
        op["security"] = json!([]);
    }
    let bodies: Vec<Value> = routes.iter().filter_map(|r| content(r.request)).collect();
    match bodies.as_slice() {
        [] => {}
        [one] => op["requestBody"] = json!({"required": true, "content": one}),
        many => {
            let schemas: Vec<Value> = many.iter().map(|b| b["application/json"]["schema"].clone()).collect();
            op["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": {"oneOf": schemas}}}});
        }
    }
    op
}

fn operation_id(method: &str, path: &str, actions: &[&str]) -> String {
    let mut id = method.to_string();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        let seg = seg.trim_matches(|c| c == '{' || c == '}');
        let mut chars = seg.chars().filter(char::is_ascii_alphanumeric);
        if let Some(c) = chars.next() {
            id.push(c.to_ascii_uppercase());
            id.extend(chars);
        }
    }
    for a in actions {
        id.push_str("Action");
        id.push_str(&a[..1].to_ascii_uppercase());
        id.push_str(&a[1..]);
    }
    id
}

/// Every documented operation with its path: the kinds' CRUD, then [`ROUTES`].
pub(crate) fn all_routes(g: &mut SchemaGenerator) -> Vec<(String, Route)> {
    let mut out = vec![];
    for k in kinds(g) {
        let (list, one) = (format!("/v3/{}", k.plural), format!("/v3/{}/{{id}}", k.plural));
        let kind = k.kind;
        let verb = |m: &str| k.methods.contains(&m);
        let id_note =
            if k.namespaced { "Get one (id `<namespace>:<name>`)" } else { "Get one (id: the name)" };
        if verb("get") {
            let all = "List (filtered to what the caller may see)";
            out.push((
                list.clone(),
                io(route("get", "", all), Payload::None, 200, Payload::Collection(kind)),
            ));
            out.push((one.clone(), io(route("get", "", id_note), Payload::None, 200, Payload::Object(kind))));
        }
        if verb("post") {
            out.push((list.clone(), io(route("post", "", "Create"), k.create, 201, Payload::Object(kind))));
        }
        if verb("put") {
            let replace = "Replace (metadata.resourceVersion for optimistic concurrency)";
            out.push((
                one.clone(),
                io(route("put", "", replace), Payload::Schema(kind), 200, Payload::Object(kind)),
            ));
        }
        if verb("delete") {
            out.push((
                one.clone(),
                io(route("delete", "", "Delete"), Payload::None, 200, Payload::Object(kind)),
            ));
        }
    }
    out.extend(ROUTES.iter().map(|r| (r.path.to_string(), *r)));
    out
}

/// Schemas not generated from the model: request shapes of actions and Rancher's bodies
/// (contracts §2), the collection envelope, and the fields every returned object carries.
fn extra_schemas() -> Map<String, Value> {
    let string = json!({"type": "string"});
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put("Any", json!({"description": "Any JSON value"}));
    put(
        "ApiFields",
        json!({"type": "object", "properties": {"id": {"type": "string", "description": "The id used in URLs"}, "type": {"type": "string", "description": "The kind, in Rancher's lower-camel spelling"}}}),
    );
    put(
        "Collection",
        json!({"type": "object", "required": ["type", "data"], "properties": {"type": {"type": "string", "enum": ["collection"]}, "resourceType": string, "data": {"type": "array", "items": {}}, "revision": string, "continue": string, "pagination": {"type": "object", "properties": {"next": string}}}}),
    );
    put(
        "Setting",
        json!({"type": "object", "properties": {"id": string, "name": string, "type": string, "value": string, "default": string, "customized": {"type": "boolean"}, "source": string}}),
    );
    put(
        "SettingCollection",
        json!({"allOf": [schema_ref("Collection"), {"type": "object", "properties": {"data": {"type": "array", "items": schema_ref("Setting")}}}]}),
    );
    put(
        "LoginInput",
        json!({"type": "object", "required": ["username", "password"], "properties": {"username": string, "password": {"type": "string", "format": "password"}, "ttl": {"type": "integer", "description": "Milliseconds; 0 or absent: the server's default"}, "description": string, "responseType": {"type": "string", "enum": ["", "cookie", "json"]}}}),
    );
    put(
        "CodeLoginInput",
        json!({"type": "object", "required": ["code", "state"], "properties": {"code": {"type": "string", "format": "password"}, "state": {"type": "string", "description": "The `state` the authorize call answered"}, "ttl": {"type": "integer", "description": "Milliseconds; 0 or absent: the server's default"}, "description": string, "responseType": {"type": "string", "enum": ["", "cookie", "json"]}}}),
    );
    put(
        "AuthorizeOutput",
        json!({"type": "object", "properties": {"redirectUrl": {"type": "string", "description": "Where to send the browser"}, "state": string}}),
    );
    put(
        "LoginOutput",
        json!({"type": "object", "properties": {"id": string, "type": string, "token": {"type": "string", "description": "`<name>:<secret>`, used as `Authorization: Bearer`"}, "userId": string, "expiresAt": string}}),
    );
    put(
        "ChangePasswordInput",
        json!({"type": "object", "additionalProperties": false, "required": ["currentPassword", "newPassword"], "properties": {"currentPassword": {"type": "string", "format": "password"}, "newPassword": {"type": "string", "format": "password"}}}),
    );
    put(
        "TokenInput",
        json!({"type": "object", "properties": {"ttl": {"type": "integer", "description": "Milliseconds"}, "description": string, "clusterId": {"type": "string", "description": "Scope the token to one cluster"}}}),
    );
    put(
        "GenerateKubeconfigOutput",
        json!({"type": "object", "properties": {"type": {"type": "string", "enum": ["generateKubeconfigOutput"]}, "config": {"type": "string", "description": "A kubeconfig (YAML)"}}}),
    );
    put(
        "ExportStateOutput",
        json!({"type": "object", "properties": {"type": {"type": "string", "enum": ["exportStateOutput"]}, "fileName": string, "state": {"type": "object", "description": "RKE's cluster.rkestate: desiredState and currentState, each with rkeConfig and certificatesBundle"}}}),
    );
    put(
        "RotateCertificateInput",
        json!({"type": "object", "properties": {"caCertificates": {"type": "boolean", "description": "New CAs too (then every certificate)"}, "services": {"description": "etcd, kube-apiserver, kube-controller-manager, kube-scheduler or kubelet (or a list of them); none: every certificate", "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}}),
    );
    put(
        "RotateCertificateOutput",
        json!({"type": "object", "properties": {"type": {"type": "string", "enum": ["rotateCertificateOutput"]}, "message": string, "rotateCertificates": {"type": "object", "description": "spec.rkeConfig.rotate_certificates as set: ca_certificates, services, requested_at"}}}),
    );
    put(
        "EtcdBackupOutput",
        json!({"type": "object", "properties": {"type": {"type": "string", "enum": ["etcdBackup"]}, "message": {"type": "string", "description": "What was done, and why the upload failed if it did"}, "snapshot": {"type": "object", "description": "The snapshot as status.etcdSnapshots lists it: name, kind, createdAt, size, sha256, hosts, s3 {bucket, key | error}"}}}),
    );
    put(
        "RestoreFromEtcdBackupInput",
        json!({"type": "object", "required": ["etcdBackupId"], "properties": {"etcdBackupId": {"type": "string", "description": "The snapshot's name (or `<cluster>:<name>`), as status.etcdSnapshots lists it"}}}),
    );
    put(
        "RestoreFromEtcdBackupOutput",
        json!({"type": "object", "properties": {"type": {"type": "string", "enum": ["restoreFromEtcdBackupOutput"]}, "message": string, "restore": {"type": "object", "description": "spec.rkeConfig.restore as set: restore, snapshot_name, requested_at"}}}),
    );
    put(
        "ExportAdminKubeconfigOutput",
        json!({"type": "object", "properties": {"type": {"type": "string", "enum": ["exportAdminKubeconfigOutput"]}, "fileName": string, "config": {"type": "string", "description": "A kubeconfig (YAML) with the admin certificate, to the first controlplane host"}}}),
    );
    let subject = || {
        json!({
            "userId": {"type": "string", "description": "A user id (`u-xxxxx`)"},
            "userPrincipalId": {"type": "string", "description": "`local://<user id>`"},
            "groupPrincipalId": string,
            "roleTemplateId": string,
            "name": {"type": "string", "description": "The binding's name (generated when absent)"},
        })
    };
    let mut crtb = subject();
    crtb["clusterId"] = string.clone();
    put(
        "RancherClusterRoleTemplateBindingInput",
        json!({"type": "object", "description": "Rancher's shape: one of userId, userPrincipalId or groupPrincipalId", "required": ["clusterId", "roleTemplateId"], "properties": crtb}),
    );
    let mut prtb = subject();
    prtb["projectId"] = json!({"type": "string", "description": "`<cluster>:<p-xxxxx>`"});
    put(
        "RancherProjectRoleTemplateBindingInput",
        json!({"type": "object", "description": "Rancher's shape: one of userId, userPrincipalId or groupPrincipalId", "required": ["projectId", "roleTemplateId"], "properties": prtb}),
    );
    put(
        "RancherProjectInput",
        json!({"type": "object", "description": "Rancher's shape: `name` becomes the display name; the server names the project `p-xxxxx`", "required": ["name", "clusterId"], "properties": {"name": string, "clusterId": string, "description": string}}),
    );
    put(
        "Namespace",
        json!({"type": "object", "properties": {"id": string, "type": {"type": "string", "enum": ["namespace"]}, "name": string, "projectId": {"type": "string", "nullable": true, "description": "`<cluster>:<p-xxxxx>`, or null"}, "state": {"type": "string", "enum": ["active", "terminating"]}}}),
    );
    put(
        "NamespaceCollection",
        json!({"allOf": [schema_ref("Collection"), {"type": "object", "properties": {"data": {"type": "array", "items": schema_ref("Namespace")}}}]}),
    );
    put(
        "NamespaceMoveInput",
        json!({"type": "object", "required": ["projectId"], "properties": {"projectId": {"type": "string", "nullable": true, "description": "`<cluster>:<p-xxxxx>`, or null to take it out of any project"}}}),
    );
    put(
        "PrincipalSearchInput",
        json!({"type": "object", "required": ["name"], "properties": {"name": string}}),
    );
    put(
        "Principal",
        json!({"type": "object", "properties": {"id": {"type": "string", "description": "`local://u-xxxxx`"}, "type": {"type": "string", "enum": ["principal"]}, "principalType": {"type": "string", "enum": ["user", "group"]}, "loginName": string, "name": string, "provider": string}}),
    );
    put(
        "PrincipalCollection",
        json!({"allOf": [schema_ref("Collection"), {"type": "object", "properties": {"data": {"type": "array", "maxItems": 50, "items": schema_ref("Principal")}}}]}),
    );
    m
}

/// Builds the document.
pub(crate) fn document() -> Value {
    let mut g = SchemaSettings::openapi3().into_generator();
    g.subschema_for::<rancher_core::Status>();
    let routes = all_routes(&mut g);
    let mut schemas = g.take_definitions(true);
    schemas.extend(extra_schemas());
    let mut paths = Map::new();
    let mut keys: Vec<(String, &str)> = vec![];
    for (path, r) in &routes {
        if !keys.iter().any(|(p, m)| p == path && *m == r.method) {
            keys.push((path.clone(), r.method));
        }
    }
    for (path, method) in keys {
        let ops: Vec<Route> =
            routes.iter().filter(|(p, r)| *p == path && r.method == method).map(|(_, r)| *r).collect();
        let entry = paths.entry(path.clone()).or_insert_with(|| json!({}));
        entry[method] = operation(&path, &ops);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "rancher-rs management API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The `/v3` API of rancher-rs, in Rancher's shapes. Errors are Kubernetes `Status` objects. Authenticate with `Authorization: Bearer <token>` from a login.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    })
}

static DOCUMENT: LazyLock<Vec<u8>> = LazyLock::new(|| serde_json::to_vec(&document()).unwrap_or_default());

/// `GET /v3/openapi.json`.
pub(crate) async fn serve() -> Response {
    ([(http::header::CONTENT_TYPE, "application/json")], DOCUMENT.as_slice()).into_response()
}
