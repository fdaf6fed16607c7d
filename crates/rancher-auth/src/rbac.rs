//! Evaluation of Kubernetes-style RBAC rules ([`PolicyRule`]) for the management API's global roles.
//!
//! A request is allowed when any rule matches its verb, API group, resource and (for rules that list
//! `resourceNames`) its object name. `*` matches anything in verbs, groups and resources.

use rancher_core::model::PolicyRule;

/// What a request wants to do, in RBAC terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceAttributes<'a> {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`.
    pub verb: &'a str,
    /// The API group (`management.cattle.io`; `""` for the core group).
    pub api_group: &'a str,
    /// The resource, plural and lower-case, optionally with a subresource (`pods/log`).
    pub resource: &'a str,
    /// The object's name; `None` for collection requests (list, create without a name).
    pub name: Option<&'a str>,
}

/// True when `rule` grants `attrs`.
pub fn rule_allows(rule: &PolicyRule, attrs: &ResourceAttributes<'_>) -> bool {
    let any = |set: &[String], wanted: &str| set.iter().any(|s| s == "*" || s == wanted);
    if !any(&rule.verbs, attrs.verb) || !any(&rule.api_groups, attrs.api_group) {
        return false;
    }
    if !any(&rule.resources, attrs.resource) {
        return false;
    }
    if rule.resource_names.is_empty() {
        return true;
    }
    // A rule limited to names can never grant a request that names no object (list, create).
    attrs.name.is_some_and(|n| rule.resource_names.iter().any(|r| r == n))
}

/// True when any of `rules` grants `attrs`.
///
/// ```
/// use rancher_auth::rbac::{ResourceAttributes, allows};
/// use rancher_core::model::PolicyRule;
/// let rules = vec![PolicyRule {
///     verbs: vec!["get".into(), "list".into()],
///     api_groups: vec!["management.cattle.io".into()],
///     resources: vec!["roletemplates".into()],
///     ..Default::default()
/// }];
/// let read = ResourceAttributes { verb: "list", api_group: "management.cattle.io", resource: "roletemplates", name: None };
/// assert!(allows(&rules, &read));
/// assert!(!allows(&rules, &ResourceAttributes { verb: "delete", ..read }));
/// ```
pub fn allows<'r>(rules: impl IntoIterator<Item = &'r PolicyRule>, attrs: &ResourceAttributes<'_>) -> bool {
    rules.into_iter().any(|r| rule_allows(r, attrs))
}

/// True when any of `rules` grants `verb` on the non-resource URL `path` (`/healthz`, `/metrics`).
/// A rule's URL may end in `*` to match a prefix.
pub fn allows_non_resource<'r>(
    rules: impl IntoIterator<Item = &'r PolicyRule>,
    verb: &str,
    path: &str,
) -> bool {
    rules.into_iter().any(|r| {
        r.verbs.iter().any(|v| v == "*" || v == verb)
            && r.non_resource_urls.iter().any(|u| match u.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => u == path,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        PolicyRule {
            verbs: v(verbs),
            api_groups: v(groups),
            resources: v(resources),
            resource_names: v(names),
            ..Default::default()
        }
    }

    const G: &str = "management.cattle.io";

    fn attrs<'a>(verb: &'a str, resource: &'a str, name: Option<&'a str>) -> ResourceAttributes<'a> {
        ResourceAttributes { verb, api_group: G, resource, name }
    }

    #[test]
    fn wildcards_grant_everything() {
        let admin = [rule(&["*"], &["*"], &["*"], &[])];
        assert!(allows(&admin, &attrs("delete", "users", Some("u-abcde"))));
        assert!(allows(&admin, &ResourceAttributes { api_group: "", ..attrs("get", "pods", None) }));
    }

    #[test]
    fn verb_group_and_resource_must_all_match() {
        let r = [rule(&["get", "list"], &[G], &["clusters"], &[])];
        assert!(allows(&r, &attrs("list", "clusters", None)));
        assert!(!allows(&r, &attrs("create", "clusters", None)));
        assert!(!allows(&r, &attrs("list", "users", None)));
        assert!(!allows(&r, &ResourceAttributes { api_group: "", ..attrs("list", "clusters", None) }));
        assert!(!allows(&[], &attrs("list", "clusters", None)), "no rules, no access");
    }

    #[test]
    fn resource_names_limit_to_named_objects() {
        let r = [rule(&["get", "list"], &[G], &["users"], &["u-self1"])];
        assert!(allows(&r, &attrs("get", "users", Some("u-self1"))));
        assert!(!allows(&r, &attrs("get", "users", Some("u-other"))));
        assert!(!allows(&r, &attrs("list", "users", None)));
    }

    #[test]
    fn subresources_are_distinct() {
        let r = [rule(&["get"], &[""], &["pods"], &[])];
        let log = ResourceAttributes { api_group: "", ..attrs("get", "pods/log", None) };
        assert!(!allows(&r, &log));
    }

    #[test]
    fn non_resource_urls() {
        let r = [PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/healthz".into(), "/metrics*".into()],
            ..Default::default()
        }];
        assert!(allows_non_resource(&r, "get", "/healthz"));
        assert!(allows_non_resource(&r, "get", "/metrics/x"));
        assert!(!allows_non_resource(&r, "post", "/healthz"));
        assert!(!allows_non_resource(&r, "get", "/readyz"));
    }
}
