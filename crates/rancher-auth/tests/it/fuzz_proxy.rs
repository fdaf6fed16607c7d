//! The proxy's fuzz checks (`rancher_auth::fuzzing`), bounded for the ordinary test suite: every
//! committed seed and regression input of the cargo-fuzz targets in `fuzz/`, then a fixed number of
//! generated request lines and header sets. `scripts/fuzz.sh` runs the same checks for minutes.

use std::path::PathBuf;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rancher_auth::fuzzing;

/// The committed inputs of a fuzz target: `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`.
fn committed_inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut inputs = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else { continue };
        for entry in entries.flatten() {
            inputs.push((entry.path(), std::fs::read(entry.path()).unwrap()));
        }
    }
    inputs.sort();
    inputs
}

fn replay(target: &str, check: fn(&[u8])) {
    let inputs = committed_inputs(target);
    assert!(!inputs.is_empty(), "no committed inputs for {target}");
    for (path, data) in inputs {
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{target}: committed input {} breaks an invariant", path.display());
        }
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

/// Path segments an attacker would try: API words, dot segments, escapes, empty segments.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "api",
            "apis",
            "v1",
            "apps",
            "namespaces",
            "default",
            "secrets",
            "pods",
            "p",
            "exec",
            "attach",
            "portforward",
            "log",
            "status",
            "finalize",
            "watch",
            "proxy",
            "services",
            ".",
            "..",
            "",
            "%2F",
            "%2e",
            "%2E%2E",
            "secrets%2Fx",
            "x%2Fsecrets",
            "%",
            "%zz",
            "%c3%a9",
            "k8s",
            "clusters",
            "c1",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9%./:@!$&'()*+,;=~_-]{0,8}",
    ]
}

fn request_line() -> impl Strategy<Value = Vec<u8>> {
    let method =
        prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "BREW"]);
    let prefix =
        prop::sample::select(vec!["/k8s/clusters/c1", "/k8s/clusters/local", "/k8s/clusters/-x", ""]);
    let query = prop::sample::select(vec![
        "",
        "?watch=true",
        "?watch=1&fieldSelector=metadata.name%3Dweb",
        "?fieldSelector=metadata.name==a,b",
        "?fieldSelector=metadata.name%3D..",
        "?watch",
        "?follow=true",
        "?%zz=%",
    ]);
    let body = prop::collection::vec(any::<u8>(), 0..64);
    (method, prefix, prop::collection::vec(segment(), 0..9), query, body).prop_map(
        |(method, prefix, segments, query, body)| {
            let path: String = segments.iter().map(|s| format!("/{s}")).collect();
            let mut line = format!("{method} {prefix}{path}{query}\n").into_bytes();
            line.extend(body);
            line
        },
    )
}

#[test]
fn proxy_path_committed_inputs() {
    replay("proxy_path", fuzzing::proxy_path);
}

#[test]
fn proxy_path_generated_request_lines() {
    runner(3000)
        .run(&request_line(), |line| {
            fuzzing::proxy_path(&line);
            Ok(())
        })
        .unwrap();
    runner(1000)
        .run(&prop::collection::vec(any::<u8>(), 0..128), |bytes| {
            fuzzing::proxy_path(&bytes);
            Ok(())
        })
        .unwrap();
}

/// A client's header lines, heavy on the ones that touch identity and hop-by-hop handling.
fn client_headers() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        prop::sample::select(vec![
            "Impersonate-User",
            "IMPERSONATE-GROUP",
            "impersonate-uid",
            "Impersonate-Extra-Scopes",
            "Impersonate-Extra-principalid",
            "Authorization",
            "Proxy-Authorization",
            "Cookie",
            "Connection",
            "Upgrade",
            "Sec-WebSocket-Protocol",
            "Keep-Alive",
            "TE",
            "Accept",
            "X-Remote-User",
        ])
        .prop_map(str::to_owned),
        "[A-Za-z-]{1,24}",
    ];
    let value = prop_oneof![
        prop::sample::select(vec![
            "admin",
            "system:masters",
            "Impersonate-User, Impersonate-Group",
            "impersonate-extra-principalid",
            "upgrade, impersonate-uid",
            "Bearer token-a:secret",
            "R_SESS=token-a:secret",
            "v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.dG9r",
            "keep-alive",
            "SPDY/3.1",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,24}",
    ];
    prop::collection::vec((name, value), 0..8)
        .prop_map(|hs| hs.into_iter().map(|(n, v)| format!("{n}: {v}\n")).collect())
}

fn identity_input() -> impl Strategy<Value = Vec<u8>> {
    let user = prop::sample::select(vec![
        "u-alice|u-alice|local://g-dev,github_team://42|principalid=local://u-alice;scopes=a,b",
        "u-bob||system:authenticated|",
        "u-x\rImpersonate-User: admin|||",
        "|||",
        "u-é|uid|g|Example.org/Key=v",
    ]);
    (user, client_headers()).prop_map(|(user, headers)| format!("{user}\n{headers}").into_bytes())
}

#[test]
fn identity_headers_committed_inputs() {
    replay("proxy_identity", fuzzing::identity_headers);
}

#[test]
fn identity_headers_generated_clients() {
    runner(3000)
        .run(&identity_input(), |input| {
            fuzzing::identity_headers(&input);
            Ok(())
        })
        .unwrap();
}

// Invariants that issue 8's fixes of rows 1 and 12 establish; each input under `fuzz/regressions/` is
// what the fuzz target found against the code before them.

#[test]
fn identity_survives_the_next_hop_committed_inputs() {
    replay("proxy_identity_next_hop", fuzzing::identity_headers_next_hop);
}

#[test]
fn audit_never_records_secret_bodies_committed_inputs() {
    replay("proxy_audit_secrets", fuzzing::audit_secret_bodies);
}
