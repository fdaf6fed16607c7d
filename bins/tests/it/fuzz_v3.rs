//! The `/v3` body fuzz check (`rancher::server::fuzzing::v3_body`), bounded for the ordinary test
//! suite: every committed seed and regression input of the cargo-fuzz target `v3_bodies`, then a fixed
//! number of generated bodies. `scripts/fuzz.sh` runs the same check for minutes.

use std::path::PathBuf;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rancher::server::fuzzing::v3_body;

/// The committed inputs of the target: `fuzz/corpus/v3_bodies/` and `fuzz/regressions/v3_bodies/`.
fn committed_inputs() -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut inputs = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join("v3_bodies")) else { continue };
        for entry in entries.flatten() {
            inputs.push((entry.path(), std::fs::read(entry.path()).unwrap()));
        }
    }
    inputs.sort();
    inputs
}

#[test]
fn v3_bodies_committed_inputs() {
    let inputs = committed_inputs();
    assert!(!inputs.is_empty(), "no committed inputs for v3_bodies");
    for (path, data) in inputs {
        if std::panic::catch_unwind(|| v3_body(&data)).is_err() {
            panic!("v3_bodies: committed input {} breaks an invariant", path.display());
        }
    }
}

/// JSON values built from the model's own field names, so generated bodies get past decoding.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let key = prop::sample::select(vec![
        "metadata",
        "spec",
        "status",
        "name",
        "namespace",
        "generateName",
        "labels",
        "annotations",
        "finalizers",
        "uid",
        "resourceVersion",
        "username",
        "password",
        "displayName",
        "enabled",
        "principalIds",
        "mustChangePassword",
        "rules",
        "verbs",
        "apiGroups",
        "resources",
        "builtin",
        "newUserDefault",
        "context",
        "locked",
        "userName",
        "groupPrincipalName",
        "globalRoleName",
        "clusterName",
        "projectName",
        "roleTemplateName",
        "serviceAccount",
        "importedConfig",
        "ttl",
        "clusterId",
        "description",
        "userId",
        "kind",
        "token",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "c-fuzz",
            "p-fuzz",
            "u-target",
            "admin",
            "cluster",
            "project",
            "*",
            "c-fuzz:p-fuzz",
            "fuzz-rt",
            "a-long-enough-password",
            "-",
            "x".repeat(70).leak()
        ])
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

#[test]
fn v3_bodies_generated() {
    let config = Config { cases: 400, failure_persistence: None, ..Config::default() };
    let input = (any::<u8>(), json_value()).prop_map(|(choice, body)| {
        let mut data = vec![choice];
        data.extend(body.to_string().into_bytes());
        data
    });
    TestRunner::new(config)
        .run(&input, |data| {
            v3_body(&data);
            Ok(())
        })
        .unwrap();
}
