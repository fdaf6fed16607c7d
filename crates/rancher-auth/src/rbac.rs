//! Evaluation of Kubernetes-style RBAC rules ([`PolicyRule`]): does a set of rules allow a request
//! ([`allows`]), and does one set of rules hold every permission of another ([`covers`]) — the
//! question behind Kubernetes' escalation check (whoever grants a right must hold it).
//!
//! A request is allowed when any rule matches its verb, API group, resource and (for rules that list
//! `resourceNames`) its object name. `*` matches anything in verbs, groups and resources, and
//! `*/<subresource>` that subresource of every resource, as in Kubernetes.

use std::collections::BTreeSet;
use std::fmt;

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
    if !rule.resources.iter().any(|r| resource_matches(r, attrs.resource)) {
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
            && r.non_resource_urls.iter().any(|u| url_matches(u, path))
    })
}

/// A rule's resource against a requested one (`pods`, `pods/log`): `*`, the same, or `*/<sub>`
/// for that subresource of any resource.
fn resource_matches(rule: &str, wanted: &str) -> bool {
    rule == "*"
        || rule == wanted
        || rule.strip_prefix("*/").is_some_and(|sub| wanted.split_once('/').is_some_and(|(_, s)| s == sub))
}

/// A rule's non-resource URL against a path: the same, or a prefix when the rule ends in `*` (every
/// trailing `*` is dropped, as Kubernetes does, so `/api**` is the prefix `/api`).
fn url_matches(rule: &str, path: &str) -> bool {
    match rule.strip_suffix('*') {
        Some(_) => path.starts_with(rule.trim_end_matches('*')),
        None => rule == path,
    }
}

// ---- covers: does one set of rules hold every permission of another ----

/// The most single permissions (one verb on one group, resource and name, or on one URL) that one
/// requested rule may stand for before [`covers`] stops and reports it as too large. Rules come from
/// request bodies; without a bound, a rule listing a thousand verbs, groups and resources would stand
/// for a billion permissions to check.
pub const MAX_BREAKDOWN: usize = 100_000;

/// How many missing permissions [`Uncovered`] lists at most.
pub const MAX_REPORTED: usize = 8;

/// What [`covers`] found missing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uncovered {
    /// Up to [`MAX_REPORTED`] permissions the owner lacks, each as a rule with one verb and one
    /// group, resource and (if the requested rule named objects) object name, or one URL.
    pub missing: Vec<PolicyRule>,
    /// A requested rule stood for more than [`MAX_BREAKDOWN`] permissions and no single rule of the
    /// owner covered it whole; it was not broken down and counts as not covered.
    pub too_large: bool,
}

impl fmt::Display for Uncovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for r in &self.missing {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}", DisplayRule(r))?;
        }
        if self.too_large {
            if !first {
                f.write_str(", ")?;
            }
            write!(f, "a rule standing for more than {MAX_BREAKDOWN} permissions (split it)")?;
        }
        Ok(())
    }
}

/// A rule written the way `kubectl describe` lists one, for error messages.
struct DisplayRule<'a>(&'a PolicyRule);

impl fmt::Display for DisplayRule<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        let list = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(",");
        write!(f, "{{verbs: [{}]", list(&r.verbs))?;
        if !r.api_groups.is_empty() || !r.resources.is_empty() {
            write!(f, ", apiGroups: [{}], resources: [{}]", list(&r.api_groups), list(&r.resources))?;
        }
        if !r.resource_names.is_empty() {
            write!(f, ", resourceNames: [{}]", list(&r.resource_names))?;
        }
        if !r.non_resource_urls.is_empty() {
            write!(f, ", nonResourceURLs: [{}]", list(&r.non_resource_urls))?;
        }
        f.write_str("}")
    }
}

/// True when every value in `wanted` is in `set`, or `set` holds `*`.
fn has_all(set: &[String], wanted: &[String]) -> bool {
    set.iter().any(|s| s == "*") || wanted.iter().all(|w| set.contains(w))
}

/// True when `owner` alone grants everything `requested` grants (Kubernetes' rule comparison):
/// every verb (or `*`); for the resources it grants, every group (or `*`), every resource (`*`, the
/// same, or `*/<sub>` for a subresource) and names — an owner limited to names covers only requests
/// limited to some of those names; for the URLs it grants, every URL (`*`, the same, or a prefix
/// rule), whatever names either rule lists (names do not limit URLs).
pub fn rule_covers(owner: &PolicyRule, requested: &PolicyRule) -> bool {
    let covers_resource = |wanted: &String| {
        owner.resources.iter().any(|r| r == "*")
            || owner.resources.contains(wanted)
            || wanted.split_once('/').is_some_and(|(_, sub)| owner.resources.contains(&format!("*/{sub}")))
    };
    let names = if requested.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &requested.resource_names)
    };
    // A rule without groups or without resources grants no resource at all.
    let grants_resources = !requested.api_groups.is_empty() && !requested.resources.is_empty();
    let resources = !grants_resources
        || (has_all(&owner.api_groups, &requested.api_groups)
            && requested.resources.iter().all(covers_resource)
            && names);
    let urls = requested.non_resource_urls.iter().all(|wanted| {
        owner.non_resource_urls.iter().any(|o| {
            o == "*" || o == wanted || (o.ends_with('*') && wanted.starts_with(o.trim_end_matches('*')))
        })
    });
    has_all(&owner.verbs, &requested.verbs) && resources && urls
}

/// The distinct values of a list, in order.
fn distinct(v: &[String]) -> Vec<&String> {
    let mut seen = BTreeSet::new();
    v.iter().filter(|s| seen.insert(s.as_str())).collect()
}

/// Checks whether `owner` holds every permission of `requested`: each requested rule is covered whole
/// by one owner rule, or else broken down into single permissions (one verb, group, resource and name,
/// or one verb and URL) that are each covered by some owner rule — so permissions spread over several
/// owner rules count. This is the question Kubernetes asks before a role or binding is written.
///
/// ```
/// use rancher_auth::rbac::covers;
/// use rancher_core::model::PolicyRule;
/// let rule = |verbs: &[&str], resources: &[&str]| PolicyRule {
///     verbs: verbs.iter().map(|s| s.to_string()).collect(),
///     api_groups: vec!["".into()],
///     resources: resources.iter().map(|s| s.to_string()).collect(),
///     ..Default::default()
/// };
/// let owner = [rule(&["get", "list"], &["pods"]), rule(&["get"], &["secrets"])];
/// assert!(covers(&owner, &[rule(&["get"], &["pods", "secrets"])]).is_ok());
/// let missing = covers(&owner, &[rule(&["delete"], &["pods"])]).unwrap_err();
/// assert_eq!(missing.missing, [rule(&["delete"], &["pods"])]);
/// ```
///
/// # Errors
/// [`Uncovered`]: the first permissions the owner lacks (at most [`MAX_REPORTED`]), or that a rule
/// was too large to break down.
pub fn covers(owner: &[PolicyRule], requested: &[PolicyRule]) -> Result<(), Uncovered> {
    let mut out = Uncovered::default();
    let report = |simple: PolicyRule, out: &mut Uncovered| {
        if !owner.iter().any(|o| rule_covers(o, &simple)) {
            out.missing.push(simple);
        }
        out.missing.len() >= MAX_REPORTED
    };
    for wanted in requested {
        if owner.iter().any(|o| rule_covers(o, wanted)) {
            continue;
        }
        let (verbs, groups, resources, names, urls) = (
            distinct(&wanted.verbs),
            distinct(&wanted.api_groups),
            distinct(&wanted.resources),
            distinct(&wanted.resource_names),
            distinct(&wanted.non_resource_urls),
        );
        let size = verbs
            .len()
            .saturating_mul(groups.len())
            .saturating_mul(resources.len())
            .saturating_mul(names.len().max(1))
            .saturating_add(verbs.len().saturating_mul(urls.len()));
        if size > MAX_BREAKDOWN {
            out.too_large = true;
            continue;
        }
        let one = |v: &str| vec![v.to_owned()];
        for verb in &verbs {
            for group in &groups {
                for resource in &resources {
                    let name_sets: Vec<Vec<String>> = if names.is_empty() {
                        vec![Vec::new()]
                    } else {
                        names.iter().map(|n| one(n)).collect()
                    };
                    for resource_names in name_sets {
                        let simple = PolicyRule {
                            verbs: one(verb),
                            api_groups: one(group),
                            resources: one(resource),
                            resource_names,
                            non_resource_urls: Vec::new(),
                        };
                        if report(simple, &mut out) {
                            return Err(out);
                        }
                    }
                }
            }
            for url in &urls {
                let simple =
                    PolicyRule { verbs: one(verb), non_resource_urls: one(url), ..Default::default() };
                if report(simple, &mut out) {
                    return Err(out);
                }
            }
        }
    }
    if out.missing.is_empty() && !out.too_large { Ok(()) } else { Err(out) }
}

#[cfg(test)]
mod tests;
