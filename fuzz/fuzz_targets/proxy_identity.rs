//! `rancher_auth::fuzzing::identity_headers`: see its documentation for the input format and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rancher_auth::fuzzing::identity_headers(data));
