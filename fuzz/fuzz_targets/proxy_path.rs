//! `rancher_auth::fuzzing::proxy_path`: see its documentation for the input format and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rancher_auth::fuzzing::proxy_path(data));
