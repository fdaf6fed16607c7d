//! `Table` rendering (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`): the columns `kubectl get`
//! prints, with priority-1 columns for `-o wide`.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::meta;
use crate::resources::ResourceDef;

/// Column name, type, and priority (1 = shown only with `-o wide`).
type Column = (&'static str, &'static str, u8);

fn columns(d: &ResourceDef) -> Vec<Column> {
    match (d.group.as_str(), d.plural.as_str()) {
        ("", "pods") => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        ("", "nodes") => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        ("", "namespaces") => vec![("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
        ("", "services") => vec![
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
            ("Selector", "string", 1),
        ],
        ("", "endpoints") => vec![("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)],
        ("", "configmaps") => vec![("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
        ("", "secrets") => {
            vec![("Name", "string", 0), ("Type", "string", 0), ("Data", "string", 0), ("Age", "string", 0)]
        }
        ("", "serviceaccounts") => {
            vec![("Name", "string", 0), ("Secrets", "string", 0), ("Age", "string", 0)]
        }
        ("", "events") | ("events.k8s.io", "events") => vec![
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
        ],
        ("apps", "deployments") => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "string", 0),
            ("Available", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        ("apps", "replicasets") => vec![
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        ("apps", "daemonsets") => vec![
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Node Selector", "string", 0),
            ("Age", "string", 0),
        ],
        ("apps", "statefulsets") => vec![("Name", "string", 0), ("Ready", "string", 0), ("Age", "string", 0)],
        ("batch", "jobs") => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Completions", "string", 0),
            ("Duration", "string", 0),
            ("Age", "string", 0),
        ],
        ("rbac.authorization.k8s.io", "roles" | "clusterroles") => {
            vec![("Name", "string", 0), ("Created At", "date", 0)]
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            vec![
                ("Name", "string", 0),
                ("Role", "string", 0),
                ("Age", "string", 0),
                ("Users", "string", 1),
                ("Groups", "string", 1),
                ("ServiceAccounts", "string", 1),
            ]
        }
        ("coordination.k8s.io", "leases") => {
            vec![("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)]
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            vec![("Name", "string", 0), ("Created At", "date", 0)]
        }
        _ => vec![("Name", "string", 0), ("Age", "string", 0)],
    }
}

/// Kubernetes' short human duration (`5s`, `3m12s`, `4h`, `12d`).
pub(crate) fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60).replace("m0s", "m"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60).replace("h0m", "h"),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s if s < 8 * 86400 => format!("{}d{}h", s / 86400, (s % 86400) / 3600).replace("d0h", "d"),
        s if s < 2 * 365 * 86400 => format!("{}d", s / 86400),
        s => format!("{}y", s / (365 * 86400)),
    }
}

fn age(ts: &Value) -> String {
    let Some(t) = ts.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    human_duration(jiff::Timestamp::now().as_second() - t.as_second())
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn none_if_empty(v: String) -> String {
    if v.is_empty() { "<none>".into() } else { v }
}

fn containers_images(template_spec: &Value) -> (String, String) {
    let cs = template_spec["containers"].as_array().cloned().unwrap_or_default();
    (
        cs.iter().map(|c| s(&c["name"])).collect::<Vec<_>>().join(","),
        cs.iter().map(|c| s(&c["image"])).collect::<Vec<_>>().join(","),
    )
}

fn selector_string(sel: &Value) -> String {
    let mut parts: Vec<String> =
        meta::str_map(&sel["matchLabels"]).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        parts.push(format!(
            "{} {} ({})",
            s(&e["key"]),
            s(&e["operator"]).to_lowercase(),
            meta::str_list(&e["values"]).join(",")
        ));
    }
    none_if_empty(parts.join(","))
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// The Status column of a pod, as kubectl computes it.
pub(crate) fn pod_status(o: &Value) -> String {
    if meta::is_deleting(o) {
        return "Terminating".into();
    }
    let st = &o["status"];
    for cs in st["containerStatuses"].as_array().into_iter().flatten() {
        if let Some(r) = cs["state"]["waiting"]["reason"].as_str() {
            return r.into();
        }
        if let Some(r) = cs["state"]["terminated"]["reason"].as_str()
            && st["phase"] != "Succeeded"
        {
            return r.into();
        }
    }
    if st["phase"] == "Succeeded" {
        return "Completed".into();
    }
    st["reason"].as_str().or(st["phase"].as_str()).unwrap_or("Pending").to_string()
}

fn cells(d: &ResourceDef, o: &Value) -> Vec<Value> {
    let name = json!(meta::name(o));
    let created = &o["metadata"]["creationTimestamp"];
    let spec = &o["spec"];
    let st = &o["status"];
    match (d.group.as_str(), d.plural.as_str()) {
        ("", "pods") => {
            let statuses = st["containerStatuses"].as_array().cloned().unwrap_or_default();
            let total = spec["containers"].as_array().map(Vec::len).unwrap_or(0);
            let ready = statuses.iter().filter(|c| c["ready"] == true).count();
            let restarts: i64 = statuses.iter().map(|c| int(&c["restartCount"])).sum();
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(o)),
                json!(restarts.to_string()),
                json!(age(created)),
                json!(none_if_empty(s(&st["podIP"]))),
                json!(none_if_empty(s(&spec["nodeName"]))),
                json!("<none>"),
                json!("<none>"),
            ]
        }
        ("", "nodes") => {
            let ready = st["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Ready");
            let mut status = if ready.is_some_and(|c| c["status"] == "True") {
                "Ready".to_string()
            } else {
                "NotReady".to_string()
            };
            if spec["unschedulable"] == true {
                status.push_str(",SchedulingDisabled");
            }
            let roles: Vec<String> = meta::labels(o)
                .keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/").map(String::from))
                .collect();
            let addr = |t: &str| {
                st["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["type"] == t)
                    .map(|a| s(&a["address"]))
            };
            let info = &st["nodeInfo"];
            vec![
                name,
                json!(status),
                json!(none_if_empty(roles.join(","))),
                json!(age(created)),
                json!(s(&info["kubeletVersion"])),
                json!(addr("InternalIP").unwrap_or_else(|| "<none>".into())),
                json!(addr("ExternalIP").unwrap_or_else(|| "<none>".into())),
                json!(s(&info["osImage"])),
                json!(s(&info["kernelVersion"])),
                json!(s(&info["containerRuntimeVersion"])),
            ]
        }
        ("", "namespaces") => vec![name, json!(s(&st["phase"])), json!(age(created))],
        ("", "services") => {
            let ports: Vec<String> = spec["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| match p.get("nodePort") {
                    Some(np) if !np.is_null() => format!("{}:{}/{}", s(&p["port"]), s(np), s(&p["protocol"])),
                    _ => format!("{}/{}", s(&p["port"]), s(&p["protocol"])),
                })
                .collect();
            let sel: Vec<String> =
                meta::str_map(&spec["selector"]).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            vec![
                name,
                json!(s(&spec["type"])),
                json!(none_if_empty(s(&spec["clusterIP"]))),
                json!(if spec["type"] == "LoadBalancer" { "<pending>" } else { "<none>" }),
                json!(none_if_empty(ports.join(","))),
                json!(age(created)),
                json!(none_if_empty(sel.join(","))),
            ]
        }
        ("", "endpoints") => {
            let mut eps = vec![];
            for sub in o["subsets"].as_array().into_iter().flatten() {
                for a in sub["addresses"].as_array().into_iter().flatten() {
                    for p in sub["ports"].as_array().into_iter().flatten() {
                        eps.push(format!("{}:{}", s(&a["ip"]), s(&p["port"])));
                    }
                }
            }
            vec![name, json!(none_if_empty(eps.join(","))), json!(age(created))]
        }
        ("", "configmaps") => {
            let n = o["data"].as_object().map(|m| m.len()).unwrap_or(0)
                + o["binaryData"].as_object().map(|m| m.len()).unwrap_or(0);
            vec![name, json!(n), json!(age(created))]
        }
        ("", "secrets") => {
            vec![
                name,
                json!(s(&o["type"])),
                json!(o["data"].as_object().map(|m| m.len()).unwrap_or(0).to_string()),
                json!(age(created)),
            ]
        }
        ("", "serviceaccounts") => {
            vec![
                name,
                json!(o["secrets"].as_array().map(Vec::len).unwrap_or(0).to_string()),
                json!(age(created)),
            ]
        }
        ("", "events") | ("events.k8s.io", "events") => {
            // The same columns for both views: core/v1 names first, events.k8s.io/v1 names after.
            let pick = |core: &str, v1: &str| if o[core].is_null() { o[v1].clone() } else { o[core].clone() };
            let mut last = pick("lastTimestamp", "deprecatedLastTimestamp");
            if last.is_null() {
                last = o["series"]["lastObservedTime"].clone();
            }
            if last.is_null() {
                last = o["eventTime"].clone();
            }
            let io = pick("involvedObject", "regarding");
            vec![
                json!(age(&last)),
                json!(s(&o["type"])),
                json!(s(&o["reason"])),
                json!(format!("{}/{}", s(&io["kind"]).to_lowercase(), s(&io["name"]))),
                json!(s(&pick("message", "note"))),
            ]
        }
        ("apps", "deployments") => {
            let (c, i) = containers_images(&spec["template"]["spec"]);
            vec![
                name,
                json!(format!("{}/{}", int(&st["readyReplicas"]), int(&spec["replicas"]))),
                json!(int(&st["updatedReplicas"])),
                json!(int(&st["availableReplicas"])),
                json!(age(created)),
                json!(c),
                json!(i),
                json!(selector_string(&spec["selector"])),
            ]
        }
        ("apps", "replicasets") => {
            let (c, i) = containers_images(&spec["template"]["spec"]);
            vec![
                name,
                json!(int(&spec["replicas"])),
                json!(int(&st["replicas"])),
                json!(int(&st["readyReplicas"])),
                json!(age(created)),
                json!(c),
                json!(i),
                json!(selector_string(&spec["selector"])),
            ]
        }
        ("apps", "daemonsets") => {
            let ns: Vec<String> = meta::str_map(&spec["template"]["spec"]["nodeSelector"])
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            vec![
                name,
                json!(int(&st["desiredNumberScheduled"])),
                json!(int(&st["currentNumberScheduled"])),
                json!(int(&st["numberReady"])),
                json!(int(&st["updatedNumberScheduled"])),
                json!(int(&st["numberAvailable"])),
                json!(none_if_empty(ns.join(","))),
                json!(age(created)),
            ]
        }
        ("apps", "statefulsets") => {
            vec![
                name,
                json!(format!("{}/{}", int(&st["readyReplicas"]), int(&spec["replicas"]))),
                json!(age(created)),
            ]
        }
        ("batch", "jobs") => {
            let complete = st["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Complete" && c["status"] == "True");
            let duration = match (st["startTime"].as_str(), st["completionTime"].as_str()) {
                (Some(a), Some(b)) => match (a.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
                    (Ok(a), Ok(b)) => human_duration(b.as_second() - a.as_second()),
                    _ => String::new(),
                },
                (Some(a), None) => age(&json!(a)),
                _ => String::new(),
            };
            vec![
                name,
                json!(if complete { "Complete" } else { "Running" }),
                json!(format!("{}/{}", int(&st["succeeded"]), spec["completions"].as_i64().unwrap_or(1))),
                json!(duration),
                json!(age(created)),
            ]
        }
        ("rbac.authorization.k8s.io", "roles" | "clusterroles")
        | ("apiextensions.k8s.io", "customresourcedefinitions") => {
            vec![name, created.clone()]
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            let subjects = o["subjects"].as_array().cloned().unwrap_or_default();
            let of = |k: &str| {
                subjects
                    .iter()
                    .filter(|x| x["kind"] == k)
                    .map(|x| {
                        if k == "ServiceAccount" {
                            format!("{}/{}", s(&x["namespace"]), s(&x["name"]))
                        } else {
                            s(&x["name"])
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                name,
                json!(format!("{}/{}", s(&o["roleRef"]["kind"]), s(&o["roleRef"]["name"]))),
                json!(age(created)),
                json!(of("User")),
                json!(of("Group")),
                json!(of("ServiceAccount")),
            ]
        }
        ("coordination.k8s.io", "leases") => {
            vec![name, json!(s(&spec["holderIdentity"])), json!(age(created))]
        }
        _ => match &d.printer_columns {
            Some(cols) => {
                let mut v = vec![name];
                for c in cols.as_array().into_iter().flatten() {
                    let path = s(&c["jsonPath"]);
                    let mut cur = o;
                    for seg in path.trim_start_matches('.').split('.').filter(|x| !x.is_empty()) {
                        cur = &cur[seg];
                    }
                    v.push(if c["type"] == "date" { json!(age(cur)) } else { json!(s(cur)) });
                }
                v.push(json!(age(created)));
                v
            }
            None => vec![name, json!(age(created))],
        },
    }
}

fn column_definitions(d: &ResourceDef) -> Vec<Value> {
    let cols: Vec<(String, String, u8)> = match &d.printer_columns {
        Some(pc) if !crate::resources::builtins().iter().any(|b| b.key() == d.key()) => {
            let mut v = vec![("Name".to_string(), "string".to_string(), 0)];
            for c in pc.as_array().into_iter().flatten() {
                let ty = if c["type"] == "date" { "string".to_string() } else { s(&c["type"]) };
                v.push((s(&c["name"]), ty, c["priority"].as_u64().unwrap_or(0) as u8));
            }
            v.push(("Age".into(), "string".into(), 0));
            v
        }
        _ => columns(d).into_iter().map(|(n, t, p)| (n.to_string(), t.to_string(), p)).collect(),
    };
    cols.into_iter()
        .map(|(n, t, p)| {
            let format = if n == "Name" { "name" } else { "" };
            json!({"name": n, "type": t, "format": format, "description": format!("{n} column"), "priority": p})
        })
        .collect()
}

/// Renders objects as a `meta.k8s.io/v1` Table. `include_object` is `None`/`Object`/`PartialObjectMetadata`
/// (the default). `with_columns` is false for watch events after the first.
pub(crate) fn render(
    d: &ResourceDef,
    items: &[Arc<Value>],
    rv: &str,
    include_object: Option<&str>,
    with_columns: bool,
) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(d, o)});
            match include_object.unwrap_or("PartialObjectMetadata") {
                "None" => {}
                "Object" => row["object"] = (**o).clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o["metadata"],
                    })
                }
            }
            row
        })
        .collect();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "rows": rows,
    });
    if with_columns {
        t["columnDefinitions"] = json!(column_definitions(d));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(130), "2m10s");
        assert_eq!(human_duration(3600), "60m");
        assert_eq!(human_duration(4 * 3600 + 60), "4h1m");
        assert_eq!(human_duration(3 * 86400), "3d");
    }

    #[test]
    fn pod_row() {
        let d = crate::resources::builtins().iter().find(|d| d.plural == "pods").unwrap();
        let pod = Arc::new(json!({
            "metadata": {"name": "p", "creationTimestamp": meta::now()},
            "spec": {"containers": [{"name": "c"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "containerStatuses": [{"ready": true, "restartCount": 0}]},
        }));
        let t = render(d, &[pod], "1", None, true);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[1], "1/1");
        assert_eq!(cells[2], "Running");
        assert_eq!(cells[5], "10.0.0.1");
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }
}
