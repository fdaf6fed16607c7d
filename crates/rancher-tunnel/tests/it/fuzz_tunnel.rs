//! The tunnel's fuzz checks (`rancher_tunnel::fuzzing`), bounded for the ordinary test suite: every
//! committed seed and regression input of the cargo-fuzz targets in `fuzz/`, then a fixed number of
//! generated dial headers and hostile agent sessions. `scripts/fuzz.sh` runs the same checks for minutes.

use std::path::PathBuf;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rancher_tunnel::fuzzing;

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

#[test]
fn dial_header_committed_inputs() {
    replay("tunnel_dial_header", fuzzing::dial_header);
}

#[test]
fn dial_header_generated() {
    let lengths = (any::<u8>(), 0u8..20, any::<u16>(), prop::collection::vec(any::<u8>(), 0..600));
    let headers = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        lengths.prop_map(|(first, n, a, tail)| {
            let mut h = vec![first % 6, n];
            h.extend(std::iter::repeat_n(b't', n.into()));
            h.extend((a % 600).to_be_bytes());
            h.extend(tail);
            h
        }),
    ];
    runner(5000)
        .run(&headers, |h| {
            fuzzing::dial_header(&h);
            Ok(())
        })
        .unwrap();
}

#[test]
fn session_committed_inputs() {
    replay("tunnel_session", fuzzing::session);
}

/// A yamux frame: header (version, type, flags, stream, length) and a short body.
fn yamux_frame() -> impl Strategy<Value = Vec<u8>> {
    let stream = prop::sample::select(vec![0u32, 1, 2, 3, 4, 99, u32::MAX]);
    let length = prop_oneof![0u32..64, Just(u32::MAX), Just(256 * 1024), Just(256 * 1024 + 1)];
    (0u8..2, 0u8..5, 0u16..16, stream, length, prop::collection::vec(any::<u8>(), 0..48)).prop_map(
        |(version, kind, flags, stream, length, body)| {
            let mut f = vec![version, kind];
            f.extend(flags.to_be_bytes());
            f.extend(stream.to_be_bytes());
            f.extend(length.to_be_bytes());
            if kind == 0 {
                f.extend(body.iter().take(length as usize));
            }
            f
        },
    )
}

/// Session inputs in the record shape (`shape` bit 0 set), mostly binary messages of yamux frames.
fn session_input() -> impl Strategy<Value = Vec<u8>> {
    let record = (prop_oneof![4 => Just(0u8), 1 => 0u8..8], prop::collection::vec(yamux_frame(), 1..4));
    (any::<bool>(), prop::collection::vec(record, 0..6)).prop_map(|(dial, records)| {
        let mut input = vec![if dial { 3 } else { 1 }];
        for (tag, frames) in records {
            let payload = frames.concat();
            input.push(tag);
            input.extend((payload.len() as u16).to_be_bytes());
            input.extend(payload);
        }
        input
    })
}

#[test]
fn session_generated_agents() {
    runner(400)
        .run(&session_input(), |input| {
            fuzzing::session(&input);
            Ok(())
        })
        .unwrap();
    runner(200)
        .run(&prop::collection::vec(any::<u8>(), 0..256), |bytes| {
            fuzzing::session(&bytes);
            Ok(())
        })
        .unwrap();
}
