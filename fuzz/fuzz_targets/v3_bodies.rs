//! `rancher::server::fuzzing::v3_body`: see its documentation for the input format and the invariants.
#![no_main]

/// No single allocation above 64 MiB.
#[global_allocator]
static ALLOCATOR: rancher_fuzz::Limited<64> = rancher_fuzz::Limited;

libfuzzer_sys::fuzz_target!(|data: &[u8]| rancher::server::fuzzing::v3_body(data));
