//! The stand-in's memory: groups, clusters with their pools, operations, faults, the call record.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use base64::Engine as _;
use serde_json::{Value, json};

use super::{AksStandInConfig, KubeTarget};

/// One request the stand-in answered.
#[derive(Clone, Debug)]
pub struct Call {
    /// `GET`, `PUT`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// When it arrived.
    pub at: Instant,
    /// The status it was answered with.
    pub status: u16,
}

pub(super) struct Group {
    pub(super) name: String,
    pub(super) location: String,
    pub(super) tags: Value,
}

pub(super) struct Cluster {
    pub(super) rg: String,
    pub(super) name: String,
    /// The resource as last PUT, without `agentPoolProfiles` (the pools live in `pools`).
    pub(super) body: Value,
    /// Pool name → its properties.
    pub(super) pools: BTreeMap<String, Value>,
    /// The operation running on the cluster or one of its pools.
    pub(super) busy: Option<String>,
}

#[derive(Clone, Debug)]
pub(super) enum Effect {
    ClusterPut,
    PoolPut(String),
    ClusterDelete,
    PoolDelete(String),
    GroupDelete,
}

pub(super) struct Op {
    pub(super) location: String,
    pub(super) started: Instant,
    pub(super) start_time: String,
    pub(super) fail: Option<(String, String)>,
    pub(super) done: bool,
    pub(super) effect: Effect,
    /// Lower-cased (rg, cluster); cluster empty for a group.
    pub(super) target: (String, String),
}

pub(super) struct State {
    pub(super) config: AksStandInConfig,
    pub(super) base_url: String,
    pub(super) ca_pem: String,
    pub(super) secret_revoked: bool,
    pub(super) tokens: HashSet<String>,
    pub(super) tokens_issued: usize,
    pub(super) groups: BTreeMap<String, Group>,
    pub(super) clusters: BTreeMap<(String, String), Cluster>,
    pub(super) ops: BTreeMap<String, Op>,
    pub(super) throttle: Option<(usize, u64)>,
    pub(super) fail_next: Option<(String, String)>,
    pub(super) calls: Vec<Call>,
    pub(super) target: Option<KubeTarget>,
    /// While set, no operation ends (tests look at a resource mid-operation without racing).
    pub(super) held: bool,
    next_id: u64,
    epoch: Instant,
}

pub(super) fn key(rg: &str, name: &str) -> (String, String) {
    (rg.to_ascii_lowercase(), name.to_ascii_lowercase())
}

impl State {
    pub(super) fn new(config: AksStandInConfig, base_url: String, ca_pem: String) -> State {
        State {
            config,
            base_url,
            ca_pem,
            secret_revoked: false,
            tokens: HashSet::new(),
            tokens_issued: 0,
            groups: BTreeMap::new(),
            clusters: BTreeMap::new(),
            ops: BTreeMap::new(),
            throttle: None,
            fail_next: None,
            calls: Vec::new(),
            target: None,
            held: false,
            next_id: 0,
            epoch: Instant::now(),
        }
    }

    pub(super) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A fresh opaque token (test-only: unique, not unguessable).
    pub(super) fn issue_token(&mut self) -> String {
        let n = self.next_id();
        let t = format!("standin.{n}.{}", self.epoch.elapsed().as_nanos());
        self.tokens.insert(t.clone());
        self.tokens_issued += 1;
        t
    }

    /// A timestamp for `startTime`/`endTime` (the stand-in's clock, in RFC 3339 shape).
    fn timestamp(&self) -> String {
        let ms = self.epoch.elapsed().as_millis();
        format!("2026-01-01T00:{:02}:{:02}.{:03}Z", (ms / 60_000) % 60, (ms / 1000) % 60, ms % 1000)
    }

    /// Starts an operation on `target`; returns its id.
    pub(super) fn start_op(&mut self, effect: Effect, target: (String, String), location: &str) -> String {
        let id = format!("{:08x}-0000-4000-8000-{:012x}", self.next_id(), self.epoch.elapsed().as_micros());
        let op = Op {
            location: location.to_ascii_lowercase().replace(' ', ""),
            started: Instant::now(),
            start_time: self.timestamp(),
            fail: self.fail_next.take(),
            done: false,
            effect,
            target: target.clone(),
        };
        if let Some(c) = self.clusters.get_mut(&target) {
            c.busy = Some(id.clone());
        }
        self.ops.insert(id.clone(), op);
        id
    }

    /// Ends every operation whose time has come, applying what it does.
    pub(super) fn tick(&mut self, now: Instant) {
        if self.held {
            return;
        }
        let due: Vec<String> = self
            .ops
            .iter()
            .filter(|(_, o)| !o.done && now >= o.started + self.config.operation_time)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let (effect, target, failed) = {
                let o = self.ops.get_mut(&id).expect("due op");
                o.done = true;
                (o.effect.clone(), o.target.clone(), o.fail.is_some())
            };
            self.finish(&effect, &target, failed);
            if let Some(c) = self.clusters.get_mut(&target)
                && c.busy.as_deref() == Some(id.as_str())
            {
                c.busy = None;
            }
        }
    }

    fn finish(&mut self, effect: &Effect, target: &(String, String), failed: bool) {
        let end = if failed { "Failed" } else { "Succeeded" };
        match effect {
            Effect::GroupDelete if !failed => {
                self.groups.remove(&target.0);
                self.clusters.retain(|(rg, _), _| *rg != target.0);
            }
            Effect::ClusterDelete if !failed => {
                self.clusters.remove(target);
            }
            Effect::PoolDelete(p) if !failed => {
                if let Some(c) = self.clusters.get_mut(target) {
                    c.pools.remove(p);
                    c.body["properties"]["provisioningState"] = json!("Succeeded");
                }
            }
            Effect::ClusterPut => {
                if let Some(c) = self.clusters.get_mut(target) {
                    c.body["properties"]["provisioningState"] = json!(end);
                    if !failed {
                        let v = c.body["properties"]["kubernetesVersion"].clone();
                        c.body["properties"]["currentKubernetesVersion"] = v;
                    }
                    for p in c.pools.values_mut() {
                        p["provisioningState"] = json!(end);
                        if !failed {
                            p["currentOrchestratorVersion"] = p["orchestratorVersion"].clone();
                        }
                    }
                }
            }
            Effect::PoolPut(name) => {
                if let Some(c) = self.clusters.get_mut(target) {
                    c.body["properties"]["provisioningState"] = json!(end);
                    if let Some(p) = c.pools.get_mut(name) {
                        p["provisioningState"] = json!(end);
                        if !failed {
                            p["currentOrchestratorVersion"] = p["orchestratorVersion"].clone();
                        }
                    }
                }
            }
            _ => {
                // A failed delete leaves the resource as it was, marked Failed.
                if let Some(c) = self.clusters.get_mut(target) {
                    c.body["properties"]["provisioningState"] = json!("Failed");
                }
            }
        }
    }

    /// The operation status resource (`Azure-AsyncOperation`).
    pub(super) fn op_status(&self, id: &str) -> Option<Value> {
        let o = self.ops.get(id)?;
        let mut v =
            json!({ "id": format!("{}/operations/{id}", o.location), "name": id, "startTime": o.start_time });
        match (&o.fail, o.done) {
            (_, false) => v["status"] = json!("InProgress"),
            (None, true) => v["status"] = json!("Succeeded"),
            (Some((code, message)), true) => {
                v["status"] = json!("Failed");
                v["error"] = json!({ "code": code, "message": message });
            }
        }
        if o.done {
            v["endTime"] = json!(self.timestamp());
        }
        Some(v)
    }

    fn fqdn(&self, dns_prefix: &str, location: &str) -> String {
        match &self.target {
            Some(t) => {
                let rest = t.server.split_once("://").map_or(t.server.as_str(), |(_, r)| r);
                rest.split('/').next().unwrap_or(rest).to_owned()
            }
            // `.invalid` never resolves (RFC 2606): a cluster nobody can reach.
            None => format!("{dns_prefix}.hcp.{location}.azmk8s.invalid"),
        }
    }

    /// The cluster as GET shows it: the stored body with its pools and read-only fields.
    pub(super) fn cluster_view(&self, rg: &str, name: &str) -> Option<Value> {
        let c = self.clusters.get(&key(rg, name))?;
        let sub = &self.config.subscription_id;
        let mut v = c.body.clone();
        v["id"] = json!(format!(
            "/subscriptions/{sub}/resourcegroups/{}/providers/Microsoft.ContainerService/managedClusters/{}",
            c.rg, c.name
        ));
        v["name"] = json!(c.name);
        v["type"] = json!("Microsoft.ContainerService/ManagedClusters");
        let props = &mut v["properties"];
        let prefix = props["dnsPrefix"].as_str().unwrap_or(&c.name).to_owned();
        let location = c.body["location"].as_str().unwrap_or_default().to_owned();
        let private = props["apiServerAccessProfile"]["enablePrivateCluster"] == json!(true);
        if private {
            props["privateFQDN"] = json!(self.fqdn(&format!("{prefix}.privatelink"), &location));
        } else {
            props["fqdn"] = json!(self.fqdn(&prefix, &location));
        }
        props["powerState"] = json!({"code": "Running"});
        if let Some(sp) = props.get_mut("servicePrincipalProfile").and_then(Value::as_object_mut) {
            sp.remove("secret"); // write-only
        }
        props["agentPoolProfiles"] = Value::Array(
            c.pools
                .iter()
                .map(|(n, p)| {
                    let mut p = p.clone();
                    p["name"] = json!(n);
                    p
                })
                .collect(),
        );
        Some(v)
    }

    /// An agent pool resource as GET shows it.
    pub(super) fn pool_view(&self, rg: &str, cluster: &str, pool: &str) -> Option<Value> {
        let c = self.clusters.get(&key(rg, cluster))?;
        let p = c.pools.get(pool)?;
        Some(json!({
            "id": format!(
                "/subscriptions/{}/resourcegroups/{}/providers/Microsoft.ContainerService/managedClusters/{}/agentPools/{pool}",
                self.config.subscription_id, c.rg, c.name
            ),
            "name": pool,
            "type": "Microsoft.ContainerService/managedClusters/agentPools",
            "properties": p,
        }))
    }

    /// The `clusterAdmin` kubeconfig, base64 as Azure sends it.
    pub(super) fn admin_kubeconfig(&self, rg: &str, name: &str) -> Option<String> {
        let view = self.cluster_view(rg, name)?;
        let e = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let (server, ca, token) = match &self.target {
            Some(t) => (t.server.clone(), t.ca_pem.clone(), t.token.clone()),
            None => {
                let fqdn = view["properties"]["fqdn"].as_str().or(view["properties"]["privateFQDN"].as_str());
                (
                    format!("https://{}:443", fqdn.unwrap_or("192.0.2.1")),
                    self.ca_pem.clone(),
                    "stand-in-admin-token".into(),
                )
            }
        };
        let yaml = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: {name}-admin\nclusters:\n- name: {name}\n  cluster:\n    \
             server: {server}\n    certificate-authority-data: {}\ncontexts:\n- name: {name}-admin\n  context:\n    \
             cluster: {name}\n    user: clusterAdmin_{rg}_{name}\nusers:\n- name: clusterAdmin_{rg}_{name}\n  user:\n    \
             token: {token}\n",
            e(&ca)
        );
        Some(e(&yaml))
    }

    pub(super) fn insert_existing(&mut self, rg: &str, name: &str, mut body: Value) {
        let pools = body["properties"]
            .as_object_mut()
            .and_then(|p| p.remove("agentPoolProfiles"))
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        body["properties"]["provisioningState"] = json!("Succeeded");
        let version = body["properties"]["kubernetesVersion"].clone();
        body["properties"]["currentKubernetesVersion"] = version.clone();
        let pools = pools
            .into_iter()
            .map(|mut p| {
                let n = p["name"].as_str().unwrap_or_default().to_owned();
                if let Some(o) = p.as_object_mut() {
                    o.remove("name");
                }
                p["provisioningState"] = json!("Succeeded");
                if p["orchestratorVersion"].is_null() {
                    p["orchestratorVersion"] = version.clone();
                }
                p["currentOrchestratorVersion"] = p["orchestratorVersion"].clone();
                (n, p)
            })
            .collect();
        let location = body["location"].as_str().unwrap_or("eastus").to_owned();
        self.groups.entry(rg.to_ascii_lowercase()).or_insert_with(|| Group {
            name: rg.to_owned(),
            location,
            tags: json!({}),
        });
        self.clusters.insert(
            key(rg, name),
            Cluster { rg: rg.to_owned(), name: name.to_owned(), body, pools, busy: None },
        );
    }
}
