//! `GET /v3/provisioners`: the drivers this server builds clusters with, each with the spec field its
//! settings go in and, where known, the JSON Schema of those settings — what the console builds its
//! create forms from. The builtin engines' schemas come from their types (`rkeConfig`, `gkeConfig`,
//! `aksConfig`, `eksConfig`); a plugged-in provisioner's from its `settings_schema`, for
//! `driverConfig`. `imported` takes no settings (its clusters are joined by an agent).

use axum::Json;
use axum::extract::State;
use rancher_core::model::{AksConfig, EksConfig, GkeConfig, RkeConfig};
use schemars::JsonSchema;
use serde_json::{Value, json};

use crate::server::auth::Caller;
use crate::server::registration::IMPORTED_DRIVER;
use crate::server::state::AppState;

fn schema<T: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}

/// The spec field and the schema of a builtin engine's settings.
fn builtin(driver: &str) -> Option<(&'static str, Value)> {
    match driver {
        rancher_provision::rke::DRIVER => Some(("rkeConfig", schema::<RkeConfig>())),
        rancher_provision::hosted::gke::DRIVER => Some(("gkeConfig", schema::<GkeConfig>())),
        crate::server::provisioning::AKS_DRIVER => Some(("aksConfig", schema::<AksConfig>())),
        rancher_provision::hosted::eks::DRIVER => Some(("eksConfig", schema::<EksConfig>())),
        _ => None,
    }
}

/// `GET /v3/provisioners`.
pub(crate) async fn list(State(state): State<AppState>, _caller: Caller) -> Json<Value> {
    let data: Vec<Value> = state
        .provisioners
        .iter()
        .map(|(driver, provisioner)| {
            let (field, schema) = match builtin(driver) {
                Some((field, schema)) => (Some(field), Some(schema)),
                None if driver == IMPORTED_DRIVER => (None, None),
                None => (Some("driverConfig"), provisioner.settings_schema()),
            };
            json!({ "id": driver, "type": "provisioner", "field": field, "schema": schema })
        })
        .collect();
    Json(json!({ "type": "collection", "resourceType": "provisioner", "data": data }))
}
