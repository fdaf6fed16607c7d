//! Tests of rule evaluation and of [`covers`], with properties checked against [`allows`].

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
fn star_subresource_rules_match_that_subresource_of_every_resource() {
    let r = [rule(&["get"], &[""], &["*/log"], &[])];
    let at = |resource| ResourceAttributes { api_group: "", ..attrs("get", resource, None) };
    assert!(allows(&r, &at("pods/log")));
    assert!(allows(&r, &at("jobs/log")));
    assert!(!allows(&r, &at("pods")));
    assert!(!allows(&r, &at("pods/exec")));
    assert!(allows(&[rule(&["get"], &[""], &["*"], &[])], &at("pods/log")), "* includes subresources");
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
    let stars = [PolicyRule {
        verbs: vec!["get".into()],
        non_resource_urls: vec!["/api**".into()],
        ..Default::default()
    }];
    assert!(allows_non_resource(&stars, "get", "/apis"), "every trailing * is dropped");
}

fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        non_resource_urls: urls.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn wildcards_cover_only_wildcards_or_what_they_match() {
    let admin = [rule(&["*"], &["*"], &["*"], &[]), url_rule(&["*"], &["*"])];
    let anything =
        [rule(&["*"], &["*"], &["*"], &[]), url_rule(&["*"], &["*"]), rule(&["bind"], &[G], &["x"], &["y"])];
    assert_eq!(covers(&admin, &anything), Ok(()));
    // Listing every verb is not `*`: a later verb (or a custom one) would not be held.
    let listed =
        [rule(&["get", "list", "watch", "create", "update", "patch", "delete"], &["*"], &["*"], &[])];
    assert!(covers(&listed, &[rule(&["*"], &[""], &["pods"], &[])]).is_err());
    assert!(covers(&listed, &[rule(&["delete"], &[""], &["pods"], &[])]).is_ok());
    let pods = [rule(&["*"], &[""], &["pods"], &[])];
    assert!(covers(&pods, &[rule(&["get"], &[""], &["*"], &[])]).is_err(), "pods do not cover *");
    assert!(covers(&pods, &[rule(&["get"], &["*"], &["pods"], &[])]).is_err(), "one group does not cover *");
    assert!(
        covers(&pods, &[rule(&["get"], &[""], &["pods/log"], &[])]).is_err(),
        "a subresource is distinct"
    );
}

#[test]
fn permissions_spread_over_several_rules_count() {
    let owner = [
        rule(&["get"], &[G], &["clusters", "projects"], &[]),
        rule(&["list"], &[G], &["clusters"], &[]),
        rule(&["list"], &[G], &["projects"], &[]),
    ];
    assert_eq!(covers(&owner, &[rule(&["get", "list"], &[G], &["clusters", "projects"], &[])]), Ok(()));
    let err = covers(&owner, &[rule(&["get", "list", "delete"], &[G], &["clusters"], &[])]).unwrap_err();
    assert_eq!(err.missing, [rule(&["delete"], &[G], &["clusters"], &[])]);
    assert!(!err.too_large);
    assert_eq!(
        err.to_string(),
        r#"{verbs: ["delete"], apiGroups: ["management.cattle.io"], resources: ["clusters"]}"#
    );
    assert_eq!(covers(&[], &[]), Ok(()), "nothing requested, nothing missing");
    assert_eq!(
        covers(&[], &[rule(&[], &[G], &["clusters"], &[])]),
        Ok(()),
        "a rule without verbs grants nothing"
    );
}

#[test]
fn subresources_are_covered_by_star_or_star_slash_sub() {
    let log = [rule(&["get"], &[""], &["*/log"], &[])];
    assert!(covers(&log, &[rule(&["get"], &[""], &["pods/log", "jobs/log"], &[])]).is_ok());
    assert!(covers(&log, &[rule(&["get"], &[""], &["*/log"], &[])]).is_ok());
    assert!(covers(&log, &[rule(&["get"], &[""], &["pods"], &[])]).is_err());
    assert!(covers(&log, &[rule(&["get"], &[""], &["*"], &[])]).is_err());
    let all = [rule(&["get"], &[""], &["*"], &[])];
    assert!(covers(&all, &[rule(&["get"], &[""], &["pods/exec", "*/log"], &[])]).is_ok());
}

#[test]
fn resource_names_cover_only_named_requests_within_them() {
    let named = [rule(&["get"], &[G], &["users"], &["u-a", "u-b"])];
    assert!(covers(&named, &[rule(&["get"], &[G], &["users"], &["u-a"])]).is_ok());
    assert!(covers(&named, &[rule(&["get"], &[G], &["users"], &["u-a", "u-b"])]).is_ok());
    assert!(covers(&named, &[rule(&["get"], &[G], &["users"], &["u-c"])]).is_err());
    assert!(covers(&named, &[rule(&["get"], &[G], &["users"], &[])]).is_err(), "every user is more than two");
    let unnamed = [rule(&["get"], &[G], &["users"], &[])];
    assert!(covers(&unnamed, &[rule(&["get"], &[G], &["users"], &["u-c"])]).is_ok());
    // Names spread over two owner rules.
    let split = [rule(&["get"], &[G], &["users"], &["u-a"]), rule(&["get"], &[G], &["users"], &["u-b"])];
    assert!(covers(&split, &[rule(&["get"], &[G], &["users"], &["u-a", "u-b"])]).is_ok());
}

#[test]
fn non_resource_urls_are_covered_by_the_same_or_a_prefix() {
    let owner = [url_rule(&["get"], &["/healthz", "/metrics/*"])];
    assert!(covers(&owner, &[url_rule(&["get"], &["/healthz", "/metrics/x", "/metrics/*"])]).is_ok());
    assert!(covers(&owner, &[url_rule(&["get"], &["/metrics*"])]).is_err(), "/metricsx is more");
    assert!(covers(&owner, &[url_rule(&["post"], &["/healthz"])]).is_err());
    assert!(covers(&owner, &[url_rule(&["get"], &["*"])]).is_err());
    // A resource rule does not cover URLs, nor the other way round.
    let resources = [rule(&["*"], &["*"], &["*"], &[])];
    assert!(covers(&resources, &[url_rule(&["get"], &["/healthz"])]).is_err());
    assert!(covers(&[url_rule(&["*"], &["*"])], &[rule(&["get"], &[""], &["pods"], &[])]).is_err());
}

#[test]
fn huge_rules_are_refused_unless_one_rule_covers_them_whole() {
    let many: Vec<String> = (0..100).map(|i| format!("x{i}")).collect();
    let as_refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let huge = rule(&as_refs, &as_refs, &as_refs, &as_refs[..11]);
    let err = covers(&[rule(&["get"], &["*"], &["*"], &[])], std::slice::from_ref(&huge)).unwrap_err();
    assert!(err.too_large && err.to_string().contains("split it"), "{err}");
    assert_eq!(covers(&[rule(&["*"], &["*"], &["*"], &[])], &[huge]), Ok(()));
    // Duplicates do not count twice: 1 000 copies of one verb are one permission.
    let dup = rule(&vec!["get"; 1000], &vec![""; 1000], &vec!["pods"; 1000], &[]);
    let owner = [rule(&["get"], &[""], &["pods"], &[]), rule(&["get"], &[""], &["nodes"], &[])];
    assert_eq!(covers(&owner, &[dup]), Ok(()));
}

#[test]
fn at_most_a_few_missing_permissions_are_reported() {
    let many: Vec<String> = (0..50).map(|i| format!("r{i}")).collect();
    let as_refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let err = covers(&[], &[rule(&["get"], &[G], &as_refs, &[])]).unwrap_err();
    assert_eq!(err.missing.len(), MAX_REPORTED);
}

mod properties {
    use super::super::*;
    use proptest::prelude::*;

    // Small alphabets, so that rules and requests collide often.
    fn word(options: &'static [&'static str]) -> impl Strategy<Value = String> {
        proptest::sample::select(options).prop_map(str::to_owned)
    }
    const VERBS: &[&str] = &["get", "list", "delete", "*"];
    const GROUPS: &[&str] = &["", "apps", "*"];
    const RESOURCES: &[&str] = &["pods", "pods/log", "jobs/log", "*/log", "jobs", "*"];
    const NAMES: &[&str] = &["a", "b"];
    const URLS: &[&str] = &["/a", "/a/b", "/a*", "/a/*", "*", "/b"];

    fn list(options: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(word(options), 0..3)
    }

    fn rule() -> impl Strategy<Value = PolicyRule> {
        (list(VERBS), list(GROUPS), list(RESOURCES), list(NAMES), list(URLS)).prop_map(
            |(verbs, api_groups, resources, resource_names, non_resource_urls)| PolicyRule {
                verbs,
                api_groups,
                resources,
                resource_names,
                non_resource_urls,
            },
        )
    }

    /// Every concrete request the alphabets can make (names: none or one).
    fn requests() -> Vec<(String, String, String, Option<String>)> {
        let mut out = Vec::new();
        for v in ["get", "list", "delete", "patch"] {
            for g in ["", "apps", "batch"] {
                for r in ["pods", "pods/log", "jobs/log", "jobs", "nodes", "pods/exec"] {
                    for n in [None, Some("a"), Some("b"), Some("c")] {
                        out.push((v.to_owned(), g.to_owned(), r.to_owned(), n.map(str::to_owned)));
                    }
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Soundness: when `owner` covers `requested`, whatever `requested` allows, `owner` allows.
        #[test]
        fn what_is_covered_is_allowed(
            owner in proptest::collection::vec(rule(), 0..4),
            requested in proptest::collection::vec(rule(), 0..3),
        ) {
            if covers(&owner, &requested).is_ok() {
                for (v, g, r, n) in requests() {
                    let at = ResourceAttributes { verb: &v, api_group: &g, resource: &r, name: n.as_deref() };
                    if allows(&requested, &at) {
                        prop_assert!(allows(&owner, &at), "{at:?} allowed by the requested rules only");
                    }
                }
                for v in ["get", "list", "delete", "patch"] {
                    for path in ["/a", "/a/b", "/ab", "/b", "/c", "/a*"] {
                        if allows_non_resource(&requested, v, path) {
                            prop_assert!(allows_non_resource(&owner, v, path), "{v} {path}");
                        }
                    }
                }
            }
        }

        /// What is reported missing really is: a missing permission without wildcards names a
        /// request the requested rules allow and the owner does not.
        #[test]
        fn what_is_reported_missing_is_not_allowed(
            owner in proptest::collection::vec(rule(), 0..4),
            requested in proptest::collection::vec(rule(), 0..3),
        ) {
            let Err(uncovered) = covers(&owner, &requested) else { return Ok(()) };
            prop_assert!(uncovered.too_large || !uncovered.missing.is_empty());
            for m in uncovered.missing {
                let wild = |v: &[String]| v.iter().any(|s| s.contains('*'));
                if wild(&m.verbs) || wild(&m.api_groups) || wild(&m.resources) || wild(&m.non_resource_urls) {
                    continue;
                }
                if let Some(url) = m.non_resource_urls.first() {
                    prop_assert!(allows_non_resource(&requested, &m.verbs[0], url));
                    prop_assert!(!allows_non_resource(&owner, &m.verbs[0], url), "{m:?}");
                } else {
                    let at = ResourceAttributes {
                        verb: &m.verbs[0],
                        api_group: &m.api_groups[0],
                        resource: &m.resources[0],
                        name: m.resource_names.first().map(String::as_str),
                    };
                    prop_assert!(allows(&requested, &at), "{at:?}");
                    prop_assert!(!allows(&owner, &at), "{at:?}");
                }
            }
        }

        /// Every set of rules covers itself and each of its parts.
        #[test]
        fn rules_cover_themselves(owner in proptest::collection::vec(rule(), 0..4)) {
            prop_assert_eq!(covers(&owner, &owner), Ok(()));
            for r in &owner {
                prop_assert_eq!(covers(&owner, std::slice::from_ref(r)), Ok(()));
            }
        }
    }
}
