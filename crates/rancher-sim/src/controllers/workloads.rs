//! Workload controllers: Deployment → ReplicaSet → Pods, DaemonSet (one pod per node), StatefulSet
//! (ordinal pods), Job (pods run to completion).

use std::sync::Arc;

use serde_json::{Value, json};
use sha2::Digest;

use super::{namespace_active, owned};
use crate::events::{self, Note, Reporter};
use crate::meta;
use crate::selectors::LabelSelector;
use crate::state::SimState;

const DEPLOYMENTS: &str = "deployments.apps";
const REPLICASETS: &str = "replicasets.apps";
const DAEMONSETS: &str = "daemonsets.apps";
const STATEFULSETS: &str = "statefulsets.apps";
const JOBS: &str = "jobs.batch";
const RS_CONTROLLER: &str = "replicaset-controller";

pub(super) fn reconcile(state: &SimState) {
    deployments(state);
    replicasets(state);
    daemonsets(state);
    statefulsets(state);
    jobs(state);
}

/// A pod built from a workload's template, owned by it.
fn pod_from_template(
    state: &SimState,
    owner: &Value,
    name: &str,
    extra_labels: &[(&str, &str)],
    node: Option<&str>,
) -> Value {
    let t = &owner["spec"]["template"];
    let mut labels = t["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    for (k, v) in extra_labels {
        labels[*k] = json!(v);
    }
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": meta::namespace(owner),
            "labels": labels,
            "ownerReferences": [meta::controller_ref(owner)],
        },
        "spec": t["spec"].clone(),
    });
    if let Some(a) = t["metadata"].get("annotations").filter(|a| a.is_object()) {
        pod["metadata"]["annotations"] = a.clone();
    }
    if let Some(n) = node {
        pod["spec"]["nodeName"] = json!(n);
    }
    let def = crate::resources::builtin_by_key("pods").cloned();
    if let Some(def) = def {
        let _ = crate::admission::admit(state, &def, &mut pod, None);
    }
    pod
}

/// Creates a pod of `owner` and reports it as `controller` does (`SuccessfulCreate`).
fn create_pod(state: &SimState, owner: &Value, pod: Value, controller: &str) {
    if namespace_active(state, meta::namespace(&pod)) {
        let name = meta::name(&pod).to_string();
        if state.store.create("pods", pod).is_ok() {
            let note = Note::normal("SuccessfulCreate", format!("Created pod: {name}"));
            events::record(state, owner, note, Reporter::controller(controller));
        }
    }
}

/// The deployment controller's `ScalingReplicaSet` event.
fn scaled(state: &SimState, d: &Value, rs: &str, from: i64, to: i64) {
    if from != to {
        let dir = if to > from { "up" } else { "down" };
        let note =
            Note::normal("ScalingReplicaSet", format!("Scaled {dir} replica set {rs} from {from} to {to}"));
        events::record(state, d, note, Reporter::controller("deployment-controller"));
    }
}

fn pod_ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// `pod-template-hash`: a short stable hash of the pod template.
fn template_hash(template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let digest = sha2::Sha256::digest(template.to_string().as_bytes());
    digest.iter().take(10).map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

fn set_status(state: &SimState, key: &str, o: &Value, status: Value) {
    let mut next_status = o["status"].clone();
    if !next_status.is_object() {
        next_status = json!({});
    }
    crate::patch::merge(&mut next_status, &status);
    if next_status == o["status"] {
        return;
    }
    let _ = state.store.mutate(key, meta::namespace(o), meta::name(o), |v| {
        v["status"] = next_status;
        true
    });
}

fn revision_of(r: &Value) -> i64 {
    r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `maxSurge` (rounded up) and `maxUnavailable` (rounded down) of a rolling update, defaulting to
/// 25% each; both zero means one pod may be unavailable, as the API server's defaulting ensures.
fn rolling_params(ru: &Value, replicas: i64) -> (i64, i64) {
    let scaled = |v: &Value, up: bool| -> i64 {
        let pct = |p: i64| if up { (replicas * p + 99) / 100 } else { replicas * p / 100 };
        match v {
            Value::Number(n) => n.as_i64().unwrap_or(0).max(0),
            Value::String(s) => match s.strip_suffix('%') {
                Some(p) => pct(p.parse::<i64>().unwrap_or(25).max(0)),
                None => s.parse::<i64>().unwrap_or(0).max(0),
            },
            _ => pct(25),
        }
    };
    let surge = scaled(&ru["maxSurge"], true);
    let unavailable = scaled(&ru["maxUnavailable"], false);
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) }
}

fn deployments(state: &SimState) {
    let (items, _) = state.store.list(DEPLOYMENTS, None);
    for d in items.iter().filter(|d| !meta::is_deleting(d)) {
        let ns = meta::namespace(d);
        let uid = meta::uid(d);
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let hash = template_hash(&d["spec"]["template"]);
        let rses = owned(state, REPLICASETS, ns, uid);
        let revision = rses
            .iter()
            .filter_map(|r| {
                r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()?
                    .parse::<i64>()
                    .ok()
            })
            .max()
            .unwrap_or(0);
        let current =
            rses.iter().find(|r| r["metadata"]["labels"]["pod-template-hash"] == hash.as_str()).cloned();
        let recreate = d["spec"]["strategy"]["type"] == "Recreate";
        let (surge, max_unavailable) = rolling_params(&d["spec"]["strategy"]["rollingUpdate"], replicas);
        let mut olds: Vec<&Arc<Value>> =
            rses.iter().filter(|r| r["metadata"]["labels"]["pod-template-hash"] != hash.as_str()).collect();
        olds.sort_by_key(|r| revision_of(r));
        let spec_of = |r: &Value| r["spec"]["replicas"].as_i64().unwrap_or(0);
        let old_spec: i64 = olds.iter().map(|r| spec_of(r)).sum();
        let old_pods: i64 = olds.iter().map(|r| r["status"]["replicas"].as_i64().unwrap_or(0)).sum();
        // Recreate: the new ReplicaSet grows only once every old pod is gone. RollingUpdate: it grows
        // while the total stays within replicas + maxSurge.
        let new_target = |cur: i64| -> i64 {
            if recreate {
                if old_spec == 0 && old_pods == 0 { replicas } else { 0 }
            } else if old_spec == 0 {
                replicas
            } else {
                (cur + (replicas + surge - cur - old_spec).max(0)).min(replicas).max(cur.min(replicas))
            }
        };
        let mut new_spec = 0;
        let mut new_available = 0;
        match &current {
            None if namespace_active(state, ns) => {
                let initial = new_target(0);
                new_spec = initial;
                let mut template = d["spec"]["template"].clone();
                template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                let mut selector = d["spec"]["selector"].clone();
                selector["matchLabels"]["pod-template-hash"] = json!(hash);
                let rs = json!({
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": format!("{}-{hash}", meta::name(d)),
                        "namespace": ns,
                        "labels": template["metadata"]["labels"],
                        "annotations": {
                            "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                            "deployment.kubernetes.io/max-replicas": (replicas + surge).to_string(),
                            "deployment.kubernetes.io/revision": (revision + 1).to_string(),
                        },
                        "ownerReferences": [meta::controller_ref(d)],
                    },
                    "spec": {"replicas": initial, "selector": selector, "template": template},
                    "status": {"replicas": 0},
                });
                if state.store.create(REPLICASETS, rs).is_ok() {
                    scaled(state, d, &format!("{}-{hash}", meta::name(d)), 0, initial);
                }
            }
            Some(rs) => {
                let cur = spec_of(rs);
                new_spec = new_target(cur);
                new_available = rs["status"]["availableReplicas"].as_i64().unwrap_or(0);
                if new_spec != cur {
                    let r = state.store.mutate(REPLICASETS, ns, meta::name(rs), |v| {
                        v["spec"]["replicas"] = json!(new_spec);
                        v["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
                            json!(replicas.to_string());
                        true
                    });
                    if matches!(r, Ok(Some(_))) {
                        scaled(state, d, meta::name(rs), cur, new_spec);
                    }
                }
            }
            _ => {}
        }
        // Old ReplicaSets shrink while at least replicas - maxUnavailable pods stay available: first
        // their unavailable pods, then available ones (oldest ReplicaSet first).
        let min_available = replicas - max_unavailable;
        let old_available: i64 =
            olds.iter().map(|r| r["status"]["availableReplicas"].as_i64().unwrap_or(0)).sum();
        let mut cleanup = new_spec + old_spec - min_available - (new_spec - new_available).max(0);
        let mut scale_down = new_available + old_available - min_available;
        for old in olds {
            let spec = spec_of(old);
            let target = if recreate {
                0
            } else {
                let unhealthy = (spec - old["status"]["availableReplicas"].as_i64().unwrap_or(0)).max(0);
                let a = unhealthy.min(cleanup.max(0));
                cleanup -= a;
                let b = (spec - a).min(scale_down.max(0));
                scale_down -= b;
                spec - a - b
            };
            if target != spec {
                let r = state.store.mutate(REPLICASETS, ns, meta::name(old), |v| {
                    v["spec"]["replicas"] = json!(target);
                    true
                });
                if matches!(r, Ok(Some(_))) {
                    scaled(state, d, meta::name(old), spec, target);
                }
            }
        }
        let sum = |f: &str| rses.iter().map(|r| r["status"][f].as_i64().unwrap_or(0)).sum::<i64>();
        let updated = current.as_ref().map(|r| r["status"]["replicas"].as_i64().unwrap_or(0)).unwrap_or(0);
        let available = sum("availableReplicas");
        let now = meta::now();
        let avail_cond = if available >= replicas {
            ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        } else {
            ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        };
        let rolled = old_spec == 0 && updated >= replicas && available >= replicas;
        let progressing = if rolled {
            (
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{}-{hash}\" has successfully progressed.", meta::name(d)),
            )
        } else {
            ("ReplicaSetUpdated", format!("ReplicaSet \"{}-{hash}\" is progressing.", meta::name(d)))
        };
        let mut conditions = vec![
            json!({"type": "Available", "status": avail_cond.0, "reason": avail_cond.1, "message": avail_cond.2, "lastUpdateTime": now, "lastTransitionTime": now}),
            json!({"type": "Progressing", "status": "True", "reason": progressing.0, "message": progressing.1, "lastUpdateTime": now, "lastTransitionTime": now}),
        ];
        // Keep transition times stable when a condition's status did not change.
        for c in conditions.iter_mut() {
            if let Some(old) =
                d["status"]["conditions"].as_array().into_iter().flatten().find(|o| {
                    o["type"] == c["type"] && o["status"] == c["status"] && o["reason"] == c["reason"]
                })
            {
                *c = old.clone();
            }
        }
        let mut status = json!({
            "observedGeneration": d["metadata"]["generation"],
            "replicas": sum("replicas"),
            "updatedReplicas": updated,
            "readyReplicas": sum("readyReplicas"),
            "availableReplicas": available,
            "conditions": conditions,
        });
        let unavailable = (replicas - available).max(0);
        status["unavailableReplicas"] = if unavailable > 0 { json!(unavailable) } else { Value::Null };
        set_status(state, DEPLOYMENTS, d, status);
        let rev = current.as_ref().and_then(|r| {
            r["metadata"]["annotations"]["deployment.kubernetes.io/revision"].as_str().map(String::from)
        });
        if let Some(rev) = rev
            && d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] != rev.as_str()
        {
            let _ = state.store.mutate(DEPLOYMENTS, ns, meta::name(d), |v| {
                if !v["metadata"]["annotations"].is_object() {
                    v["metadata"]["annotations"] = json!({});
                }
                v["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!(rev);
                true
            });
        }
    }
}

fn replicasets(state: &SimState) {
    let (items, _) = state.store.list(REPLICASETS, None);
    for rs in items.iter().filter(|r| !meta::is_deleting(r)) {
        let ns = meta::namespace(rs);
        let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        // Terminating pods no longer count: replacements start while they stop.
        let active = |pods: Vec<Arc<Value>>| -> Vec<Arc<Value>> {
            pods.into_iter().filter(|p| !meta::is_deleting(p)).collect()
        };
        let mut pods = active(owned(state, "pods", ns, meta::uid(rs)));
        if pods.len() < want {
            for _ in pods.len()..want {
                let name = format!("{}-{}", meta::name(rs), meta::random_suffix(5));
                create_pod(state, rs, pod_from_template(state, rs, &name, &[], None), RS_CONTROLLER);
            }
        } else if pods.len() > want {
            pods.sort_by_key(|p| {
                (
                    pod_ready(p),
                    std::cmp::Reverse(p["metadata"]["creationTimestamp"].as_str().unwrap_or("").to_string()),
                )
            });
            for p in pods.iter().take(pods.len() - want) {
                if state.store.delete("pods", ns, meta::name(p), None, None, None).is_ok() {
                    let note = Note::normal("SuccessfulDelete", format!("Deleted pod: {}", meta::name(p)));
                    events::record(state, rs, note, Reporter::controller(RS_CONTROLLER));
                }
            }
        }
        let pods = active(owned(state, "pods", ns, meta::uid(rs)));
        let ready = pods.iter().filter(|p| pod_ready(p)).count();
        let sel = LabelSelector::from_structured(&rs["spec"]["selector"]);
        let labeled = pods.iter().filter(|p| sel.as_ref().is_some_and(|s| s.matches_object(p))).count();
        set_status(
            state,
            REPLICASETS,
            rs,
            json!({
                "replicas": pods.len(),
                "fullyLabeledReplicas": labeled,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "observedGeneration": rs["metadata"]["generation"],
            }),
        );
    }
}

fn schedulable_nodes(state: &SimState, selector: &Value) -> Vec<String> {
    let (nodes, _) = state.store.list("nodes", None);
    let want = meta::str_map(selector);
    nodes
        .iter()
        .filter(|n| {
            let labels = meta::labels(n);
            want.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .map(|n| meta::name(n).to_string())
        .collect()
}

fn daemonsets(state: &SimState) {
    let (items, _) = state.store.list(DAEMONSETS, None);
    for ds in items.iter().filter(|d| !meta::is_deleting(d)) {
        let ns = meta::namespace(ds);
        let nodes = schedulable_nodes(state, &ds["spec"]["template"]["spec"]["nodeSelector"]);
        let pods = owned(state, "pods", ns, meta::uid(ds));
        for node in &nodes {
            if !pods.iter().any(|p| p["spec"]["nodeName"] == node.as_str()) {
                let name = format!("{}-{}", meta::name(ds), meta::random_suffix(5));
                let pod = pod_from_template(state, ds, &name, &[], Some(node));
                create_pod(state, ds, pod, "daemonset-controller");
            }
        }
        for p in pods.iter().filter(|p| !nodes.iter().any(|n| p["spec"]["nodeName"] == n.as_str())) {
            let _ = state.store.delete("pods", ns, meta::name(p), None, None, None);
        }
        let pods = owned(state, "pods", ns, meta::uid(ds));
        let ready = pods.iter().filter(|p| pod_ready(p)).count();
        set_status(
            state,
            DAEMONSETS,
            ds,
            json!({
                "desiredNumberScheduled": nodes.len(),
                "currentNumberScheduled": pods.len(),
                "updatedNumberScheduled": pods.len(),
                "numberReady": ready,
                "numberAvailable": ready,
                "numberMisscheduled": 0,
                "observedGeneration": ds["metadata"]["generation"],
            }),
        );
    }
}

fn statefulsets(state: &SimState) {
    let (items, _) = state.store.list(STATEFULSETS, None);
    for sts in items.iter().filter(|d| !meta::is_deleting(d)) {
        let ns = meta::namespace(sts);
        let want = sts["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        let pods = owned(state, "pods", ns, meta::uid(sts));
        let base = meta::name(sts);
        for i in 0..want {
            let name = format!("{base}-{i}");
            if !pods.iter().any(|p| meta::name(p) == name) {
                let mut pod = pod_from_template(
                    state,
                    sts,
                    &name,
                    &[
                        ("statefulset.kubernetes.io/pod-name", &name),
                        ("apps.kubernetes.io/pod-index", &i.to_string()),
                    ],
                    None,
                );
                pod["spec"]["hostname"] = json!(name);
                if let Some(svc) = sts["spec"]["serviceName"].as_str() {
                    pod["spec"]["subdomain"] = json!(svc);
                }
                create_pod(state, sts, pod, "statefulset-controller");
                break; // OrderedReady: one at a time.
            }
        }
        for p in pods.iter() {
            let idx = meta::name(p).strip_prefix(&format!("{base}-")).and_then(|s| s.parse::<usize>().ok());
            if idx.is_none_or(|i| i >= want) {
                let _ = state.store.delete("pods", ns, meta::name(p), None, None, None);
            }
        }
        let pods = owned(state, "pods", ns, meta::uid(sts));
        let ready = pods.iter().filter(|p| pod_ready(p)).count();
        set_status(
            state,
            STATEFULSETS,
            sts,
            json!({
                "replicas": pods.len(),
                "readyReplicas": ready,
                "currentReplicas": pods.len(),
                "updatedReplicas": pods.len(),
                "availableReplicas": ready,
                "observedGeneration": sts["metadata"]["generation"],
            }),
        );
    }
}

fn jobs(state: &SimState) {
    let (items, _) = state.store.list(JOBS, None);
    for job in items.iter().filter(|j| !meta::is_deleting(j)) {
        let done = job["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Complete" && c["status"] == "True");
        if done || job["spec"]["suspend"] == true {
            continue;
        }
        let ns = meta::namespace(job);
        let completions = job["spec"]["completions"].as_i64().unwrap_or(1).max(1) as usize;
        let parallelism = job["spec"]["parallelism"].as_i64().unwrap_or(1).max(1) as usize;
        let pods: Vec<Arc<Value>> = owned(state, "pods", ns, meta::uid(job));
        let succeeded = pods.iter().filter(|p| p["status"]["phase"] == "Succeeded").count();
        let active = pods
            .iter()
            .filter(|p| matches!(p["status"]["phase"].as_str(), Some("Pending" | "Running") | None))
            .count();
        let now = meta::now();
        if succeeded >= completions {
            set_status(
                state,
                JOBS,
                job,
                json!({
                    "succeeded": succeeded,
                    "active": null,
                    "ready": 0,
                    "completionTime": now,
                    "conditions": [
                        {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now},
                        {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now},
                    ],
                }),
            );
            events::record(
                state,
                job,
                Note::normal("Completed", "Job completed"),
                Reporter::controller("job-controller"),
            );
            continue;
        }
        let start = (completions - succeeded).min(parallelism).saturating_sub(active);
        for _ in 0..start {
            let name = format!("{}-{}", meta::name(job), meta::random_suffix(5));
            create_pod(state, job, pod_from_template(state, job, &name, &[], None), "job-controller");
        }
        let mut status = json!({"active": active + start, "succeeded": succeeded, "ready": 0});
        if job["status"]["startTime"].is_null() {
            status["startTime"] = json!(now);
        }
        set_status(state, JOBS, job, status);
    }
}
