//! OpenAPI documents: `/openapi/v3` (index and per group-version) and `/openapi/v2` (JSON only).
//! Every kind has a schema carrying `x-kubernetes-group-version-kind`, and every PATCH operation
//! declares the `fieldValidation` query parameter, so kubectl validates on the server side instead of
//! needing full client-side schemas. CRDs contribute their own `openAPIV3Schema`.

use std::collections::BTreeMap;

use http::Response;
use serde_json::{Map, Value, json};
use sha2::Digest;

use crate::http_util::{Body, json_response};
use crate::resources::{self, ResourceDef, Verbs};
use crate::state::SimState;
use crate::status::ApiError;

fn schema_name(d: &ResourceDef) -> String {
    let group = if d.group.is_empty() {
        "io.k8s.api.core".to_string()
    } else if d.group.ends_with(".k8s.io") || !d.group.contains('.') {
        format!("io.k8s.api.{}", d.group.trim_end_matches(".k8s.io").split('.').next().unwrap_or(&d.group))
    } else {
        d.group.split('.').rev().collect::<Vec<_>>().join(".")
    };
    format!("{group}.{}.{}", d.version, d.kind)
}

fn gvk(d: &ResourceDef) -> Value {
    json!({"group": d.group, "version": d.version, "kind": d.kind})
}

fn object_meta_schema() -> Value {
    let s = |desc: &str| json!({"type": "string", "description": desc});
    json!({
        "type": "object",
        "description": "ObjectMeta is metadata that all persisted resources must have.",
        "properties": {
            "name": s("Name must be unique within a namespace."),
            "generateName": s("GenerateName is an optional prefix used to generate a unique name."),
            "namespace": s("Namespace defines the space within which each name must be unique."),
            "uid": s("UID is the unique in time and space value for this object."),
            "resourceVersion": s("An opaque value that represents the internal version of this object."),
            "generation": {"type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state."},
            "creationTimestamp": s("CreationTimestamp is a timestamp representing the server time when this object was created."),
            "deletionTimestamp": s("DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted."),
            "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Map of string keys and values that can be used to organize and categorize objects."},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Annotations is an unstructured key value map."},
            "finalizers": {"type": "array", "items": {"type": "string"}, "description": "Must be empty before the object is deleted from the registry."},
            "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "description": "List of objects depended by this object."},
            "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "description": "Field management information."},
        },
    })
}

/// The schema of one kind: a CRD's own schema, or a permissive object with the standard fields.
fn kind_schema(d: &ResourceDef, crd_schema: Option<&Value>) -> Value {
    let mut s = match crd_schema {
        Some(s) => s.clone(),
        None => json!({
            "type": "object",
            "description": format!("{} is served by rancher-sim; fields beyond the standard ones are accepted as given.", d.kind),
            "properties": {
                "spec": {"type": "object", "description": format!("Desired state of the {}.", d.kind), "x-kubernetes-preserve-unknown-fields": true},
                "status": {"type": "object", "description": format!("Observed state of the {}.", d.kind), "x-kubernetes-preserve-unknown-fields": true},
            },
            "x-kubernetes-preserve-unknown-fields": true,
        }),
    };
    let props = s.as_object_mut().map(|o| o.entry("properties").or_insert_with(|| json!({})));
    if let Some(Value::Object(p)) = props {
        p.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
        p.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
        p.insert("metadata".into(), json!({"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}], "description": "Standard object's metadata."}));
    }
    s["x-kubernetes-group-version-kind"] = json!([gvk(d)]);
    s
}

fn crd_schemas(state: &SimState, group: &str, version: &str) -> BTreeMap<String, Value> {
    let (crds, _) = state.store.list(resources::CRD_KEY, None);
    let mut out = BTreeMap::new();
    for c in crds.iter().filter(|c| c["spec"]["group"] == group) {
        for v in c["spec"]["versions"].as_array().into_iter().flatten() {
            if v["name"] == version
                && let Some(kind) = c["spec"]["names"]["kind"].as_str()
                && let Some(schema) = v["schema"].get("openAPIV3Schema")
            {
                out.insert(kind.to_string(), schema.clone());
            }
        }
    }
    out
}

fn param(name: &str, desc: &str) -> Value {
    json!({"name": name, "in": "query", "description": desc, "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(d: &ResourceDef, action: &str, reference: &str, v3: bool) -> Value {
    let mut op = json!({
        "description": format!("{action} {}", d.kind),
        "operationId": format!("{action}{}", d.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(d),
        "responses": {"200": {"description": "OK"}},
    });
    let mut params = vec![];
    if matches!(action, "post" | "put" | "patch") {
        params.push(param("dryRun", "When present, indicates that modifications should not be persisted."));
        params.push(param(
            "fieldManager",
            "A name associated with the actor or entity that is making these changes.",
        ));
        params.push(param(
            "fieldValidation",
            "Instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn or Strict.",
        ));
    }
    if action == "patch" {
        params.push(param("force", "Force is going to \"force\" Apply requests."));
    }
    if matches!(action, "list" | "watchlist") {
        for p in [
            "labelSelector",
            "fieldSelector",
            "limit",
            "continue",
            "resourceVersion",
            "timeoutSeconds",
            "watch",
        ] {
            params.push(param(p, p));
        }
    }
    if v3 {
        for p in &mut params {
            if let Some(o) = p.as_object_mut() {
                o.entry("schema").or_insert(json!({"type": "string"}));
            }
        }
        let schema = json!({"$ref": reference});
        op["responses"]["200"]["content"] = json!({"application/json": {"schema": schema}});
        let body_types: Vec<&str> = match action {
            // No strategic-merge-patch here: kubectl then builds apply patches from its compiled-in types,
            // which know every merge key, instead of from these permissive schemas.
            "patch" => vec![
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
            ],
            "post" | "put" => vec!["*/*"],
            _ => vec![],
        };
        if !body_types.is_empty() {
            let content: Map<String, Value> =
                body_types.iter().map(|t| (t.to_string(), json!({"schema": {"type": "object"}}))).collect();
            op["requestBody"] = json!({"content": content, "required": true});
        }
    } else {
        if matches!(action, "post" | "put" | "patch") {
            params
                .push(json!({"name": "body", "in": "body", "required": true, "schema": {"type": "object"}}));
        }
        op["responses"]["200"]["schema"] = json!({"$ref": reference});
        op["consumes"] = json!(["*/*"]);
        op["produces"] = json!(["application/json"]);
    }
    op["parameters"] = json!(params);
    op
}

fn paths_for(d: &ResourceDef, reference: &str, v3: bool, paths: &mut Map<String, Value>) {
    let base = if d.group.is_empty() {
        format!("/api/{}", d.version)
    } else {
        format!("/apis/{}/{}", d.group, d.version)
    };
    let collection = if d.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", d.plural)
    } else {
        format!("{base}/{}", d.plural)
    };
    let ns_param = if d.namespaced {
        vec![json!({"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}})]
    } else {
        vec![]
    };
    let with_params = |mut v: Value, name: bool| {
        let mut ps = ns_param.clone();
        if name {
            ps.push(json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}));
        }
        if !v3 {
            for p in &mut ps {
                if let Some(o) = p.as_object_mut() {
                    o.remove("schema");
                    o.insert("type".into(), json!("string"));
                }
            }
        }
        v["parameters"] = json!(ps);
        v
    };
    if d.verbs == Verbs::CreateOnly {
        paths.insert(collection, with_params(json!({"post": operation(d, "post", reference, v3)}), false));
        return;
    }
    paths.insert(
        collection.clone(),
        with_params(
            json!({"get": operation(d, "list", reference, v3), "post": operation(d, "post", reference, v3)}),
            false,
        ),
    );
    paths.insert(
        format!("{collection}/{{name}}"),
        with_params(
            json!({
                "get": operation(d, "get", reference, v3),
                "put": operation(d, "put", reference, v3),
                "patch": operation(d, "patch", reference, v3),
                "delete": operation(d, "delete", reference, v3),
            }),
            true,
        ),
    );
}

fn document(state: &SimState, defs: &[ResourceDef], v3: bool, group: &str, version: &str) -> Value {
    let crds = crd_schemas(state, group, version);
    let mut schemas = Map::new();
    schemas.insert("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".into(), object_meta_schema());
    let mut paths = Map::new();
    let prefix = if v3 { "#/components/schemas/" } else { "#/definitions/" };
    for d in defs {
        let name = schema_name(d);
        schemas.insert(name.clone(), kind_schema(d, crds.get(&d.kind)));
        paths_for(d, &format!("{prefix}{name}"), v3, &mut paths);
    }
    let info = json!({"title": "Kubernetes", "version": state.config.git_version});
    if v3 {
        json!({"openapi": "3.0.0", "info": info, "paths": paths, "components": {"schemas": schemas}})
    } else {
        json!({"swagger": "2.0", "info": info, "paths": paths, "definitions": schemas})
    }
}

fn group_versions(all: &[ResourceDef]) -> BTreeMap<(String, String), Vec<ResourceDef>> {
    let mut gv: BTreeMap<(String, String), Vec<ResourceDef>> = BTreeMap::new();
    for d in all {
        gv.entry((d.group.clone(), d.version.clone())).or_default().push(d.clone());
    }
    gv
}

/// A protobuf length-delimited field.
fn pb_field(num: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![(num << 3) | 2];
    let mut n = payload.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            v.push(b);
            break;
        }
        v.push(b | 0x80);
    }
    v.extend_from_slice(payload);
    v
}

/// The smallest valid gnostic OpenAPI v2 document (swagger, info, empty paths). kubectl 1.27 insists
/// on fetching `/openapi/v2` as protobuf; with no definitions it builds apply patches from its
/// compiled-in types, and validation happens on the server (`fieldValidation`, declared in v3).
fn v2_protobuf(state: &SimState) -> Response<Body> {
    let mut info = pb_field(1, b"Kubernetes");
    info.extend(pb_field(2, state.config.git_version.as_bytes()));
    let mut doc = pb_field(1, b"2.0");
    doc.extend(pb_field(2, &info));
    doc.extend(pb_field(8, &[]));
    let mut r = Response::new(crate::http_util::full(doc));
    r.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/octet-stream"));
    r
}

pub(crate) fn serve(
    state: &SimState,
    accept: Option<&str>,
    rest: &[&str],
    _query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    if rest == ["v2"] && accept.is_some_and(|a| a.contains("com.github.proto-openapi.spec.v2")) {
        return Ok(v2_protobuf(state));
    }
    let json_accepted = accept.is_none_or(|a| a.is_empty() || a.contains("json") || a.contains("*/*"));
    if !json_accepted {
        return Err(ApiError::not_acceptable(accept.unwrap_or("")));
    }
    let all = resources::all(&state.store);
    let gvs = group_versions(&all);
    let doc = match rest {
        ["v2"] => {
            let mut merged = document(state, &all, false, "", "");
            for ((g, v), defs) in &gvs {
                if g.is_empty() {
                    continue;
                }
                let d = document(state, defs, false, g, v);
                for key in ["paths", "definitions"] {
                    if let (Some(dst), Some(src)) = (merged[key].as_object_mut(), d[key].as_object()) {
                        dst.extend(src.clone());
                    }
                }
            }
            merged
        }
        ["v3"] => {
            let mut paths = Map::new();
            for ((g, v), defs) in &gvs {
                let key = if g.is_empty() { format!("api/{v}") } else { format!("apis/{g}/{v}") };
                let body = serde_json::to_vec(&document(state, defs, true, g, v)).unwrap_or_default();
                let hash = hex_prefix(&sha2::Sha256::digest(&body));
                paths.insert(
                    key.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
                );
            }
            json!({"paths": paths})
        }
        ["v3", "api", v] => {
            let defs = gvs.get(&(String::new(), v.to_string())).ok_or_else(ApiError::path_not_found)?;
            document(state, defs, true, "", v)
        }
        ["v3", "apis", g, v] => {
            let defs = gvs.get(&(g.to_string(), v.to_string())).ok_or_else(ApiError::path_not_found)?;
            document(state, defs, true, g, v)
        }
        _ => return Err(ApiError::path_not_found()),
    };
    Ok(json_response(200, &doc))
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(16).map(|b| format!("{b:02X}")).collect()
}
