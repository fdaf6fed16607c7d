//! `rancher_tunnel::fuzzing::session`: see its documentation for the input format and the invariants.
#![no_main]

/// No single allocation above 16 MiB.
#[global_allocator]
static ALLOCATOR: rancher_fuzz::Limited<16> = rancher_fuzz::Limited;

libfuzzer_sys::fuzz_target!(|data: &[u8]| rancher_tunnel::fuzzing::session(data));
