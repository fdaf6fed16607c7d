//! RBAC authorisation from the stored Role, ClusterRole, RoleBinding and ClusterRoleBinding objects,
//! with `system:masters` all-powerful, plus the rule summaries `SelfSubjectRulesReview` returns.

use serde_json::{Value, json};

use crate::authn::UserInfo;
use crate::store::Store;

pub(crate) const ROLES: &str = "roles.rbac.authorization.k8s.io";
pub(crate) const CLUSTER_ROLES: &str = "clusterroles.rbac.authorization.k8s.io";
pub(crate) const ROLE_BINDINGS: &str = "rolebindings.rbac.authorization.k8s.io";
pub(crate) const CLUSTER_ROLE_BINDINGS: &str = "clusterrolebindings.rbac.authorization.k8s.io";

/// What is being asked: a resource request or a non-resource URL.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attributes {
    pub(crate) verb: String,
    pub(crate) group: String,
    pub(crate) resource: String,
    pub(crate) subresource: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    /// Set for non-resource requests (`/version`, `/api`).
    pub(crate) path: Option<String>,
}

impl Attributes {
    pub(crate) fn resource(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
            ..Default::default()
        }
    }
    pub(crate) fn non_resource(verb: &str, path: &str) -> Self {
        Attributes { verb: verb.into(), path: Some(path.into()), ..Default::default() }
    }
    /// `pods` or `pods/exec`.
    pub(crate) fn full_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// The outcome of an authorisation check.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    pub(crate) allowed: bool,
    pub(crate) reason: String,
}

fn has(list: &Value, want: &str) -> bool {
    list.as_array().is_some_and(|a| a.iter().any(|v| v.as_str() == Some("*") || v.as_str() == Some(want)))
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    if !has(&rule["verbs"], &a.verb) {
        return false;
    }
    if let Some(path) = &a.path {
        return rule["nonResourceURLs"].as_array().is_some_and(|urls| {
            urls.iter().filter_map(Value::as_str).any(|u| {
                u == "*" || u == path || u.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix))
            })
        });
    }
    if !has(&rule["apiGroups"], &a.group) {
        return false;
    }
    let full = a.full_resource();
    let resource_ok = rule["resources"].as_array().is_some_and(|rs| {
        rs.iter().filter_map(Value::as_str).any(|r| {
            r == "*"
                || r == full
                || (a.subresource.is_empty() && r == a.resource)
                || (!a.subresource.is_empty() && r == format!("*/{}", a.subresource))
        })
    });
    if !resource_ok {
        return false;
    }
    match rule["resourceNames"].as_array() {
        Some(names) if !names.is_empty() => names.iter().any(|n| n.as_str() == Some(a.name.as_str())),
        _ => true,
    }
}

fn subject_matches(subject: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let name = subject["name"].as_str().unwrap_or("");
    match subject["kind"].as_str().unwrap_or("") {
        "User" => name == user.name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = subject["namespace"].as_str().filter(|s| !s.is_empty()).unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// Rules of the role a binding points at (in `ns` for a Role).
fn role_rules(store: &Store, role_ref: &Value, ns: &str) -> Vec<Value> {
    let name = role_ref["name"].as_str().unwrap_or("");
    let role = match role_ref["kind"].as_str() {
        Some("ClusterRole") => store.get(CLUSTER_ROLES, "", name),
        Some("Role") => store.get(ROLES, ns, name),
        _ => None,
    };
    role.and_then(|r| r["rules"].as_array().cloned()).unwrap_or_default()
}

/// Every rule that applies to `user` in `namespace` ("" = cluster-wide bindings only).
pub(crate) fn rules_for(store: &Store, user: &UserInfo, namespace: &str) -> Vec<Value> {
    let mut rules = vec![];
    let (crbs, _) = store.list(CLUSTER_ROLE_BINDINGS, None);
    for b in crbs.iter() {
        if b["subjects"].as_array().is_some_and(|s| s.iter().any(|s| subject_matches(s, user, ""))) {
            rules.extend(role_rules(store, &b["roleRef"], ""));
        }
    }
    if !namespace.is_empty() {
        let (rbs, _) = store.list(ROLE_BINDINGS, Some(namespace));
        for b in rbs.iter() {
            if b["subjects"].as_array().is_some_and(|s| s.iter().any(|s| subject_matches(s, user, namespace)))
            {
                rules.extend(role_rules(store, &b["roleRef"], namespace));
            }
        }
    }
    rules
}

/// Whether `user` may do `a`.
pub(crate) fn authorize(store: &Store, user: &UserInfo, a: &Attributes) -> Decision {
    if user.groups.iter().any(|g| g == "system:masters") {
        return Decision { allowed: true, reason: "member of system:masters".into() };
    }
    let allowed = rules_for(store, user, &a.namespace).iter().any(|r| rule_allows(r, a));
    let reason = if allowed { "allowed by RBAC".into() } else { String::new() };
    Decision { allowed, reason }
}

/// The Forbidden message the API server gives.
pub(crate) fn forbidden_message(user: &UserInfo, a: &Attributes) -> String {
    if let Some(path) = &a.path {
        return format!("forbidden: User \"{}\" cannot {} path \"{path}\"", user.name, a.verb);
    }
    let what = crate::status::qualified(&a.group, &a.resource);
    let subject = if a.name.is_empty() { what } else { format!("{what} \"{}\"", a.name) };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    format!(
        "{subject} is forbidden: User \"{}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
        user.name,
        a.verb,
        a.full_resource(),
        a.group
    )
}

/// The `status` of a SelfSubjectRulesReview for `user` in `namespace`.
pub(crate) fn rules_review(store: &Store, user: &UserInfo, namespace: &str) -> Value {
    let masters = user.groups.iter().any(|g| g == "system:masters");
    let mut rules = rules_for(store, user, namespace);
    if masters {
        rules.insert(0, json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
        rules.insert(1, json!({"verbs": ["*"], "nonResourceURLs": ["*"]}));
    }
    let (mut resource_rules, mut non_resource_rules) = (vec![], vec![]);
    for r in rules {
        if r.get("nonResourceURLs").is_some() {
            non_resource_rules.push(json!({"verbs": r["verbs"], "nonResourceURLs": r["nonResourceURLs"]}));
        } else {
            let mut rr =
                json!({"verbs": r["verbs"], "apiGroups": r["apiGroups"], "resources": r["resources"]});
            if r.get("resourceNames").is_some_and(|n| !n.is_null()) {
                rr["resourceNames"] = r["resourceNames"].clone();
            }
            resource_rules.push(rr);
        }
    }
    json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_matching() {
        let r = json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]});
        assert!(rule_allows(&r, &Attributes::resource("list", "", "pods", "ns", "")));
        assert!(!rule_allows(&r, &Attributes::resource("delete", "", "pods", "ns", "")));
        let mut exec = Attributes::resource("get", "", "pods", "ns", "p");
        exec.subresource = "exec".into();
        assert!(!rule_allows(&r, &exec));
        let named = json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "resourceNames": ["a"]});
        assert!(rule_allows(&named, &Attributes::resource("get", "apps", "deployments", "", "a")));
        assert!(!rule_allows(&named, &Attributes::resource("get", "apps", "deployments", "", "b")));
        let nr = json!({"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*"]});
        assert!(rule_allows(&nr, &Attributes::non_resource("get", "/api/v1")));
        assert!(!rule_allows(&nr, &Attributes::non_resource("get", "/apis")));
    }

    #[test]
    fn forbidden_wording() {
        let u = UserInfo::new("alice", &[]);
        assert_eq!(
            forbidden_message(&u, &Attributes::resource("list", "", "pods", "default", "")),
            "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(
            forbidden_message(&u, &Attributes::resource("get", "apps", "deployments", "", "web")),
            "deployments.apps \"web\" is forbidden: User \"alice\" cannot get resource \"deployments\" in API group \"apps\" at the cluster scope"
        );
    }
}
