//! `rancher_tunnel::fuzzing::dial_header`: see its documentation for the input format and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rancher_tunnel::fuzzing::dial_header(data));
