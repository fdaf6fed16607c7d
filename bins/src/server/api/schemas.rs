//! `GET /v3/schemas`: what the caller may do with each kind of the API, as Rancher's API describes
//! it per caller — `collectionMethods` (`GET` to list, `POST` to create) and `resourceMethods`
//! (`GET`, `PUT`, `DELETE`). The console shows a page or a button only where the method is there;
//! the API checks every request whatever a page shows.
//!
//! The methods come from the caller's global roles. Kinds whose objects are also given per cluster
//! or project (clusters, projects, their members' bindings) are listed for everyone: the list holds
//! what the caller may see there.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::server::auth::Caller;
use crate::server::state::AppState;

/// The kinds, by Rancher's type name and plural, and whether their lists are per-object visible.
const KINDS: &[(&str, &str, bool)] = &[
    ("cluster", "clusters", true),
    ("project", "projects", true),
    ("clusterRoleTemplateBinding", "clusterroletemplatebindings", true),
    ("projectRoleTemplateBinding", "projectroletemplatebindings", true),
    ("user", "users", false),
    ("globalRole", "globalroles", false),
    ("globalRoleBinding", "globalrolebindings", false),
    ("roleTemplate", "roletemplates", false),
    ("cloudCredential", "cloudcredentials", true),
    ("token", "tokens", true),
    ("setting", "settings", true),
    ("auditLog", "auditlogs", false),
];

/// `GET /v3/schemas`.
pub(crate) async fn list(State(_state): State<AppState>, caller: Caller) -> Json<Value> {
    let data: Vec<Value> = KINDS
        .iter()
        .map(|(id, plural, per_object)| {
            let may = |verb: &str| caller.can(verb, plural, None);
            let mut collection = Vec::new();
            if *per_object || may("list") {
                collection.push("GET");
            }
            if may("create") {
                collection.push("POST");
            }
            let mut resource = Vec::new();
            if *per_object || may("get") {
                resource.push("GET");
            }
            if may("update") {
                resource.push("PUT");
            }
            if may("delete") {
                resource.push("DELETE");
            }
            json!({
                "id": id,
                "type": "schema",
                "pluralName": plural,
                "collectionMethods": collection,
                "resourceMethods": resource,
            })
        })
        .collect();
    Json(json!({ "type": "collection", "resourceType": "schema", "data": data }))
}
