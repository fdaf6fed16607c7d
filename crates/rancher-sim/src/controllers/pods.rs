//! The scheduler (bind pending pods to the least-loaded matching node) and the simulated kubelet
//! (start bound pods: Running, IP, ready containers; pods of Jobs run to completion).

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::events::{self, Note, Reporter};
use crate::meta;
use crate::state::SimState;

/// The scheduler's name in the events it reports.
const SCHEDULER: &str = "default-scheduler";

/// How long a simulated container takes to stop after SIGTERM (bounded by the grace period).
const STOP_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_secs(1);

/// How long a pod's containers take to stop once it is deleted: the longest `preStop` hook that
/// sleeps (`exec` of `sleep N`, also through `sh -c`), which the kubelet runs before SIGTERM, plus
/// [`STOP_AFTER`]. Hooks of other shapes take no time here.
fn stop_after(pod: &Value) -> jiff::SignedDuration {
    let hooks = pod["spec"]["containers"].as_array().into_iter().flatten().filter_map(|c| {
        let command = c["lifecycle"]["preStop"]["exec"]["command"].as_array()?;
        let words: Vec<&str> = command.iter().filter_map(Value::as_str).collect();
        let script = match words.as_slice() {
            ["sleep", n] => format!("sleep {n}"),
            [sh, "-c", script] if sh.ends_with("sh") => (*script).to_owned(),
            _ => return None,
        };
        let n = script.trim().strip_prefix("sleep ")?.trim().parse::<u32>().ok()?;
        Some(jiff::SignedDuration::from_secs(i64::from(n)))
    });
    hooks.max().unwrap_or_default() + STOP_AFTER
}

/// The kubelet's side of graceful deletion: a Terminating pod is removed once its containers have
/// stopped ([`stop_after`]), or when its grace period ends. Returns whether some pod is still terminating (the controller loop then ticks).
fn finish_terminating(state: &SimState, pods: &[std::sync::Arc<Value>]) -> bool {
    let now = jiff::Timestamp::now();
    let mut pending = false;
    for p in pods.iter().filter(|p| meta::is_deleting(p)) {
        let grace = p["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
        let Some(deadline) =
            p["metadata"]["deletionTimestamp"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok())
        else {
            continue;
        };
        let stop = deadline - jiff::SignedDuration::from_secs(grace)
            + stop_after(p).min(jiff::SignedDuration::from_secs(grace));
        if now >= stop.min(deadline) {
            let _ = state.store.delete("pods", meta::namespace(p), meta::name(p), None, None, None);
        } else {
            pending = true;
        }
    }
    pending
}

/// Schedules, starts and finishes pods; returns whether a pod is still terminating.
pub(super) fn reconcile(state: &SimState) -> bool {
    let (nodes, _) = state.store.list("nodes", None);
    let (pods, _) = state.store.list("pods", None);
    let pending = finish_terminating(state, &pods);
    let mut load: HashMap<String, usize> = nodes.iter().map(|n| (meta::name(n).to_string(), 0)).collect();
    for p in pods.iter() {
        if let Some(n) = p["spec"]["nodeName"].as_str() {
            *load.entry(n.to_string()).or_default() += 1;
        }
    }
    for p in pods.iter().filter(|p| !meta::is_deleting(p)) {
        let bound = p["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
        if !bound {
            schedule(state, p, &nodes, &mut load);
        } else if p["status"]["phase"].as_str().unwrap_or("Pending") == "Pending" {
            start(state, p, &nodes);
        }
    }
    pending
}

fn node_fits(node: &Value, pod: &Value) -> bool {
    if node["spec"]["unschedulable"] == true {
        return false;
    }
    let ready = node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    let labels = meta::labels(node);
    ready && meta::str_map(&pod["spec"]["nodeSelector"]).iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn schedule(
    state: &SimState,
    pod: &Value,
    nodes: &[std::sync::Arc<Value>],
    load: &mut HashMap<String, usize>,
) {
    let best = nodes
        .iter()
        .filter(|n| node_fits(n, pod))
        .min_by_key(|n| (load.get(meta::name(n)).copied().unwrap_or(0), meta::name(n).to_string()));
    let now = meta::now();
    let Some(node) = best else {
        let message = format!("0/{} nodes are available: no node matches the pod.", nodes.len());
        let r = state.store.mutate("pods", meta::namespace(pod), meta::name(pod), |p| {
            if p["status"]["conditions"][0]["reason"] == "Unschedulable"
                && p["status"]["conditions"][0]["message"] == message.as_str()
            {
                return false;
            }
            p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastTransitionTime": now}]);
            true
        });
        if let Ok(Some(p)) = r {
            let note = Note { warning: true, reason: "FailedScheduling", message, field_path: None };
            events::record(state, &p, note, Reporter::controller(SCHEDULER));
        }
        return;
    };
    let name = meta::name(node).to_string();
    *load.entry(name.clone()).or_default() += 1;
    let r = state.store.mutate("pods", meta::namespace(pod), meta::name(pod), |p| {
        p["spec"]["nodeName"] = json!(name);
        p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}]);
        true
    });
    if let Ok(Some(p)) = r {
        let message = format!("Successfully assigned {}/{} to {name}", meta::namespace(&p), meta::name(&p));
        events::record(state, &p, Note::normal("Scheduled", message), Reporter::controller(SCHEDULER));
    }
}

fn start(state: &SimState, pod: &Value, nodes: &[std::sync::Arc<Value>]) {
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("");
    let Some((idx, node)) = nodes.iter().enumerate().find(|(_, n)| meta::name(n) == node_name) else {
        return;
    };
    let host_ip = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .unwrap_or("")
        .to_string();
    let n = state.next_ip();
    let pod_ip = if pod["spec"]["hostNetwork"] == true {
        host_ip.clone()
    } else {
        format!("10.244.{}.{}", idx % 250, n % 250 + 2)
    };
    let now = meta::now();
    let to_completion =
        pod["metadata"]["ownerReferences"].as_array().into_iter().flatten().any(|r| r["kind"] == "Job")
            || pod["spec"]["restartPolicy"] == "Never"
                && pod["metadata"]["labels"]["rancher-sim/run-to-completion"] == "true";
    let statuses: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let id = format!("containerd://{}", uuid::Uuid::new_v4().simple());
            let image = c["image"].as_str().unwrap_or("");
            let state_v = if to_completion {
                json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now, "containerID": id}})
            } else {
                json!({"running": {"startedAt": now}})
            };
            json!({
                "name": c["name"],
                "image": image,
                "imageID": format!("docker.io/library/{image}@sha256:{}", "0".repeat(64)),
                "containerID": id,
                "ready": !to_completion,
                "started": !to_completion,
                "restartCount": 0,
                "state": state_v,
                "lastState": {},
            })
        })
        .collect();
    let (phase, ready) = if to_completion { ("Succeeded", "False") } else { ("Running", "True") };
    let reason = if to_completion { json!("PodCompleted") } else { Value::Null };
    let cond = |t: &str, s: &str| {
        let mut c = json!({"type": t, "status": s, "lastProbeTime": null, "lastTransitionTime": now});
        if s == "False" {
            c["reason"] = reason.clone();
        }
        c
    };
    let status = json!({
        "phase": phase,
        "conditions": [
            cond("PodReadyToStartContainers", if to_completion { "False" } else { "True" }),
            cond("Initialized", "True"),
            cond("Ready", ready),
            cond("ContainersReady", ready),
            cond("PodScheduled", "True"),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": now,
        "containerStatuses": statuses,
        "qosClass": pod["status"]["qosClass"].as_str().unwrap_or("BestEffort"),
    });
    let r = state.store.mutate("pods", meta::namespace(pod), meta::name(pod), |p| {
        if p["status"]["phase"] != "Pending" {
            return false;
        }
        p["status"] = status;
        true
    });
    if let Ok(Some(p)) = r {
        // What the kubelet reports for each container it starts.
        for c in p["spec"]["containers"].as_array().into_iter().flatten() {
            let (name, image) = (c["name"].as_str().unwrap_or(""), c["image"].as_str().unwrap_or(""));
            let at = format!("spec.containers{{{name}}}");
            for note in [
                Note::normal("Pulled", format!("Container image \"{image}\" already present on machine")),
                Note::normal("Created", format!("Created container: {name}")),
                Note::normal("Started", format!("Started container {name}")),
            ] {
                events::record(state, &p, note.at(at.clone()), Reporter::kubelet(node_name));
            }
        }
    }
}
