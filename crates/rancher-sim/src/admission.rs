//! Defaulting and validation on create and update, per kind: the Invalid errors with field causes
//! the API server returns, and the defaults clients read back.

use base64::Engine;
use serde_json::{Value, json};

use crate::meta;
use crate::resources::ResourceDef;
use crate::selectors::LabelSelector;
use crate::state::SimState;
use crate::status::{ApiError, Cause};

fn name_causes(d: &ResourceDef, name: &str) -> Vec<Cause> {
    let ok = match d.plural.as_str() {
        "namespaces" | "services" => meta::is_dns_label(name),
        "roles" | "clusterroles" | "rolebindings" | "clusterrolebindings" => meta::is_path_segment_name(name),
        _ if d.group.is_empty() || crate::resources::builtins().iter().any(|b| b.group == d.group) => {
            meta::is_dns_subdomain(name)
        }
        _ => meta::is_path_segment_name(name),
    };
    if name.is_empty() {
        vec![Cause::required("metadata.name")]
    } else if !ok {
        vec![Cause::invalid(
            "metadata.name",
            format!("{name:?}"),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
        )]
    } else {
        vec![]
    }
}

fn containers_causes(spec: &Value, path: &str) -> Vec<Cause> {
    let mut causes = vec![];
    match spec["containers"].as_array() {
        Some(cs) if !cs.is_empty() => {
            for (i, c) in cs.iter().enumerate() {
                let name = c["name"].as_str().unwrap_or("");
                if name.is_empty() {
                    causes.push(Cause::required(format!("{path}.containers[{i}].name")));
                } else if !meta::is_dns_label(name) {
                    causes.push(Cause::invalid(
                        format!("{path}.containers[{i}].name"),
                        format!("{name:?}"),
                        "must be a DNS label",
                    ));
                }
                if c["image"].as_str().unwrap_or("").is_empty() {
                    causes.push(Cause::required(format!("{path}.containers[{i}].image")));
                }
                for (j, p) in c["ports"].as_array().into_iter().flatten().enumerate() {
                    let port = p["containerPort"].as_i64().unwrap_or(0);
                    if !(1..=65535).contains(&port) {
                        causes.push(Cause::invalid(
                            format!("{path}.containers[{i}].ports[{j}].containerPort"),
                            port,
                            "must be between 1 and 65535, inclusive",
                        ));
                    }
                }
            }
        }
        _ => causes.push(Cause::required(format!("{path}.containers"))),
    }
    causes
}

fn default_pod_spec(spec: &mut Value) {
    let o = match spec.as_object_mut() {
        Some(o) => o,
        None => return,
    };
    o.entry("restartPolicy").or_insert(json!("Always"));
    o.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
    o.entry("schedulerName").or_insert(json!("default-scheduler"));
    o.entry("terminationGracePeriodSeconds").or_insert(json!(30));
    o.entry("securityContext").or_insert(json!({}));
    if let Some(cs) = o.get_mut("containers").and_then(Value::as_array_mut) {
        for c in cs {
            let image = c["image"].as_str().unwrap_or("").to_string();
            if let Some(c) = c.as_object_mut() {
                let latest = !image.contains(':') || image.ends_with(":latest");
                c.entry("imagePullPolicy").or_insert(json!(if latest { "Always" } else { "IfNotPresent" }));
                c.entry("terminationMessagePath").or_insert(json!("/dev/termination-log"));
                c.entry("terminationMessagePolicy").or_insert(json!("File"));
                c.entry("resources").or_insert(json!({}));
                if let Some(ps) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ps {
                        if let Some(p) = p.as_object_mut() {
                            p.entry("protocol").or_insert(json!("TCP"));
                        }
                    }
                }
            }
        }
    }
}

fn selector_causes(spec: &Value, required: bool) -> Vec<Cause> {
    let mut causes = vec![];
    let sel = &spec["selector"];
    if sel.is_null() {
        if required {
            causes.push(Cause::required("spec.selector"));
        }
        return causes;
    }
    match LabelSelector::from_structured(sel) {
        None => causes.push(Cause::invalid("spec.selector", sel, "invalid label selector")),
        Some(s) if s.is_empty() => {
            causes.push(Cause::invalid("spec.selector", sel, "empty selector is invalid for deployment"))
        }
        Some(s) => {
            let labels = meta::str_map(&spec["template"]["metadata"]["labels"]);
            if !s.matches(&labels) {
                causes.push(Cause::invalid(
                    "spec.template.metadata.labels",
                    json!(labels),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    causes
}

/// Fills defaults and validates an object about to be created or updated. `old` is the stored
/// object on update.
pub(crate) fn admit(
    state: &SimState,
    d: &ResourceDef,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let name = meta::name(obj).to_string();
    let mut causes = name_causes(d, &name);
    for (field, v) in [
        ("metadata.labels", &obj["metadata"]["labels"]),
        ("metadata.annotations", &obj["metadata"]["annotations"]),
    ] {
        if let Some(m) = v.as_object() {
            for (k, val) in m {
                if !val.is_string() {
                    causes.push(Cause::invalid(format!("{field}.{k}"), val, "must be a string"));
                }
            }
        } else if !v.is_null() {
            causes.push(Cause::invalid(field, v, "must be a map of strings"));
        }
    }
    match (d.group.as_str(), d.plural.as_str()) {
        ("", "pods") => {
            causes.extend(containers_causes(&obj["spec"], "spec"));
            default_pod_spec(&mut obj["spec"]);
            if let Some(o) = obj["spec"].as_object_mut() {
                o.entry("serviceAccountName").or_insert(json!("default"));
                o.entry("priority").or_insert(json!(0));
                o.entry("enableServiceLinks").or_insert(json!(true));
            }
            if old.is_none() {
                obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            }
        }
        ("apps", "deployments" | "replicasets" | "daemonsets" | "statefulsets") => {
            causes.extend(selector_causes(&obj["spec"], true));
            causes.extend(containers_causes(&obj["spec"]["template"]["spec"], "spec.template.spec"));
            default_pod_spec(&mut obj["spec"]["template"]["spec"]);
            if let Some(r) = obj["spec"].get("replicas")
                && r.as_i64().is_none_or(|r| r < 0)
            {
                causes.push(Cause::invalid("spec.replicas", r, "must be greater than or equal to 0"));
            }
            if let Some(o) = obj["spec"].as_object_mut() {
                if d.plural != "daemonsets" {
                    o.entry("replicas").or_insert(json!(1));
                }
                o.entry("revisionHistoryLimit").or_insert(json!(10));
                if d.plural == "deployments" {
                    o.entry("progressDeadlineSeconds").or_insert(json!(600));
                    o.entry("strategy").or_insert(json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}));
                }
            }
            if let Some(old) = old
                && old["spec"]["selector"] != obj["spec"]["selector"]
                && d.plural != "replicasets"
            {
                causes.push(Cause::invalid("spec.selector", &obj["spec"]["selector"], "field is immutable"));
            }
        }
        ("batch", "jobs") => {
            let rp =
                obj["spec"]["template"]["spec"]["restartPolicy"].as_str().unwrap_or("Always").to_string();
            if rp != "OnFailure" && rp != "Never" {
                causes.push(Cause {
                    reason: "FieldValueNotSupported",
                    field: "spec.template.spec.restartPolicy".into(),
                    message: format!("Unsupported value: {rp:?}: supported values: \"OnFailure\", \"Never\""),
                });
            }
            causes.extend(containers_causes(&obj["spec"]["template"]["spec"], "spec.template.spec"));
            default_pod_spec(&mut obj["spec"]["template"]["spec"]);
            if let Some(o) = obj["spec"].as_object_mut() {
                o.entry("completions").or_insert(json!(1));
                o.entry("parallelism").or_insert(json!(1));
                o.entry("backoffLimit").or_insert(json!(6));
            }
            if old.is_none() && obj["spec"]["selector"].is_null() {
                let uid = uuid::Uuid::new_v4().to_string();
                obj["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
                let labels = &mut obj["spec"]["template"]["metadata"]["labels"];
                if !labels.is_object() {
                    *labels = json!({});
                }
                labels["batch.kubernetes.io/controller-uid"] = json!(uid);
                labels["batch.kubernetes.io/job-name"] = json!(name);
                labels["job-name"] = json!(name);
            }
        }
        ("", "services") => {
            let ty = obj["spec"]["type"].as_str().unwrap_or("ClusterIP").to_string();
            let ports = obj["spec"]["ports"].as_array().cloned().unwrap_or_default();
            if ports.is_empty() && ty != "ExternalName" && obj["spec"]["clusterIP"] != "None" {
                causes.push(Cause::required("spec.ports"));
            }
            for (i, p) in ports.iter().enumerate() {
                let port = p["port"].as_i64().unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    causes.push(Cause::invalid(
                        format!("spec.ports[{i}].port"),
                        port,
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
            if let Some(o) = obj["spec"].as_object_mut() {
                o.entry("type").or_insert(json!("ClusterIP"));
                o.entry("sessionAffinity").or_insert(json!("None"));
                o.entry("ipFamilies").or_insert(json!(["IPv4"]));
                o.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
                o.entry("internalTrafficPolicy").or_insert(json!("Cluster"));
            }
            let old_ip = old.and_then(|o| o["spec"]["clusterIP"].as_str().map(String::from));
            if ty != "ExternalName" {
                let ip = match (old_ip, obj["spec"]["clusterIP"].as_str()) {
                    (Some(ip), _) => ip,
                    (None, Some(ip)) if !ip.is_empty() => ip.to_string(),
                    _ => {
                        let n = state.next_ip();
                        format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 2)
                    }
                };
                obj["spec"]["clusterIP"] = json!(ip);
                obj["spec"]["clusterIPs"] = json!([ip]);
            }
            if let Some(ps) = obj["spec"]["ports"].as_array_mut() {
                for p in ps.iter_mut() {
                    let port = p["port"].clone();
                    if let Some(p) = p.as_object_mut() {
                        p.entry("protocol").or_insert(json!("TCP"));
                        p.entry("targetPort").or_insert(port);
                        if ty == "NodePort" || ty == "LoadBalancer" {
                            p.entry("nodePort").or_insert(json!(30000 + (state.next_ip() % 2767)));
                        }
                    }
                }
            }
            if old.is_none() {
                obj["status"] = json!({"loadBalancer": {}});
            }
        }
        ("", "secrets") => {
            if let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData"))
                && let Some(m) = sd.as_object()
            {
                for (k, v) in m {
                    let enc =
                        base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or("").as_bytes());
                    if !obj["data"].is_object() {
                        obj["data"] = json!({});
                    }
                    obj["data"][k] = json!(enc);
                }
            }
            if let Some(m) = obj["data"].as_object() {
                for (k, v) in m {
                    let ok = v
                        .as_str()
                        .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
                    if !ok {
                        causes.push(Cause::invalid(format!("data[{k}]"), v, "must be base64-encoded"));
                    }
                }
            }
            if let Some(o) = obj.as_object_mut() {
                o.entry("type").or_insert(json!("Opaque"));
            }
            if let Some(old) = old
                && old["type"] != obj["type"]
            {
                causes.push(Cause::invalid("type", &obj["type"], "field is immutable"));
            }
        }
        ("", "namespaces") => {
            // Like the API server's namespace strategy: create always sets `spec.finalizers` to
            // `[kubernetes]` (kubectl sends `spec: {}`); an update keeps the stored value — only the
            // `finalize` subresource changes it.
            let finalizers = match old {
                Some(old) => old["spec"]["finalizers"].clone(),
                None => json!([crate::controllers::namespace::FINALIZER]),
            };
            if let Some(o) = obj.as_object_mut() {
                let spec = o.entry("spec").or_insert(json!({}));
                if !spec.is_object() {
                    *spec = json!({});
                }
                spec["finalizers"] = if finalizers.is_null() { json!([]) } else { finalizers };
            }
            meta::metadata_mut(obj)
                .entry("labels")
                .or_insert(json!({}))
                .as_object_mut()
                .map(|l| l.insert("kubernetes.io/metadata.name".into(), json!(name)));
            if old.is_none() {
                obj["status"] = json!({"phase": "Active"});
            }
        }
        ("rbac.authorization.k8s.io", "roles" | "clusterroles") => {
            for (i, r) in obj["rules"].as_array().into_iter().flatten().enumerate() {
                if r["verbs"].as_array().is_none_or(|v| v.is_empty()) {
                    causes.push(Cause::required(format!("rules[{i}].verbs")));
                }
                if r.get("nonResourceURLs").is_none() && r["apiGroups"].as_array().is_none() {
                    causes.push(Cause::required(format!("rules[{i}].apiGroups")));
                }
            }
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            let rr = &obj["roleRef"];
            if rr["name"].as_str().unwrap_or("").is_empty() {
                causes.push(Cause::required("roleRef.name"));
            }
            let kinds: &[&str] =
                if d.plural == "rolebindings" { &["Role", "ClusterRole"] } else { &["ClusterRole"] };
            if !kinds.contains(&rr["kind"].as_str().unwrap_or("")) {
                causes.push(Cause {
                    reason: "FieldValueNotSupported",
                    field: "roleRef.kind".into(),
                    message: format!("Unsupported value: {}: supported values: {kinds:?}", rr["kind"]),
                });
            }
            if let Some(old) = old
                && old["roleRef"] != obj["roleRef"]
            {
                causes.push(Cause::invalid("roleRef", &obj["roleRef"], "cannot change roleRef"));
            }
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let spec = &obj["spec"];
            for f in ["group", "names.plural", "names.kind"] {
                let mut cur = spec;
                for seg in f.split('.') {
                    cur = &cur[seg];
                }
                if cur.as_str().unwrap_or("").is_empty() {
                    causes.push(Cause::required(format!("spec.{f}")));
                }
            }
            if spec["versions"].as_array().is_none_or(|v| v.is_empty()) {
                causes.push(Cause::required("spec.versions"));
            }
            let want = format!(
                "{}.{}",
                spec["names"]["plural"].as_str().unwrap_or(""),
                spec["group"].as_str().unwrap_or("")
            );
            if name != want {
                causes.push(Cause::invalid(
                    "metadata.name",
                    format!("{name:?}"),
                    &format!("must be spec.names.plural+\".\"+spec.group ({want})"),
                ));
            }
            if causes.is_empty() {
                let mut names = spec["names"].clone();
                if names["singular"].is_null() {
                    names["singular"] = json!(spec["names"]["kind"].as_str().unwrap_or("").to_lowercase());
                }
                if names["listKind"].is_null() {
                    names["listKind"] =
                        json!(format!("{}List", spec["names"]["kind"].as_str().unwrap_or("")));
                }
                obj["status"] = json!({
                    "acceptedNames": names,
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": meta::now()},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": meta::now()},
                    ],
                    "storedVersions": spec["versions"].as_array().into_iter().flatten().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>(),
                });
            }
        }
        _ => {}
    }
    if causes.is_empty() { Ok(()) } else { Err(ApiError::invalid(&d.group, &d.kind, &name, causes)) }
}

/// Validates that a body's `apiVersion`/`kind` (when given) match the URL, and fills them in.
pub(crate) fn check_type(d: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    let want_av = d.api_version();
    match obj["apiVersion"].as_str() {
        Some(av) if !av.is_empty() && av != want_av => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )));
        }
        _ => obj["apiVersion"] = json!(want_av),
    }
    match obj["kind"].as_str() {
        Some(k) if !k.is_empty() && k != d.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                d.kind
            )));
        }
        _ => obj["kind"] = json!(d.kind),
    }
    Ok(())
}
