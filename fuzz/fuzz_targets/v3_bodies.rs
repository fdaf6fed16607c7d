//! `rancher::server::fuzzing::v3_body`: see its documentation for the input format and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rancher::server::fuzzing::v3_body(data));
