//! What a simulated pod's status is, as a pure function of the pod and what the kubelet knows of it
//! (when it started, its address): init containers run one after another and terminate `Completed`,
//! then every container runs, ready and started, with a `sim://` container ID.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use sha2::Digest;

use super::node::{hex_lower, time_json};

/// How long each simulated init container runs before it completes.
pub(crate) const INIT_RUNS_FOR: Duration = Duration::from_secs(1);

/// What the kubelet knows of a pod it runs.
#[derive(Debug, Clone)]
pub(crate) struct PodRuntime {
    /// When the kubelet took the pod up (the pod's `startTime`).
    pub(crate) started: Time,
    /// Its address.
    pub(crate) ip: IpAddr,
}

fn add(t: &Time, d: Duration) -> Time {
    let span = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::ZERO);
    Time(t.0.checked_add(span).unwrap_or(t.0))
}

fn sha_hex(s: &str) -> String {
    hex_lower(&sha2::Sha256::digest(s.as_bytes()))
}

/// The container ID of container `name` of pod `uid`: stable across kubelet restarts.
pub(crate) fn container_id(uid: &str, name: &str) -> String {
    format!("sim://{}", sha_hex(&format!("{uid}/{name}")))
}

fn image_id(image: &str) -> String {
    let repo = match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => image,
    };
    let repo = repo.split('@').next().unwrap_or(repo);
    format!("{repo}@sha256:{}", sha_hex(image))
}

fn image(c: &Container) -> String {
    c.image.clone().unwrap_or_default()
}

fn running(uid: &str, c: &Container, since: &Time) -> Value {
    json!({"name": c.name, "image": image(c), "imageID": image_id(&image(c)),
           "containerID": container_id(uid, &c.name), "ready": true, "started": true, "restartCount": 0,
           "state": {"running": {"startedAt": time_json(since)}}, "lastState": {}})
}

fn waiting(c: &Container, reason: &str) -> Value {
    json!({"name": c.name, "image": image(c), "imageID": "", "ready": false, "started": false,
           "restartCount": 0, "state": {"waiting": {"reason": reason}}, "lastState": {}})
}

fn terminated(uid: &str, c: &Container, from: &Time, to: &Time, ready: bool) -> Value {
    let id = container_id(uid, &c.name);
    json!({"name": c.name, "image": image(c), "imageID": image_id(&image(c)), "containerID": id,
           "ready": ready, "started": false, "restartCount": 0,
           "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": time_json(from),
                                    "finishedAt": time_json(to), "containerID": id}},
           "lastState": {}})
}

fn condition(kind: &str, ok: bool, at: &Time, reason: Option<&str>) -> Value {
    let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastProbeTime": null,
                       "lastTransitionTime": time_json(at)});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

/// The status the kubelet reports for `pod` at `now`. With `stopping`, the pod is being deleted: its
/// containers have stopped.
pub(crate) fn desired(pod: &Pod, rt: &PodRuntime, host_ip: IpAddr, now: &Time, stopping: bool) -> Value {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let (inits, containers) = pod
        .spec
        .as_ref()
        .map(|s| (s.init_containers.clone().unwrap_or_default(), s.containers.clone()))
        .unwrap_or_default();
    let start = &rt.started;
    let init_end = add(start, INIT_RUNS_FOR * u32::try_from(inits.len()).unwrap_or(u32::MAX));
    let initialized = now.0 >= init_end.0;

    let mut init_statuses = Vec::new();
    for (i, c) in inits.iter().enumerate() {
        let from = add(start, INIT_RUNS_FOR * u32::try_from(i).unwrap_or(u32::MAX));
        let to = add(&from, INIT_RUNS_FOR);
        init_statuses.push(if now.0 >= to.0 {
            terminated(uid, c, &from, &to, true)
        } else if now.0 >= from.0 && !stopping {
            running(uid, c, &from)
        } else {
            waiting(c, "PodInitializing")
        });
    }
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| match (initialized, stopping) {
            (true, false) => running(uid, c, &init_end),
            (true, true) => terminated(uid, c, &init_end, now, false),
            (false, _) => waiting(c, "PodInitializing"),
        })
        .collect();
    let ready = initialized && !stopping;
    let not_ready =
        (!ready).then_some(if initialized { "ContainersNotReady" } else { "ContainersNotInitialized" });
    let ready_since = if ready { &init_end } else { now };
    let mut status = json!({
        "phase": if initialized { "Running" } else { "Pending" },
        "hostIP": host_ip.to_string(),
        "podIP": rt.ip.to_string(),
        "podIPs": [{"ip": rt.ip.to_string()}],
        "startTime": time_json(start),
        "conditions": [
            condition("Initialized", initialized, &init_end, (!initialized).then_some("ContainersNotInitialized")),
            condition("Ready", ready, ready_since, not_ready),
            condition("ContainersReady", ready, ready_since, not_ready),
            condition("PodScheduled", true, start, None),
        ],
        "containerStatuses": statuses,
    });
    if !init_statuses.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    status
}

/// Whether `pod`'s status already says what `desired` says, compared on what a reader acts on (phase,
/// addresses, condition statuses, container states and IDs), not on timestamps.
pub(crate) fn matches(pod: &Pod, desired: &Value) -> bool {
    let current = serde_json::to_value(pod.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
    let conditions = |v: &Value| -> Vec<(String, String)> {
        let mut c: Vec<(String, String)> = v["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["type"] != "PodScheduled")
            .map(|c| {
                (c["type"].as_str().unwrap_or("").to_owned(), c["status"].as_str().unwrap_or("").to_owned())
            })
            .collect();
        c.sort();
        c
    };
    let containers = |v: &Value, key: &str| -> Vec<(String, Value, Value, String)> {
        v[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let state = c["state"].as_object().and_then(|o| o.keys().next().cloned()).unwrap_or_default();
                (
                    c["name"].as_str().unwrap_or("").to_owned(),
                    c["containerID"].clone(),
                    c["ready"].clone(),
                    state,
                )
            })
            .collect()
    };
    ["phase", "podIP", "hostIP"].iter().all(|k| current[k] == desired[k])
        && conditions(&current) == conditions(desired)
        && containers(&current, "containerStatuses") == containers(desired, "containerStatuses")
        && containers(&current, "initContainerStatuses") == containers(desired, "initContainerStatuses")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(inits: usize) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u-1"},
            "spec": {
                "initContainers": (0..inits).map(|i| json!({"name": format!("init{i}"), "image": "busybox"})).collect::<Vec<_>>(),
                "containers": [{"name": "web", "image": "nginx:1.25"}, {"name": "side", "image": "reg:5000/x@sha256:ab"}],
            },
        }))
        .unwrap()
    }

    fn t(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap())
    }

    fn rt() -> PodRuntime {
        PodRuntime { started: t(0), ip: "10.42.1.5".parse().unwrap() }
    }

    const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn a_pod_without_init_containers_runs_at_once() {
        let s = desired(&pod(0), &rt(), HOST, &t(0), false);
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.42.1.5");
        assert_eq!(s["hostIP"], "127.0.0.2");
        assert_eq!(s["containerStatuses"][0]["ready"], true);
        assert_eq!(s["containerStatuses"][0]["containerID"], container_id("u-1", "web"));
        assert!(s["containerStatuses"][0]["imageID"].as_str().unwrap().starts_with("nginx@sha256:"));
        assert!(s["containerStatuses"][1]["imageID"].as_str().unwrap().starts_with("reg:5000/x@sha256:"));
        let ready = s["conditions"].as_array().unwrap().iter().all(|c| c["status"] == "True");
        assert!(ready, "{s}");
        assert!(s.get("initContainerStatuses").is_none());
    }

    #[test]
    fn init_containers_complete_one_after_another_before_the_containers_run() {
        let p = pod(2);
        let s = desired(&p, &rt(), HOST, &t(0), false);
        assert_eq!(s["phase"], "Pending");
        assert!(s["initContainerStatuses"][0]["state"]["running"].is_object());
        assert_eq!(s["initContainerStatuses"][1]["state"]["waiting"]["reason"], "PodInitializing");
        assert_eq!(s["containerStatuses"][0]["state"]["waiting"]["reason"], "PodInitializing");
        assert_eq!(s["conditions"][0]["status"], "False");
        let s = desired(&p, &rt(), HOST, &t(1), false);
        assert_eq!(s["initContainerStatuses"][0]["state"]["terminated"]["reason"], "Completed");
        assert!(s["initContainerStatuses"][1]["state"]["running"].is_object());
        let s = desired(&p, &rt(), HOST, &t(2), false);
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["initContainerStatuses"][1]["state"]["terminated"]["exitCode"], 0);
        assert_eq!(s["containerStatuses"][0]["state"]["running"]["startedAt"], time_json(&t(2)));
    }

    #[test]
    fn a_stopping_pod_has_stopped_containers_and_is_not_ready() {
        let s = desired(&pod(0), &rt(), HOST, &t(5), true);
        assert_eq!(s["containerStatuses"][0]["state"]["terminated"]["reason"], "Completed");
        assert_eq!(s["conditions"][1]["status"], "False");
    }

    #[test]
    fn matching_ignores_timestamps_but_not_states() {
        let mut p = pod(1);
        let running = desired(&p, &rt(), HOST, &t(3), false);
        assert!(!matches(&p, &running), "an empty status matches nothing");
        p.status = Some(serde_json::from_value(running.clone()).unwrap());
        assert!(matches(&p, &desired(&p, &rt(), HOST, &t(60), false)));
        assert!(!matches(&p, &desired(&p, &rt(), HOST, &t(60), true)));
        assert!(!matches(&p, &desired(&p, &rt(), HOST, &t(0), false)));
    }
}
