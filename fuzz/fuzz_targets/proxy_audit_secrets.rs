//! `rancher_auth::fuzzing::audit_secret_bodies`: see its documentation for the input format and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rancher_auth::fuzzing::audit_secret_bodies(data));
