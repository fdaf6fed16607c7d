//! The stand-in's state and its long-running operations.
//!
//! An operation is PENDING for the first quarter of the configured operation time, RUNNING until
//! the time is up, then DONE; its effect lands when it is done (state advances whenever the
//! stand-in is asked anything). While an operation runs on a cluster, other changes to that cluster
//! are refused with 400 `FAILED_PRECONDITION`, as GKE refuses incompatible operations.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use axum::response::Response;
use serde_json::{Value, json};

use super::State;
use super::api::{google_error, ok, resolve_version, version_numbers};
/// A cluster's key: project, location, name.
pub(super) type ClusterKey = (String, String, String);

/// What the stand-in holds.
#[derive(Default)]
pub(super) struct Inner {
    pub(super) clusters: BTreeMap<ClusterKey, Value>,
    operations: BTreeMap<String, Op>,
    pub(super) tokens: HashMap<String, Instant>,
    pub(super) revoked: bool,
    /// Calls left to throttle, and the `Retry-After` seconds.
    pub(super) throttle: Option<(u32, u64)>,
    pub(super) fail_next: Option<String>,
    /// Operations stay where they are (for asserting on in-between states without racing the clock).
    pub(super) held: bool,
    pub(super) calls: Vec<super::Call>,
    /// What clusters report as `endpoint` and CA (base64) once set after start, instead of the options'.
    pub(super) endpoint: Option<(String, String)>,
    next_op: u64,
}

struct Op {
    json: Value,
    cluster: ClusterKey,
    started: Instant,
    effect: Effect,
    fail: Option<String>,
    done: bool,
}

pub(super) enum Effect {
    CreateCluster,
    DeleteCluster,
    UpgradeMaster(String),
    UpdateCluster(Value),
    SetLabels(Value),
    CreatePool(String),
    DeletePool(String),
    SetSize(String, i64),
    UpdatePool(String, String, Option<String>),
}

pub(super) fn fingerprint(labels: &Value) -> String {
    // FNV-1a of the canonical JSON: changes whenever the labels do.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in labels.to_string().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    format!("{:016x}", h)[..8].to_owned()
}

pub(super) fn pools_mut(cluster: &mut Value) -> &mut Vec<Value> {
    if !cluster["nodePools"].is_array() {
        cluster["nodePools"] = json!([]);
    }
    cluster["nodePools"].as_array_mut().expect("an array")
}

pub(super) fn pool_mut<'a>(cluster: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    pools_mut(cluster).iter_mut().find(|p| p["name"] == name)
}

/// The oldest pool version (Google's deprecated `currentNodeVersion`) and the node count.
pub(super) fn refresh_derived(cluster: &mut Value) {
    let pools = pools_mut(cluster);
    let oldest = pools
        .iter()
        .filter_map(|p| p["version"].as_str())
        .min_by_key(|v| version_numbers(v))
        .map(str::to_owned);
    let count: i64 = pools.iter().filter_map(|p| p["initialNodeCount"].as_i64()).sum();
    let master = cluster["currentMasterVersion"].clone();
    cluster["currentNodeVersion"] = oldest.map_or(master, Value::from);
    cluster["currentNodeCount"] = json!(count);
}

impl Inner {
    /// Moves every operation on to where its age puts it, applying the effects of those now done.
    pub(super) fn advance(&mut self, state: &State, now: Instant) {
        if self.held {
            return;
        }
        let time = state.options.operation_time;
        let names: Vec<String> =
            self.operations.iter().filter(|(_, o)| !o.done).map(|(n, _)| n.clone()).collect();
        for name in names {
            let op = self.operations.get_mut(&name).expect("listed");
            let age = now.saturating_duration_since(op.started);
            if age < time / 4 {
                continue;
            }
            if age < time {
                op.json["status"] = json!("RUNNING");
                continue;
            }
            op.done = true;
            op.json["status"] = json!("DONE");
            op.json["endTime"] = json!(jiff::Timestamp::now().to_string());
            let fail = op.fail.clone();
            if let Some(message) = &fail {
                op.json["error"] = json!({"code": 13, "message": message});
                op.json["statusMessage"] = json!(message);
            }
            let key = op.cluster.clone();
            let effect = std::mem::replace(&mut op.effect, Effect::CreateCluster);
            self.finish(state, &key, effect, fail);
        }
    }

    fn finish(&mut self, state: &State, key: &ClusterKey, effect: Effect, fail: Option<String>) {
        if let (Some(message), Some(c)) = (&fail, self.clusters.get_mut(key)) {
            match effect {
                Effect::CreateCluster | Effect::DeleteCluster => {
                    c["status"] = json!("ERROR");
                    c["statusMessage"] = json!(message);
                }
                Effect::CreatePool(p) => {
                    c["status"] = json!("RUNNING");
                    if let Some(pool) = pool_mut(c, &p) {
                        pool["status"] = json!("ERROR");
                        pool["statusMessage"] = json!(message);
                    }
                }
                Effect::DeletePool(p) | Effect::SetSize(p, _) | Effect::UpdatePool(p, _, _) => {
                    if let Some(pool) = pool_mut(c, &p) {
                        pool["status"] = json!("RUNNING");
                    }
                }
                _ => c["status"] = json!("RUNNING"),
            }
            return;
        }
        if let Effect::DeleteCluster = effect {
            self.clusters.remove(key);
            return;
        }
        let Some(c) = self.clusters.get_mut(key) else { return };
        c["status"] = json!("RUNNING");
        match effect {
            Effect::CreateCluster => {
                let (endpoint, ca_b64) = self
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| (state.options.endpoint.clone(), state.cluster_ca_b64.clone()));
                c["endpoint"] = json!(endpoint);
                c["masterAuth"] = json!({"clusterCaCertificate": ca_b64});
                for p in pools_mut(c) {
                    p["status"] = json!("RUNNING");
                }
            }
            Effect::UpgradeMaster(v) => c["currentMasterVersion"] = json!(v),
            Effect::SetLabels(labels) => {
                c["labelFingerprint"] = json!(fingerprint(&labels));
                c["resourceLabels"] = labels;
            }
            Effect::UpdateCluster(u) => apply_update(c, &u, &state.options.default_version),
            Effect::CreatePool(p) | Effect::SetSize(p, _) | Effect::UpdatePool(p, _, _)
                if pool_mut(c, &p).is_none() => {}
            Effect::CreatePool(p) => pool_mut(c, &p).expect("checked")["status"] = json!("RUNNING"),
            Effect::DeletePool(p) => pools_mut(c).retain(|x| x["name"] != p.as_str()),
            Effect::SetSize(p, n) => {
                let pool = pool_mut(c, &p).expect("checked");
                pool["initialNodeCount"] = json!(n);
                pool["status"] = json!("RUNNING");
            }
            Effect::UpdatePool(p, v, image) => {
                let pool = pool_mut(c, &p).expect("checked");
                pool["version"] = json!(v);
                if let Some(i) = image {
                    pool["config"]["imageType"] = json!(i);
                }
                pool["status"] = json!("RUNNING");
            }
            Effect::DeleteCluster => unreachable!("handled above"),
        }
        refresh_derived(c);
    }

    /// The operation `name` as `operations.get` in `project` and `location` (`-`: any) shows it.
    pub(super) fn operation(&self, project: &str, location: &str, name: &str) -> Option<Value> {
        let op = self.operations.get(name)?;
        let (p, l, _) = &op.cluster;
        (p == project && (location == "-" || l == location)).then(|| op.json.clone())
    }

    /// The running operation on `key`, if any.
    pub(super) fn busy(&self, key: &ClusterKey) -> Option<Response> {
        let (name, _) = self.operations.iter().find(|(_, o)| !o.done && &o.cluster == key)?;
        Some(google_error(
            400,
            "FAILED_PRECONDITION",
            format!(
                "Cluster is running incompatible operation {name}. Please wait and try again once it is done."
            ),
        ))
    }

    pub(super) fn start(
        &mut self,
        state: &State,
        key: &ClusterKey,
        kind: &str,
        target: String,
        effect: Effect,
    ) -> Response {
        self.next_op += 1;
        let name = format!("operation-{:08}-{}", self.next_op, super::token::random_hex(4));
        let (project, location, _) = key;
        let json = json!({
            "name": name,
            "zone": location,
            "location": location,
            "operationType": kind,
            "status": "PENDING",
            "selfLink": format!("{}/v1/projects/{project}/locations/{location}/operations/{name}", state.base_url),
            "targetLink": target,
            "startTime": jiff::Timestamp::now().to_string(),
        });
        let fail = self.fail_next.take();
        self.operations.insert(
            name,
            Op {
                json: json.clone(),
                cluster: key.clone(),
                started: Instant::now(),
                effect,
                fail,
                done: false,
            },
        );
        ok(json)
    }
}

fn apply_update(c: &mut Value, u: &Value, default: &str) {
    if let Some(v) = u["desiredMasterVersion"].as_str() {
        c["currentMasterVersion"] = json!(resolve_version(v, default).unwrap_or_else(|_| v.to_owned()));
    }
    for (from, to) in [
        ("desiredLoggingService", "loggingService"),
        ("desiredMonitoringService", "monitoringService"),
        ("desiredMasterAuthorizedNetworksConfig", "masterAuthorizedNetworksConfig"),
        ("desiredLocations", "locations"),
    ] {
        if !u[from].is_null() {
            c[to] = u[from].clone();
        }
    }
    let pool = u["desiredNodePoolId"].as_str().map(str::to_owned);
    if let (Some(p), false) = (&pool, u["desiredNodePoolAutoscaling"].is_null())
        && let Some(pool) = pool_mut(c, p)
    {
        pool["autoscaling"] = u["desiredNodePoolAutoscaling"].clone();
    }
    if let Some(v) = u["desiredNodeVersion"].as_str() {
        let v = resolve_version(v, default).unwrap_or_else(|_| v.to_owned());
        for p in pools_mut(c) {
            if pool.as_deref().is_none_or(|name| p["name"] == name) {
                p["version"] = json!(v);
            }
        }
    }
}
